"""The link-validation probe layout, computed once (stdlib only).

Every ordered pair of nodes on every rail is one probe direction: N nodes give N(N-1)
directions per rail, in this order: rail, then each pair (a, b) with a before b in node
order (head first), a -> b then b -> a. Direction ``i`` gets

- a block of ``iperf3_max_processes + 2`` TCP ports from ``iperf3_port + i * block``
  (the single-stream server, then one per parallel process);
- the RDMA port ``rdma_port + i``.

``roles/link_validation`` lays its probe pairs out with ``probe_layout`` and
``roles/firewall`` opens exactly ``port_ranges`` on the rails: both go through the
``spark_probe_layout`` / ``spark_probe_port_ranges`` filters
(``roles/spark_common/filter_plugins/spark_probe.py``).
"""

from __future__ import annotations


def _count(value, name, minimum):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {number}")
    return number


def probe_layout(nodes, rails, iperf3_port, iperf3_max_processes, rdma_port):
    """One dict per probe direction: ``index``, ``rail``, ``src``, ``dst``,
    ``tcp_port``, ``tcp_parallel_port``, ``rdma_port``.

    nodes: node names, head first (the order the directions follow).
    rails: how many rails every node has."""
    nodes = [str(n) for n in nodes]
    if len(set(nodes)) != len(nodes):
        raise ValueError(f"node names repeat: {nodes}")
    rails = _count(rails, "rails", 0)
    directions = []
    for rail in range(rails):
        for a_index, a in enumerate(nodes):
            for b in nodes[a_index + 1:]:
                for src, dst in ((a, b), (b, a)):
                    directions.append({"rail": rail, "src": src, "dst": dst})
    return with_ports(directions, iperf3_port, iperf3_max_processes, rdma_port)


def with_ports(directions, iperf3_port, iperf3_max_processes, rdma_port):
    """Directions (dicts with at least ``rail``, ``src``, ``dst``), in probe order, with
    ``index`` and their ports added (the block arithmetic above). A triangle's
    directions (``spark_topology.probe_directions``) get their ports here too."""
    base = _count(iperf3_port, "iperf3_port", 1)
    block = _count(iperf3_max_processes, "iperf3_max_processes", 1) + 2
    rdma = _count(rdma_port, "rdma_port", 1)
    out = []
    for direction in directions:
        index = len(out)
        tcp = base + index * block
        entry = {"index": index, "rail": direction["rail"], "src": direction["src"], "dst": direction["dst"]}
        entry.update({k: v for k, v in direction.items() if k not in entry})
        entry.update({"tcp_port": tcp, "tcp_parallel_port": tcp + 1, "rdma_port": rdma + index})
        out.append(entry)
    for entry in out:
        if max(entry["tcp_port"] + block - 1, entry["rdma_port"]) > 65535:
            raise ValueError(f"probe ports past 65535 for {len(out)} directions (iperf3 from {base}, "
                             f"{block} per direction; RDMA from {rdma}): lower spark_iperf3_port, "
                             "spark_rdma_port or spark_iperf3_max_processes")
    return out


def port_ranges(nodes, rails, iperf3_port, iperf3_max_processes, rdma_port):
    """What the firewall opens for the probes: ``{'directions': n, 'iperf3': 'lo-hi',
    'ib_write_bw': 'lo-hi'}`` (ranges empty, ``''``, when there is no direction)."""
    return ranges_of(probe_layout(nodes, rails, iperf3_port, iperf3_max_processes, rdma_port),
                     iperf3_max_processes)


def ranges_of(layout, iperf3_max_processes):
    """The firewall's ranges of a laid-out probe plan (``probe_layout`` or ``with_ports``)."""
    if not layout:
        return {"directions": 0, "iperf3": "", "ib_write_bw": ""}
    block = int(iperf3_max_processes) + 2
    return {"directions": len(layout),
            "iperf3": f"{layout[0]['tcp_port']}-{layout[-1]['tcp_port'] + block - 1}",
            "ib_write_bw": f"{layout[0]['rdma_port']}-{layout[-1]['rdma_port']}"}
