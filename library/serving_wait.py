#!/usr/bin/python
"""Ansible module: wait a short while for one rank of the runtime, return its phase."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: serving_wait
short_description: Wait up to a few seconds for a runtime rank and report its start-up phase
description:
  - One short wait (C(wait_seconds)) for the serving runtime on this node; call it in a
    loop to wait for a long start while printing the phase after every call.
  - C(role=head) waits for C(GET health_url) to answer 200 (the API answers only once
    the engine is ready). C(role=worker) waits for the headless worker's container to
    run and its log to show it is waiting for (or connected to) the master
    (C(worker_ready_pattern)), or to run C(settle_seconds) without such a line.
  - The phase (rendezvous, loading shards i/N, autotune, CUDA graph capture, ready) is
    parsed from the container's log of its current run (C(docker logs --since) its
    start) by C(module_utils/spark_cluster/runtime/serving.py).
  - Fails when the systemd unit is C(failed) (start limit hit, or stopped with an
    error), with the end of its journal.
  - Read-only.
version_added: "1.0.0"
author:
  - spark-cluster project
options:
  role:
    description: Rank role of this node.
    type: str
    choices: [head, worker]
    required: true
  container:
    description: Name of the runtime container.
    type: str
    default: spark-runtime
  unit:
    description: The systemd unit that runs the container.
    type: str
    default: spark-runtime.service
  health_url:
    description: Health endpoint of the API (head only).
    type: str
    default: http://127.0.0.1:8888/health
  api_key:
    description: Bearer token for the API, if one is set.
    type: str
    no_log: true
  wait_seconds:
    description: How long this call waits at most before returning not ready.
    type: int
    default: 30
  log_lines:
    description: How many lines of the container log to read.
    type: int
    default: 400
  worker_ready_pattern:
    description: Regex of the log line that shows a headless worker waits for the master.
    type: str
    default: "(?i)waiting for (the )?master|headless"
  settle_seconds:
    description: A worker running this long without the line above counts as ready.
    type: int
    default: 20
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
# One short wait per loop item; the phase is printed after each (see roles/serving,
# tasks/wait_step.yml, included in a loop until ready).
- name: Wait up to 30 s for the head's API
  serving_wait:
    role: head
    health_url: http://127.0.0.1:8888/health
    wait_seconds: 30
  register: serving_wait_step

- name: Show the phase
  ansible.builtin.debug:
    msg: "{{ serving_wait_step.message }}"
"""

RETURN = r"""
ready:
  description: Head API healthy / worker waiting for the master.
  returned: always
  type: bool
  sample: false
phase:
  description: Start-up phase (starting, rendezvous, loading, loaded, compile, autotune, kv_cache, cuda_graphs, engine_init, ready).
  returned: always
  type: str
  sample: loading
detail:
  description: Human text of the phase with its progress.
  returned: always
  type: str
  sample: loading checkpoint shards 12/48
progress:
  description: Progress of the phase when the log line carries x/y.
  returned: always
  type: dict
  sample: {"done": 12, "total": 48}
line:
  description: The log line that showed the phase (or the worker's ready line).
  returned: always
  type: str
error:
  description: The last error-looking log line after the phase line.
  returned: always
  type: str
unit_state:
  description: ActiveState/SubState of the unit.
  returned: always
  type: str
  sample: active/running
container_running:
  description: Whether the runtime container runs.
  returned: always
  type: bool
elapsed:
  description: Seconds this call waited.
  returned: always
  type: float
message:
  description: One line for the operator.
  returned: always
  type: str
  sample: "spark-head: loading checkpoint shards 12/48 (unit active/running)"
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.runtime.serving import (
    ERROR_RE,
    describe_phase,
    http_json,
    parse_phase,
    worker_waiting,
)


def unit_state(module, unit):
    rc, out, _ = module.run_command(
        ["systemctl", "show", unit, "--property=ActiveState,SubState,Result"])
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return props.get("ActiveState", "unknown"), props.get("SubState", ""), props.get("Result", "")


def container(module, name):
    rc, out, _ = module.run_command(
        ["docker", "inspect", "-f", "{{.State.Running}} {{.State.StartedAt}}", name])
    if rc != 0:
        return False, ""
    running, _, started = out.strip().partition(" ")
    return running == "true", started


def log_lines(module, name, since, count):
    """The container's log of its current run, stdout and stderr interleaved."""
    since_args = f'--since "{since}"' if since else ""
    rc, out, _ = module.run_command(
        ["sh", "-c", f'docker logs --tail {int(count)} {since_args} "$0" 2>&1', name])
    return out.splitlines() if rc == 0 else []


