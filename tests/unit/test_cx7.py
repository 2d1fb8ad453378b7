"""spark_cx7 discovery and the cx7_facts module, against Spark-shaped sysfs trees."""

import json
import os
import pathlib

import pytest

from spark_cluster.link import cx7 as spark_cx7
from spark_cluster.link.cx7 import discover, physical_port, sysfs_count
from fakenetlink import FakeNetlink

ADDRESSES = {"enp1s0f1np1": "192.168.100.10/24", "enP2p1s0f1np1": "192.168.101.10/24"}
QSFP = ["enp1s0f0np0", "enp1s0f1np1", "enP2p1s0f0np0", "enP2p1s0f1np1"]


def spark(spark_sysfs, **kwargs):
    kwargs.setdefault("addresses", ADDRESSES)
    sysfs = spark_sysfs(**kwargs)
    return sysfs, FakeNetlink.from_sparkfs(sysfs)


def test_four_netdevs_four_rdma_devices(spark_sysfs):
    sysfs, net = spark(spark_sysfs)
    cx7 = discover(str(sysfs.root), net)
    assert cx7["source"] == "sysfs"
    assert [n["name"] for n in cx7["netdevs"]] == QSFP
    assert cx7["rdma_present"] is True
    assert cx7["missing"] == []
    twins = {n["name"]: n["rdma_device"] for n in cx7["netdevs"]}
    assert twins == {"enp1s0f0np0": "rocep1s0f0", "enp1s0f1np1": "rocep1s0f1",
                     "enP2p1s0f0np0": "roceP2p1s0f0", "enP2p1s0f1np1": "roceP2p1s0f1"}
    assert cx7["rdma_devices"] == sorted(twins.values())


def test_management_and_virtual_nics_excluded(spark_sysfs):
    sysfs, net = spark(spark_sysfs)
    cx7 = discover(str(sysfs.root), net)
    for name in ("enP7s7", "wlP9s9", "lo", "docker0"):
        assert name not in cx7["by_name"]


def test_netdev_details(spark_sysfs):
    sysfs, net = spark(spark_sysfs)
    cx7 = discover(str(sysfs.root), net)
    up = cx7["by_name"]["enp1s0f1np1"]
    assert up["pci"] == "0000:01:00.1"
    assert up["driver"] == "mlx5_core"
    assert up["operstate"] == "UP"
    assert up["carrier"] is True and up["cabled"] is True
    assert up["speed_mbps"] == 200000
    assert up["mtu"] == 9000
    assert up["mac"] == "4c:bb:47:2c:00:01"
    assert up["addresses"] == ["192.168.100.10/24"]
    assert up["ipv4"] == ["192.168.100.10/24"] and up["ipv6"] == []
    assert up["port"] == 1
    down = cx7["by_name"]["enP2p1s0f0np0"]
    assert down["operstate"] == "DOWN"
    assert down["carrier"] is False and down["cabled"] is False
    assert down["speed_mbps"] is None
    assert down["mtu"] == 1500
    assert down["addresses"] == [] and down["ipv4"] == [] and down["ipv6"] == []
    assert down["port"] == 0


def test_ports_paired_and_cabled(spark_sysfs):
    sysfs, net = spark(spark_sysfs)
    ports = discover(str(sysfs.root), net)["ports"]
    assert ports == [
        {"port": 0, "netdevs": ["enp1s0f0np0", "enP2p1s0f0np0"],
         "rdma_devices": ["rocep1s0f0", "roceP2p1s0f0"], "cabled": False},
        {"port": 1, "netdevs": ["enp1s0f1np1", "enP2p1s0f1np1"],
         "rdma_devices": ["rocep1s0f1", "roceP2p1s0f1"], "cabled": True},
    ]


def test_other_port_cabled(spark_sysfs):
    sysfs, net = spark(spark_sysfs, cabled_ports=(0,))
    ports = {p["port"]: p["cabled"] for p in discover(str(sysfs.root), net)["ports"]}
    assert ports == {0: True, 1: False}


