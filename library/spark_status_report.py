#!/usr/bin/python
"""Ansible module: write the cluster status table (Markdown + JSON) on the controller."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: spark_status_report
short_description: Write the cluster status table on the controller
description:
  - Builds one table from every node's C(spark_node_status) readings, the last bench
    figure (C(bench-latest.json)) and the last link verdict (C(link-latest.json)), and
    writes C(status-<UTC stamp>.json) and C(.md) in C(report_dir) with C(status-latest.*)
    pointing at them.
  - Run on the controller (C(delegate_to localhost)).
version_added: "1.0.0"
author:
  - spark-cluster project
options:
  nodes:
    description: The readings of every node (C(status) of spark_node_status, with C(host) added), head first.
    type: list
    elements: dict
    required: true
  report_dir:
    description: Where the report files go.
    type: path
    required: true
  bench_report:
    description: The last bench report (JSON); missing is fine.
    type: path
  link_report:
    description: The last link report (JSON); missing is fine.
    type: path
attributes:
  check_mode:
    support: full
    details: In check mode the table is built and returned, no file is written.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Write the status table
  spark_status_report:
    nodes: "{{ status_nodes }}"
    report_dir: "{{ playbook_dir }}/../reports"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
report:
  description: The report (what the JSON file holds).
  returned: success
  type: dict
markdown:
  description: The Markdown table.
  returned: success
  type: str
paths:
  description: The files written (json, md, latest_json, latest_md).
  returned: success
  type: dict
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.reports.output import write_report_files
from ansible.module_utils.spark_cluster.reports.status import build_report, render_markdown


def load(path):
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            nodes=dict(type="list", elements="dict", required=True),
            report_dir=dict(type="path", required=True),
            bench_report=dict(type="path"),
            link_report=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    report = build_report(p["nodes"], load(p["bench_report"]), load(p["link_report"]))
    if module.check_mode:
        module.exit_json(changed=True, report=report, markdown=render_markdown(report), paths={})
    try:
        paths = write_report_files(report, p["report_dir"], ["json", "md"], "status", render_markdown, None)
    except OSError as exc:
        module.fail_json(msg=f"cannot write the status report in {p['report_dir']}: {exc}")
    module.exit_json(changed=True, report=report, markdown=render_markdown(report), paths=paths)


if __name__ == "__main__":
    main()
