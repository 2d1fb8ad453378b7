"""The triangle (spark_topology): the inventory's rules, each node's links, paths and
host routes, the probes, the cabling check and discovery's proposal, on four-netdev
Spark trees cabled as NVIDIA's connect-three-sparks documents; and the switch, which
renders byte for byte as before (fixtures/topology/)."""

import copy
import ipaddress
import json
import pathlib

import jinja2
import pytest
import yaml

from spark_cluster.link import topology as spark_topology
from ansible.module_utils.spark_cluster.runtime.runtime_env import build_env, make_params, params_text, render
from ansible.module_utils.spark_cluster.runtime.inventory import validate as validate_inventory
from ansible.module_utils.spark_cluster.link.pinning import check_pinning
from ansible.module_utils.spark_cluster.link.probeplan import ranges_of, with_ports
from ansible.module_utils.spark_cluster.link.roce import resolve
from fakenetlink import FakeNetlink
from test_discover import P0, P1, Wire, run_discovery, spark_node, straight

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "topology"
TEMPLATE = ROOT / "roles" / "qsfp_link" / "templates" / "40-cx7.yaml.j2"
ORDER = ["spark-1", "spark-2", "spark-3"]


def rails_of(*entries):
    return [{"interface": i, "address": a} for i, a in entries]


# NVIDIA's cabling: spark-1 port 0 - spark-2 port 1, spark-2 port 0 - spark-3 port 1,
# spark-3 port 0 - spark-1 port 1; one subnet per link and twin (discovery's default
# plan: link (1,2) on .100/.101, (1,3) on .102/.103, (2,3) on .104/.105).
TRIANGLE = {
    "spark-1": rails_of((P0[0], "192.168.100.10/24"), (P0[1], "192.168.101.10/24"),
                        (P1[0], "192.168.102.10/24"), (P1[1], "192.168.103.10/24")),
    "spark-2": rails_of((P1[0], "192.168.100.11/24"), (P1[1], "192.168.101.11/24"),
                        (P0[0], "192.168.104.11/24"), (P0[1], "192.168.105.11/24")),
    "spark-3": rails_of((P0[0], "192.168.102.12/24"), (P0[1], "192.168.103.12/24"),
                        (P1[0], "192.168.104.12/24"), (P1[1], "192.168.105.12/24")),
}


def nodes_of(rails, topology="triangle"):
    return {h: {"rails": r, "topology": topology} for h, r in rails.items()}


def check(rails, order=ORDER):
    return spark_topology.validate("triangle", order[:1], order[1:], {h: {"rails": rails.get(h)} for h in order})


def messages(problems):
    return " | ".join(p["message"] for p in problems)


# ---------------------------------------------------------------- the inventory's rules

def test_nvidia_triangle_passes_and_a_switch_has_no_triangle_rules():
    assert check(TRIANGLE) == []
    assert spark_topology.validate("switch", ORDER[:1], ORDER[1:], {}) == []
    # the preflight picks the rules from the nodes' spark_topology
    assert validate_inventory(ORDER[:1], ORDER[1:], nodes_of(TRIANGLE)) == []
    as_switch = messages(validate_inventory(ORDER[:1], ORDER[1:], nodes_of(TRIANGLE, "switch")))
    assert "expected all nodes of rail 0 in one subnet" in as_switch


def test_nodes_must_agree_on_the_topology():
    nodes = nodes_of(TRIANGLE)
    nodes["spark-3"]["topology"] = "switch"
    found = messages(validate_inventory(ORDER[:1], ORDER[1:], nodes))
    assert "spark_topology is different per node" in found and "spark-3=switch" in found


def test_unknown_topology_is_refused():
    found = spark_topology.validate("ring", ORDER[:1], ORDER[1:], nodes_of(TRIANGLE))
    assert "expected one of switch, triangle" in messages(found)


def test_a_missing_cable_names_the_link():
    rails = copy.deepcopy(TRIANGLE)
    rails["spark-2"] = rails["spark-2"][:2]     # no rails on link (2,3) at either end
    rails["spark-3"] = rails["spark-3"][:2]
    found = messages(check(rails))
    assert "link spark-2 <-> spark-3 is missing" in found
    assert "spark-1 <-> spark-2" not in found and "spark-1 <-> spark-3" not in found


