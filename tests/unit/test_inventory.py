"""Cross-field inventory rules (module_utils/spark_cluster/runtime/inventory.py)."""

import copy

import pytest

from spark_cluster.runtime import inventory as inv


def rails(a, b):
    return [{"interface": "enp1s0f1np1", "address": a}, {"interface": "enP2p1s0f1np1", "address": b}]


GOOD = {
    "spark-1": {"rails": rails("192.168.100.10/24", "192.168.101.10/24"), "mgmt": "10.0.0.21", "mgmt_networks": ["10.0.0.0/24"]},
    "spark-2": {"rails": rails("192.168.100.11/24", "192.168.101.11/24"), "mgmt": "10.0.0.22", "mgmt_networks": ["10.0.0.0/24"]},
}


def run(nodes=None, heads=("spark-1",), workers=("spark-2",), mtu=9000):
    nodes = copy.deepcopy(nodes or GOOD)
    for node in nodes.values():
        node.setdefault("mtu", mtu)
    return inv.validate(list(heads), list(workers), nodes)


def messages(problems):
    return [p["message"] for p in problems]


def test_good_inventory_has_no_problem():
    assert run() == []


def test_three_nodes_are_fine():
    nodes = copy.deepcopy(GOOD)
    nodes["spark-3"] = {"rails": rails("192.168.100.12/24", "192.168.101.12/24"), "mgmt": "10.0.0.23"}
    assert run(nodes, workers=("spark-2", "spark-3")) == []


def test_two_heads_and_no_worker():
    problems = run(heads=("spark-1", "spark-2"), workers=())
    assert "groups.spark_head is 2 host(s) ['spark-1', 'spark-2']; expected exactly one head" in messages(problems)[0]
    assert any("expected at least one worker" in m for m in messages(problems))


def test_duplicate_rail_address_names_both_hosts():
    nodes = copy.deepcopy(GOOD)
    nodes["spark-2"]["rails"][0]["address"] = "192.168.100.10/24"
    (problem,) = run(nodes)
    assert problem["host"] == "spark-2"
    assert problem["variable"] == "spark_rails[0].address"
    assert "spark-1 spark_rails[0] already has it" in problem["message"]


def test_rail_ends_in_different_subnets():
    nodes = copy.deepcopy(GOOD)
    nodes["spark-2"]["rails"][1]["address"] = "192.168.102.11/24"
    (problem,) = run(nodes)
    assert problem["variable"] == "spark_rails[1].address"
    assert "all nodes of rail 1 in one subnet" in problem["message"]


def test_both_rails_in_one_subnet():
    nodes = copy.deepcopy(GOOD)
    nodes["spark-1"]["rails"][1]["address"] = "192.168.100.20/24"
    nodes["spark-2"]["rails"][1]["address"] = "192.168.100.21/24"
    (problem,) = run(nodes)
    assert "each rail on its own subnet" in problem["message"]


@pytest.mark.parametrize(
    "address,expected",
    [
        ("192.168.100.300/24", "an IPv4 address with prefix"),
        ("192.168.100.10", "with its prefix length"),
        ("192.168.100.0/24", "not its network or broadcast address"),
        (None, "an IPv4 address with prefix"),
    ],
)
def test_bad_addresses(address, expected):
    nodes = copy.deepcopy(GOOD)
    nodes["spark-2"]["rails"][0]["address"] = address
    problems = run(nodes)
    assert any(expected in m and m.startswith("spark-2: spark_rails[0].address") for m in messages(problems))


def test_bad_interface_name_and_missing_rails():
    nodes = copy.deepcopy(GOOD)
    nodes["spark-1"]["rails"][0]["interface"] = "a-very-long-interface-name"
    nodes["spark-2"]["rails"] = None
    found = messages(run(nodes))
    assert any(m.startswith("spark-1: spark_rails[0].interface") for m in found)
    assert any(m.startswith("spark-2: spark_rails is None") for m in found)


def test_rail_count_must_match():
    nodes = copy.deepcopy(GOOD)
    nodes["spark-2"]["rails"] = nodes["spark-2"]["rails"][:1]
    assert any("the same number of rails on every node" in m for m in messages(run(nodes)))


def test_rail_overlapping_management_network():
    nodes = copy.deepcopy(GOOD)
    nodes["spark-1"]["mgmt_networks"] = ["192.168.100.0/23"]
    found = messages(run(nodes))
    assert len(found) == 4  # both rails of both nodes sit in 192.168.100.0/23
    assert "overlapping the management network 192.168.100.0/23" in found[0]


def test_duplicate_management_address():
    nodes = copy.deepcopy(GOOD)
    nodes["spark-2"]["mgmt"] = "10.0.0.21"
    (problem,) = run(nodes)
    assert problem["variable"] == "ansible_host"


@pytest.mark.parametrize("mtu", [0, 100, 9217, "nine thousand", True, None])
def test_mtu_out_of_range(mtu):
    problems = run(mtu=mtu)
    assert [p["variable"] for p in problems] == ["spark_mtu", "spark_mtu"]
    assert problems[0]["host"] == "spark-1"


def test_mtu_must_match_on_every_node():
    nodes = copy.deepcopy(GOOD)
    nodes["spark-1"]["mtu"] = 9000
    nodes["spark-2"]["mtu"] = 1500
    (problem,) = run(nodes)
    assert "the same MTU on every node" in problem["message"]


