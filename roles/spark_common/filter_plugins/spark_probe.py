"""Filters over module_utils/spark_cluster/link/probeplan.py: the link-validation probe layout, one
owner for roles/link_validation (the pairs) and roles/firewall (the ports it opens).

    {{ spark_nodes | spark_probe_layout(rails, spark_iperf3_port, spark_iperf3_max_processes, spark_rdma_port) }}
    {{ spark_nodes | spark_probe_port_ranges(rails, spark_iperf3_port, spark_iperf3_max_processes, spark_rdma_port) }}
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



def _call(function, nodes, *args):
    try:
        return function(list(nodes), *args)
    except ValueError as exc:
        raise AnsibleFilterError(f"probe layout: {exc}") from exc


def spark_probe_layout(nodes, rails, iperf3_port, iperf3_max_processes, rdma_port):
    return _call(spark_probeplan.probe_layout, nodes, rails, iperf3_port, iperf3_max_processes, rdma_port)


def spark_probe_port_ranges(nodes, rails, iperf3_port, iperf3_max_processes, rdma_port):
    return _call(spark_probeplan.port_ranges, nodes, rails, iperf3_port, iperf3_max_processes, rdma_port)


class FilterModule:
    def filters(self):
        return {"spark_probe_layout": spark_probe_layout, "spark_probe_port_ranges": spark_probe_port_ranges}