def test_a_rail_whose_peer_has_no_address_in_its_subnet():
    rails = copy.deepcopy(TRIANGLE)
    rails["spark-3"] = rails["spark-3"][:3]     # spark-3's twin 1 of link (2,3) gone
    found = check(rails)
    assert [p["host"] for p in found] == ["spark-2"]
    assert "spark_rails[3].address is 192.168.105.11/24 on enP2p1s0f0np0: no other node" in messages(found)


def test_two_cables_between_one_pair_name_the_link_and_what_is_missing():
    rails = copy.deepcopy(TRIANGLE)
    # spark-1 and spark-2 joined on both ports: four shared subnets, spark-3 alone
    rails["spark-1"][2:] = rails_of((P1[0], "192.168.106.10/24"), (P1[1], "192.168.107.10/24"))
    rails["spark-2"][2:] = rails_of((P0[0], "192.168.106.11/24"), (P0[1], "192.168.107.11/24"))
    rails["spark-3"] = rails_of((P0[0], "192.168.108.12/24"))
    found = messages(check(rails))
    assert "link spark-1 <-> spark-2 is 4 shared subnets" in found and "more than one cable" in found
    assert "link spark-1 <-> spark-3 is missing" in found and "link spark-2 <-> spark-3 is missing" in found


@pytest.mark.parametrize("count, words", [
    (4, ["triangle with 4 node(s)", "Four or more Sparks need a switch"]),
    (5, ["triangle with 5 node(s)", "spark_topology: switch"]),
    (2, ["triangle with 2 node(s)", "Two nodes take one cable"]),
])
def test_anything_but_three_nodes_is_refused_with_what_works(count, words):
    order = [f"n{i}" for i in range(count)]
    found = messages(spark_topology.validate("triangle", order[:1], order[1:], {}))
    for word in words:
        assert word in found


def test_every_problem_at_once():
    rails = copy.deepcopy(TRIANGLE)
    rails["spark-1"][1]["address"] = "192.168.100.20/24"        # two rails of spark-1 in .100
    rails["spark-3"][3]["address"] = "192.168.105.12/25"         # another prefix length
    rails["spark-2"][0]["address"] = "192.168.102.11/24"         # .102 on three nodes
    found = messages(check(rails))
    assert "both in 192.168.100.0/24" in found
    assert "prefix lengths differ" in found
    assert "subnet 192.168.102.0/24 is shared by spark-1, spark-2, spark-3" in found
    assert "overlapping" in found                                # /25 inside the /24 of spark-2


# ---------------------------------------------------------------- links, paths, routes

def test_links_in_rank_order_with_twins_paired_by_subnet():
    found = spark_topology.links(ORDER, TRIANGLE)
    assert [(link["a"], link["b"]) for link in found] == [("spark-1", "spark-2"), ("spark-1", "spark-3"),
                                                          ("spark-2", "spark-3")]
    assert [t["subnet"] for t in found[2]["twins"]] == ["192.168.104.0/24", "192.168.105.0/24"]
    assert found[2]["twins"][1]["a"] == {"rail": 3, "interface": P0[1], "address": "192.168.105.11"}
    assert found[2]["twins"][1]["b"] == {"rail": 3, "interface": P1[1], "address": "192.168.105.12"}


def test_the_head_reaches_everyone_on_link_and_the_workers_by_host_routes():
    head = spark_topology.node_facts(ORDER, TRIANGLE, "spark-1")
    assert head["routes"] == {}
    assert head["peer_paths"] == [
        {"host": "spark-2", "address": "192.168.100.11", "interface": P0[0], "via": None},
        {"host": "spark-3", "address": "192.168.102.12", "interface": P1[0], "via": None},
    ]
    assert head["rail_peers"] == [["192.168.100.11"], ["192.168.101.11"], ["192.168.102.12"], ["192.168.103.12"]]
    w1 = spark_topology.node_facts(ORDER, TRIANGLE, "spark-2")
    assert w1["routes"] == {P0[0]: [{"to": "192.168.102.12/32", "via": "192.168.104.12"}]}
    w2 = spark_topology.node_facts(ORDER, TRIANGLE, "spark-3")
    assert w2["routes"] == {P0[0]: [{"to": "192.168.100.10/32", "via": "192.168.102.10"}],
                            P1[0]: [{"to": "192.168.100.11/32", "via": "192.168.104.11"}]}
    assert w2["peers"] == ["192.168.100.10", "192.168.100.11"] and w2["prefix_len"] == 24
    assert [(p["rail"], p["host"], p["peer"]) for p in w2["pings"]] == [
        (0, "spark-1", "192.168.102.10"), (1, "spark-1", "192.168.103.10"),
        (2, "spark-2", "192.168.104.11"), (3, "spark-2", "192.168.105.11")]


