#!/usr/bin/env bash
# Make sure promtool answers (the rule and config checks of `make rules-test`). On a bare
# Debian/Ubuntu machine: install the distribution's prometheus package (it ships promtool),
# without starting its daemon. PROMTOOL=<path> uses another binary.
set -euo pipefail

promtool="${PROMTOOL:-promtool}"
if command -v "$promtool" >/dev/null 2>&1; then
  exit 0
fi

echo "==> installing promtool (Debian's prometheus package)"
export DEBIAN_FRONTEND=noninteractive
# The package's maintainer scripts must not start a Prometheus on the build machine.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null 2>&1 || { echo "promtool not found after installing prometheus" >&2; exit 1; }
echo "==> $(promtool --version 2>&1 | head -n 1)"
