#!/usr/bin/python
"""Probe which ConnectX-7 port of this node reaches which other node (discover.yml)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cx7_probe
short_description: Find which ConnectX-7 port of a node is cabled to which other node
description:
  - Reads this node's ConnectX-7 netdevs, RDMA twins, carrier and speed (as
    M(cx7_facts) does), then on every port with carrier broadcasts a small Ethernet
    frame (ethertype 0x88B5, IEEE local experimental) naming this node, the port and
    the run, and records the frames of the other nodes heard on each port.
  - Run it on all nodes at once (the same O(run_id) everywhere); a node stops when
    every port with carrier has heard every node in O(peers) (plus one second so late
    starters hear it too), or after O(max_seconds).
  - Needs no IP address, no IPv6 and no LLDP. A port that is administratively down
    (its carrier cannot be read) is set up for the probe and set down again before the
    module returns (O(bring_up)); nothing else on the node changes, so the module
    reports C(changed=false). Needs root (raw sockets, link state).
options:
  node:
    description: This node's inventory name (sent in every frame).
    type: str
    required: true
  run_id:
    description: Identifier of this discovery run; frames of other runs are ignored.
    type: str
    required: true
  peers:
    description: The other nodes expected on every cabled port.
    type: list
    elements: str
    default: []
  fallback_interfaces:
    description: Netdevs to probe when no C(mlx5_core) netdev exists and
      O(fallback_reason) is set (the lab's veths).
    type: list
    elements: str
    default: []
  fallback_reason:
    description: Why named interfaces may stand in for ConnectX-7 netdevs (the lab
      only). Empty on real Sparks, where a node without mlx5_core netdevs is reported
      with RV(discovery.problem).
    type: str
    default: ""
  sysfs_root:
    description: Root of the sysfs tree to read.
    type: path
    default: /sys
  bring_up:
    description: Set administratively down ports up for the probe (and down after).
    type: bool
    default: true
  link_wait:
    description: Seconds to wait for carrier on ports that were brought up.
    type: float
    default: 8.0
  min_seconds:
    description: Shortest probe.
    type: float
    default: 1.0
  max_seconds:
    description: Longest probe (ports that hear nobody keep it running this long).
    type: float
    default: 10.0
  interval:
    description: Seconds between two frames on a port.
    type: float
    default: 0.2
requirements:
  - root (CAP_NET_RAW, CAP_NET_ADMIN), iproute2, pyroute2 (python3-pyroute2)
author:
  - Spark cluster maintainers
"""

EXAMPLES = r"""
- name: Probe the cabling on every node at once
  cx7_probe:
    node: "{{ inventory_hostname }}"
    run_id: "{{ __discover_run_id }}"
    peers: "{{ ansible_play_hosts_all | difference([inventory_hostname]) }}"
  register: probe
"""

RETURN = r"""
discovery:
  description: What this node sees.
  returned: always
  type: dict
  contains:
    node:
      description: This node's name.
      type: str
    source:
      description: C(sysfs) (mlx5_core netdevs), C(fallback) (O(fallback_interfaces))
        or C(none) (no ConnectX-7 netdev, see RV(discovery.problem)).
      type: str
    problem:
      description: Why no ConnectX-7 netdev was found (driver not bound), else null.
      type: str
    missing:
      description: Names of O(fallback_interfaces) absent on the node.
      type: list
      elements: str
    netdevs:
      description:
        - Per netdev C(name), C(rdma_device), C(port), C(pcie_root), C(mac),
          C(carrier), C(speed_mbps), C(admin_up) (before the probe), C(probed),
          C(heard) (list of C({node, interface, mac}) heard on it) and C(error).
      type: list
      elements: dict
    brought_up:
      description: Ports set up for the probe.
      type: list
      elements: str
    restored:
      description: Ports set down again afterwards (the same as RV(discovery.brought_up)).
      type: list
      elements: str
    probe:
      description: C(seconds) the probe ran, C(started) and C(ended) (epoch seconds).
      type: dict
    host:
      description:
        - What the preflight's host checks need, read from netlink C(interfaces) (all
          link names), C(default_interface), C(default_network) (CIDR) and
          C(addresses) (interface -> IPv4 addresses).
      type: dict
"""

import ipaddress
import pathlib

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.link.cx7 import discover
from ansible.module_utils.spark_cluster.common.fileio import read_text
from ansible.module_utils.spark_cluster.link.discover import observe
from ansible.module_utils.spark_cluster.link.netlink import NetlinkReader


def make_netlink():
    """The netlink reader (tests replace this function)."""
    return NetlinkReader()


def host_view(net):
    """Interfaces, default route interface and network, IPv4 addresses per interface."""
    addresses = {}
    networks = {}
    for entry in net.addresses():
        if entry["family"] == 4:
            addresses.setdefault(entry["ifname"], []).append(entry["address"])
            iface = ipaddress.ip_interface(f"{entry['address']}/{entry['prefixlen']}")
            networks.setdefault(entry["ifname"], str(iface.network))
    default = net.default_route() or {}
    dev = default.get("dev") or ""
    return {"interfaces": sorted(link["name"] for link in net.links()), "default_interface": dev,
            "default_network": networks.get(dev, ""), "addresses": addresses}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            node=dict(type="str", required=True),
            run_id=dict(type="str", required=True),
            peers=dict(type="list", elements="str", default=[]),
            fallback_interfaces=dict(type="list", elements="str", default=[]),
            fallback_reason=dict(type="str", default=""),
            sysfs_root=dict(type="path", default="/sys"),
            bring_up=dict(type="bool", default=True),
            link_wait=dict(type="float", default=8.0),
            min_seconds=dict(type="float", default=1.0),
            max_seconds=dict(type="float", default=10.0),
            interval=dict(type="float", default=0.2),
        ),
        supports_check_mode=True,
    )
    p = module.params
    root = p["sysfs_root"]

    def set_link(name, up):
        module.run_command(["ip", "link", "set", "dev", name, "up" if up else "down"], check_rc=True)

    try:
        with make_netlink() as net:
            def rediscover():
                return discover(root, net, p["fallback_interfaces"], p["fallback_reason"])

            cx7 = rediscover()
            flags = {n["name"]: read_text(pathlib.Path(root) / "class" / "net" / n["name"] / "flags")
                     for n in cx7["netdevs"]}
            result = observe(
                p["node"], p["run_id"], [x for x in p["peers"] if x != p["node"]], cx7, flags,
                set_link, rediscover,
                bring_up=p["bring_up"] and not module.check_mode, link_wait=p["link_wait"],
                min_seconds=p["min_seconds"], max_seconds=p["max_seconds"], interval=p["interval"],
            )
            result["host"] = host_view(net)
    except ImportError as exc:
        module.fail_json(msg=f"cx7_probe needs pyroute2 on the node (python3-pyroute2): {exc}")
    except OSError as exc:
        module.fail_json(msg=f"cx7_probe could not read sysfs/netlink or open a raw socket (needs root): {exc}")
    module.exit_json(changed=False, discovery=result)


if __name__ == "__main__":
    main()