def _egress(rails, routes, node, dst):
    """A small model of each node's routing table: the connected /24s of its rails,
    its host routes, and a default route over the Wi-Fi. -> (interface, next hop)."""
    ip = ipaddress.IPv4Address(dst)
    for route in routes[node]:
        if ip == ipaddress.IPv4Network(route["to"]).network_address:
            return route["interface"], route["via"]
    for rail in rails[node]:
        if ip in ipaddress.IPv4Interface(rail["address"]).network:
            return rail["interface"], dst
    return "wlP9s9", "192.168.64.1"


def test_every_primary_is_reached_in_one_hop_both_ways_never_by_the_default_route():
    """From every node to every other node's primary (and back, to the source address
    the kernel picks): out a rail, to a next hop that is the destination node itself."""
    facts = {h: spark_topology.node_facts(ORDER, TRIANGLE, h) for h in ORDER}
    routes = {h: [dict(r, interface=i) for i, rs in facts[h]["routes"].items() for r in rs] for h in ORDER}
    owner = {r["address"].split("/")[0]: h for h, rs in TRIANGLE.items() for r in rs}
    primary = {h: TRIANGLE[h][0]["address"].split("/")[0] for h in ORDER}
    for src in ORDER:
        for dst in ORDER:
            if src == dst:
                continue
            interface, hop = _egress(TRIANGLE, routes, src, primary[dst])
            assert interface != "wlP9s9" and owner[hop] == dst, (src, dst, interface, hop)
            source = next(r["address"].split("/")[0] for r in TRIANGLE[src] if r["interface"] == interface)
            back, hop_back = _egress(TRIANGLE, routes, dst, source)
            assert back != "wlP9s9" and owner[hop_back] == src, (dst, src, back, hop_back)
            # and from the peer's primary back to ours (a reply of a bound socket)
            back, hop_back = _egress(TRIANGLE, routes, dst, primary[src])
            assert back != "wlP9s9" and owner[hop_back] == src


def test_probe_directions_per_link_and_twin_with_ports():
    layout = with_ports(spark_topology.probe_directions(ORDER, TRIANGLE), 5201, 8, 18515)
    assert len(layout) == 12
    first, last = layout[0], layout[-1]
    assert (first["src"], first["dst"], first["src_address"], first["dst_address"]) == (
        "spark-1", "spark-2", "192.168.100.10", "192.168.100.11")
    assert (last["link"], last["twin"], last["src"], last["src_rail"], last["dst_rail"]) == (
        "spark-2 <-> spark-3", 1, "spark-3", 3, 3)
    for entry in layout:
        net = ipaddress.IPv4Network(entry["subnet"])
        assert ipaddress.IPv4Address(entry["src_address"]) in net and ipaddress.IPv4Address(entry["dst_address"]) in net
    assert [e["index"] for e in layout] == list(range(12))
    assert ranges_of(layout, 8) == {"directions": 12, "iperf3": "5201-5320", "ib_write_bw": "18515-18526"}


# ---------------------------------------------------------------- the render

def _netplan(rails, routes, renderer="networkd"):
    env = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True)
    return env.from_string(TEMPLATE.read_text()).render(
        ansible_managed="Ansible managed", inventory_hostname="spark-1", qsfp_link_rails=rails,
        __qsfp_link_renderer_in_use=renderer, qsfp_link_mtu=9000, qsfp_link_nm_autoconnect_priority=100,
        qsfp_link_routes=routes)


SWITCH_RAILS = rails_of(("enp1s0f1np1", "192.168.100.10/24"), ("enP2p1s0f1np1", "192.168.101.10/24"))
SWITCH_NODE = {"rank": 0, "nnodes": 2, "role": "head", "interface": "enp1s0f1np1", "address": "192.168.100.10",
               "master_addr": "192.168.100.10", "master_port": 25000, "settings": {"NCCL_NVLS_ENABLE": "0"}}
SWITCH_GID = {"nccl_env": {"NCCL_IB_HCA": "rocep1s0f1,roceP2p1s0f1", "NCCL_IB_GID_INDEX": "3"}}


@pytest.mark.parametrize("renderer", ["NetworkManager", "networkd"])
def test_a_switch_netplan_file_is_byte_identical_to_before(renderer):
    assert _netplan(SWITCH_RAILS, {}, renderer) == (FIXTURES / f"switch-40-cx7-{renderer}.golden").read_text()


