"""spark_pinning: the interface-pinning check, and the qsfp_pinning module."""

import json

import pytest

from fakenetlink import FakeNetlink
from spark_cluster.link.pinning import (
    check_pinning, format_problems, nccl_selects, parse_nccl_ifname)

IFACE = "enp1s0f1np1"
TWIN = "enP2p1s0f1np1"
ADDRESS = "192.168.100.10"
PEER = "192.168.100.11"
ADDRESSES = {IFACE: "192.168.100.10/24", TWIN: "192.168.101.10/24"}
MGMT = {"enP7s7": "10.20.0.10/24"}

GOOD_ENV = {
    "VLLM_HOST_IP": ADDRESS,
    "GLOO_SOCKET_IFNAME": IFACE,
    "NCCL_SOCKET_IFNAME": f"={IFACE}",
    "TP_SOCKET_IFNAME": IFACE,
    "MN_IF_NAME": IFACE,
    "OMPI_MCA_btl_tcp_if_include": IFACE,
    "UCX_NET_DEVICES": IFACE,
}


@pytest.fixture
def node(spark_sysfs):
    """head node: rails on the port-1 twins, 10 GbE addressed, default route on Wi-Fi."""

    def make(addresses=ADDRESSES, extra=MGMT, **kwargs):
        sysfs = spark_sysfs(addresses=addresses, renames=kwargs.pop("renames", None))
        return FakeNetlink.from_sparkfs(sysfs, extra_addresses=extra, **kwargs)

    return make


def check(net, env=None, **kwargs):
    env = dict(GOOD_ENV if env is None else env)
    kwargs.setdefault("peers", [PEER])
    return check_pinning(kwargs.pop("interface", IFACE), kwargs.pop("address", ADDRESS),
                         kwargs.pop("peers"), env, net, **kwargs)


def by_check(result):
    return {p["check"]: p for p in result["problems"]}


def with_env(**changes):
    env = dict(GOOD_ENV)
    for key, value in changes.items():
        if value is None:
            env.pop(key)
        else:
            env[key] = value
    return env


def test_correct_env_is_ok(node):
    result = check(node())
    assert result["problems"] == []
    assert result["ok"] is True
    assert result["would_pick"] == {"interface": "wlP9s9", "address": "192.168.64.198"}
    assert result["routes"] == [{"peer": PEER, "dev": IFACE, "src": ADDRESS,
                                 "via_gateway": False, "ok": True}]
    assert format_problems(result) == ""


def test_address_with_prefix_and_peer_with_prefix(node):
    result = check(node(), address="192.168.100.10/24", peers=["192.168.100.11/24"])
    assert result["ok"], result["problems"]


def test_pinned_to_management_interfaces(node):
    result = check(node(), with_env(GLOO_SOCKET_IFNAME="wlP9s9", NCCL_SOCKET_IFNAME="enP7s7"))
    assert result["ok"] is False
    problems = by_check(result)
    assert set(problems) == {"gloo_socket_ifname", "nccl_socket_ifname"}
    gloo = problems["gloo_socket_ifname"]
    assert gloo["variable"] == "GLOO_SOCKET_IFNAME"
    assert gloo["found"] == "wlP9s9" and gloo["expected"] == IFACE
    assert "wlP9s9" in gloo["message"] and f"GLOO_SOCKET_IFNAME={IFACE}" in gloo["message"]
    nccl = problems["nccl_socket_ifname"]
    assert "enP7s7" in nccl["message"] and f"NCCL_SOCKET_IFNAME=={IFACE}" in nccl["message"]


def test_gloo_names_missing_interface(node):
    # a Spark whose 10 GbE NIC has another name: the field report's env names enP7s7
    net = node(extra={}, renames={"enP7s7": "eno1"})
    result = check(net, with_env(GLOO_SOCKET_IFNAME="enP7s7"))
    [gloo] = result["problems"]
    assert gloo["check"] == "gloo_socket_ifname"
    assert "Unable to find address for: enP7s7" in gloo["message"]
    assert "does not exist" in gloo["message"]


