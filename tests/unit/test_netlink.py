"""spark_netlink: the real reader against this machine's loopback, and the fake."""

import importlib.util

import pytest

from spark_cluster.link.netlink import NetlinkReader, scope_name
from fakenetlink import FakeNetlink

real = pytest.mark.skipif(importlib.util.find_spec("pyroute2") is None, reason="needs pyroute2")


# ---------------------------------------------------------------- real netlink

@real
def test_real_links_include_loopback():
    with NetlinkReader() as net:
        links = {link["name"]: link for link in net.links()}
    lo = links["lo"]
    assert lo["index"] == 1
    assert lo["mtu"] == 65536
    assert isinstance(lo["carrier"], bool) and lo["carrier"]
    assert lo["operstate"] in ("UNKNOWN", "UP")
    assert lo["kind"] is None


@real
def test_real_loopback_address():
    with NetlinkReader() as net:
        addrs = net.addresses("lo")
    assert {"ifname": "lo", "address": "127.0.0.1", "prefixlen": 8, "family": 4,
            "scope": "host"} in addrs
    assert all(a["ifname"] == "lo" for a in addrs)


@real
def test_real_route_get_loopback_without_context_manager():
    net = NetlinkReader()  # each call opens and closes its own socket
    answer = net.route_get("127.0.0.1")
    assert answer["dev"] == "lo"
    assert answer["src"] == "127.0.0.1"
    assert answer["gateway"] is None
    assert net._ipr is None


@real
def test_real_context_manager_closes_socket():
    reader = NetlinkReader()
    with reader as net:
        assert net._ipr is not None
        net.links()
    assert reader._ipr is None


@real
def test_real_default_route_shape():
    with NetlinkReader() as net:
        default = net.default_route()
        if default is None:
            with pytest.raises(OSError):
                net.route_get("8.8.8.8")
            return
        assert set(default) == {"dev", "gateway", "src"}
        assert default["dev"] == net.route_get("8.8.8.8")["dev"]



# ---------------------------------------------------------------- fake

def fake():
    return FakeNetlink(
        links=[{"name": "lo", "operstate": "UNKNOWN"}, {"name": "eth0"}, {"name": "eth1"}],
        addresses=[
            {"ifname": "eth0", "address": "10.0.0.5/24"},
            {"ifname": "eth1", "address": "10.0.0.130", "prefixlen": 25},
            {"ifname": "eth1", "address": "fd00::5/64"},
        ],
        routes=[
            {"dst": "10.0.0.0/24", "dev": "eth0", "src": "10.0.0.5"},
            {"dst": "10.0.0.128/25", "dev": "eth1", "src": "10.0.0.130"},
            {"dst": "0.0.0.0/0", "dev": "eth0", "src": "10.0.0.5", "gateway": "10.0.0.1"},
        ],
    )


def test_fake_longest_prefix_match():
    net = fake()
    assert net.route_get("10.0.0.200") == {"dev": "eth1", "src": "10.0.0.130", "gateway": None}
    assert net.route_get("10.0.0.20") == {"dev": "eth0", "src": "10.0.0.5", "gateway": None}
    assert net.route_get("8.8.8.8") == {"dev": "eth0", "src": "10.0.0.5", "gateway": "10.0.0.1"}


def test_fake_local_address_goes_to_lo():
    assert fake().route_get("10.0.0.130")["dev"] == "lo"


def test_fake_no_route_raises():
    with pytest.raises(OSError):
        fake().route_get("fd01::1")
    net = FakeNetlink(routes=[{"dst": "10.0.0.0/24", "dev": "eth0", "src": "10.0.0.5"}])
    assert net.default_route() is None
    with pytest.raises(OSError):
        net.route_get("8.8.8.8")


def test_fake_default_route_and_addresses():
    net = fake()
    assert net.default_route() == {"dev": "eth0", "gateway": "10.0.0.1", "src": "10.0.0.5"}
    eth1 = net.addresses("eth1")
    assert [(a["address"], a["prefixlen"], a["family"]) for a in eth1] == [
        ("10.0.0.130", 25, 4), ("fd00::5", 64, 6)]
    assert [link["index"] for link in net.links()] == [1, 2, 3]


def test_fake_from_sparkfs(spark_sysfs):
    sysfs = spark_sysfs(addresses={"enp1s0f1np1": "192.168.100.10/24"})
    with FakeNetlink.from_sparkfs(sysfs) as net:
        links = {link["name"]: link for link in net.links()}
        assert links["enp1s0f1np1"]["operstate"] == "UP" and links["enp1s0f1np1"]["carrier"]
        assert links["enp1s0f1np1"]["mtu"] == 9000
        assert links["enp1s0f0np0"]["operstate"] == "DOWN"
        assert not links["enp1s0f0np0"]["carrier"]
        assert links["docker0"]["kind"] == "bridge"
        assert net.route_get("192.168.100.11")["dev"] == "enp1s0f1np1"
        assert net.route_get("8.8.8.8") == {"dev": "wlP9s9", "src": "192.168.64.198",
                                            "gateway": "192.168.64.1"}
        assert net.default_route()["dev"] == "wlP9s9"


def test_fake_from_sparkfs_without_default_route(spark_sysfs):
    net = FakeNetlink.from_sparkfs(spark_sysfs(), default_dev=None)
    assert net.default_route() is None
    assert net.addresses("wlP9s9") == []


def test_scope_names():
    assert [scope_name(s) for s in (0, 253, 254, "global", 7)] == ["global", "link", "host", "global", "7"]
