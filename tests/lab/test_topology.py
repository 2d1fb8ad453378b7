"""Unit tests of the lab's pure planning functions (no docker, no root needed)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "lab" / "spark_lab.py"
_spec = importlib.util.spec_from_file_location("spark_lab", _PATH)
lab = importlib.util.module_from_spec(_spec)
sys.modules["spark_lab"] = lab
_spec.loader.exec_module(lab)

RAILS = ["enp1s0f1np1", "enP2p1s0f1np1"]


def host(ip: str, rails=RAILS, container: str | None = None, **extra) -> dict:
    hv = {"spark_mgmt_address": ip, "spark_mtu": 9000,
          "spark_rails": [{"interface": r, "address": f"198.18.{100 + i}.{ip.split('.')[-1]}/24"}
                          for i, r in enumerate(rails)]}
    if container:
        hv["ansible_host"] = container
    hv.update(extra)
    return hv


def inventory(head: dict[str, dict], workers: dict[str, dict]) -> dict:
    """Shape of `ansible-inventory --list` output."""
    return {
        "_meta": {"hostvars": {**head, **workers}},
        "all": {"children": ["ungrouped", "spark"]},
        "spark": {"children": ["spark_head", "spark_workers"]},
        "spark_head": {"hosts": list(head)},
        "spark_workers": {"hosts": list(workers)},
    }


def two_nodes() -> dict:
    return inventory({"spark-head": host("198.19.0.10", container="spark-head")},
                     {"spark-worker": host("198.19.0.11", container="spark-worker")})


def three_nodes() -> dict:
    return inventory({"h": host("198.19.0.10", container="lab-h")},
                     {"w1": host("198.19.0.11", container="lab-w1"),
                      "w2": host("198.19.0.12", rails=["eth1", "eth2"], container="lab-w2")})


def all_ends(topo):
    return [e for link in topo.links for e in (link.a, link.b)]


def test_nodes_from_inventory_order_and_fields():
    inv = three_nodes()
    # ansible-inventory may list hostvars in any order: the head still comes first
    inv["_meta"]["hostvars"] = dict(reversed(list(inv["_meta"]["hostvars"].items())))
    nodes = lab.nodes_from_inventory(inv)
    assert [n.name for n in nodes] == ["h", "w1", "w2"]
    assert nodes[0].container == "lab-h"
    assert nodes[2].rails == ("eth1", "eth2")
    assert nodes[1].mgmt_address == "198.19.0.11"
    assert {n.mtu for n in nodes} == {9000}


def test_container_defaults_to_inventory_name():
    inv = inventory({"a": host("198.19.0.10")}, {"b": host("198.19.0.11")})
    assert [n.container for n in lab.nodes_from_inventory(inv)] == ["a", "b"]


def test_hosts_without_rails_are_not_lab_nodes():
    inv = two_nodes()
    inv["_meta"]["hostvars"]["controller"] = {"ansible_connection": "local"}
    inv["all"]["children"].append("ctl")
    inv["ctl"] = {"hosts": ["controller"]}
    assert len(lab.nodes_from_inventory(inv)) == 2


def test_two_nodes_direct_cables():
    topo = lab.plan_topology(lab.nodes_from_inventory(two_nodes()))
    assert not topo.switched and topo.bridges == ()
    assert len(topo.links) == 2
    for i, link in enumerate(topo.links):
        assert link.rail == i
        assert (link.a.container, link.b.container) == ("spark-head", "spark-worker")
        assert link.a.ifname == link.b.ifname == RAILS[i]
        assert link.a.bridge is None and link.b.bridge is None
    assert topo.mtu == 9000


def test_three_nodes_switch_per_rail():
    topo = lab.plan_topology(lab.nodes_from_inventory(three_nodes()))
    assert topo.switched
    assert topo.bridges == ("rail0", "rail1")
    assert len(topo.links) == 6          # one veth per node per rail
    for link in topo.links:
        assert link.a.container in ("lab-h", "lab-w1", "lab-w2")
        assert link.b.container is None  # switch side lives in the switch namespace
        assert link.b.bridge == f"rail{link.rail}"
    w2 = [l for l in topo.links if l.a.container == "lab-w2"]
    assert [l.a.ifname for l in w2] == ["eth1", "eth2"]  # per-host names honoured


@pytest.mark.parametrize("make", [two_nodes, three_nodes])
def test_veth_names_short_unique_deterministic(make):
    topo = lab.plan_topology(lab.nodes_from_inventory(make()))
    names = [e.tmpname for e in all_ends(topo)]
    assert len(set(names)) == len(names)
    assert all(len(n) <= 15 and lab.VETH_RE.match(n) for n in names)
    again = lab.plan_topology(lab.nodes_from_inventory(make()))
    assert [e.tmpname for e in all_ends(again)] == names


def test_switch_ports_differ_from_node_ends():
    topo = lab.plan_topology(lab.nodes_from_inventory(three_nodes()))
    node_side = {l.a.tmpname for l in topo.links}
    switch_side = {l.b.tmpname for l in topo.links}
    assert not node_side & switch_side


@pytest.mark.parametrize("mutate, message", [
    (lambda hv: hv["spark-worker"].update(spark_rails=[{"interface": "enp1s0f1np1"}]), "same, non-zero"),
    (lambda hv: hv["spark-worker"].update(spark_mgmt_address="198.19.0.10"), "duplicate mgmt_address"),
    (lambda hv: hv["spark-worker"].update(spark_mgmt_address="10.0.0.5"), "not usable"),
    (lambda hv: hv["spark-worker"].update(spark_mgmt_address="198.19.0.1"), "not usable"),
    (lambda hv: hv["spark-worker"].update(ansible_host="spark-head"), "duplicate container"),
    (lambda hv: hv["spark-worker"]["spark_rails"][0].update(interface="a-very-long-ifname0"), "bad rail"),
    (lambda hv: hv["spark-worker"]["spark_rails"][1].update(interface="enp1s0f1np1"), "two rails"),
    (lambda hv: hv["spark-worker"].update(spark_mtu=1500), "spark_mtu differs"),
    (lambda hv: hv["spark-worker"].pop("spark_mgmt_address"), "missing spark_mgmt_address"),
    (lambda hv: hv.pop("spark-worker"), "at least 2"),
])
def test_invalid_inventories_are_refused(mutate, message):
    inv = two_nodes()
    mutate(inv["_meta"]["hostvars"])
    with pytest.raises(lab.LabError, match=message):
        lab.plan_topology(lab.nodes_from_inventory(inv))


def test_recipe_tag_changes_with_recipe(tmp_path):
    (tmp_path / "packages.txt").write_text("systemd\n")
    (tmp_path / "build.sh").write_text("#!/bin/sh\n")
    t1 = lab.recipe_tag(tmp_path)
    assert len(t1) == 12 and t1 == lab.recipe_tag(tmp_path)
    (tmp_path / "build.sh").chmod(0o755)
    t2 = lab.recipe_tag(tmp_path)
    (tmp_path / "overlay").mkdir()
    (tmp_path / "overlay" / "x.conf").write_text("a")
    t3 = lab.recipe_tag(tmp_path)
    (tmp_path / "packages.txt").write_text("systemd\njq\n")
    t4 = lab.recipe_tag(tmp_path)
    assert len({t1, t2, t3, t4}) == 4


def test_repo_inventory_plans_two_direct_rails():
    """The real inventory/lab, through ansible-inventory, if it is installed."""
    try:
        exe = lab.ansible_inventory_bin()
    except lab.LabError:
        pytest.skip("ansible-inventory not installed")
    nodes = lab.load_inventory(lab.DEFAULT_INVENTORY)
    topo = lab.plan_topology(nodes)
    assert exe and [n.name for n in nodes] == ["spark-head", "spark-worker"]
    assert [n.mgmt_address for n in nodes] == ["198.19.0.10", "198.19.0.11"]
    assert [l.a.ifname for l in topo.links] == ["enp1s0f1np1", "enP2p1s0f1np1"]


def test_flavours_and_their_image_refs(monkeypatch):
    monkeypatch.delenv("SPARK_LAB_FLAVOUR", raising=False)
    assert lab.flavour_from_env() == "networkmanager"
    monkeypatch.setenv("SPARK_LAB_FLAVOUR", "networkd")
    assert lab.flavour_from_env() == "networkd"
    assert lab.flavour_from_env("networkmanager") == "networkmanager"
    with pytest.raises(lab.LabError):
        lab.flavour_from_env("ifupdown")
    assert lab.image_ref("abc", "networkmanager") == "spark-lab-node:abc"
    assert lab.image_ref("abc", "networkd") == "spark-lab-node:abc-networkd"


def test_cable_ends_are_created_in_their_namespace_under_their_final_name():
    nodes = [lab.Node("a", "ca", "198.19.0.10", ("enp1s0f1np1",)),
             lab.Node("b", "cb", "198.19.0.11", ("enp1s0f1np1",))]
    (link,) = lab.plan_topology(nodes).links
    pids = {"ca": 11, "cb": 22}
    assert lab.end_spec(link.a, pids) == ["enp1s0f1np1", "netns", "11"]
    assert lab.end_spec(link.b, pids) == ["enp1s0f1np1", "netns", "22"]


# ---------------------------------------------------------------- four ports per node

def test_every_node_carries_the_four_spark_ports():
    topo = lab.plan_topology(lab.nodes_from_inventory(two_nodes()))
    for container in ("spark-head", "spark-worker"):
        cabled = [l.a.ifname for l in topo.links if l.a.container == container]
        cabled += [l.b.ifname for l in topo.links if l.b.container == container]
        loose = [l.end.ifname for l in topo.loose if l.end.container == container]
        assert sorted(cabled) == sorted(RAILS)
        assert sorted(loose) == sorted(["enp1s0f0np0", "enP2p1s0f0np0"])
        assert sorted(cabled + loose) == sorted(lab.SPARK_PORTS)


def test_other_port_names():
    assert lab.other_port("enp1s0f1np1") == "enp1s0f0np0"
    assert lab.other_port("enP2p1s0f0np0") == "enP2p1s0f1np1"
    for bad in ("eth1", "enp1s0f1np0", "wlP9s9"):
        with pytest.raises(lab.LabError, match="not a ConnectX-7 port name"):
            lab.other_port(bad)


def test_moved_cable_uses_the_other_port_of_that_node_only():
    nodes = lab.nodes_from_inventory(two_nodes())
    straight = lab.plan_topology(nodes)
    moved = lab.plan_topology(nodes, moved=["spark-worker"])
    assert [(l.a.ifname, l.b.ifname) for l in moved.links] == [
        ("enp1s0f1np1", "enp1s0f0np0"), ("enP2p1s0f1np1", "enP2p1s0f0np0")]
    loose = sorted(l.end.ifname for l in moved.loose if l.end.container == "spark-worker")
    assert loose == ["enP2p1s0f1np1", "enp1s0f1np1"]
    # the cable's alias names its ends, so replug sees that it moved
    assert [l.alias for l in moved.links] != [l.alias for l in straight.links]
    assert "spark-worker:enp1s0f0np0" in moved.links[0].alias
    # names stay unique and short
    names = [e.tmpname for e in all_ends(moved)] + [x for l in moved.loose for x in (l.end.tmpname, l.peer)]
    assert len(set(names)) == len(names) and all(lab.VETH_RE.match(n) for n in names)


def test_moving_an_unknown_node_is_refused():
    with pytest.raises(lab.LabError, match="unknown node"):
        lab.plan_topology(lab.nodes_from_inventory(two_nodes()), moved=["nope"])


def test_switched_lab_has_loose_ports_too():
    topo = lab.plan_topology(lab.nodes_from_inventory(three_nodes()))
    w2 = sorted(l.end.ifname for l in topo.loose if l.end.container == "lab-w2")
    assert w2 == sorted(lab.SPARK_PORTS)  # its rails are eth1/eth2: all four Spark ports uncabled
    h = sorted(l.end.ifname for l in topo.loose if l.end.container == "lab-h")
    assert h == ["enP2p1s0f0np0", "enp1s0f0np0"]


def triangle() -> dict:
    """inventory/lab-triangle's shape: NVIDIA's cabling, one subnet per link and twin."""
    p0, p1 = ["enp1s0f0np0", "enP2p1s0f0np0"], ["enp1s0f1np1", "enP2p1s0f1np1"]

    def node(ip, rails):
        return {"spark_mgmt_address": ip, "spark_mtu": 9000, "spark_topology": "triangle",
                "spark_rails": [{"interface": i, "address": a} for i, a in rails]}

    last = {"h": 10, "w1": 11, "w2": 12}
    sub = {("h", "w1"): (100, 101), ("h", "w2"): (102, 103), ("w1", "w2"): (104, 105)}

    def rails(me, first, ports_first, second, ports_second):
        out = []
        for peer, ports in ((first, ports_first), (second, ports_second)):
            nets = sub[tuple(sorted((me, peer), key=["h", "w1", "w2"].index))]
            out += [(ports[t], f"198.18.{nets[t]}.{last[me]}/24") for t in range(2)]
        return out

    return inventory({"h": node("198.19.0.10", rails("h", "w1", p0, "w2", p1))},
                     {"w1": node("198.19.0.11", rails("w1", "h", p1, "w2", p0)),
                      "w2": node("198.19.0.12", rails("w2", "h", p0, "w1", p1))})


def test_a_triangle_cables_every_pair_directly_one_veth_per_link_and_twin():
    topo = lab.plan_topology(lab.nodes_from_inventory(triangle()))
    assert not topo.switched and topo.loose == ()       # all four ports of every node cabled
    pairs = {((l.a.container, l.a.ifname), (l.b.container, l.b.ifname)) for l in topo.links}
    assert pairs == {
        (("h", "enp1s0f0np0"), ("w1", "enp1s0f1np1")), (("h", "enP2p1s0f0np0"), ("w1", "enP2p1s0f1np1")),
        (("h", "enp1s0f1np1"), ("w2", "enp1s0f0np0")), (("h", "enP2p1s0f1np1"), ("w2", "enP2p1s0f0np0")),
        (("w1", "enp1s0f0np0"), ("w2", "enp1s0f1np1")), (("w1", "enP2p1s0f0np0"), ("w2", "enP2p1s0f1np1")),
    }
    names = [e.tmpname for e in all_ends(topo)]
    assert len(set(names)) == len(names) == 12


def test_the_repository_lab_triangle_inventory_plans_six_cables():
    import yaml

    hosts = yaml.safe_load((Path(__file__).resolve().parents[2] / "inventory" / "lab-triangle" / "hosts.yml").read_text())
    group = hosts["spark"]
    hostvars = {}
    for child in ("spark_head", "spark_workers"):
        for name, hv in group["children"][child]["hosts"].items():
            hostvars[name] = dict(hv, **group["vars"])
    inv = inventory({h: hostvars[h] for h in group["children"]["spark_head"]["hosts"]},
                    {h: hostvars[h] for h in group["children"]["spark_workers"]["hosts"]})
    topo = lab.plan_topology(lab.nodes_from_inventory(inv))
    assert len(topo.links) == 6 and not topo.switched


@pytest.mark.parametrize("change, word", [
    (lambda inv: inv["_meta"]["hostvars"]["w2"]["spark_rails"][3].update(address="198.18.106.12/24"),
     "subnet 198.18.105.0/24 has w1 rail 3; expected one rail on each of two nodes"),
    (lambda inv: inv["_meta"]["hostvars"]["w2"].update(spark_topology="switch"), "the same on every node"),
])
def test_a_broken_triangle_is_refused_by_the_lab(change, word):
    inv = triangle()
    change(inv)
    with pytest.raises(lab.LabError, match=word.replace(".", r"\.")):
        lab.plan_topology(lab.nodes_from_inventory(inv))


def test_a_triangle_of_four_is_refused_by_the_lab():
    inv = triangle()
    inv["_meta"]["hostvars"]["w3"] = dict(inv["_meta"]["hostvars"]["w2"], spark_mgmt_address="198.19.0.13")
    inv["spark_workers"]["hosts"].append("w3")
    with pytest.raises(lab.LabError, match="a triangle has three nodes, found 4"):
        lab.nodes_from_inventory(inv)
