#!/usr/bin/python
"""Ansible module: the nftables ruleset of the cluster firewall (table inet spark_cluster)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: firewall_ruleset
short_description: Compute the cluster firewall's nftables ruleset (table inet spark_cluster) of a node
description:
  - Validates the inputs and renders the nft file that deletes and recreates only
    C(table inet spark_cluster) (never C(flush ruleset), never SSH, never Docker's tables).
  - Cluster ports (O(rail_tcp), O(rail_udp), the ephemeral range) accept NEW connections
    only from the rails' subnets (computed from O(rail_addresses)); the API port only from
    O(api_clients) and loopback. Established/related traffic and loopback are accepted
    first; the chain's policy is accept, so every other port is unaffected.
  - Read-only (writes nothing); the role writes the file (validated with C(nft -c -f)).
    The logic lives in C(module_utils/spark_cluster/link/firewall.py).
version_added: "1.0.0"
author:
  - spark-cluster project
options:
  rail_addresses:
    description: Every node's rail addresses with prefix (C(spark_rails[*].address) of all nodes).
    type: list
    elements: str
    required: true
  rail_tcp:
    description: TCP ports accepted only from the rails, by purpose (port or C(lo-hi) range).
    type: dict
    default: {}
  rail_udp:
    description: UDP ports accepted only from the rails, by purpose.
    type: dict
    default: {}
  ephemeral:
    description: Restrict the NCCL/gloo listening ports (the TCP ephemeral range) to the rails.
    type: bool
    default: true
  ephemeral_range:
    description: The ephemeral range (C(lo-hi)); empty reads C(net.ipv4.ip_local_port_range) of the node.
    type: str
    default: ""
  api_port:
    description: The API port (TCP); 0 for no API rule.
    type: int
    default: 0
  api_clients:
    description: Networks (CIDR) allowed to reach the API port; loopback always is.
    type: list
    elements: str
    default: []
  client_ports:
    description:
      - "More services restricted like the API, C(name: {port, clients}) (e.g. Prometheus on the
        management address): the TCP port accepts only its client networks and loopback."
    type: dict
    default: {}
  protected_ports:
    description: Ports the firewall must never restrict (SSH); an input that would is refused.
    type: list
    elements: int
    default: [22]
  header:
    description: Comment lines at the top of the file.
    type: str
    default: ""
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Compute the ruleset
  firewall_ruleset:
    rail_addresses: [192.168.100.10/24, 192.168.101.10/24, 192.168.100.11/24, 192.168.101.11/24]
    rail_tcp:
      master: [29501]
      image_stream: [29610]
    api_port: 8888
    api_clients: [10.0.0.0/24]
  register: firewall_rules
"""

RETURN = r"""
ruleset:
  description: The nft file's text.
  returned: success
  type: str
plan:
  description: The validated plan (rail networks, merged port ranges, API clients).
  returned: success
  type: dict
  sample:
    rails_v4: [192.168.100.0/24, 192.168.101.0/24]
    tcp: ["873", "29501", "32768-60999"]
    api_port: 8888
    api_clients_v4: [10.0.0.0/24]
ephemeral_range:
  description: The ephemeral range used (C(lo-hi)), empty when O(ephemeral=false).
  returned: success
  type: str
  sample: 32768-60999
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.link.firewall import FirewallError, build_plan, fmt_range, parse_port_spec, read_ephemeral_range, render


def main():
    module = AnsibleModule(
        argument_spec=dict(
            rail_addresses=dict(type="list", elements="str", required=True),
            rail_tcp=dict(type="dict", default={}),
            rail_udp=dict(type="dict", default={}),
            ephemeral=dict(type="bool", default=True),
            ephemeral_range=dict(type="str", default=""),
            api_port=dict(type="int", default=0),
            api_clients=dict(type="list", elements="str", default=[]),
            protected_ports=dict(type="list", elements="int", default=[22]),
            client_ports=dict(type="dict", default={}),
            header=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        eph = None
        if p["ephemeral"]:
            eph = parse_port_spec(p["ephemeral_range"], "firewall_ephemeral_range") if p["ephemeral_range"] \
                else read_ephemeral_range()
        rail_tcp = {k: v if isinstance(v, list) else [v] for k, v in p["rail_tcp"].items()}
        rail_udp = {k: v if isinstance(v, list) else [v] for k, v in p["rail_udp"].items()}
        plan = build_plan(p["rail_addresses"], rail_tcp, rail_udp, eph, p["api_port"] or None,
                          p["api_clients"], p["protected_ports"], p["client_ports"])
    except (FirewallError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, ruleset=render(plan, p["header"]), plan=plan,
                     ephemeral_range=fmt_range(*eph) if eph else "")


if __name__ == "__main__":
    main()
