#!/usr/bin/python
"""Ansible module: Prometheus rules and scrape configuration of the cluster."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: monitoring_config
short_description: Render the cluster's Prometheus rules and scrape configuration
description:
  - Renders the recording and alert rules of C(module_utils/spark_cluster/monitoring/metrics.py) (decode
    tok/s, draft acceptance and mean accepted length with the benchmark's formulas, TTFT
    quantiles, requests running/waiting; engine stalled, acceptance collapsed, restart
    loop, unified memory low, rail down, rail MTU, management-interface traffic while
    serving, firewall table missing) with the given thresholds and C(for) durations, and
    the scrape configuration (the runtime's C(/metrics), node exporter on every node).
  - Read-only (writes nothing); the role writes the files, validated with C(promtool).
version_added: "1.0.0"
author:
  - spark-cluster project
options:
  runtime_target:
    description: The runtime's C(/metrics) endpoint (C(host:port), the head's API); empty for none.
    type: str
    default: ""
  runtime_node:
    description: Inventory name of the node the runtime target is on (label C(node)).
    type: str
    default: ""
  nodes:
    description: "Every node as C(inventory name: rail-0 address); its node exporter is scraped there."
    type: dict
    required: true
  node_exporter_port:
    description: Node exporter's port on every node.
    type: int
    default: 9100
  prometheus_target:
    description: Prometheus' own address (C(host:port)) to scrape itself; empty for none.
    type: str
    default: ""
  rule_files:
    description: Absolute paths of the rule files the configuration loads.
    type: list
    elements: str
    required: true
  scrape_interval:
    description: How often targets are scraped (Prometheus duration).
    type: str
    default: 15s
  evaluation_interval:
    description: How often rules are evaluated (Prometheus duration).
    type: str
    default: 15s
  alert_params:
    description:
      - Overrides of the rules' thresholds and durations (see C(DEFAULT_PARAMS) in
        C(module_utils/spark_cluster/monitoring/metrics.py)), for example C(for_SparkRailDown=10s) or
        C(acceptance_rate_min=0.15). Unknown keys are refused.
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Render rules and configuration
  monitoring_config:
    runtime_target: 127.0.0.1:8888
    runtime_node: spark-head
    nodes: {spark-head: 192.168.100.10, spark-worker: 192.168.100.11}
    rule_files: [/etc/prometheus/spark-cluster.rules.yml]
    alert_params: {for_SparkRailDown: 30s}
  register: monitoring_rendered
"""

RETURN = r"""
rules:
  description: The rule file (groups of recording and alert rules), to be written as YAML.
  returned: success
  type: dict
config:
  description: The Prometheus configuration (global, rule_files, scrape_configs).
  returned: success
  type: dict
alerts:
  description: One line per alert (name, severity, for, what it means).
  returned: success
  type: list
  elements: str
  sample: ["SparkRailDown (critical, for 1m): A QSFP rail is down or gone ..."]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.monitoring.metrics import MonitoringError, alert_table, node_targets, render_prometheus_config, render_rules


def main():
    module = AnsibleModule(
        argument_spec=dict(
            runtime_target=dict(type="str", default=""),
            runtime_node=dict(type="str", default=""),
            nodes=dict(type="dict", required=True),
            node_exporter_port=dict(type="int", default=9100),
            prometheus_target=dict(type="str", default=""),
            rule_files=dict(type="list", elements="str", required=True),
            scrape_interval=dict(type="str", default="15s"),
            evaluation_interval=dict(type="str", default="15s"),
            alert_params=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        runtime = [{"target": p["runtime_target"], "node": p["runtime_node"]}] if p["runtime_target"] else []
        rules = render_rules(p["alert_params"])
        config = render_prometheus_config(
            runtime, node_targets(p["nodes"], p["node_exporter_port"]), p["rule_files"], p["scrape_interval"],
            p["evaluation_interval"], p["prometheus_target"] or None)
        alerts = ["%s (%s, for %s): %s" % row for row in alert_table(p["alert_params"])]
    except MonitoringError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, rules=rules, config=config, alerts=alerts)


if __name__ == "__main__":
    main()
