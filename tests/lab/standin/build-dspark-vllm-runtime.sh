#!/usr/bin/env bash
# The lab's stand-in of the recipe's build-dspark-vllm-runtime.sh, with its contract at
# the pinned recipe commit (MiaAI-Lab/DeepSeek-v4-Flash-DSpark-2x-DGX-Spark 5e60e52):
# the same variables (ENV_FILE, VLLM_REPO_URL, VLLM_BRANCH, VLLM_CHECKOUT,
# DSPARK_VLLM_IMAGE, BASE_IMAGE, BUILD_WORKER, WORKER_HOST), the same steps (fork
# checkout at VLLM_BRANCH, base image, overlay build from the fork's
# docker/Dockerfile.dspark-runtime-overlay, an import check through
# /opt/env/bin/python), then, unless BUILD_WORKER=0, WORKER_HOST is demanded (exit 1
# after a good build) and the build repeated on the worker over SSH.
# Lab differences: no registry, so BASE_IMAGE is imported from the node's rootfs tar
# when absent instead of pulled; the classic builder (no buildx plugin in the lab).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "$0")" && pwd)"

ENV_FILE="${ENV_FILE:-$SCRIPT_DIR/.env.dspark}"
if [ -f "$ENV_FILE" ]; then
  set -a
  # shellcheck disable=SC1090
  source "$ENV_FILE"
  set +a
fi

VLLM_REPO_URL="${VLLM_REPO_URL:-$SCRIPT_DIR}"
VLLM_BRANCH="${VLLM_BRANCH:-main}"
VLLM_CHECKOUT="${VLLM_CHECKOUT:-$HOME/models/spark/vllm-dspark}"
DSPARK_VLLM_IMAGE="${DSPARK_VLLM_IMAGE:-vllm-dspark-runtime:clean}"
BASE_IMAGE="${BASE_IMAGE:-spark-lab-base:trixie}"
BASE_TAR="${SPARK_LAB_BASE_TAR:-/opt/spark-lab/base-rootfs.tar}"

clone_or_update() {
  local dir="$1"
  if [ -d "$dir/.git" ]; then
    git -C "$dir" fetch origin "$VLLM_BRANCH"
    git -C "$dir" checkout "$VLLM_BRANCH"
    git -C "$dir" pull --ff-only origin "$VLLM_BRANCH"
  else
    mkdir -p "$(dirname "$dir")"
    git clone "$VLLM_REPO_URL" "$dir"
    git -C "$dir" checkout "$VLLM_BRANCH"
  fi
}

pull_base() {
  if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "importing $BASE_TAR as $BASE_IMAGE (the lab has no registry)"
    docker import --change 'CMD ["python3"]' "$BASE_TAR" "$BASE_IMAGE"
  fi
}

build_local() {
  clone_or_update "$VLLM_CHECKOUT"
  pull_base
  DOCKER_BUILDKIT=0 docker build \
    -f "$VLLM_CHECKOUT/docker/Dockerfile.dspark-runtime-overlay" \
    -t "$DSPARK_VLLM_IMAGE" \
    "$VLLM_CHECKOUT"
  docker run --rm --entrypoint /opt/env/bin/python "$DSPARK_VLLM_IMAGE" -c \
    "import runpy; runpy.run_path('/opt/env/bin/vllm', run_name='standin_check'); print('dspark overlay ok (stand-in)')"
  echo "built $DSPARK_VLLM_IMAGE $(docker image inspect -f '{{.Id}}' "$DSPARK_VLLM_IMAGE")"
}

build_local

if [ "${BUILD_WORKER:-1}" = "1" ]; then
  : "${WORKER_HOST:?WORKER_HOST must be set in $ENV_FILE or environment}"
  worker_checkout="${WORKER_VLLM_CHECKOUT:-$VLLM_CHECKOUT}"
  echo "Building DSpark vLLM runtime on ${WORKER_HOST}:${worker_checkout}"
  ssh "$WORKER_HOST" "mkdir -p '$(dirname "$worker_checkout")'"
  ssh "$WORKER_HOST" "if [ ! -d '$worker_checkout/.git' ]; then git clone '$VLLM_REPO_URL' '$worker_checkout'; fi"
  ssh "$WORKER_HOST" "cd '$worker_checkout' && git fetch origin '$VLLM_BRANCH' && git checkout '$VLLM_BRANCH' && git pull --ff-only origin '$VLLM_BRANCH'"
  ssh "$WORKER_HOST" "docker build -f '$worker_checkout/docker/Dockerfile.dspark-runtime-overlay' -t '$DSPARK_VLLM_IMAGE' '$worker_checkout'"
fi
