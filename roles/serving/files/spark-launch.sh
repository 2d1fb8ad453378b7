#!/bin/sh
# Installed by roles/serving; the explicit entrypoint of the runtime container
# (`bash /run/spark-cluster/launch <binary> serve ...`), run as the image's uid.
# On the head it reads the API key from the compose secret (a 0400 file owned by the
# runtime uid, mounted at /run/secrets/api_key) into VLLM_API_KEY, in the process
# environment only: the key never appears in the container's configuration
# (docker inspect: Config.Env, env files, Config.Cmd), the compose file or the unit.
# vLLM reads only VLLM_API_KEY: without it the API would be open.
set -eu
key_file=${SPARK_API_KEY_FILE:-/run/secrets/api_key}
if [ -e "$key_file" ]; then
    if [ ! -r "$key_file" ] || [ ! -s "$key_file" ]; then
        echo "spark-launch: $key_file is not readable by uid $(id -u) or empty" >&2
        exit 78
    fi
    VLLM_API_KEY=$(cat "$key_file")
    export VLLM_API_KEY
fi
if [ ! -x "$1" ]; then
    echo "spark-launch: the runtime binary $1 is missing or not executable in this image" >&2
    exit 127
fi
exec "$@"