def test_a_switch_env_file_and_its_inputs_are_byte_identical_to_before():
    params = make_params("/etc/spark-cluster/runtime.env", SWITCH_NODE, SWITCH_RAILS, peers=["192.168.100.11"],
                         params_path="/etc/spark-cluster/runtime-env.json", mtu=9000)
    assert params_text(params) == (FIXTURES / "switch-runtime-env.json").read_text()
    assert render(build_env(SWITCH_NODE, SWITCH_GID), params) == (FIXTURES / "switch-runtime.env").read_text()
    assert render(build_env(SWITCH_NODE, SWITCH_GID, {"name": "switch"}), params) == (
        FIXTURES / "switch-runtime.env").read_text()


def test_a_triangle_netplan_file_has_four_netdevs_and_only_host_routes_over_the_links():
    facts = spark_topology.node_facts(ORDER, TRIANGLE, "spark-3")
    text = _netplan(TRIANGLE["spark-3"], facts["routes"])
    assert "host routes to the other nodes'" in text
    ethernets = yaml.safe_load(text)["network"]["ethernets"]
    assert sorted(ethernets) == sorted(P0 + P1)
    assert {e["mtu"] for e in ethernets.values()} == {9000}
    assert all(e["dhcp4"] is False and e["link-local"] == [] for e in ethernets.values())
    assert ethernets[P0[0]]["routes"] == [{"to": "192.168.100.10/32", "via": "192.168.102.10"}]
    assert ethernets[P1[0]]["routes"] == [{"to": "192.168.100.11/32", "via": "192.168.104.11"}]
    assert "routes" not in ethernets[P0[1]] and "routes" not in ethernets[P1[1]]
    for name, entry in ethernets.items():
        net = ipaddress.IPv4Interface(entry["addresses"][0]).network
        for route in entry.get("routes", []):
            assert ipaddress.IPv4Network(route["to"]).prefixlen == 32          # never a default route
            assert ipaddress.IPv4Address(route["via"]) in net                   # the peer on this cable


def test_a_triangle_env_pins_sockets_to_rail_0_and_names_every_cabled_twin(spark_sysfs):
    rails = TRIANGLE["spark-2"]
    sysfs = spark_sysfs(cabled_ports=(0, 1), addresses={r["interface"]: r["address"] for r in rails})
    gid = resolve(str(sysfs.root), {r["interface"]: r["address"].split("/")[0] for r in rails})
    facts = spark_topology.node_facts(ORDER, TRIANGLE, "spark-2")
    node = {"rank": 1, "nnodes": 3, "role": "worker", "interface": P1[0], "address": "192.168.100.11",
            "master_addr": "192.168.100.10", "master_port": 25000, "settings": {}}
    topology = {"name": "triangle", "prefix_len": facts["prefix_len"], "peer_paths": facts["peer_paths"]}
    env = build_env(node, gid, topology)
    assert sorted(env["NCCL_IB_HCA"].split(",")) == sorted(["rocep1s0f0", "rocep1s0f1", "roceP2p1s0f0",
                                                            "roceP2p1s0f1"])
    assert env["GLOO_SOCKET_IFNAME"] == P1[0] and env["NCCL_SOCKET_IFNAME"] == f"={P1[0]}"
    assert env["VLLM_HOST_IP"] == "192.168.100.11" and env["MASTER_ADDR"] == "192.168.100.10"
    keys = list(env)
    assert keys.index("NCCL_IB_SUBNET_AWARE_ROUTING") > keys.index("NCCL_IB_HCA")
    assert keys.index("NCCL_NET_PLUGIN") < keys.index("MASTER_ADDR")
    assert (env["NCCL_IB_SUBNET_AWARE_ROUTING"], env["NCCL_IB_SUBNET_PREFIX_LEN"], env["NCCL_IB_MERGE_NICS"]) == (
        "1", "24", "0")
    params = make_params("/x/runtime.env", node, rails, peers=facts["peers"], topology=topology)
    saved = json.loads(params_text(params))
    assert saved["topology"]["peer_paths"][1] == {"host": "spark-3", "address": "192.168.102.12",
                                                   "interface": P0[0], "via": "192.168.104.12"}
    with pytest.raises(ValueError, match="NCCL_IB_MERGE_NICS would override a pinned key"):
        build_env(dict(node, settings={"NCCL_IB_MERGE_NICS": "1"}), gid, topology)
    with pytest.raises(ValueError, match="prefix_len"):
        build_env(node, gid, {"name": "triangle", "prefix_len": 40})


