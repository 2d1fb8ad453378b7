"""Filters over module_utils/spark_cluster/link/topology.py: a triangle's per-node facts and its
link-validation directions, computed once in roles/spark_common.

    {{ spark_nodes | spark_triangle(rails_by_host, inventory_hostname) }}
        -> {rail_peers, peers, peer_paths, routes, pings, prefix_len}
    {{ spark_nodes | spark_triangle_probe_layout(rails_by_host, iperf3_port, iperf3_max_processes, rdma_port) }}
    {{ spark_nodes | spark_triangle_probe_ranges(rails_by_host, iperf3_port, iperf3_max_processes, rdma_port) }}
    {{ spark_nodes | spark_triangle_cabling(rails_by_host, observations, inventory_hostname) }}
        -> that node's cabling problems (lines)
    {{ spark_nodes | spark_triangle_drawing(labels) }}

rails_by_host: {host: spark_rails}. A switch never calls these.
"""

from __future__ import annotations

import pathlib
import sys

from ansible.errors import AnsibleFilterError

# Controller side: the repository's module_utils/ on sys.path once, so the package imports
# like any other code (Ansible's ansible.module_utils holds module_utils only for modules)
_MODULE_UTILS = str(pathlib.Path(__file__).resolve().parents[3] / "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.append(_MODULE_UTILS)

from spark_cluster.link import probeplan as spark_probeplan  # noqa: E402
from spark_cluster.link import topology as spark_topology  # noqa: E402


def _rails(rails_by_host):
    return {str(h): [dict(r) for r in rails] for h, rails in dict(rails_by_host).items()}


def _check(nodes, rails_by_host):
    nodes = [str(n) for n in nodes]
    rails = _rails(rails_by_host)
    problems = spark_topology.validate("triangle", nodes[:1], nodes[1:], {h: {"rails": rails.get(h)} for h in nodes})
    if problems:
        raise AnsibleFilterError("triangle: " + "; ".join(p["message"] for p in problems))
    return nodes, rails


def spark_triangle(nodes, rails_by_host, host):
    nodes, rails = _check(nodes, rails_by_host)
    return spark_topology.node_facts(nodes, rails, str(host))


def spark_triangle_probe_layout(nodes, rails_by_host, iperf3_port, iperf3_max_processes, rdma_port):
    nodes, rails = _check(nodes, rails_by_host)
    try:
        return spark_probeplan.with_ports(spark_topology.probe_directions(nodes, rails), iperf3_port,
                                          iperf3_max_processes, rdma_port)
    except ValueError as exc:
        raise AnsibleFilterError(f"probe layout: {exc}") from exc


def spark_triangle_probe_ranges(nodes, rails_by_host, iperf3_port, iperf3_max_processes, rdma_port):
    layout = spark_triangle_probe_layout(nodes, rails_by_host, iperf3_port, iperf3_max_processes, rdma_port)
    return spark_probeplan.ranges_of(layout, iperf3_max_processes)


def spark_triangle_cabling(nodes, rails_by_host, observations, host):
    """The cabling check's lines for ``host`` (the head also gets the cluster-wide
    ones): the inventory's triangle against what every port heard."""
    nodes, rails = _check(nodes, rails_by_host)
    found = spark_topology.check_cabling(nodes, rails, {str(h): o for h, o in dict(observations).items() if o})
    host = str(host)
    return [p["message"] for p in found if p["host"] == host or (not p["host"] and host == nodes[0])]


def spark_triangle_drawing(nodes, labels=None):
    pairs = {}
    for key, text in dict(labels or {}).items():
        a, _, b = str(key).partition("|")
        pairs[(a, b)] = str(text)
    return spark_topology.draw([str(n) for n in nodes], pairs)


class FilterModule:
    def filters(self):
        return {
            "spark_triangle": spark_triangle,
            "spark_triangle_probe_layout": spark_triangle_probe_layout,
            "spark_triangle_probe_ranges": spark_triangle_probe_ranges,
            "spark_triangle_cabling": spark_triangle_cabling,
            "spark_triangle_drawing": spark_triangle_drawing,
        }