def test_pinned_interface_missing(node):
    net = node(addresses={"cx7a": "192.168.100.10/24"}, renames={IFACE: "cx7a"})
    result = check(net)
    problems = by_check(result)
    assert "interface_exists" in problems
    assert f"Unable to find address for: {IFACE}" in problems["interface_exists"]["message"]
    assert "Unable to find address" in problems["gloo_socket_ifname"]["message"]
    # the interface holding the address is renamed; route goes there, not to IFACE
    assert result["routes"][0]["dev"] == "cx7a" and result["routes"][0]["ok"] is False


def test_vllm_host_ip_of_other_node(node):
    result = check(node(), with_env(VLLM_HOST_IP=PEER))
    [p] = result["problems"]
    assert p["check"] == "vllm_host_ip" and p["found"] == PEER and p["expected"] == ADDRESS
    assert "not an address of this node" in p["message"]
    assert "another node" in p["message"]
    assert f"VLLM_HOST_IP={ADDRESS}" in p["message"]


def test_vllm_host_ip_of_management_interface(node):
    [p] = check(node(), with_env(VLLM_HOST_IP="192.168.64.198"))["problems"]
    assert "address of wlP9s9" in p["message"]


def test_vllm_host_ip_unknown_address(node):
    [p] = check(node(), with_env(VLLM_HOST_IP="172.16.9.9"))["problems"]
    assert "not an address of this node" in p["message"] and "another node" not in p["message"]


def test_vllm_host_ip_missing_names_default_route_address(node):
    [p] = check(node(), with_env(VLLM_HOST_IP=None))["problems"]
    assert p["check"] == "vllm_host_ip" and p["found"] is None
    assert "192.168.64.198 (wlP9s9)" in p["message"]


def test_no_default_route(node):
    result = check(node(default_dev=None), with_env(VLLM_HOST_IP=None))
    assert result["would_pick"] is None
    [p] = result["problems"]
    assert "no default route" in p["message"]


def test_interface_without_address(node):
    result = check(node(addresses={TWIN: "192.168.101.10/24"}))
    problems = by_check(result)
    assert problems["interface_address"]["found"] == []
    assert f"Unable to find address for: {IFACE}" in problems["interface_address"]["message"]
    # without the address there is no connected route either: the peer goes via Wi-Fi
    assert result["routes"][0] == {"peer": PEER, "dev": "wlP9s9", "src": "192.168.64.198",
                                   "via_gateway": True, "ok": False}
    # VLLM_HOST_IP is what it should be: the missing address is reported once, above
    assert "vllm_host_ip" not in problems
    # gloo/TP/MN name an interface without address
    assert "has no address" in problems["gloo_socket_ifname"]["message"]


def test_route_to_peer_via_default_route(node):
    result = check(node(), peers=[PEER, "192.168.200.11"])
    [p] = result["problems"]
    assert p["check"] == "route" and p["found"] == "wlP9s9" and p["expected"] == IFACE
    assert "192.168.200.11" in p["message"] and "192.168.64.1" in p["message"]
    assert "192.168.100.10/24" in p["message"]
    assert [r["ok"] for r in result["routes"]] == [True, False]
    assert result["routes"][1]["via_gateway"] is True


def test_route_unreachable(node):
    result = check(node(default_dev=None), peers=["192.168.200.11"])
    [p] = result["problems"]
    assert p["check"] == "route" and "no route" in p["message"]
    assert result["routes"][0]["dev"] is None


def test_interface_down(node):
    addresses = dict(ADDRESSES, enp1s0f0np0="192.168.102.10/24")
    result = check(node(addresses=addresses), interface="enp1s0f0np0", address="192.168.102.10",
                   peers=[], env=with_env(VLLM_HOST_IP="192.168.102.10", GLOO_SOCKET_IFNAME="enp1s0f0np0",
                                          NCCL_SOCKET_IFNAME="=enp1s0f0np0", TP_SOCKET_IFNAME="enp1s0f0np0",
                                          MN_IF_NAME="enp1s0f0np0", UCX_NET_DEVICES="enp1s0f0np0",
                                          OMPI_MCA_btl_tcp_if_include="enp1s0f0np0"))
    [p] = result["problems"]
    assert p["check"] == "interface_up" and "carrier=False" in p["found"]


