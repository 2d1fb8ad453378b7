#!/usr/bin/python
"""Discover the ConnectX-7 netdevs, RDMA twins and QSFP ports of a DGX Spark."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cx7_facts
short_description: Discover ConnectX-7 netdevs, RDMA twins and QSFP ports
description:
  - Reads sysfs and netlink to find the ConnectX-7 (driver C(mlx5_core)) netdevs of a
    DGX Spark, their RDMA devices ("twins", two per physical QSFP port), the physical
    port of each, link state, speed, MTU and addresses, and which ports are cabled.
  - Names are read, never assumed (C(rocep1s0f1), C(mlx5_0), ... all work).
  - When no C(mlx5_core) netdev exists, RV(ansible_facts.cx7.source) is C(none) and
    RV(ansible_facts.cx7.problem) says the driver is missing (a Spark whose mlx5_core
    did not bind). Only with O(fallback_reason) set (the lab, whose rails are veths)
    are the interfaces in O(fallback_interfaces) described instead, with
    RV(ansible_facts.cx7.source) C(fallback).
  - Changes nothing; runs in check mode. Needs pyroute2 on the target.
options:
  sysfs_root:
    description: Root of the sysfs tree to read.
    type: path
    default: /sys
  fallback_interfaces:
    description: Interfaces to describe when no ConnectX-7 netdev is found and
      O(fallback_reason) is set (also named in the missing-driver message).
    type: list
    elements: str
    default: []
  fallback_reason:
    description: Why this node's rails are not ConnectX-7 netdevs (the lab's veths).
      Empty (the default, real hardware) means a node without C(mlx5_core) netdev is
      reported as such and never described by name.
    type: str
    default: ""
requirements:
  - pyroute2 (python3-pyroute2)
author:
  - Spark cluster maintainers
"""

EXAMPLES = r"""
- name: Discover the ConnectX-7
  cx7_facts:
    fallback_interfaces: "{{ spark_rails | map(attribute='interface') | list }}"

- name: Show the cabled ports
  ansible.builtin.debug:
    msg: "{{ ansible_facts.cx7.ports | selectattr('cabled') | list }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts set by the module.
  returned: always
  type: dict
  contains:
    cx7:
      description: The discovery result.
      returned: always
      type: dict
      contains:
        source:
          description: C(sysfs) when mlx5_core netdevs were found, C(fallback) when
            described by name (O(fallback_reason) set), else C(none).
          type: str
          sample: sysfs
        netdevs:
          description:
            - One entry per netdev with C(name), C(pci), C(driver), C(operstate),
              C(carrier) (bool or null when unreadable), C(speed_mbps) (int or null),
              C(mtu), C(mac), C(addresses) (all addresses as C(a.b.c.d/nn), IPv4
              first), C(ipv4) and C(ipv6) (the same, split by family),
              C(rdma_device) (or null), C(port) (physical QSFP port), C(pcie_root)
              (the PCIe x4 link, C(domain:bus), or null) and C(cabled).
          type: list
          elements: dict
        by_name:
          description: The entries of RV(ansible_facts.cx7.netdevs) keyed by name.
          type: dict
        ports:
          description: Per physical port C({port, netdevs, rdma_devices, cabled}).
          type: list
          elements: dict
          sample:
            - {port: 1, netdevs: [enp1s0f1np1, enP2p1s0f1np1],
               rdma_devices: [rocep1s0f1, roceP2p1s0f1], cabled: true}
        rdma_present:
          description: Whether any RDMA device exists (C(/sys/class/infiniband)).
          type: bool
        rdma_devices:
          description: RDMA devices of the described netdevs, sorted.
          type: list
          elements: str
        missing:
          description: Names of O(fallback_interfaces) that do not exist (fallback only).
          type: list
          elements: str
        fallback_reason:
          description: O(fallback_reason) when the fallback was used, else null.
          type: str
        problem:
          description: Why no interface can be trusted (source C(none)), else null.
          type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.link.netlink import NetlinkReader
from ansible.module_utils.spark_cluster.link.readings import read_twins


def make_netlink():
    """The netlink reader (tests replace this function)."""
    return NetlinkReader()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            sysfs_root=dict(type="path", default="/sys"),
            fallback_interfaces=dict(type="list", elements="str", default=[]),
            fallback_reason=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = read_twins(module, p["sysfs_root"], p["fallback_interfaces"], p["fallback_reason"], make_netlink)
    module.exit_json(changed=False, ansible_facts={"cx7": result})


if __name__ == "__main__":
    main()
