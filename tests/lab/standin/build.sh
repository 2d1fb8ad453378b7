#!/usr/bin/env bash
# Build the lab's stand-in runtime image (what build-dspark-vllm-runtime.sh is for the
# real recipe). Run from the recipe checkout on the head:  ./build.sh [IMAGE_REF]
set -euo pipefail
IMAGE=${1:-${STANDIN_IMAGE:-spark-standin-runtime:lab}}
BASE_TAR=${SPARK_LAB_BASE_TAR:-/opt/spark-lab/base-rootfs.tar}
cd "$(dirname "${BASH_SOURCE[0]}")"

echo "Step 1/2: base image spark-lab-base"
if ! docker image inspect spark-lab-base >/dev/null 2>&1; then
    echo "importing $BASE_TAR as spark-lab-base"
    docker import --change 'CMD ["python3"]' "$BASE_TAR" spark-lab-base
fi
echo "Step 2/2: docker build -t $IMAGE"
# the classic builder: no buildx plugin and no registry in the lab
DOCKER_BUILDKIT=0 docker build -t "$IMAGE" .
echo "built $IMAGE $(docker image inspect -f '{{.Id}}' "$IMAGE")"
