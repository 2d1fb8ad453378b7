"""module_utils/spark_cluster/link/probeplan.py: the probe directions and their ports, the one place
link validation and the firewall take them from."""

import pytest

from spark_cluster.link import probeplan as pp


def test_two_nodes_two_rails():
    layout = pp.probe_layout(["head", "w1"], 2, 5201, 8, 18515)
    assert [(e["rail"], e["src"], e["dst"]) for e in layout] == [
        (0, "head", "w1"), (0, "w1", "head"), (1, "head", "w1"), (1, "w1", "head")]
    assert [e["tcp_port"] for e in layout] == [5201, 5211, 5221, 5231]
    assert [e["tcp_parallel_port"] for e in layout] == [5202, 5212, 5222, 5232]
    assert [e["rdma_port"] for e in layout] == [18515, 18516, 18517, 18518]
    assert pp.port_ranges(["head", "w1"], 2, 5201, 8, 18515) == {
        "directions": 4, "iperf3": "5201-5240", "ib_write_bw": "18515-18518"}


@pytest.mark.parametrize("nodes,rails,directions", [(2, 1, 2), (3, 2, 12), (4, 2, 24), (6, 2, 60)])
def test_every_ordered_pair_once_blocks_never_overlap(nodes, rails, directions):
    names = [f"n{i}" for i in range(nodes)]
    layout = pp.probe_layout(names, rails, 5201, 4, 18515)
    assert len(layout) == directions == rails * nodes * (nodes - 1)
    assert len({(e["rail"], e["src"], e["dst"]) for e in layout}) == directions
    assert all(e["src"] != e["dst"] for e in layout)
    ports = [p for e in layout for p in range(e["tcp_port"], e["tcp_port"] + 6)]
    assert len(ports) == len(set(ports))  # block of 4 + 2 per direction, disjoint
    low, high = map(int, pp.port_ranges(names, rails, 5201, 4, 18515)["iperf3"].split("-"))
    assert (low, high) == (min(ports), max(ports))
    assert [e["index"] for e in layout] == list(range(directions))


def test_one_node_has_no_direction():
    assert pp.probe_layout(["head"], 2, 5201, 8, 18515) == []
    assert pp.port_ranges(["head"], 2, 5201, 8, 18515) == {"directions": 0, "iperf3": "", "ib_write_bw": ""}


def test_numbers_as_strings_from_inventory():
    assert pp.probe_layout(["a", "b"], "1", "6000", "2", "7000")[1]["tcp_port"] == 6004


@pytest.mark.parametrize("args,message", [
    ((["a", "a"], 1, 5201, 8, 18515), "node names repeat"),
    ((["a", "b"], 1, "x", 8, 18515), "iperf3_port must be an integer"),
    ((["a", "b"], 1, 5201, 0, 18515), "iperf3_max_processes must be at least 1"),
    ((["a", "b"], 2, 65500, 8, 18515), "past 65535"),
])
def test_bad_input_says_what(args, message):
    with pytest.raises(ValueError, match=message):
        pp.probe_layout(*args)


def test_both_roles_read_the_one_layout():
    from conftest import ROOT
    template = (ROOT / "roles/link_validation/templates/pairs.yml.j2").read_text()
    firewall = (ROOT / "roles/firewall/vars/main.yml").read_text()
    assert "spark_probe_directions" in template and "spark_probe_ports" in firewall
    for text in (template, firewall):  # no port arithmetic of their own
        assert "spark_iperf3_port" not in text and "spark_rdma_port" not in text
