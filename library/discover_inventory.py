#!/usr/bin/python
"""Turn the nodes' cabling probes into a validated inventory (discover.yml)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: discover_inventory
short_description: Write a validated Spark inventory from the nodes' cabling probes
description:
  - Takes every node's M(cx7_probe) result (with its C(host) view of interfaces,
    default route and addresses, for the preflight's host checks), decides which
    ports are cabled to which peer (only from what was heard on the wire), refuses what cannot work, proposes
    the rails (rail r = the cabled twin on PCIe link r of every node, address =
    subnet r + O(host_offset) + rank) and checks the proposal with the same rules as
    C(site.yml)'s preflight (M(validate_inventory)).
  - Refuses (fails, writes no inventory) when a node has no cabled port, a port's peer
    is not the expected node, the rails of a node reach different peers on a two-node
    cluster, or the cabling is crossed (node A's port 0 to node B's port 1) unless
    O(allow_crossed).
  - On success writes C(<output_dir>/hosts.yml) (the input inventory's YAML with
    C(spark_rails) set on every node; C(group_vars/) and C(host_vars/) of the input
    copied next to it when absent) and C(<output_dir>/discovery.md). In every case
    writes C(<report_dir>/discovery-<name>.{md,json}). Files are rewritten only when
    their content changes; C(changed) says whether any was. Runs on the controller.
    In check mode nothing is written.
options:
  observations:
    description: Inventory name -> the C(discovery) result of M(cx7_probe) on that node.
    type: dict
    required: true
  heads:
    description: Hosts of C(spark_head) (rank 0).
    type: list
    elements: str
    required: true
  workers:
    description: Hosts of C(spark_workers), in rank order.
    type: list
    elements: str
    required: true
  rail_subnets:
    description: One IPv4 subnet per rail, rail 0 first.
    type: list
    elements: str
    default: [192.168.100.0/24, 192.168.101.0/24]
  triangle_subnets:
    description:
      - Three nodes on direct cables (a triangle, every cabled port hearing one node) -
        one IPv4 subnet per link and twin, six, link (head, worker 1) first, then (head,
        worker 2), then (worker 1, worker 2), twin 0 before twin 1. The written inventory
        then sets C(spark_topology=triangle) on the group C(spark).
    type: list
    elements: str
    default: [192.168.100.0/24, 192.168.101.0/24, 192.168.102.0/24, 192.168.103.0/24, 192.168.104.0/24, 192.168.105.0/24]
  host_offset:
    description: Host number of the head in every rail subnet (workers follow).
    type: int
    default: 10
  allow_crossed:
    description: Accept crossed cabling (a warning instead of a refusal).
    type: bool
    default: false
  ignore_interfaces:
    description: C(host:netdev) entries to leave out (a port cabled to something else).
    type: list
    elements: str
    default: []
  mgmt:
    description: Inventory name -> management address (for the preflight rules).
    type: dict
    default: {}
  mgmt_networks:
    description: Networks (CIDR) the rails must not overlap.
    type: list
    elements: str
    default: []
  mtu:
    description: C(spark_mtu) of the cluster (for the preflight rules).
    type: int
    default: 9000
  source:
    description: The input inventory (a YAML file, or a directory with C(hosts.yml)).
    type: path
    required: true
  output_dir:
    description: Directory of the inventory to write.
    type: path
    required: true
  name:
    description: Name of the cluster (report titles and file names).
    type: str
    required: true
  report_dir:
    description: Where C(discovery-<name>.{md,json}) go.
    type: path
    required: true
author:
  - Spark cluster maintainers
"""

EXAMPLES = r"""
- name: Write the inventory
  discover_inventory:
    observations: "{{ dict(ansible_play_hosts_all | zip(ansible_play_hosts_all | map('extract', hostvars, ['discover_probe', 'discovery']))) }}"
    heads: "{{ groups['spark_head'] }}"
    workers: "{{ groups['spark_workers'] }}"
    source: "{{ ansible_inventory_sources[0] }}"
    output_dir: "{{ playbook_dir }}/inventory/mycluster"
    name: mycluster
    report_dir: "{{ playbook_dir }}/reports"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
rails:
  description: Inventory name -> proposed C(spark_rails) (empty when refused).
  returned: always
  type: dict
problems:
  description: Why it refused, one finding per entry (host, variable, found, expected, message).
  returned: always
  type: list
  elements: dict
notes:
  description: What was accepted but worth knowing (one rail only, crossed accepted, ...);
    also listed under Warnings in the summary.
  returned: always
  type: list
  elements: str
links:
  description: The cables found, C({a, b}) as C(host:netdev).
  returned: always
  type: list
  elements: dict
summary:
  description: The Markdown summary (a table per node).
  returned: always
  type: str
paths:
  description: Files written or that would be written.
  returned: always
  type: dict
"""

import json
import os
import pathlib
import shutil

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.link.discover import (
    inventory_with_rails,
    plan,
    summary_json,
    summary_markdown,
)
from ansible.module_utils.spark_cluster.runtime.inventory import check_host, validate

HEADER = """\
# Written by discover.yml from what the nodes' ConnectX-7 ports heard on the wire:
# {name}. The input inventory ({source}) with spark_rails set on every node.
# What was found: discovery.md beside this file. Edit freely; re-running discover.yml
# rewrites this file.
"""


def input_hosts_file(source):
    if os.path.isdir(source):
        for candidate in ("hosts.yml", "hosts.yaml"):
            path = os.path.join(source, candidate)
            if os.path.isfile(path):
                return path
        return None
    return source if source.endswith((".yml", ".yaml")) else None