def test_unusual_names(spark_sysfs):
    renames = {"rocep1s0f0": "mlx5_0", "rocep1s0f1": "mlx5_1", "roceP2p1s0f0": "mlx5_2",
               "roceP2p1s0f1": "mlx5_3", "enp1s0f1np1": "cx7a", "enP2p1s0f1np1": "cx7b"}
    sysfs, net = spark(spark_sysfs, renames=renames,
                       addresses={"cx7a": "192.168.100.10/24", "cx7b": "192.168.101.10/24"})
    cx7 = discover(str(sysfs.root), net)
    assert cx7["source"] == "sysfs"
    twins = {n["name"]: (n["rdma_device"], n["port"]) for n in cx7["netdevs"]}
    assert twins == {"enp1s0f0np0": ("mlx5_0", 0), "cx7a": ("mlx5_1", 1),
                     "enP2p1s0f0np0": ("mlx5_2", 0), "cx7b": ("mlx5_3", 1)}
    port1 = [p for p in cx7["ports"] if p["port"] == 1][0]
    assert port1 == {"port": 1, "netdevs": ["cx7a", "cx7b"],
                     "rdma_devices": ["mlx5_1", "mlx5_3"], "cabled": True}
    assert cx7["by_name"]["cx7b"]["ipv4"] == ["192.168.101.10/24"]


def test_port_from_pci_function_without_phys_port_name(spark_sysfs):
    sysfs, net = spark(spark_sysfs)
    for name in QSFP:
        (sysfs.root / "class" / "net" / name / "phys_port_name").unlink()
    ports = {n["name"]: n["port"] for n in discover(str(sysfs.root), net)["netdevs"]}
    assert ports == {"enp1s0f0np0": 0, "enp1s0f1np1": 1, "enP2p1s0f0np0": 0, "enP2p1s0f1np1": 1}


def test_no_rdma_class(spark_sysfs):
    sysfs, net = spark(spark_sysfs, rdma=False)
    cx7 = discover(str(sysfs.root), net)
    assert cx7["source"] == "sysfs"
    assert cx7["rdma_present"] is False
    assert cx7["rdma_devices"] == []
    assert [n["rdma_device"] for n in cx7["netdevs"]] == [None] * 4
    assert [p["rdma_devices"] for p in cx7["ports"]] == [[], []]
    assert [p["cabled"] for p in cx7["ports"]] == [False, True]


def test_unreadable_carrier_is_none(spark_sysfs, monkeypatch):
    sysfs, net = spark(spark_sysfs)
    real_read = spark_cx7.read_text

    def failing_read(path):  # a real kernel: EINVAL on carrier of a down link
        if str(path).endswith("enp1s0f0np0/carrier"):
            return None
        return real_read(path)

    monkeypatch.setattr(spark_cx7, "read_text", failing_read)
    entry = discover(str(sysfs.root), net)["by_name"]["enp1s0f0np0"]
    assert entry["carrier"] is None and entry["cabled"] is False


# ---------------------------------------------------------------- fallback (lab)

LAB = ["enp1s0f1np1", "enP2p1s0f1np1"]
REASON = "lab: the rails are veth pairs"


def veth_sysfs(root: pathlib.Path, names):
    """A container's sysfs: only virtual devices (lo, eth0 and veths named like Spark
    twins), no PCI device, no driver, no infiniband class."""
    for index, name in enumerate(["lo", "eth0", *names], start=1):
        net = root / "devices" / "virtual" / "net" / name
        net.mkdir(parents=True)
        for attr, value in (("operstate", "unknown" if name == "lo" else "up"), ("carrier", "1"),
                            ("mtu", "9000" if name in names else "1500"),
                            ("ifindex", index), ("speed", "10000"),
                            ("address", f"02:42:c6:12:00:{index:02x}")):
            (net / attr).write_text(f"{value}\n")
        (root / "class" / "net").mkdir(parents=True, exist_ok=True)
        (root / "class" / "net" / name).symlink_to(os.path.relpath(net, root / "class" / "net"))
    return root


