#!/usr/bin/env bash
# The lab's stand-in of the recipe's build-dspark-vllm-runtime.sh, with its contract at the
# reviewed commit (MiaAI-Lab/DeepSeek-v4-Flash-DSpark-2x-DGX-Spark 489af95): the same
# variables (ENV_FILE, DSPARK_VLLM_IMAGE, DSPARK_BASE_IMAGE, WORKER_BUILD, WORKER_HOST,
# WORKER_CHECKOUT), the same steps (scripts/verify-overlay-sources.sh; the overlay
# recipe/Dockerfile.dspark-runtime-overlay from recipe/overlay as DSPARK_BASE_IMAGE and its
# import check through /opt/env/bin/python; recipe/nvfp4 stage-a, -b, -c with --build-arg
# BASE_IMAGE into DSPARK_VLLM_IMAGE and its check), then, unless WORKER_BUILD=0, WORKER_HOST
# is demanded (exit 1 after a good build) and the checkout rsynced there and built over SSH.
# Lab differences: no registry, so the overlay's FROM image is imported from the node's rootfs
# tar when absent instead of pulled; the classic builder (no buildx plugin in the lab).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "$0")" && pwd)"
ENV_FILE="${ENV_FILE:-$SCRIPT_DIR/.env.dspark}"
if [ -f "$ENV_FILE" ]; then
  set -a
  # shellcheck disable=SC1090
  source "$ENV_FILE"
  set +a
fi

DSPARK_VLLM_IMAGE="${DSPARK_VLLM_IMAGE:-vllm-dspark-runtime:dspark-nvfp4-stage-c}"
DSPARK_BASE_IMAGE="${DSPARK_BASE_IMAGE:-vllm-dspark-runtime:mia-raf-pr1}"
WORKER_BUILD="${WORKER_BUILD:-1}"
BASE_TAR="${SPARK_LAB_BASE_TAR:-/opt/spark-lab/base-rootfs.tar}"

"$SCRIPT_DIR/scripts/verify-overlay-sources.sh"

from_image() {
  local from
  from=$(awk '$1 == "FROM" { print $2; exit }' "$SCRIPT_DIR/recipe/Dockerfile.dspark-runtime-overlay")
  if ! docker image inspect "$from" >/dev/null 2>&1; then
    echo "importing $BASE_TAR as $from (the lab has no registry)"
    docker import --change 'CMD ["python3"]' "$BASE_TAR" "$from"
  fi
}

build_one() {
  local host="$1"
  local checkout="$2"
  if [ "$host" = "local" ]; then
    from_image
    DOCKER_BUILDKIT=0 docker build -f "$SCRIPT_DIR/recipe/Dockerfile.dspark-runtime-overlay" \
      -t "$DSPARK_BASE_IMAGE" "$SCRIPT_DIR/recipe/overlay"
    docker run --rm --entrypoint /opt/env/bin/python "$DSPARK_BASE_IMAGE" -c \
      "import runpy; runpy.run_path('/opt/env/bin/vllm', run_name='standin_check'); print('dspark overlay ok (stand-in)')"
    DOCKER_BUILDKIT=0 docker build --build-arg BASE_IMAGE="$DSPARK_BASE_IMAGE" \
      -f "$SCRIPT_DIR/recipe/nvfp4/Dockerfile.stage-a" -t "$DSPARK_BASE_IMAGE-nvfp4-a" "$SCRIPT_DIR"
    DOCKER_BUILDKIT=0 docker build --build-arg BASE_IMAGE="$DSPARK_BASE_IMAGE-nvfp4-a" \
      -f "$SCRIPT_DIR/recipe/nvfp4/Dockerfile.stage-b" -t "$DSPARK_BASE_IMAGE-nvfp4-b" "$SCRIPT_DIR"
    DOCKER_BUILDKIT=0 docker build --build-arg BASE_IMAGE="$DSPARK_BASE_IMAGE-nvfp4-b" \
      -f "$SCRIPT_DIR/recipe/nvfp4/Dockerfile.stage-c" -t "$DSPARK_VLLM_IMAGE" "$SCRIPT_DIR"
    docker run --rm --entrypoint /opt/env/bin/python "$DSPARK_VLLM_IMAGE" -c \
      "import runpy; runpy.run_path('/opt/env/bin/vllm', run_name='standin_check'); print('dspark nvfp4 stage-c image ok (stand-in)')"
    echo "built $DSPARK_VLLM_IMAGE $(docker image inspect -f '{{.Id}}' "$DSPARK_VLLM_IMAGE")"
  else
    ssh "$host" "mkdir -p '$checkout'"
    rsync -az --delete "$SCRIPT_DIR/" "$host:$checkout/"
    ssh "$host" "cd '$checkout' && DSPARK_BASE_IMAGE='$DSPARK_BASE_IMAGE' DSPARK_VLLM_IMAGE='$DSPARK_VLLM_IMAGE' WORKER_BUILD=0 ./build-dspark-vllm-runtime.sh"
  fi
}

build_one local "$SCRIPT_DIR"

if [ "$WORKER_BUILD" = "1" ]; then
  : "${WORKER_HOST:?WORKER_HOST must be set in $ENV_FILE or environment}"
  build_one "$WORKER_HOST" "${WORKER_CHECKOUT:-${WORKER_SCRIPT_DIR:-${WORKER_DIR:-$SCRIPT_DIR}}}"
fi