def _triangle_net(spark_sysfs, host, leak_to=None):
    rails = TRIANGLE[host]
    sysfs = spark_sysfs(cabled_ports=(0, 1), addresses={r["interface"]: r["address"] for r in rails})
    facts = spark_topology.node_facts(ORDER, TRIANGLE, host)
    routes = [{"dst": r["to"], "dev": i, "gateway": r["via"]} for i, rs in facts["routes"].items() for r in rs
              if r["to"].split("/")[0] != leak_to]
    return FakeNetlink.from_sparkfs(sysfs, extra_routes=routes), facts


def test_pinning_follows_each_peer_over_its_own_link(spark_sysfs):
    net, facts = _triangle_net(spark_sysfs, "spark-3")
    env = {"VLLM_HOST_IP": "192.168.102.12", "GLOO_SOCKET_IFNAME": P0[0], "NCCL_SOCKET_IFNAME": f"={P0[0]}",
           "TP_SOCKET_IFNAME": P0[0], "MN_IF_NAME": P0[0], "OMPI_MCA_btl_tcp_if_include": P0[0],
           "UCX_NET_DEVICES": P0[0]}
    result = check_pinning(P0[0], "192.168.102.12", facts["peers"], env, net, peer_paths=facts["peer_paths"])
    assert result["ok"], result["problems"]
    assert [r["dev"] for r in result["routes"]] == [P0[0], P1[0]]
    # the same node without the old one-interface rule would refuse spark-2's path
    old = check_pinning(P0[0], "192.168.102.12", facts["peers"], env, net)
    assert not old["ok"]


def test_pinning_refuses_a_peer_left_to_the_default_route(spark_sysfs):
    net, facts = _triangle_net(spark_sysfs, "spark-3", leak_to="192.168.100.11")
    env = {"VLLM_HOST_IP": "192.168.102.12", "GLOO_SOCKET_IFNAME": P0[0], "NCCL_SOCKET_IFNAME": f"={P0[0]}",
           "TP_SOCKET_IFNAME": P0[0], "MN_IF_NAME": P0[0], "OMPI_MCA_btl_tcp_if_include": P0[0],
           "UCX_NET_DEVICES": P0[0]}
    result = check_pinning(P0[0], "192.168.102.12", facts["peers"], env, net, peer_paths=facts["peer_paths"])
    assert [p["check"] for p in result["problems"]] == ["route"]
    message = result["problems"][0]["message"]
    assert "spark-2 192.168.100.11 leaves through wlP9s9 via 192.168.64.1" in message
    assert f"not {P1[0]} via 192.168.104.11" in message


# ---------------------------------------------------------------- discovery and cabling

def nvidia_wire(names=ORDER):
    one, two, three = names
    return Wire(*straight(one, two, P0, P1), *straight(two, three, P0, P1), *straight(three, one, P0, P1))


def discover(tmp_path, wire, names=ORDER, **args):
    nodes = {n: spark_node(tmp_path, n, cabled_ports=(0, 1)) for n in names}
    args.setdefault("triangle_subnets", list(spark_topology.DEFAULT_SUBNETS))
    return run_discovery(tmp_path, wire, nodes, **args)


def test_discovery_proposes_nvidias_triangle_and_the_cabling_check_agrees(tmp_path):
    observations, result = discover(tmp_path, nvidia_wire())
    assert result["problems"] == [] and result["topology"] == "triangle"
    assert result["rails"] == TRIANGLE
    assert check(result["rails"]) == []
    assert spark_topology.check_cabling(ORDER, result["rails"], observations) == []


def test_discovery_names_a_missing_cable_and_proposes_nothing(tmp_path):
    one, two, three = ORDER
    wire = Wire(*straight(one, two, P0, P1), *straight(three, one, P0, P1))
    _, result = discover(tmp_path, wire)
    assert result["rails"] == {}
    assert "link spark-2 <-> spark-3: no cable" in messages(result["problems"])


def test_discovery_names_two_cables_between_one_pair(tmp_path):
    one, two, _ = ORDER
    wire = Wire(*straight(one, two, P0, P1), *straight(one, two, P1, P0))
    _, result = discover(tmp_path, wire)
    found = messages(result["problems"])
    assert result["rails"] == {}
    assert "link spark-1 <-> spark-2: two cables" in found
    assert "link spark-1 <-> spark-3: no cable" in found and "link spark-2 <-> spark-3: no cable" in found