@pytest.mark.parametrize("value, allowed, addresses, ok, mentions", [
    (f"={IFACE}", None, ADDRESSES, True, None),
    ("enp1", [IFACE, TWIN], ADDRESSES, True, None),  # case-sensitive: not enP2p1...
    ("enp1s0f1,enP2p1s0f1", [IFACE, TWIN], ADDRESSES, True, None),
    ("enp1s0f1,enP2p1s0f1", None, ADDRESSES, False, TWIN),
    # the uncabled port's twin holds an address (configured, no cable): NCCL takes it
    ("enp", [IFACE, TWIN], dict(ADDRESSES, enp1s0f0np0="192.168.102.10/24"), False,
     "enp1s0f0np0 (192.168.102.10, down, no carrier)"),
    ("^lo,docker", [IFACE, TWIN], ADDRESSES, False, "wlP9s9"),
    (f"^=lo,docker0,wlP9s9,enP7s7,{TWIN}", None, ADDRESSES, True, None),
    ("=enp1s0f1", None, ADDRESSES, False, "matches no interface"),
    ("en", None, ADDRESSES, False, "enP7s7"),
])
def test_nccl_socket_ifname_syntax(node, value, allowed, addresses, ok, mentions):
    result = check(node(addresses=addresses), with_env(NCCL_SOCKET_IFNAME=value),
                   allowed_interfaces=allowed)
    problems = by_check(result)
    assert ("nccl_socket_ifname" not in problems) is ok, problems
    if mentions:
        assert mentions in problems["nccl_socket_ifname"]["message"]


def test_nccl_unset_names_what_nccl_picks(node):
    p = by_check(check(node(), with_env(NCCL_SOCKET_IFNAME=None)))["nccl_socket_ifname"]
    assert "wlP9s9 (192.168.64.198)" in p["message"] and "enP7s7" in p["message"]


def test_parse_nccl_ifname():
    assert parse_nccl_ifname("^=eth0,eth1:1") == (True, True, ["eth0", "eth1"])
    assert parse_nccl_ifname("enp1") == (False, False, ["enp1"])
    by_if = {"lo": [{"address": "127.0.0.1", "family": 4}],
             "a0": [{"address": "::1", "family": 6}],
             "b0": [{"address": "fe80::1", "family": 6}]}
    assert nccl_selects("^docker,lo", by_if) == ["b0"]


def test_both_twins_allowed_in_lists(node):
    env = with_env(NCCL_SOCKET_IFNAME=f"={IFACE},{TWIN}", OMPI_MCA_btl_tcp_if_include=f"{IFACE},{TWIN}",
                   UCX_NET_DEVICES=f"{IFACE},{TWIN}")
    assert check(node(), env, allowed_interfaces=[IFACE, TWIN])["ok"]
    problems = by_check(check(node(), env))
    assert set(problems) == {"nccl_socket_ifname", "ompi_btl_tcp_if_include", "ucx_net_devices"}


def test_gloo_list_rejected(node):
    [p] = check(node(), with_env(GLOO_SOCKET_IFNAME=f"{IFACE},{TWIN}"),
                allowed_interfaces=[IFACE, TWIN])["problems"]
    assert "exactly one interface" in p["message"]


def test_ompi_cidr(node):
    assert check(node(), with_env(OMPI_MCA_btl_tcp_if_include="192.168.100.0/24"))["ok"]
    [p] = check(node(), with_env(OMPI_MCA_btl_tcp_if_include="192.168.64.0/24"))["problems"]
    assert "wlP9s9" in p["message"]


def test_ucx_devices(node):
    env = with_env(UCX_NET_DEVICES="rocep1s0f1:1")
    assert check(node(), env, allowed_ucx_devices=["rocep1s0f1:1"])["ok"]
    [p] = check(node(), env)["problems"]
    assert p["variable"] == "UCX_NET_DEVICES" and "rocep1s0f1:1 is not allowed" in p["message"]
    [p] = check(node(), with_env(UCX_NET_DEVICES="all"))["problems"]
    assert "every device" in p["message"]
    [p] = check(node(), with_env(UCX_NET_DEVICES="wlP9s9"))["problems"]
    assert "wlP9s9 is not allowed" in p["message"]


