#!/usr/bin/python
"""Ansible module: render a node's runtime environment file (and its saved inputs)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: spark_runtime_env
short_description: Render the runtime environment file of a Spark node
description:
  - Resolves the RoCE v2 GID index of the node's rails (C(module_utils/spark_cluster/link/roce.py)),
    builds the node's environment (C(module_utils/spark_cluster/runtime/runtime_env.py)) and writes it as a
    docker env file, plus the inputs as JSON (O(params_path)) so that the node-side
    pre-start check (C(python3 -m spark_cluster.node.prestart), systemd C(ExecStartPre)) re-renders the same
    file with the same code at every service start.
  - The environment pins every socket user to rail 0 (C(VLLM_HOST_IP),
    C(GLOO_SOCKET_IFNAME), C(NCCL_SOCKET_IFNAME==<iface>), C(TP_SOCKET_IFNAME),
    C(UCX_NET_DEVICES), C(OMPI_MCA_btl_tcp_if_include), C(MN_IF_NAME)), carries the
    NCCL GID/HCA settings and the rendezvous (C(MASTER_ADDR), C(MASTER_PORT),
    C(NODE_RANK), C(NNODES)), then the extra settings.
  - Files are written atomically and only when their content differs.
version_added: "1.0.0"
author:
  - spark-cluster project
options:
  path:
    description: The env file to write.
    type: path
    default: /etc/spark-cluster/runtime.env
  params_path:
    description: Where the inputs are saved (JSON) for the pre-start re-render.
    type: path
    default: /etc/spark-cluster/runtime-env.json
  node:
    description:
      - The node's inputs C(rank), C(nnodes), C(role) (C(head) or C(worker)),
        C(interface) (rail-0 netdev), C(address) (rail-0 address without prefix),
        C(master_addr) (the head's rail-0 address), C(master_port) and C(settings)
        (extra variables; secret-looking keys and pinned keys are refused).
      - C(interface) and C(address) are the first rail's (the facts C(spark_rail0_interface) and
        C(spark_rail0_address) of roles/spark_common, computed from the same C(spark_rails)).
    type: dict
    required: true
  rails:
    description: The node's rails in rail order, used to resolve the GID index.
    type: list
    elements: dict
    required: true
    suboptions:
      interface:
        description: Netdev of the rail on this host.
        type: str
        required: true
      address:
        description: This host's address on the rail (a prefix is ignored).
        type: str
        required: true
  peers:
    description: Rail-0 addresses of the other nodes, saved for the pre-start pinning check.
    type: list
    elements: str
    default: []
  topology:
    description:
      - A triangle of direct cables (docs/topology.md) - C(name) (C(triangle)), C(prefix_len)
        (the rails' prefix length) and C(peer_paths) (per other node C(host), C(address) (its
        rail-0 address), C(interface) (this node's rail on the direct link) and C(via) (the
        host route's gateway, or null on the link's subnet)). Adds NCCL's subnet-aware
        routing settings and makes the pre-start check test each peer's own route.
      - Left out for a switch - the files are exactly as without it.
    type: dict
  mtu:
    description:
      - MTU of the rails, saved so the pre-start check verifies the rails' MTU and
        addresses at every start (a firmware update is known to reset the MTU to 1500).
    type: int
  sysfs_root:
    description: Root of the sysfs tree (another path for tests).
    type: path
    default: /sys
  mode:
    description: Mode of both files.
    type: raw
    default: "0600"
  owner:
    description: Owner of both files.
    type: str
    default: root
  group:
    description: Group of both files.
    type: str
    default: root
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - The env file holds no secrets; settings such as C(HF_TOKEN) or C(*_KEY) are refused.
"""

EXAMPLES = r"""
- name: Render the runtime environment of the head
  spark_runtime_env:
    node:
      rank: 0
      nnodes: 2
      role: head
      interface: enp1s0f1np1
      address: 192.168.100.10
      master_addr: 192.168.100.10
      master_port: 29501
      settings:
        NCCL_NVLS_ENABLE: "0"
    rails:
      - interface: enp1s0f1np1
        address: 192.168.100.10/24
      - interface: enP2p1s0f1np1
        address: 192.168.101.10/24
    peers: [192.168.100.11]
"""

