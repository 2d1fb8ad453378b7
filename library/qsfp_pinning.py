#!/usr/bin/python
"""Check that the runtime environment pins all socket traffic to the QSFP interface."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: qsfp_pinning
short_description: Check that the runtime env pins socket traffic to the QSFP interface
description:
  - Checks that O(interface) exists, is up with carrier and holds O(address); that the
    route to each peer leaves through O(interface) and not via a gateway; and that the
    environment handed to vLLM pins every library to it (C(VLLM_HOST_IP),
    C(GLOO_SOCKET_IFNAME), C(NCCL_SOCKET_IFNAME) with NCCL's prefix/C(=)/C(^) syntax,
    C(TP_SOCKET_IFNAME), C(MN_IF_NAME), C(OMPI_MCA_btl_tcp_if_include),
    C(UCX_NET_DEVICES)). An unset variable is a problem, since the library then picks on its own.
  - Reports what vLLM would pick without C(VLLM_HOST_IP) (the source of the route to
    8.8.8.8; no packet is sent).
  - Changes nothing; runs in check mode. Needs pyroute2 on the target.
options:
  interface:
    description: The QSFP interface traffic must use (rail 0).
    type: str
    required: true
  address:
    description: This node's address on O(interface), with or without C(/prefix).
    type: str
    required: true
  peers:
    description: The other nodes' addresses on the same rail.
    type: list
    elements: str
    default: []
  env:
    description: The environment handed to vLLM. Mutually exclusive with O(env_file).
    type: dict
  env_file:
    description: A Docker env file holding that environment. Mutually exclusive with
      O(env).
    type: path
  allowed_interfaces:
    description: Interfaces the pinning variables may name (for example both twins in
      C(NCCL_SOCKET_IFNAME)). Defaults to O(interface) alone.
    type: list
    elements: str
  allowed_ucx_devices:
    description: RDMA C(device:port) entries accepted in C(UCX_NET_DEVICES) besides
      the allowed interfaces (for example C(rocep1s0f1:1)).
    type: list
    elements: str
    default: []
  peer_paths:
    description:
      - A triangle of direct cables - per other node C(host), C(address) (its rail-0
        address), C(interface) (this node's rail on the direct link to it) and C(via)
        (the host route's gateway, or null on the link's subnet). The route to each
        peer is then checked against its own link instead of O(interface).
    type: list
    elements: dict
  fail_on_problems:
    description: Fail when any problem is found (the message has one line per problem).
    type: bool
    default: true
requirements:
  - pyroute2 (python3-pyroute2)
author:
  - Spark cluster maintainers
"""

EXAMPLES = r"""
- name: Check the pinning of the rendered runtime env
  qsfp_pinning:
    interface: "{{ spark_rail0_interface }}"
    address: "{{ spark_rail0_address }}"
    peers: "{{ spark_rail_peers[0] }}"
    env_file: /etc/spark-cluster/runtime.env
    allowed_interfaces: "{{ spark_rails | map(attribute='interface') | list }}"

- name: Report only
  qsfp_pinning:
    interface: enp1s0f1np1
    address: 192.168.100.10/24
    env:
      VLLM_HOST_IP: 192.168.100.10
      GLOO_SOCKET_IFNAME: enp1s0f1np1
    fail_on_problems: false
  register: pinning
"""

RETURN = r"""
ok:
  description: Whether no problem was found.
  returned: always
  type: bool
problems:
  description: One entry per problem, with C(check), C(variable) (or null), C(found),
    C(expected) and a C(message) that says what to do.
  returned: always
  type: list
  elements: dict
would_pick:
  description: The C(interface) and C(address) vLLM would use without C(VLLM_HOST_IP)
    (the default route's); null when there is no default route.
  returned: always
  type: dict
  sample: {interface: wlP9s9, address: 192.168.64.198}
routes:
  description: Per peer the kernel's route (C(peer), C(dev), C(src), C(via_gateway),
    C(ok)).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.common.envfile import read as read_envfile
from ansible.module_utils.spark_cluster.link.netlink import NetlinkReader
from ansible.module_utils.spark_cluster.link.pinning import check_pinning, format_problems


def make_netlink():
    """The netlink reader (tests replace this function)."""
    return NetlinkReader()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            interface=dict(type="str", required=True),
            address=dict(type="str", required=True),
            peers=dict(type="list", elements="str", default=[]),
            env=dict(type="dict"),
            env_file=dict(type="path"),
            allowed_interfaces=dict(type="list", elements="str"),
            allowed_ucx_devices=dict(type="list", elements="str", default=[]),
            peer_paths=dict(type="list", elements="dict"),
            fail_on_problems=dict(type="bool", default=True),
        ),
        mutually_exclusive=[("env", "env_file")],
        required_one_of=[("env", "env_file")],
        supports_check_mode=True,
    )
    params = module.params
    env = params["env"]
    if params["env_file"]:
        try:
            env = read_envfile(params["env_file"])
        except (OSError, ValueError) as exc:
            module.fail_json(msg=f"cannot read env_file {params['env_file']}: {exc}")
    try:
        with make_netlink() as net:
            result = check_pinning(
                params["interface"], params["address"], params["peers"], env, net,
                allowed_interfaces=params["allowed_interfaces"],
                allowed_ucx_devices=params["allowed_ucx_devices"],
                peer_paths=params["peer_paths"],
            )
    except ImportError as exc:
        module.fail_json(msg=f"qsfp_pinning needs pyroute2 on the target (python3-pyroute2): {exc}")
    if result["problems"] and params["fail_on_problems"]:
        module.fail_json(msg=format_problems(result), changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