def test_discovery_refuses_four_nodes_in_a_ring_and_says_what_works(tmp_path):
    names = ["n1", "n2", "n3", "n4"]
    wire = Wire(*straight("n1", "n2", P0, P1), *straight("n2", "n3", P0, P1), *straight("n3", "n4", P0, P1),
                *straight("n4", "n1", P0, P1))
    _, result = discover(tmp_path, wire, names)
    found = messages(result["problems"])
    assert result["rails"] == {} and "direct cables between 4 nodes (a ring)" in found
    assert "need a switch" in found


def test_the_cabling_check_refuses_an_inventory_the_wire_does_not_match(tmp_path):
    one, two, three = ORDER
    # the cables of spark-1 swapped: its port 0 now goes to spark-3, port 1 to spark-2
    wire = Wire(*straight(one, two, P1, P1), *straight(two, three, P0, P1), *straight(three, one, P0, P0))
    observations, _ = discover(tmp_path, wire)
    found = spark_topology.check_cabling(ORDER, TRIANGLE, observations)
    text = messages(found)
    assert f"spark-1: spark_rails[0].interface is {P0[0]} reaches spark-3; expected spark-2" in text
    assert f"spark-1: spark_rails[2].interface is {P1[0]} reaches spark-2; expected spark-3" in text
    assert {p["host"] for p in found} >= {"spark-1", "spark-2", "spark-3"}


def test_the_cabling_check_finds_twins_paired_the_other_way_and_a_second_cable(tmp_path):
    observations, _ = discover(tmp_path, nvidia_wire())
    swapped = copy.deepcopy(TRIANGLE)
    first, second = swapped["spark-2"][0]["interface"], swapped["spark-2"][1]["interface"]
    swapped["spark-2"][0]["interface"], swapped["spark-2"][1]["interface"] = second, first
    text = messages(spark_topology.check_cabling(ORDER, swapped, observations))
    assert "paired the other way round" in text
    # a second cable between spark-1 and spark-2 on ports the inventory does not use
    one, two, three = ORDER
    wire = Wire(*straight(one, two, P0, P1), *straight(three, one, P0, P1), *straight(two, three, P0, P0))
    observations, _ = discover(tmp_path, wire)
    partial = {h: [r for r in TRIANGLE[h] if not r["address"].startswith(("192.168.104", "192.168.105"))]
               for h in ORDER}
    text = messages(spark_topology.check_cabling(ORDER, partial, observations))
    assert "(not in spark_rails) also reaches spark-3" in text and "link spark-2 <-> spark-3" in text


def test_the_triangle_drawn_for_the_reports():
    text = spark_topology.draw(ORDER, {("spark-1", "spark-2"): "A", ("spark-3", "spark-1"): "B",
                                       ("spark-2", "spark-3"): "C"})
    lines = text.splitlines()
    assert lines[0].strip() == "spark-1"
    assert "A" in lines[2] and "B" in lines[2] and lines[2].index("A") < lines[2].index("B")
    assert lines[4].startswith("spark-2 ") and lines[4].endswith(" spark-3") and lines[5].strip() == "C"


