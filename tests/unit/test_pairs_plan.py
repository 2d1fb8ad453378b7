"""The link-validation probe plan (roles/link_validation/templates/pairs.yml.j2) covers
every pair of nodes on every rail, both directions, with port blocks that do not
overlap; the firewall (roles/firewall/vars/main.yml) opens exactly their ranges: both
read spark_probe_directions / spark_probe_ports (roles/spark_common, computed in
module_utils/spark_cluster/link/probeplan.py), rendered here through Ansible itself."""

import json
import os
import pathlib
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def plan(tmp_path, nodes, hosts=None, topology=None):
    hosts = hosts or {f"n{i}": {"spark_rails": [{"interface": "enp1s0f1np1", "address": f"198.18.100.{10 + i}/24"},
                                                {"interface": "enP2p1s0f1np1", "address": f"198.18.101.{10 + i}/24"}]}
                      for i in range(nodes)}
    group_vars = {"ansible_connection": "local"}
    if topology:
        group_vars["spark_topology"] = topology
    rails = max(len(h["spark_rails"]) for h in hosts.values())
    # a triangle's per-node facts (roles/spark_common), as each node set them
    facts = (", 'facts': dict(ansible_play_hosts | zip(ansible_play_hosts"
             " | map('extract', hostvars, 'spark_triangle_facts')))") if topology == "triangle" else ""
    inv = {"spark": {"vars": group_vars, "children": {
        "spark_head": {"hosts": {"n0": hosts["n0"]}},
        "spark_workers": {"hosts": {h: v for h, v in hosts.items() if h != "n0"}}}}}
    (tmp_path / "inv.yml").write_text(yaml.safe_dump(inv))
    defaults = yaml.safe_load((ROOT / "roles/link_validation/defaults/main.yml").read_text())
    fw = yaml.safe_load((ROOT / "roles/firewall/vars/main.yml").read_text())
    play = [{"hosts": "spark", "gather_facts": False, "roles": ["spark_common"], "vars": {
        **{k: defaults[k] for k in ("link_validation_iperf3_processes", "link_validation_rdma")},
        "__firewall_rail_tcp": fw["__firewall_rail_tcp"], "firewall_ray": False, "monitoring_enabled": False},
        "tasks": [
            {"ansible.builtin.set_fact": {"link_validation_link": {"results": [
                {"probe": {"cpus": 4, "rdma_device": None}}] * rails}}},
            {"ansible.builtin.copy": {"dest": str(tmp_path / "plan.json"), "mode": "0644", "content":
             "{{ {'pairs': lookup('ansible.builtin.template', '%s') | from_yaml, 'fw': __firewall_rail_tcp%s}"
             " | to_json }}" % (ROOT / "roles/link_validation/templates/pairs.yml.j2", facts)},
             "run_once": True, "delegate_to": "localhost"}]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    run = subprocess.run([str(pathlib.Path(sys.executable).with_name("ansible-playbook")), "-i",
                          str(tmp_path / "inv.yml"), str(tmp_path / "play.yml"), "-e",
                          f"ansible_python_interpreter={sys.executable}"],
                         capture_output=True, text=True, env=env, check=False)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return json.loads((tmp_path / "plan.json").read_text())


def test_three_nodes_every_pair_every_rail(tmp_path):
    got = plan(tmp_path, 3)
    pairs = got["pairs"]
    assert [p["id"] for p in pairs] == [
        f"r{r}:{s}>{d}" for r in (0, 1) for s, d in
        (("n0", "n1"), ("n1", "n0"), ("n0", "n2"), ("n2", "n0"), ("n1", "n2"), ("n2", "n1"))]
    assert pairs[4]["src_address"] == "198.18.100.11" and pairs[4]["dst_address"] == "198.18.100.12"
    assert pairs[11]["label"] == "rail 1 enP2p1s0f1np1: n2 -> n1"
    # one block of ports per direction, no overlap, the firewall opens exactly their span
    block = 8 + 2
    assert [p["tcp_port"] for p in pairs] == list(range(5201, 5201 + 12 * block, block))
    assert all(p["tcp_parallel_port"] == p["tcp_port"] + 1 for p in pairs)
    assert max(p["tcp_parallel_port"] + p["tcp_processes"] for p in pairs) <= 5201 + 12 * block
    assert sorted(p["rdma_port"] for p in pairs) == list(range(18515, 18515 + 12))
    assert got["fw"]["iperf3"] == ["5201-%d" % (5201 + 12 * block - 1)]
    assert got["fw"]["ib_write_bw"] == ["18515-18526"]
    # the rendezvous port of the default serving profile (current: the recipe's 25000)
    assert got["fw"]["master"] == [25000] and got["fw"]["rsync"] == [873]
    assert all(p["rdma_status"] == "not_measured" for p in pairs)


def test_two_nodes_two_rails(tmp_path):
    got = plan(tmp_path, 2)
    assert [p["id"] for p in got["pairs"]] == ["r0:n0>n1", "r0:n1>n0", "r1:n0>n1", "r1:n1>n0"]
    assert [p["index"] for p in got["pairs"]] == [0, 1, 2, 3]
    assert got["fw"]["iperf3"] == ["5201-5240"] and got["fw"]["ib_write_bw"] == ["18515-18518"]


def test_a_triangle_measures_each_link_and_twin_with_each_ends_rail(tmp_path):
    """spark_topology: triangle through roles/spark_common (filters, facts) and the
    template: one direction per link, twin and way (12), each end on its own rail."""
    p0, p1 = ["enp1s0f0np0", "enP2p1s0f0np0"], ["enp1s0f1np1", "enP2p1s0f1np1"]

    def rails(*entries):
        return {"spark_rails": [{"interface": i, "address": a} for i, a in entries]}

    hosts = {"n0": rails((p0[0], "198.18.100.10/24"), (p0[1], "198.18.101.10/24"),
                         (p1[0], "198.18.102.10/24"), (p1[1], "198.18.103.10/24")),
             "n1": rails((p1[0], "198.18.100.11/24"), (p1[1], "198.18.101.11/24"),
                         (p0[0], "198.18.104.11/24"), (p0[1], "198.18.105.11/24")),
             "n2": rails((p0[0], "198.18.102.12/24"), (p0[1], "198.18.103.12/24"),
                         (p1[0], "198.18.104.12/24"), (p1[1], "198.18.105.12/24"))}
    got = plan(tmp_path, 3, hosts=hosts, topology="triangle")
    pairs = got["pairs"]
    assert len(pairs) == 12 and [p["index"] for p in pairs] == list(range(12))
    n0_n2 = pairs[4]                    # link (n0, n2), twin 0, n0 -> n2
    assert (n0_n2["link"], n0_n2["twin"], n0_n2["src_rail"], n0_n2["dst_rail"]) == ("n0 <-> n2", 0, 2, 0)
    assert (n0_n2["src_interface"], n0_n2["dst_interface"]) == (p1[0], p0[0])
    assert (n0_n2["src_address"], n0_n2["dst_address"]) == ("198.18.102.10", "198.18.102.12")
    assert n0_n2["label"] == "link n0 <-> n2 twin 0 enp1s0f1np1: n0 -> n2"
    assert got["fw"]["iperf3"] == ["5201-%d" % (5201 + 12 * 10 - 1)]
    assert got["facts"]["n0"]["routes"] == {}
    assert got["facts"]["n2"]["routes"] == {p0[0]: [{"to": "198.18.100.10/32", "via": "198.18.102.10"}],
                                            p1[0]: [{"to": "198.18.100.11/32", "via": "198.18.104.11"}]}
    assert got["facts"]["n1"]["rail_peers"] == [["198.18.100.10"], ["198.18.101.10"], ["198.18.104.12"],
                                                ["198.18.105.12"]]