def test_every_missing_variable_is_a_problem(node):
    result = check(node(), env={})
    assert sorted(p["variable"] for p in result["problems"]) == sorted(GOOD_ENV)
    assert all(p["found"] is None for p in result["problems"])
    lines = format_problems(result).splitlines()
    assert len(lines) == len(GOOD_ENV)
    assert all(line.startswith("pinning: ") for line in lines)


def test_empty_value_counts_as_unset(node):
    [p] = check(node(), with_env(GLOO_SOCKET_IFNAME=""))["problems"]
    assert p["found"] is None and "not set" in p["message"]


# ---------------------------------------------------------------- module

def run_module(args, capsys, monkeypatch, net):
    import qsfp_pinning
    from ansible.module_utils.testing import patch_module_args

    monkeypatch.setattr(qsfp_pinning, "make_netlink", lambda: net)
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        qsfp_pinning.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def test_module_ok(node, capsys, monkeypatch):
    rc, out = run_module({"interface": IFACE, "address": "192.168.100.10/24", "peers": [PEER],
                          "env": GOOD_ENV, "_ansible_check_mode": True}, capsys, monkeypatch, node())
    assert rc == 0
    assert out["ok"] is True and out["changed"] is False
    assert out["would_pick"] == {"interface": "wlP9s9", "address": "192.168.64.198"}
    assert out["routes"][0]["ok"] is True


def test_module_fails_on_problems(node, capsys, monkeypatch):
    rc, out = run_module({"interface": IFACE, "address": ADDRESS, "peers": [PEER],
                          "env": with_env(GLOO_SOCKET_IFNAME="wlP9s9")}, capsys, monkeypatch, node())
    assert rc == 1 and out["failed"] is True and out["changed"] is False
    assert out["msg"].startswith("pinning: GLOO_SOCKET_IFNAME=wlP9s9")
    assert out["ok"] is False and len(out["problems"]) == 1


def test_module_report_only_from_env_file(node, capsys, monkeypatch, tmp_path):
    env_file = tmp_path / "runtime.env"
    env_file.write_text("# rendered\n" + "".join(f"{k}={v}\n" for k, v in
                                                 with_env(VLLM_HOST_IP=PEER).items()))
    rc, out = run_module({"interface": IFACE, "address": ADDRESS, "peers": [PEER],
                          "env_file": str(env_file), "fail_on_problems": False},
                         capsys, monkeypatch, node())
    assert rc == 0 and out.get("failed") is not True
    assert out["ok"] is False
    assert [p["check"] for p in out["problems"]] == ["vllm_host_ip"]


def test_module_env_and_env_file_exclusive(node, capsys, monkeypatch, tmp_path):
    rc, out = run_module({"interface": IFACE, "address": ADDRESS, "env": GOOD_ENV,
                          "env_file": str(tmp_path / "x.env")}, capsys, monkeypatch, node())
    assert rc == 1 and "mutually exclusive" in out["msg"]
    rc, out = run_module({"interface": IFACE, "address": ADDRESS}, capsys, monkeypatch, node())
    assert rc == 1 and "one of the following is required" in out["msg"]


def test_module_bad_env_file(node, capsys, monkeypatch, tmp_path):
    env_file = tmp_path / "bad.env"
    env_file.write_text("1BAD=x\n")
    rc, out = run_module({"interface": IFACE, "address": ADDRESS, "env_file": str(env_file)},
                         capsys, monkeypatch, node())
    assert rc == 1 and "1BAD" in out["msg"]


def test_peer_reached_through_a_router_on_the_rail_is_refused(node):
    """The worker's rail-0 address is in another subnet (a typo'd /24), and a leftover
    route sends that subnet via a gateway on rail 0: the packet leaves through the
    right interface, but towards a router, not the peer at the cable's other end."""
    peer = "192.168.110.11"
    net = node(extra_routes=[{"dst": "192.168.110.0/24", "dev": IFACE, "src": ADDRESS,
                              "gateway": "192.168.100.1"}])
    result = check(net, peers=[peer])
    assert result["ok"] is False
    assert result["routes"] == [{"peer": peer, "dev": IFACE, "src": ADDRESS,
                                 "via_gateway": True, "ok": False}]
    [p] = result["problems"]
    assert p["check"] == "route" and p["expected"] == IFACE
    assert "via gateway 192.168.100.1 (a router on the rail" in p["message"]