def write_if_changed(path, text, check_mode):
    """Write text unless the file already holds exactly it; returns whether it differed."""
    if os.path.isfile(path) and pathlib.Path(path).read_text(encoding="utf-8") == text:
        return False
    if not check_mode:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    return True


def main():
    module = AnsibleModule(
        argument_spec=dict(
            observations=dict(type="dict", required=True),
            heads=dict(type="list", elements="str", required=True),
            workers=dict(type="list", elements="str", required=True),
            rail_subnets=dict(type="list", elements="str", default=["192.168.100.0/24", "192.168.101.0/24"]),
            triangle_subnets=dict(type="list", elements="str",
                                  default=[f"192.168.{100 + i}.0/24" for i in range(6)]),
            host_offset=dict(type="int", default=10),
            allow_crossed=dict(type="bool", default=False),
            ignore_interfaces=dict(type="list", elements="str", default=[]),
            mgmt=dict(type="dict", default={}),
            mgmt_networks=dict(type="list", elements="str", default=[]),
            mtu=dict(type="int", default=9000),
            source=dict(type="path", required=True),
            output_dir=dict(type="path", required=True),
            name=dict(type="str", required=True),
            report_dir=dict(type="path", required=True),
        ),
        supports_check_mode=True,
    )
    import yaml

    p = module.params
    order = list(p["heads"]) + [w for w in p["workers"] if w not in p["heads"]]
    result = plan(p["observations"], p["heads"], p["workers"], p["rail_subnets"], p["host_offset"],
                  p["allow_crossed"], p["ignore_interfaces"], triangle_subnets=p["triangle_subnets"])
    topology = result.get("topology") or "switch"

    if not result["problems"]:
        nodes = {h: {"rails": result["rails"][h], "mgmt": p["mgmt"].get(h, h),
                     "mgmt_networks": p["mgmt_networks"], "mtu": p["mtu"]} for h in order}
        found_all = validate(p["heads"], p["workers"], nodes, topology=topology)
        for host in order:
            view = p["observations"][host].get("host") or {}
            if view:
                found_all += check_host(host, result["rails"][host], view["interfaces"], view["default_interface"],
                                        view["addresses"], view["default_network"])
        for found in found_all:
            found = dict(found, message="the proposed inventory would fail preflight: " + found["message"])
            result["problems"].append(found)
        if result["problems"]:
            result["rails"] = {}

    source_file = input_hosts_file(p["source"])
    if source_file is None:
        module.fail_json(msg=f"discover.yml reads the input inventory as YAML; {p['source']} is neither a "
                             "YAML file nor a directory with hosts.yml. Give an inventory directory with "
                             "hosts.yml (groups spark_head and spark_workers, each host's ansible_host).")

    output_dir = os.path.realpath(p["output_dir"])
    summary = summary_markdown(p["observations"], order, result, p["name"])
    report_md = os.path.join(p["report_dir"], f"discovery-{p['name']}.md")
    report_json = os.path.join(p["report_dir"], f"discovery-{p['name']}.json")
    paths = {"report_md": report_md, "report_json": report_json}
    changed = write_if_changed(report_md, summary, module.check_mode)
    payload = json.dumps(summary_json(p["observations"], order, result, p["name"]), indent=2, sort_keys=True) + "\n"
    changed |= write_if_changed(report_json, payload, module.check_mode)

    # notes are returned (and in the summary the role prints), not module.warn(): they
    # are findings of this run, not warnings about the module's use
    public = {k: v for k, v in result.items() if k != "warnings"}
    public["notes"] = result["warnings"]
    if result["problems"]:
        lines = "\n".join(f"- {found['message']}" for found in result["problems"])
        module.fail_json(msg=f"discovery refused, no inventory written:\n{lines}\n(details: {report_md})",
                         changed=changed, summary=summary, paths=paths, **public)

    with open(source_file, encoding="utf-8") as handle:
        inventory = yaml.safe_load(handle) or {}
    written, absent = inventory_with_rails(inventory, result["rails"])
    if topology != "switch":
        group = written.setdefault("spark", {}) if isinstance(written, dict) else {}
        group.setdefault("vars", {})["spark_topology"] = topology
    if absent:
        module.fail_json(msg=f"hosts {absent} are in the play but not in {source_file}: discover.yml writes "
                             "spark_rails into that file, so every node must be listed there.", **public)
    hosts_path = os.path.join(output_dir, "hosts.yml")
    text = HEADER.format(name=p["name"], source=source_file) + "---\n" + yaml.safe_dump(
        written, default_flow_style=False, sort_keys=False)
    changed |= write_if_changed(hosts_path, text, module.check_mode)
    changed |= write_if_changed(os.path.join(output_dir, "discovery.md"), summary, module.check_mode)
    paths.update(hosts=hosts_path, summary=os.path.join(output_dir, "discovery.md"))

    source_dir = os.path.dirname(os.path.realpath(source_file))
    if source_dir != output_dir:
        for sub in ("group_vars", "host_vars"):
            src, dst = os.path.join(source_dir, sub), os.path.join(output_dir, sub)
            if os.path.isdir(src) and not os.path.exists(dst):
                if not module.check_mode:
                    shutil.copytree(src, dst, symlinks=False)
                paths[sub] = dst
                changed = True
    module.exit_json(changed=changed, summary=summary, paths=paths, **public)


if __name__ == "__main__":
    main()