def _write_input(tmp_path):
    src = tmp_path / "inventory" / "mgmt"
    src.mkdir(parents=True, exist_ok=True)
    hosts = {"spark": {"children": {"spark_head": {"hosts": {"spark-1": {"ansible_host": "192.0.2.21"}}},
                                    "spark_workers": {"hosts": {"spark-2": {"ansible_host": "192.0.2.22"},
                                                                "spark-3": {"ansible_host": "192.0.2.23"}}}}}}
    (src / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return src


def _module_args(tmp_path, obs):
    return {"observations": obs, "heads": ORDER[:1], "workers": ORDER[1:], "source": str(_write_input(tmp_path)),
            "output_dir": str(tmp_path / "inventory" / "out"), "name": "out", "report_dir": str(tmp_path / "reports"),
            "mgmt": {"spark-1": "192.0.2.21", "spark-2": "192.0.2.22", "spark-3": "192.0.2.23"}}


def test_discover_inventory_writes_a_triangle_that_passes_preflight(tmp_path, capsys):
    import discover_inventory
    from test_discover import run_module

    observations, _ = discover(tmp_path, nvidia_wire())
    rc, out = run_module(discover_inventory, _module_args(tmp_path, observations), capsys)
    assert rc == 0, out
    written = yaml.safe_load((tmp_path / "inventory" / "out" / "hosts.yml").read_text())
    assert written["spark"]["vars"] == {"spark_topology": "triangle"}
    workers = written["spark"]["children"]["spark_workers"]["hosts"]
    assert workers["spark-3"]["spark_rails"] == TRIANGLE["spark-3"]
    rails = {h: out["rails"][h] for h in ORDER}
    assert validate_inventory(ORDER[:1], ORDER[1:], nodes_of(rails)) == []
    summary = (tmp_path / "inventory" / "out" / "discovery.md").read_text()
    assert "Topology: **triangle**" in summary and "192.168.104.0/24, 192.168.105.0/24" in summary


def test_discover_inventory_refuses_a_broken_triangle_and_writes_nothing(tmp_path, capsys):
    import discover_inventory
    from test_discover import run_module

    one, two, three = ORDER
    observations, _ = discover(tmp_path, Wire(*straight(one, two, P0, P1), *straight(three, one, P0, P1)))
    rc, out = run_module(discover_inventory, _module_args(tmp_path, observations), capsys)
    assert rc == 1 and "link spark-2 <-> spark-3: no cable" in out["msg"]
    assert not (tmp_path / "inventory" / "out").exists()


# ---------------------------------------------------------------- module, pre-start, filter

W2_NODE = {"rank": 2, "nnodes": 3, "role": "worker", "interface": P0[0], "address": "192.168.102.12",
           "master_addr": "192.168.100.10", "master_port": 25000, "settings": {}}


def _w2(tmp_path, spark_sysfs):
    rails = TRIANGLE["spark-3"]
    sysfs = spark_sysfs(cabled_ports=(0, 1), addresses={r["interface"]: r["address"] for r in rails})
    facts = spark_topology.node_facts(ORDER, TRIANGLE, "spark-3")
    topology = {"name": "triangle", "prefix_len": facts["prefix_len"], "peer_paths": facts["peer_paths"]}
    return rails, sysfs, facts, topology


def test_the_module_renders_a_triangle_and_the_pre_start_check_agrees(tmp_path, spark_sysfs, capsys):
    import io

    import spark_runtime_env
    from spark_cluster.runtime import prestart as spark_prestart
    from test_discover import run_module

    rails, sysfs, facts, topology = _w2(tmp_path, spark_sysfs)
    args = {"path": str(tmp_path / "runtime.env"), "params_path": str(tmp_path / "runtime-env.json"),
            "node": W2_NODE, "rails": rails, "peers": facts["peers"], "topology": topology, "mtu": 9000,
            "sysfs_root": str(sysfs.root), "owner": None, "group": None}
    import grp
    import os
    import pwd
    args.update(owner=pwd.getpwuid(os.getuid()).pw_name, group=grp.getgrgid(os.getgid()).gr_name)
    rc, out = run_module(spark_runtime_env, args, capsys)
    assert rc == 0, out
    assert out["env"]["NCCL_IB_SUBNET_AWARE_ROUTING"] == "1"
    saved = json.loads((tmp_path / "runtime-env.json").read_text())
    assert saved["topology"]["name"] == "triangle" and len(saved["topology"]["peer_paths"]) == 2
    before = (tmp_path / "runtime.env").read_text()
    routes = [{"dst": r["to"], "dev": i, "gateway": r["via"]} for i, rs in facts["routes"].items() for r in rs]
    net = FakeNetlink.from_sparkfs(sysfs, extra_routes=routes)
    stdout, stderr = io.StringIO(), io.StringIO()
    code = spark_prestart.main(["--params", str(tmp_path / "runtime-env.json")], net=net, out=stdout, err=stderr)
    assert (code, stderr.getvalue()) == (0, ""), (stdout.getvalue(), stderr.getvalue())
    assert (tmp_path / "runtime.env").read_text() == before          # the same file from the same inputs
    # without the host route to spark-2 the start stops, naming the peer
    net = FakeNetlink.from_sparkfs(sysfs, extra_routes=routes[:1])
    stderr = io.StringIO()
    assert spark_prestart.main(["--params", str(tmp_path / "runtime-env.json")], net=net, out=io.StringIO(),
                               err=stderr) == 1
    assert "route to peer spark-2 192.168.100.11 leaves through wlP9s9" in stderr.getvalue()


def _filters():
    import importlib.util

    path = ROOT / "roles" / "spark_common" / "filter_plugins" / "spark_topology.py"
    spec = importlib.util.spec_from_file_location("spark_topology_filters", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()


def test_spark_commons_filters_give_each_node_its_view_and_refuse_a_broken_triangle():
    from ansible.errors import AnsibleFilterError

    filters = _filters()
    facts = filters["spark_triangle"](ORDER, TRIANGLE, "spark-2")
    assert facts == spark_topology.node_facts(ORDER, TRIANGLE, "spark-2")
    layout = filters["spark_triangle_probe_layout"](ORDER, TRIANGLE, 5201, 8, 18515)
    assert len(layout) == 12 and layout[3]["tcp_port"] == 5201 + 3 * 10
    assert filters["spark_triangle_probe_ranges"](ORDER, TRIANGLE, 5201, 8, 18515)["directions"] == 12
    broken = copy.deepcopy(TRIANGLE)
    broken["spark-3"] = broken["spark-3"][:2]
    with pytest.raises(AnsibleFilterError, match="spark-2 <-> spark-3"):
        filters["spark_triangle"](ORDER, broken, "spark-1")
    assert "spark-1" in filters["spark_triangle_drawing"](ORDER, {"spark-1|spark-2": "x"})


def test_the_preflight_filter_gives_each_node_its_own_cabling_lines(tmp_path):
    one, two, three = ORDER
    wire = Wire(*straight(one, two, P1, P1), *straight(two, three, P0, P1), *straight(three, one, P0, P0))
    observations, _ = discover(tmp_path, wire)
    cabling = _filters()["spark_triangle_cabling"]
    lines = {h: cabling(ORDER, TRIANGLE, observations, h) for h in ORDER}
    assert lines["spark-1"] and all(line.startswith("spark-1: ") for line in lines["spark-1"])
    assert all(line.startswith("spark-3: ") for line in lines["spark-3"])
    observations, _ = discover(tmp_path, nvidia_wire())
    assert all(cabling(ORDER, TRIANGLE, observations, h) == [] for h in ORDER)
    # a port that is down is named as such: its cable cannot be checked
    down = copy.deepcopy(observations)
    entry = next(e for e in down["spark-2"]["netdevs"] if e["name"] == P0[0])
    entry.update(carrier=None, admin_up=False, heard=[])
    text = " | ".join(cabling(ORDER, TRIANGLE, down, "spark-2"))
    assert f"{P0[0]} is administratively down" in text and f"ip link set {P0[0]} up" in text


def test_the_link_report_draws_the_triangle_and_reads_each_end_of_a_link_on_its_own_rail():
    from spark_cluster.reports import link_report as rep
    from test_report import ping

    directions = spark_topology.probe_directions(ORDER, TRIANGLE)
    pairs = [{"id": f"r{d['rail']}:{d['src']}>{d['dst']}", "rail": d["rail"], "src_host": d["src"],
              "dst_host": d["dst"], "src_interface": d["src_interface"], "dst_interface": d["dst_interface"],
              "src_address": d["src_address"], "dst_address": d["dst_address"], "link": d["link"],
              "twin": d["twin"], "src_rail": d["src_rail"], "dst_rail": d["dst_rail"]} for d in directions]
    # each node's rails at a speed of their own: a lookup by the wrong end's rail shows
    links = {h: [{"interface": r["interface"], "speed_mbps": 200000 - 1000 * (k * 4 + i), "mtu": 9000,
                  "rdma_device": None, "cpus": 8} for i, r in enumerate(TRIANGLE[h])]
             for k, h in enumerate(ORDER)}
    probes = {"ping": {p["id"]: ping("ping_ok") for p in pairs}}
    report = rep.build_report(pairs, probes, links)
    assert [r["index"] for r in report["rails"]] == list(range(6))
    second = report["rails"][2]          # link (1,3) twin 0: spark-1 rail 2, spark-3 rail 0
    assert (second["link"], second["twin"]) == ("spark-1 <-> spark-3", 0)
    assert second["line_rate_gbps"] == 192.0     # spark-3's rail 0 (its rail 2 would read 190)
    text = rep.render_markdown(report)
    assert "## Triangle" in text and "## Link spark-2 <-> spark-3, twin 1" in text
    drawing = text.split("## Triangle", 1)[1].split("```")[1]
    assert "spark-1" in drawing and "spark-3" in drawing
