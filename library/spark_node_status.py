#!/usr/bin/python
"""Ansible module: read one node's state for status.yml."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: spark_node_status
short_description: Read one node's state for the cluster status table
description:
  - Reads the rails (state, addresses and MTU from C(ip -j addr)), the GID index in force
    (the runtime env file), the runtime image ID, the serving unit's state and its starts in the
    last hour (journal), memory (C(/proc/meminfo)) and the stall watchdog's last verdict.
  - On the head (C(api_base_url) set) also C(GET /health) and C(GET /v1/models).
  - With C(prometheus_url) (the head, monitoring on) also the current value of every recording
    rule of C(module_utils/spark_cluster/monitoring/metrics.py) (one instant query) and the project's alerts
    that are firing.
  - Read-only; the rendering is C(module_utils/spark_cluster/reports/status.py).
version_added: "1.0.0"
author:
  - spark-cluster project
options:
  role:
    description: Role of the node.
    type: str
    choices: [head, worker]
    required: true
  rails:
    description: The node's rails (C(spark_rails)).
    type: list
    elements: dict
    required: true
  env_path:
    description: The runtime env file.
    type: path
    default: /etc/spark-cluster/runtime.env
  image:
    description: The runtime image name.
    type: str
    required: true
  unit:
    description: The serving unit.
    type: str
    default: spark-runtime.service
  watchdog_state_path:
    description: The watchdog's state file (head).
    type: path
    default: /var/lib/spark-cluster/watchdog-state.json
  api_base_url:
    description: The API seen from this node (head only; omit on workers).
    type: str
  api_key:
    description: Bearer key of the API.
    type: str
    no_log: true
  prometheus_url:
    description: Prometheus seen from this node (head with monitoring on), e.g. C(http://127.0.0.1:9090).
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Read the node's state
  spark_node_status:
    role: head
    rails: "{{ spark_rails }}"
    image: vllm-dspark-runtime:clean
    api_base_url: http://127.0.0.1:8888
  register: status_node
"""

RETURN = r"""
status:
  description: The node's readings (host, role, rails, gid_index, image_id, unit, unit_state, starts_last_hour, memory, watchdog, api, metrics).
  returned: always
  type: dict
"""

import json
import urllib.parse

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.monitoring.metrics import RECORDED_SELECTOR, firing_alerts, recorded_values
from ansible.module_utils.spark_cluster.runtime.serving import http_json
from ansible.module_utils.spark_cluster.reports.status import gid_in_force, memory, rails_state, starts_last_hour


def read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            role=dict(type="str", choices=["head", "worker"], required=True),
            rails=dict(type="list", elements="dict", required=True),
            env_path=dict(type="path", default="/etc/spark-cluster/runtime.env"),
            image=dict(type="str", required=True),
            unit=dict(type="str", default="spark-runtime.service"),
            watchdog_state_path=dict(type="path", default="/var/lib/spark-cluster/watchdog-state.json"),
            api_base_url=dict(type="str"),
            api_key=dict(type="str", no_log=True),
            prometheus_url=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    _, out, _ = module.run_command(["ip", "-j", "addr"])
    try:
        links = json.loads(out or "[]")
    except ValueError:
        links = []
    rc, image_id, _ = module.run_command(["docker", "image", "inspect", "-f", "{{.Id}}", p["image"]])
    _, props, _ = module.run_command(["systemctl", "show", p["unit"], "--property=ActiveState,SubState,NRestarts"])
    props = dict(line.split("=", 1) for line in props.splitlines() if "=" in line)
    _, journal, _ = module.run_command(["journalctl", "-u", p["unit"], "--since", "-1h", "-o", "cat", "--no-pager"])
    watchdog = None
    state_text = read(p["watchdog_state_path"])
    if state_text:
        try:
            last = json.loads(state_text).get("last_check") or {}
            watchdog = f"{last.get('verdict')}: {last.get('reason')}"
        except ValueError:
            watchdog = "unreadable state"
    status = {
        "role": p["role"],
        "rails": rails_state(links, p["rails"]),
        "gid_index": gid_in_force(read(p["env_path"])),
        "image_id": image_id.strip() if rc == 0 else None,
        "unit": p["unit"],
        "unit_state": f"{props.get('ActiveState', 'unknown')}/{props.get('SubState', '')}",
        "automatic_restarts": int(props.get("NRestarts") or 0),
        "starts_last_hour": starts_last_hour(journal),
        "memory": memory(read("/proc/meminfo")),
        "watchdog": watchdog,
    }
    if p["api_base_url"]:
        base = p["api_base_url"].rstrip("/")
        health, _ = http_json(base + "/health", timeout=10)
        code, models = http_json(base + "/v1/models", api_key=p["api_key"], timeout=10)
        api = {"health": health, "models_status": code}
        if code == 200 and isinstance(models, dict):
            api["models"] = [m.get("id") for m in models.get("data") or []]
        else:
            api["models_error"] = f"HTTP {code or 'no answer'}"
        status["api"] = api
    if p["prometheus_url"]:
        status["metrics"] = prometheus_metrics(p["prometheus_url"].rstrip("/"))
    module.exit_json(changed=False, status=status)


def prometheus_metrics(base):
    """{"prometheus", "values", "alerts"} or {"prometheus", "error"} when it does not answer."""
    query = urllib.parse.urlencode({"query": RECORDED_SELECTOR})
    code, answer = http_json(f"{base}/api/v1/query?{query}", timeout=10)
    if code != 200 or not isinstance(answer, dict) or answer.get("status") != "success":
        return {"prometheus": base, "error": f"HTTP {code or 'no answer'}: {str(answer)[:200]}"}
    metrics = {"prometheus": base, "values": recorded_values((answer.get("data") or {}).get("result"))}
    code, alerts = http_json(f"{base}/api/v1/alerts", timeout=10)
    if code == 200 and isinstance(alerts, dict):
        metrics["alerts"] = firing_alerts((alerts.get("data") or {}).get("alerts"))
    else:
        metrics["alerts_error"] = f"HTTP {code or 'no answer'}"
    return metrics


if __name__ == "__main__":
    main()
