#!/usr/bin/python
"""Ansible module: wait a short while for a background image build, report its step."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: runtime_image_wait
short_description: Wait up to a few seconds for a background image build and report its progress
description:
  - The build runs in the background (Ansible C(async)) and writes its log to
    C(log_path) and, when it ends, its exit code to C(rc_path). This module waits at
    most C(wait_seconds) for C(rc_path) to appear and returns the last build step and
    the last log line, so a loop of short calls prints progress during a long build.
  - When the build has ended with a non-zero code, fails with the tail of the log.
  - Read-only.
version_added: "1.0.0"
author:
  - spark-cluster project
options:
  log_path:
    description: The build log on the node.
    type: path
    default: /var/log/spark-cluster/image-build.log
  rc_path:
    description: File holding the build's exit code once it has ended.
    type: path
    required: true
  wait_seconds:
    description: How long this call waits at most.
    type: int
    default: 30
  tail_lines:
    description: Lines of the log returned (and shown on failure).
    type: int
    default: 40
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Wait up to 30 s for the build
  runtime_image_wait:
    log_path: /var/log/spark-cluster/image-build.log
    rc_path: /var/log/spark-cluster/image-build.rc
  register: build
"""

RETURN = r"""
finished:
  description: Whether the build has ended.
  returned: always
  type: bool
exit_code:
  description: The build's exit code (-1 while it runs).
  returned: always
  type: int
step:
  description: The last build step seen in the log (C(Step x/y ...), BuildKit C(#n [a/b])).
  returned: always
  type: str
  sample: "Step 2/5 : COPY server.py /usr/local/bin/vllm"
last_line:
  description: The last non-empty log line.
  returned: always
  type: str
tail:
  description: The last C(tail_lines) lines of the log.
  returned: always
  type: list
  elements: str
message:
  description: One line for the operator.
  returned: always
  type: str
"""

import os
import time
from collections import deque

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.runtime.serving import build_progress


def read_tail(path, count):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return list(deque(handle, maxlen=max(count, 200)))
    except FileNotFoundError:
        return []


def read_rc(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return int(handle.read().strip() or "1")
    except FileNotFoundError:
        return None
    except ValueError:
        return 1


def main():
    module = AnsibleModule(
        argument_spec=dict(
            log_path=dict(type="path", default="/var/log/spark-cluster/image-build.log"),
            rc_path=dict(type="path", required=True),
            wait_seconds=dict(type="int", default=30),
            tail_lines=dict(type="int", default=40),
        ),
        supports_check_mode=True,
    )
    p = module.params
    t0 = time.monotonic()
    rc = read_rc(p["rc_path"])
    while rc is None and time.monotonic() - t0 < p["wait_seconds"]:
        time.sleep(1)
        rc = read_rc(p["rc_path"])
    lines = read_tail(p["log_path"], p["tail_lines"])
    progress = build_progress(lines)
    tail = [line.rstrip("\n") for line in lines[-p["tail_lines"]:]]
    finished = rc is not None
    elapsed = int(time.monotonic() - t0)
    if finished and rc != 0:
        module.fail_json(
            msg=f"image build failed (exit {rc}); log {p['log_path']} ends with:\n" + "\n".join(tail),
            finished=True, exit_code=rc, step=progress["step"], last_line=progress["last_line"], tail=tail)
    state = "finished" if finished else "running"
    size = os.path.getsize(p["log_path"]) if os.path.exists(p["log_path"]) else 0
    message = f"build {state} ({size} bytes of log); step: {progress['step'] or '-'}; last: {progress['last_line'] or '-'}"
    module.exit_json(changed=False, finished=finished, exit_code=-1 if rc is None else rc,
                     step=progress["step"], last_line=progress["last_line"], tail=tail,
                     message=message, elapsed=elapsed)


if __name__ == "__main__":
    main()