def lab_net(names):
    return FakeNetlink(
        links=[{"name": "lo", "operstate": "UNKNOWN", "mtu": 65536},
               {"name": "eth0", "kind": "veth"}]
        + [{"name": n, "kind": "veth", "mtu": 9000} for n in names],
        addresses=[{"ifname": "enp1s0f1np1", "address": "198.18.100.10/24"},
                   {"ifname": "enP2p1s0f1np1", "address": "198.18.101.10/24"},
                   {"ifname": "enp1s0f1np1", "address": "fe80::42:c6ff:fe12:3/64", "scope": "link"}],
    )


def test_fallback_describes_lab_veths(tmp_path):
    root = veth_sysfs(tmp_path / "sys", LAB)
    cx7 = discover(str(root), lab_net(LAB), fallback_interfaces=LAB + ["enp1s0f0np0"],
                   fallback_reason=REASON)
    assert cx7["source"] == "fallback" and cx7["fallback_reason"] == REASON
    assert cx7["problem"] is None
    assert [n["name"] for n in cx7["netdevs"]] == LAB
    assert cx7["missing"] == ["enp1s0f0np0"]
    assert cx7["rdma_present"] is False
    first = cx7["by_name"]["enp1s0f1np1"]
    assert first["driver"] is None and first["pci"] is None and first["rdma_device"] is None
    assert first["operstate"] == "UP" and first["cabled"] is True and first["mtu"] == 9000
    assert first["addresses"] == ["198.18.100.10/24", "fe80::42:c6ff:fe12:3/64"]
    assert first["ipv4"] == ["198.18.100.10/24"] and first["ipv6"] == ["fe80::42:c6ff:fe12:3/64"]
    assert first["port"] == 1  # from the name: no phys_port_name, no PCI function
    assert cx7["ports"] == [{"port": 1, "netdevs": LAB, "rdma_devices": [], "cabled": True}]


def test_fallback_from_netlink_when_sysfs_lacks_the_device(tmp_path):
    root = veth_sysfs(tmp_path / "sys", [])
    cx7 = discover(str(root), lab_net(LAB), fallback_interfaces=LAB, fallback_reason=REASON)
    assert cx7["missing"] == []
    entry = cx7["by_name"]["enP2p1s0f1np1"]
    assert entry["operstate"] == "UP" and entry["carrier"] is True and entry["mtu"] == 9000


def test_real_spark_ignores_fallback(spark_sysfs):
    sysfs, net = spark(spark_sysfs)
    cx7 = discover(str(sysfs.root), net, fallback_interfaces=["nonexistent0"], fallback_reason=REASON)
    assert cx7["source"] == "sysfs" and cx7["missing"] == []
    assert cx7["fallback_reason"] is None and cx7["problem"] is None


def test_spark_whose_mlx5_driver_did_not_bind_is_reported(spark_sysfs):
    """A real Spark after a failed mlx5_core probe: the QSFP netdevs keep their names
    (udev rules) but have no driver; the cable is in and carrier reads 1. Without a
    fallback reason this must not pass as "exists and has carrier"."""
    sysfs, net = spark(spark_sysfs)
    for name in ("enp1s0f0np0", "enp1s0f1np1", "enP2p1s0f0np0", "enP2p1s0f1np1"):
        (sysfs.root / "class" / "net" / name / "device" / "driver").unlink()
    cx7 = discover(str(sysfs.root), net, fallback_interfaces=["enp1s0f1np1", "enP2p1s0f1np1"])
    assert cx7["source"] == "none"
    assert cx7["netdevs"] == [] and cx7["by_name"] == {} and cx7["ports"] == []
    assert "no ConnectX-7 netdev (driver mlx5_core) on this node" in cx7["problem"]
    assert "enp1s0f1np1 (driver: none), enP2p1s0f1np1 (driver: none)" in cx7["problem"]
    assert "lsmod | grep mlx5" in cx7["problem"]


