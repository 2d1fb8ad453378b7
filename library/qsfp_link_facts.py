#!/usr/bin/python
"""Everything the qsfp_link role reads on a node before a change, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: qsfp_link_facts
short_description: Read the rails' twins, the management side, what configures the rails and the rollback files in one call
description:
  - What the qsfp_link role reads before it changes a node, in one module call instead of
    one per reading (each call is a round trip). It reads the ConnectX-7 twins (what M(cx7_facts)
    returns), what configures the rails (what M(qsfp_netstate) returns), the management
    side (default route, its interface, addresses and NetworkManager profile) and the
    files a rollback writes back. O(gather) picks a subset (the role reads the management
    side alone again after its change).
  - The readings are the same functions as those modules'
    (C(module_utils/spark_cluster/link/readings.py)). Changes nothing; runs in check mode.
    Needs pyroute2 on the target for the twins.
options:
  gather:
    description: What to read.
    type: list
    elements: str
    choices: [cx7, netstate, mgmt, rollback]
    default: [cx7, netstate, mgmt, rollback]
  rails:
    description: This node's rails, C({interface, address}) each (for C(netstate); their
      interfaces are the twins' fallback names).
    type: list
    elements: dict
    default: []
  renderer:
    description: Renderer wanted for the rails; C(auto) takes the one in force.
    type: str
    choices: [auto, networkd, NetworkManager]
    default: auto
  netplan_path:
    description: The role's own netplan file.
    type: path
    default: /etc/netplan/40-cx7.yaml
  takeover:
    description: Whether foreign static addresses in another subnet may be replaced.
    type: bool
    default: false
  fallback_reason:
    description: Why this node's rails are not ConnectX-7 netdevs (the lab's veths); empty
      on real hardware (see M(cx7_facts)).
    type: str
    default: ""
  rollback_paths:
    description: Files whose content a rollback writes back (read for C(rollback)).
    type: list
    elements: path
    default: []
  sysfs_root:
    description: Root of the sysfs tree to read.
    type: path
    default: /sys
  root:
    description: Root of the file system the netplan files and rollback paths are read from.
    type: path
    default: /
requirements:
  - pyroute2 (python3-pyroute2)
author:
  - Spark cluster maintainers
"""

EXAMPLES = r"""
- name: Read everything before a change
  qsfp_link_facts:
    rails: "{{ spark_rails }}"
    rollback_paths: [/etc/netplan/40-cx7.yaml]
  register: before

- name: Read the management side again after it
  qsfp_link_facts:
    gather: [mgmt]
"""

RETURN = r"""
ansible_facts:
  description: Facts set by the module (each only when gathered).
  returned: always
  type: dict
  contains:
    cx7:
      description: The ConnectX-7 twins, as M(cx7_facts) returns them.
      type: dict
    qsfp_netstate:
      description: What configures the rails, as M(qsfp_netstate) returns it.
      type: dict
    qsfp_mgmt:
      description: The management side, C(interface), C(gateway), C(addresses), C(nm_connection).
      type: dict
      sample: {interface: eth0, gateway: 198.19.0.1, addresses: [198.19.0.10], nm_connection: Wired connection 1}
rollback:
  description: Per path of O(rollback_paths), C(exists) and C(content) (base64, null where absent).
  returned: when C(rollback) is gathered
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.link.netlink import NetlinkReader
from ansible.module_utils.spark_cluster.link.readings import read_files, read_management, read_netstate, read_twins

READINGS = ["cx7", "netstate", "mgmt", "rollback"]


def make_netlink():
    """The netlink reader (tests replace this function)."""
    return NetlinkReader()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            gather=dict(type="list", elements="str", choices=READINGS, default=list(READINGS)),
            rails=dict(type="list", elements="dict", default=[]),
            renderer=dict(type="str", default="auto", choices=["auto", "networkd", "NetworkManager"]),
            netplan_path=dict(type="path", default="/etc/netplan/40-cx7.yaml"),
            takeover=dict(type="bool", default=False),
            fallback_reason=dict(type="str", default=""),
            rollback_paths=dict(type="list", elements="path", default=[]),
            sysfs_root=dict(type="path", default="/sys"),
            root=dict(type="path", default="/"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    gather = set(p["gather"])
    if "netstate" in gather and not p["rails"]:
        module.fail_json(msg="gather netstate needs rails (this node's {interface, address} each)")
    facts, result = {}, {}
    if "cx7" in gather:
        interfaces = [str(r["interface"]) for r in p["rails"]]
        facts["cx7"] = read_twins(module, p["sysfs_root"], interfaces, p["fallback_reason"], make_netlink)
    if "netstate" in gather:
        facts["qsfp_netstate"] = read_netstate(module, p["rails"], p["renderer"], p["netplan_path"],
                                               p["takeover"], p["root"])
    if "mgmt" in gather:
        facts["qsfp_mgmt"] = read_management(module)
    if "rollback" in gather:
        result["rollback"] = read_files(p["rollback_paths"], p["root"])
    module.exit_json(changed=False, ansible_facts=facts, **result)


if __name__ == "__main__":
    main()
