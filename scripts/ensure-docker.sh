#!/usr/bin/env bash
# Make sure a Docker engine answers. On a bare Debian/Ubuntu machine: install Debian's
# docker.io and start dockerd (without systemd if there is none, as in CI sandboxes).
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  echo "==> installing a Docker engine (docker.io)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
fi

echo "==> starting dockerd"
if [ -d /run/systemd/system ] && systemctl start docker 2>/dev/null; then
  :
else
  mkdir -p /var/log
  nohup dockerd >/var/log/dockerd.log 2>&1 &
fi

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "==> docker engine ready ($(docker version --format '{{.Server.Version}}'))"
    exit 0
  fi
  sleep 1
done
echo "dockerd did not answer within 60 s; see /var/log/dockerd.log" >&2
tail -n 20 /var/log/dockerd.log >&2 || true
exit 1