def started_for(started):
    """Seconds since docker's StartedAt (RFC 3339 with nanoseconds), or 0."""
    try:
        from datetime import datetime, timezone
        stamp = started.split(".")[0].rstrip("Z")
        t0 = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
        return max(0.0, (datetime.now(timezone.utc) - t0).total_seconds())
    except ValueError:
        return 0.0


def main():
    module = AnsibleModule(
        argument_spec=dict(
            role=dict(type="str", choices=["head", "worker"], required=True),
            container=dict(type="str", default="spark-runtime"),
            unit=dict(type="str", default="spark-runtime.service"),
            health_url=dict(type="str", default="http://127.0.0.1:8888/health"),
            api_key=dict(type="str", no_log=True),
            wait_seconds=dict(type="int", default=30),
            log_lines=dict(type="int", default=400),
            worker_ready_pattern=dict(type="str", default="(?i)waiting for (the )?master|headless"),
            settle_seconds=dict(type="int", default=20),
        ),
        supports_check_mode=True,
    )
    p = module.params
    t0 = time.monotonic()
    while True:
        active, sub, result = unit_state(module, p["unit"])
        running, started = container(module, p["container"])
        lines = log_lines(module, p["container"], started, p["log_lines"]) if started else []
        phase = parse_phase(lines)
        ready, line = False, phase["line"]
        if p["role"] == "head":
            if running:
                status, _ = http_json(p["health_url"], api_key=p["api_key"], timeout=5)
                ready = status == 200
                if ready:
                    phase.update(phase="ready", detail=describe_phase("ready"), progress=None)
        elif running:
            found = worker_waiting(lines, p["worker_ready_pattern"])
            if found:
                ready, line = True, found
            elif started_for(started) >= p["settle_seconds"]:
                ready, line = True, f"container running for {started_for(started):.0f} s"
        elapsed = time.monotonic() - t0
        if active == "failed":
            rc, journal, _ = module.run_command(
                ["journalctl", "-u", p["unit"], "-n", "30", "--no-pager", "-o", "cat"])
            module.fail_json(
                msg=f"{p['unit']} failed ({result}); end of its journal:\n{journal}",
                unit_state=f"{active}/{sub}", phase=phase["phase"], detail=phase["detail"],
                ready=False, unit_failed=True, journal=journal.splitlines())
        if ready or elapsed >= p["wait_seconds"]:
            break
        time.sleep(2)
    state = f"{active}/{sub}"
    message = f"{phase['detail']} (unit {state}" + ("" if running else ", container not running") + ")"
    if not running:
        _, journal, _ = module.run_command(
            ["journalctl", "-u", p["unit"], "-n", "8", "--no-pager", "-o", "cat"])
        errors = [line for line in journal.splitlines() if ERROR_RE.search(line) or "rror" in line]
        if errors:
            message += f"; journal: {errors[-1][:300]}"
    if p["role"] == "worker" and ready:
        message = f"worker up: {line} (unit {state})"
    if phase["error"] and not ready:
        message += f"; last error: {phase['error']}"
    module.exit_json(
        changed=False, ready=ready, phase=phase["phase"], detail=phase["detail"],
        progress=phase["progress"] or {}, line=line, error=phase["error"], unit_state=state,
        container_running=running, elapsed=round(elapsed, 1), message=message)


if __name__ == "__main__":
    main()
