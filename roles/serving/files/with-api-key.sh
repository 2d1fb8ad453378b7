#!/bin/sh
# Installed by roles/serving. Runs inside the runtime container (head) in front of the
# runtime's command: reads the API key from the compose secret (a 0600 root file on the
# node, mounted at /run/secrets/api_key) and execs the command with VLLM_API_KEY in its
# process environment only. The key never appears in the container's configuration
# (docker inspect shows Config.Env, env files and Config.Cmd), the compose file or the unit.
set -eu
key_file=${SPARK_API_KEY_FILE:-/run/secrets/api_key}
if [ ! -s "$key_file" ]; then
    echo "with-api-key: $key_file is missing or empty" >&2
    exit 78
fi
VLLM_API_KEY=$(cat "$key_file")
export VLLM_API_KEY
exec "$@"