def test_lab_without_a_fallback_reason_is_not_a_spark(tmp_path):
    root = veth_sysfs(tmp_path / "sys", LAB)
    cx7 = discover(str(root), lab_net(LAB), fallback_interfaces=LAB)
    assert cx7["source"] == "none" and cx7["by_name"] == {}
    assert cx7["problem"].startswith("no ConnectX-7 netdev")


def test_empty_sysfs(tmp_path):
    cx7 = discover(str(tmp_path), FakeNetlink(), fallback_interfaces=["enp1s0f1np1"],
                   fallback_reason=REASON)
    assert cx7["source"] == "fallback"
    assert cx7["netdevs"] == [] and cx7["ports"] == []
    assert cx7["missing"] == ["enp1s0f1np1"]


@pytest.mark.parametrize("value, expected", [("200000", 200000), ("-1", None), (None, None), ("x", None)])
def test_sysfs_count(value, expected):
    assert sysfs_count(value) == expected


@pytest.mark.parametrize("args, expected", [
    (("p1", "0000:01:00.0", "x"), 1),
    ((None, "0002:01:00.1", "x"), 1),
    ((None, None, "enp1s0f0np0"), 0),
    ((None, None, "eth0"), None),
])
def test_physical_port(args, expected):
    assert physical_port(*args) == expected


# ---------------------------------------------------------------- module

def run_module(module, args, capsys):
    from ansible.module_utils.testing import patch_module_args

    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        module.main()
    out = json.loads(capsys.readouterr().out)
    return exc.value.code, out


def test_module_cx7_facts(spark_sysfs, monkeypatch, capsys):
    import cx7_facts

    sysfs, net = spark(spark_sysfs)
    monkeypatch.setattr(cx7_facts, "make_netlink", lambda: net)
    rc, out = run_module(cx7_facts, {"sysfs_root": str(sysfs.root), "_ansible_check_mode": True},
                         capsys)
    assert rc == 0
    assert out["changed"] is False
    cx7 = out["ansible_facts"]["cx7"]
    assert cx7["source"] == "sysfs"
    assert [p["cabled"] for p in cx7["ports"]] == [False, True]
    assert cx7["by_name"]["enp1s0f1np1"]["rdma_device"] == "rocep1s0f1"


def test_module_cx7_facts_fallback(tmp_path, monkeypatch, capsys):
    import cx7_facts

    root = veth_sysfs(tmp_path / "sys", LAB)
    monkeypatch.setattr(cx7_facts, "make_netlink", lambda: lab_net(LAB))
    rc, out = run_module(cx7_facts, {"sysfs_root": str(root), "fallback_interfaces": LAB + ["x0"],
                                     "fallback_reason": REASON}, capsys)
    assert rc == 0
    cx7 = out["ansible_facts"]["cx7"]
    assert cx7["source"] == "fallback" and cx7["missing"] == ["x0"]


def test_module_cx7_facts_missing_driver_in_check_mode(tmp_path, monkeypatch, capsys):
    import cx7_facts

    root = veth_sysfs(tmp_path / "sys", LAB)
    monkeypatch.setattr(cx7_facts, "make_netlink", lambda: lab_net(LAB))
    rc, out = run_module(cx7_facts, {"sysfs_root": str(root), "fallback_interfaces": LAB,
                                     "_ansible_check_mode": True}, capsys)
    assert rc == 0 and out["changed"] is False
    cx7 = out["ansible_facts"]["cx7"]
    assert cx7["source"] == "none" and "mlx5_core" in cx7["problem"]


def test_module_cx7_facts_without_pyroute2(tmp_path, monkeypatch, capsys):
    import cx7_facts

    def no_pyroute2():
        raise ImportError("No module named 'pyroute2'")

    monkeypatch.setattr(cx7_facts, "make_netlink", no_pyroute2)
    rc, out = run_module(cx7_facts, {"sysfs_root": str(tmp_path)}, capsys)
    assert rc == 1 and out["failed"] and "pyroute2" in out["msg"]