def test_host_checks():
    rails_ = rails("192.168.100.10/24", "192.168.101.10/24")
    ok = inv.check_host("spark-1", rails_, ["lo", "wlP9s9", "enp1s0f1np1", "enP2p1s0f1np1"], "wlP9s9", {})
    assert ok == []
    missing = inv.check_host("spark-1", rails_, ["lo", "wlP9s9", "enp1s0f1np1"], "wlP9s9", {})
    assert "spark_rails[1].interface is 'enP2p1s0f1np1' (not on this host)" in missing[0]["message"]
    mgmt = inv.check_host("spark-1", rails_, ["wlP9s9", "enp1s0f1np1", "enP2p1s0f1np1"], "enp1s0f1np1", {})
    assert "carries the default route" in mgmt[0]["message"]
    taken = inv.check_host("spark-1", rails_, ["wlP9s9", "enp1s0f1np1", "enP2p1s0f1np1"], "wlP9s9", {"wlP9s9": ["192.168.100.10"]})
    assert "192.168.100.10 already on wlP9s9" in taken[0]["message"]
    overlap = inv.check_host("spark-1", rails_, ["wlP9s9", "enp1s0f1np1", "enP2p1s0f1np1"], "wlP9s9", {}, "192.168.101.0/24")
    assert "overlapping the management network 192.168.101.0/24" in overlap[0]["message"]


# ------------------------------------ serving_environment: compose's environment: wins

def test_serving_environment_cannot_repin_gloo_to_the_wifi():
    """Compose's environment: wins over the env file, so GLOO_SOCKET_IFNAME=wlP9s9 there
    would send gloo over the Wi-Fi behind the pre-start check's back."""
    (p,) = inv.check_environment("spark-1", "serving_environment", {"GLOO_SOCKET_IFNAME": "wlP9s9"})
    assert p["variable"] == "serving_environment.GLOO_SOCKET_IFNAME"
    assert "would override a pinned key" in p["message"] and p["message"].startswith("spark-1: ")


def test_serving_environment_refuses_secrets_without_showing_them():
    problems = inv.check_environment("spark-1", "serving_environment",
                                     {"HF_TOKEN": "hf_s3cret", "OPENAI_API_KEY": "sk-s3cret"})
    assert [p["variable"] for p in problems] == ["serving_environment.HF_TOKEN",
                                                 "serving_environment.OPENAI_API_KEY"]
    assert all("looks like a secret" in p["message"] for p in problems)
    assert "s3cret" not in repr(problems)


@pytest.mark.parametrize("key", ["NCCL_IB_GID_INDEX", "NCCL_SOCKET_IFNAME", "VLLM_HOST_IP",
                                 "MASTER_ADDR", "NCCL_IB_HCA"])
def test_serving_environment_refuses_every_pinned_key(key):
    assert len(inv.check_environment("spark-2", "serving_environment", {key: "x"})) == 1


def test_serving_environment_plain_settings_pass():
    assert inv.check_environment("spark-1", "serving_environment",
                                 {"VLLM_LOGGING_LEVEL": "DEBUG", "OMP_NUM_THREADS": 8}) == []
    assert inv.check_environment("spark-1", "serving_environment", None) == []
    (p,) = inv.check_environment("spark-1", "serving_environment", ["GLOO_SOCKET_IFNAME=eth0"])
    assert "a mapping of environment variable names" in p["message"]


# ------------------------------------------------ addressing mistakes seen on real rails

def test_rail0_as_a_23_swallows_rail1():
    """rail 0 typed as /23 (192.168.100.0/23 = .100 and .101), rail 1 as /24: not equal
    subnets, but overlapping, so the kernel routes rail-1 peers out of rail 0."""
    nodes = copy.deepcopy(GOOD)
    for host, last in (("spark-1", 10), ("spark-2", 11)):
        nodes[host]["rails"][0]["address"] = f"192.168.100.{last}/23"
    (problem,) = run(nodes)
    assert problem["variable"] == "spark_rails[1].address"
    assert "rail 1 in 192.168.101.0/24, overlapping rail 0 (192.168.100.0/23)" in problem["message"]


def test_broadcast_address_as_a_rail_address():
    nodes = copy.deepcopy(GOOD)
    nodes["spark-2"]["rails"][1]["address"] = "192.168.101.255/24"
    (problem,) = run(nodes)
    assert problem["message"] == ("spark-2: spark_rails[1].address is 192.168.101.255/24; expected a host "
                                  "address inside 192.168.101.0/24, not its network or broadcast address")


def test_point_to_point_31_uses_both_addresses():
    """A /31 has no network/broadcast address (RFC 3021): both ends are hosts."""
    nodes = copy.deepcopy(GOOD)
    nodes["spark-1"]["rails"][0]["address"] = "192.168.100.0/31"
    nodes["spark-2"]["rails"][0]["address"] = "192.168.100.1/31"
    assert run(nodes) == []


def test_management_25_inside_a_rail_24():
    """The management LAN is a /25 carved out of what the rail /24 also covers."""
    nodes = copy.deepcopy(GOOD)
    nodes["spark-1"]["mgmt_networks"] = ["192.168.100.128/25"]
    found = run(nodes)
    assert [(p["host"], p["variable"]) for p in found] == [("spark-1", "spark_rails[0].address"),
                                                           ("spark-2", "spark_rails[0].address")]
    assert "overlapping the management network 192.168.100.128/25 (of spark-1)" in found[0]["message"]


@pytest.mark.parametrize("mtu", [1280, 9000, 9216, "9216"])
def test_mtu_in_the_documented_range_is_accepted(mtu):
    assert run(mtu=mtu) == []


def test_one_twin_named_for_both_rails():
    """Both rails on enp1s0f1np1 (a copy-paste in host_vars): the second twin is unused."""
    nodes = copy.deepcopy(GOOD)
    nodes["spark-2"]["rails"][1]["interface"] = "enp1s0f1np1"
    (problem,) = run(nodes)
    assert problem["message"] == ("spark-2: spark_rails[*].interface is ['enp1s0f1np1'] used by more "
                                  "than one rail; expected one interface per rail")
