#!/usr/bin/python
"""Ansible module: build the link report on the controller and write its files."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: link_report
short_description: Write the QSFP link report (JSON, Markdown, PNG) on the controller
description:
  - Takes the raw results of the C(link_probe) tasks as the role registered them,
    computes every verdict with C(module_utils/spark_cluster/link/linkprobe.py) and writes
    C(<report_dir>/link-YYYYmmddTHHMMSSZ.{json,md,png}) plus C(link-latest.*) symlinks
    (copies where symlinks fail) with C(module_utils/spark_cluster/reports/link_report.py).
  - "Run it on the controller (C(delegate_to: localhost), C(run_once: true))."
  - It never fails because a check failed; it returns C(failures) so the play can
    assert once at the end. It reports C(changed=true) because it writes new files.
  - In check mode it builds the report but writes nothing.
version_added: "1.0.0"
author: spark-cluster project
options:
  pairs:
    description:
      - One entry per rail and direction, with keys C(id), C(rail), C(src_host),
        C(dst_host), C(src_interface), C(dst_interface), C(src_address), C(dst_address).
    type: list
    elements: dict
    required: true
  probes:
    description:
      - Registered results keyed by check, C(ping), C(ping_df), C(tcp_single),
        C(tcp_parallel), C(rdma). Each value is a registered loop result (with
        C(results)) or a list of such items; every item carries C(item.id) (the pair)
        and C(probe) (the link_probe result). Skipped items count as not measured.
    type: dict
    default: {}
  links:
    description: Host name -> registered C(link_probe mode=link) loop result (one item per rail).
    type: dict
    default: {}
  pinning:
    description: Host name -> registered C(qsfp_pinning) result (C(problems), C(would_pick)).
    type: dict
    default: {}
  env_file_present:
    description:
      - Host name -> bool (or a registered C(stat) result). Pinning problems fail the
        run only on hosts whose runtime env file exists; elsewhere they are warnings.
    type: dict
    default: {}
  collective:
    description:
      - Host name -> C({check, run}), the registered C(collective_probe) readiness check
        and the C(async_status) result of its run. Empty = the collective step did not
        run (the report says "not measured"; the verdict can then not be C(pass)).
      - The output is parsed with C(module_utils/spark_cluster/link/collective.py).
    type: dict
    default: {}
  thresholds:
    description:
      - Keys C(ping_max_loss_pct), C(ping_max_rtt_avg_ms), C(mtu), C(tcp_min_gbps),
        C(rdma_pass_gbps), C(rdma_stale_min_gbps), C(rdma_stale_max_gbps),
        C(collective_min_busbw_gbs). Missing keys
        take the module_utils defaults.
    type: dict
    default: {}
  line_rate_gbps:
    description: The link's line rate in Gb/s; 0 reads it from sysfs speed (lower end).
    type: float
    default: 0
  report_dir:
    description: Directory for the files (created, path normalized).
    type: path
    required: true
  formats:
    description: Which files to write.
    type: list
    elements: str
    choices: [json, md, png]
    default: [json, md, png]
"""

EXAMPLES = r"""
- name: Write the link report
  link_report:
    pairs: "{{ __link_validation_pairs }}"
    probes:
      ping: "{{ link_validation_ping }}"
      tcp_single: "{{ link_validation_tcp_single }}"
    report_dir: "{{ playbook_dir }}/../reports"
  delegate_to: localhost
  run_once: true
  register: link_validation_report
"""

RETURN = r"""
verdict:
  description: C(pass), C(fail) or C(incomplete) (nothing failed, something not measured).
  returned: always
  type: str
failures:
  description: One line per failed check; empty when nothing failed.
  returned: always
  type: list
  elements: str
notices:
  description: Non-failing findings (the report's C(warnings)) (stale-init remedy, undeployed pinning problems, one rail only).
  returned: always
  type: list
  elements: str
paths:
  description: Written files, keys C(json), C(md), C(png), C(latest_json), ...
  returned: unless check mode
  type: dict
report:
  description: The full report (what the JSON file holds; C(schema_version) 2).
  returned: always
  type: dict
"""

import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.link.collective import runs_from_registered
from ansible.module_utils.spark_cluster.reports.link_report import PROBE_KINDS, build_report, write_report


def _items(registered):
    """Loop items of a registered result (dict with results, or a list)."""
    if isinstance(registered, dict):
        if "results" in registered:
            return registered["results"] or []
        return [registered]
    return list(registered or [])


def normalize_probes(probes):
    """{kind: {pair id: probe}} from registered loop results."""
    out = {}
    for kind in PROBE_KINDS:
        by_id = {}
        for item in _items((probes or {}).get(kind)):
            if not isinstance(item, dict) or item.get("skipped") or "probe" not in item:
                continue
            pair = item.get("item") or {}
            pid = pair.get("id") if isinstance(pair, dict) else None
            pid = pid or item.get("pair_id")
            if pid:
                by_id[pid] = item["probe"]
        out[kind] = by_id
    return out


def normalize_links(links):
    return {host: [i.get("probe") or {} for i in _items(reg) if isinstance(i, dict)]
            for host, reg in (links or {}).items()}


def normalize_flags(flags):
    out = {}
    for host, value in (flags or {}).items():
        if isinstance(value, dict):
            value = (value.get("stat") or {}).get("exists", False)
        out[host] = bool(value)
    return out


def main():
    module = AnsibleModule(
        argument_spec=dict(
            pairs=dict(type="list", elements="dict", required=True),
            probes=dict(type="dict", default={}),
            links=dict(type="dict", default={}),
            pinning=dict(type="dict", default={}),
            env_file_present=dict(type="dict", default={}),
            collective=dict(type="dict", default={}),
            thresholds=dict(type="dict", default={}),
            line_rate_gbps=dict(type="float", default=0),
            report_dir=dict(type="path", required=True),
            formats=dict(type="list", elements="str", choices=["json", "md", "png"],
                         default=["json", "md", "png"]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    pinning = {h: r for h, r in (p["pinning"] or {}).items()
               if isinstance(r, dict) and not r.get("skipped")}
    try:
        report = build_report(
            p["pairs"], normalize_probes(p["probes"]), links=normalize_links(p["links"]),
            pinning=pinning, thresholds=p["thresholds"],
            line_rate_gbps=p["line_rate_gbps"] or None,
            env_file_present=normalize_flags(p["env_file_present"]),
            collective=runs_from_registered(p["collective"]))
    except (KeyError, TypeError, ValueError) as exc:
        module.fail_json(msg="cannot build the link report: %s" % exc,
                         exception=traceback.format_exc())
    result = dict(changed=False, verdict=report["verdict"], failures=report["failures"],
                  notices=report["warnings"], report=report)
    if module.check_mode:
        module.exit_json(**result)
    try:
        paths = write_report(report, p["report_dir"], formats=p["formats"])
    except (OSError, ImportError) as exc:
        module.fail_json(msg="cannot write the link report: %s" % exc,
                         exception=traceback.format_exc())
    result.update(changed=True, paths=paths)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
