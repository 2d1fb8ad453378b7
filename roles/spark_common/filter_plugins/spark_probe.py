"""Filters over module_utils/spark_probeplan.py: the link-validation probe layout, one
owner for roles/link_validation (the pairs) and roles/firewall (the ports it opens).

    {{ spark_nodes | spark_probe_layout(rails, spark_iperf3_port, spark_iperf3_max_processes, spark_rdma_port) }}
    {{ spark_nodes | spark_probe_port_ranges(rails, spark_iperf3_port, spark_iperf3_max_processes, spark_rdma_port) }}
"""

from __future__ import annotations

import importlib.util
import pathlib

from ansible.errors import AnsibleFilterError

# Controller side: the repository's module_utils file, loaded by path (Ansible's
# ansible.module_utils package holds the configured module_utils only for modules)
_PATH = pathlib.Path(__file__).resolve().parents[3] / "module_utils" / "spark_probeplan.py"
_SPEC = importlib.util.spec_from_file_location("spark_probeplan", _PATH)
spark_probeplan = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(spark_probeplan)


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