RETURN = r"""
env:
  description: The rendered environment, in file order.
  returned: success
  type: dict
  sample:
    VLLM_HOST_IP: 192.168.100.10
    GLOO_SOCKET_IFNAME: enp1s0f1np1
    NCCL_SOCKET_IFNAME: "=enp1s0f1np1"
    NCCL_IB_HCA: rocep1s0f1,roceP2p1s0f1
    NCCL_IB_GID_INDEX: "3"
roce:
  description:
    - The GID resolution (see the roce_gid module). Not named C(gid), which Ansible
      fills with the file's group id since the result has a C(path).
  returned: success
  type: dict
path:
  description: The env file.
  returned: always
  type: str
  sample: /etc/spark-cluster/runtime.env
params_path:
  description: The saved inputs.
  returned: always
  type: str
  sample: /etc/spark-cluster/runtime-env.json
message:
  description: The GID resolution's summary.
  returned: success
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.module_utils.spark_cluster.runtime.runtime_env import build_env, make_params, params_text, rail_interfaces, render
from ansible.module_utils.spark_cluster.common.fileio import read_bytes, write_atomic
from ansible.module_utils.spark_cluster.link.roce import GidError, resolve


def _install(module, path, text, result):
    """Write ``text`` to ``path`` if it differs, then mode/owner/group. Returns changed."""
    data = to_bytes(text)
    before = read_bytes(path)
    changed = before != data
    if changed:
        if module._diff:
            result["diff"].append(
                {
                    "before_header": path,
                    "after_header": path,
                    "before": to_text(before) if before is not None else "",
                    "after": text,
                }
            )
        if not module.check_mode:
            # a new file is 0600 until the mode below is applied: never readable by others
            write_atomic(path, data, default_mode=0o600)
    if os.path.exists(path):
        file_args = module.load_file_common_arguments(module.params, path=path)
        changed = module.set_fs_attributes_if_different(file_args, changed)
    return changed


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/etc/spark-cluster/runtime.env"),
            params_path=dict(type="path", default="/etc/spark-cluster/runtime-env.json"),
            node=dict(type="dict", required=True),
            rails=dict(
                type="list",
                elements="dict",
                required=True,
                options=dict(
                    interface=dict(type="str", required=True),
                    address=dict(type="str", required=True),
                ),
            ),
            peers=dict(type="list", elements="str", default=[]),
            mtu=dict(type="int"),
            topology=dict(type="dict"),
            sysfs_root=dict(type="path", default="/sys"),
            mode=dict(type="raw", default="0600"),
            owner=dict(type="str", default="root"),
            group=dict(type="str", default="root"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = {"changed": False, "path": p["path"], "params_path": p["params_path"], "diff": []}

    for key in ("path", "params_path"):
        directory = os.path.dirname(p[key]) or "."
        if not os.path.isdir(directory):
            module.fail_json(msg=f"directory {directory} of {key} does not exist", **result)

    try:
        interfaces = rail_interfaces(p["rails"])
        gid = resolve(p["sysfs_root"], interfaces)
        params = make_params(
            p["path"],
            p["node"],
            p["rails"],
            peers=p["peers"],
            sysfs_root=p["sysfs_root"],
            params_path=p["params_path"],
            mode=p["mode"],
            mtu=p["mtu"],
            topology=p["topology"],
        )
        env = build_env(p["node"], gid, p["topology"])
        text = render(env, params)
    except (GidError, ValueError) as exc:
        module.fail_json(msg=str(exc), **result)

    result.update(env=env, roce=gid, message=gid["message"])
    changed = _install(module, p["params_path"], params_text(params), result)
    changed = _install(module, p["path"], text, result) or changed
    result["changed"] = changed
    if not module._diff:
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
