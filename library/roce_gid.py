#!/usr/bin/python
"""Ansible module: resolve the RoCE v2 GID index of a node's QSFP twins."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: roce_gid
short_description: Resolve the RoCE v2 GID index of a node's ConnectX-7 twins
description:
  - For each given netdev, finds its RDMA device(s) in sysfs
    (C(class/infiniband/*/device/net/<netdev>)) and picks the GID table entry whose
    type is C(RoCE v2), whose GID is the IPv4-mapped address (C(::ffff:a.b.c.d)) of the
    netdev's address and whose ndev is the netdev.
  - Returns the NCCL environment for these twins. When all devices agree on the index,
    C(NCCL_IB_HCA) and C(NCCL_IB_GID_INDEX). When they differ (the index drifted on one
    twin), C(NCCL_IB_HCA), C(NCCL_IB_ADDR_FAMILY=AF_INET) and
    C(NCCL_IB_ROCE_VERSION_NUM=2), so that NCCL (>= 2.21) selects the GID per device.
    Without any RDMA device, C(NCCL_IB_DISABLE=1) (NCCL uses TCP sockets).
  - Never defaults to index 0 (the link-local GID, which stalls on RoCE v2). Fails,
    listing the GID table, when a twin with an RDMA device has no matching entry
    (address not assigned yet, RoCE v1 only, port down).
  - Read-only. The logic lives in C(module_utils/spark_cluster/link/roce.py).
version_added: "1.0.0"
author:
  - spark-cluster project
options:
  sysfs_root:
    description: Root of the sysfs tree to read (another path for tests).
    type: path
    default: /sys
  interfaces:
    description:
      - Netdev name to IPv4 address of this node, one entry per rail, in rail order.
      - A prefix (C(/24)) on the address is ignored.
      - Only these twins are considered; HCAs of unused ports are never listed.
    type: dict
    required: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Resolve at every service start too (the pre-start check does), the index can drift
    after reboots.
"""

EXAMPLES = r"""
- name: Resolve the RoCE v2 GID index of both twins
  roce_gid:
    interfaces:
      enp1s0f1np1: 192.168.100.10
      enP2p1s0f1np1: 192.168.101.10
  register: gid

- name: Show what NCCL gets
  ansible.builtin.debug:
    var: gid.nccl_env
"""

RETURN = r"""
rdma_present:
  description: Whether any given netdev has an RDMA device.
  returned: success
  type: bool
  sample: true
devices:
  description: One entry per given netdev that has an RDMA device, in the given order.
  returned: success
  type: list
  elements: dict
  sample:
    - netdev: enp1s0f1np1
      hca: rocep1s0f1
      port: 1
      gid_index: 3
      gid: "0000:0000:0000:0000:0000:ffff:c0a8:640a"
      address: 192.168.100.10
nccl_env:
  description: NCCL variables for these twins.
  returned: success
  type: dict
  sample:
    NCCL_IB_HCA: rocep1s0f1,roceP2p1s0f1
    NCCL_IB_GID_INDEX: "3"
message:
  description: One-line summary (per-device indexes on drift, TCP fallback without RDMA).
  returned: success
  type: str
  sample: RoCE v2 GID index 3 on rocep1s0f1, roceP2p1s0f1
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.link.roce import GidError, resolve


def main():
    module = AnsibleModule(
        argument_spec=dict(
            sysfs_root=dict(type="path", default="/sys"),
            interfaces=dict(type="dict", required=True),
        ),
        supports_check_mode=True,
    )
    try:
        result = resolve(module.params["sysfs_root"], module.params["interfaces"])
    except GidError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
