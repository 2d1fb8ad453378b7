#!/usr/bin/python
"""Validate the Spark cluster inventory before any host is changed."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: validate_inventory
short_description: Validate a Spark cluster inventory before any change
description:
  - Checks the rules that argument specs cannot express, across hosts and fields
    (C(scope=cluster)), against one host's facts (C(scope=host)), or the extra
    container environment variables (C(scope=environment)) by the runtime env's rules.
  - Fails with one line per problem; each line names the host, the variable, what was
    found and what was expected. Changes nothing; runs in check mode.
options:
  scope:
    description: C(cluster) checks groups, rails, addresses and MTU across all nodes;
      C(host) checks one node's rails against its interfaces; C(environment) checks
      the mappings of O(environment) (no secret-looking keys, no pinned keys).
    type: str
    choices: [cluster, host, environment]
    default: cluster
  heads:
    description: Hosts of group C(spark_head) (scope=cluster).
    type: list
    elements: str
    default: []
  workers:
    description: Hosts of group C(spark_workers) (scope=cluster).
    type: list
    elements: str
    default: []
  nodes:
    description:
      - Per host C({rails, mgmt, mgmt_networks, mtu, topology}) (scope=cluster). C(rails) is the
        host's C(spark_rails), C(mgmt) its management address, C(mgmt_networks) the
        management networks known for it (CIDR), C(mtu) its C(spark_mtu), C(topology) its
        C(spark_topology).
    type: dict
    default: {}
  topology:
    description:
      - The cluster's C(spark_topology) (scope=cluster), C(switch) or C(triangle);
        by default each node's C(topology) in O(nodes) (C(switch) when absent), which
        must agree. A triangle's rails are checked by C(module_utils/spark_cluster/link/topology.py).
    type: str
  host:
    description: Inventory name of the host (scope=host).
    type: str
    default: ""
  rails:
    description: The host's C(spark_rails) (scope=host).
    type: list
    elements: dict
    default: []
  interfaces:
    description: Interface names present on the host (scope=host).
    type: list
    elements: str
    default: []
  default_interface:
    description: Interface of the host's default route (scope=host).
    type: str
    default: ""
  host_addresses:
    description: Map of interface name to the IPv4 addresses on it (scope=host).
    type: dict
    default: {}
  default_network:
    description: Network (CIDR) of the default route's interface (scope=host).
    type: str
    default: ""
  fail_on_problems:
    description:
      - Fail listing the problems (the default); false returns them in RV(problems) for the
        preflight, which lists every host's problems in one failure.
    type: bool
    default: true
  environment:
    description:
      - Variable name to its mapping of environment variables (scope=environment), for
        instance the key C(serving_environment) and its value. Each key is checked by
        the one set of rules of C(module_utils/spark_cluster/runtime/runtime_env.py) (C(check_settings)).
    type: dict
    default: {}
author:
  - Spark cluster maintainers
"""

EXAMPLES = r"""
- name: Validate the inventory
  validate_inventory:
    heads: "{{ groups['spark_head'] | default([]) }}"
    workers: "{{ groups['spark_workers'] | default([]) }}"
    nodes: "{{ nodes }}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
problems:
  description: What is wrong, one entry per problem (empty when valid).
  returned: always
  type: list
  elements: dict
  contains:
    host: {description: Host concerned (empty for cluster-wide problems), type: str}
    variable: {description: The variable at fault, type: str}
    found: {description: What it holds, type: str}
    expected: {description: What it should hold, type: str}
    message: {description: One readable line, type: str}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.runtime.inventory import check_environment, check_host, validate


def run(params):
    if params["scope"] == "environment":
        problems = []
        for variable, settings in sorted(params["environment"].items()):
            problems += check_environment(params["host"], variable, settings)
        return problems
    if params["scope"] == "host":
        return check_host(
            params["host"],
            params["rails"],
            params["interfaces"],
            params["default_interface"],
            params["host_addresses"],
            params["default_network"],
        )
    return validate(params["heads"], params["workers"], params["nodes"], topology=params["topology"])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            scope=dict(type="str", choices=["cluster", "host", "environment"], default="cluster"),
            heads=dict(type="list", elements="str", default=[]),
            workers=dict(type="list", elements="str", default=[]),
            nodes=dict(type="dict", default={}),
            topology=dict(type="str"),
            host=dict(type="str", default=""),
            rails=dict(type="list", elements="dict", default=[]),
            interfaces=dict(type="list", elements="str", default=[]),
            default_interface=dict(type="str", default=""),
            host_addresses=dict(type="dict", default={}),
            default_network=dict(type="str", default=""),
            # values may be secrets put in the wrong place: never echoed back
            environment=dict(type="dict", default={}, no_log=True),
            fail_on_problems=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    problems = run(module.params)
    if problems and module.params["fail_on_problems"]:
        lines = "\n".join(f"- {p['message']}" for p in problems)
        module.fail_json(msg=f"Inventory check failed ({len(problems)} problem(s)):\n{lines}", problems=problems)
    module.exit_json(changed=False, problems=problems)


if __name__ == "__main__":
    main()
