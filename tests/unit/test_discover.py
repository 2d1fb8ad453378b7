"""Cabling discovery (spark_discover, cx7_probe, discover_inventory) on four-netdev
Spark sysfs trees, with the probe's frames carried by an in-memory wire cabled in
each pattern: straight, crossed, one rail only, none, peer mismatch."""

import functools
import json
import threading
import time

import pytest
import yaml

from spark_cluster.link import discover as spark_discover
from spark_cluster.link.cx7 import discover, pcie_root
from spark_cluster.link.discover import (
    beacon_frame,
    inventory_with_rails,
    observe,
    parse_frame,
    plan,
    probe,
    summary_markdown,
)
from fakenetlink import FakeNetlink
from sparkfs import SparkSysfs

P0 = ["enp1s0f0np0", "enP2p1s0f0np0"]   # port 0: PCIe 0000:01 and 0002:01 twins
P1 = ["enp1s0f1np1", "enP2p1s0f1np1"]   # port 1 (outer)
LAB_SUBNETS = ["198.18.100.0/24", "198.18.101.0/24"]


# ---------------------------------------------------------------- an in-memory wire

class Wire:
    """Cables between (node, netdev) ends. A frame sent on an end reaches every other
    end of its segment; ends on no segment (no cable, or a machine that runs no
    probe) hear nothing."""

    def __init__(self, *segments):
        self.segments = [set(s) for s in segments]
        self.queues = {}
        self.lock = threading.Lock()

    def opener(self, node):
        return functools.partial(FakeSocket, self, node)

    def deliver(self, sender, frame):
        with self.lock:
            for segment in self.segments:
                if sender in segment:
                    for end in segment - {sender}:
                        self.queues.setdefault(end, []).append(frame)

    def take(self, end):
        with self.lock:
            return self.queues.pop(end, [])


class FakeSocket:
    def __init__(self, wire, node, ifname):
        self.wire, self.end = wire, (node, ifname)

    def send(self, frame):
        self.wire.deliver(self.end, frame)

    def recv(self):
        return self.wire.take(self.end)

    def close(self):
        pass


def short_wait(timeout, sockets):
    time.sleep(min(timeout, 0.01))


FAST = dict(interval=0.02, min_seconds=0.05, max_seconds=0.6, linger=0.05)


def spark_node(tmp_path, name, cabled_ports=(1,), no_carrier=()):
    """A Spark's sysfs tree; no_carrier: netdevs whose twin has no link."""
    sysfs = SparkSysfs(tmp_path / name, cabled_ports=cabled_ports).build()
    for netdev in no_carrier:
        base = sysfs.root / "class" / "net" / netdev
        (base / "carrier").write_text("0\n")
        (base / "operstate").write_text("down\n")
        (base / "speed").write_text("-1\n")
    return sysfs


def run_discovery(tmp_path, wire, nodes, **plan_args):
    """Observe every node at once (one thread each), then plan. nodes: {name: sysfs}."""
    names = list(nodes)
    results, errors = {}, []

    def one(name):
        try:
            sysfs = nodes[name]
            net = FakeNetlink.from_sparkfs(sysfs)
            cx7 = discover(str(sysfs.root), net)
            probe_fn = functools.partial(probe, open_socket=wire.opener(name), wait=short_wait, **FAST)
            results[name] = observe(name, "run-1", [n for n in names if n != name], cx7, {},
                                    set_link=None, rediscover=None, probe_fn=probe_fn)
        except Exception as exc:  # pragma: no cover - shown by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    plan_args.setdefault("subnets", LAB_SUBNETS)
    return results, plan(results, names[:1], names[1:], **plan_args)


def straight(a="a", b="b", port_a=P1, port_b=P1):
    return [{(a, x), (b, y)} for x, y in zip(port_a, port_b)]


def messages(result):
    return " | ".join(p["message"] for p in result["problems"])


# ---------------------------------------------------------------- frames

def test_beacon_round_trip():
    frame = beacon_frame("r1", "spark-1", "enp1s0f1np1", "4c:bb:47:2c:00:01")
    assert len(frame) >= 60 and frame[:6] == b"\xff" * 6 and frame[12:14] == b"\x88\xb5"
    beacon = parse_frame(frame, "r1")
    assert beacon["node"] == "spark-1" and beacon["interface"] == "enp1s0f1np1"
    assert beacon["source_mac"] == "4c:bb:47:2c:00:01"


@pytest.mark.parametrize("frame", [
    beacon_frame("other-run", "n", "i", "02:00:00:00:00:01"),
    b"\xff" * 12 + b"\x08\x00" + b"x" * 50,                       # IPv4, not ours
    b"\xff" * 12 + b"\x88\xb5" + spark_discover.MAGIC + b"{not json",
    b"\xff" * 12 + b"\x88\xb5" + spark_discover.MAGIC + b'{"run": "r1", "node": 3}',
    b"short",
])
def test_foreign_frames_are_ignored(frame):
    assert parse_frame(frame, "r1") is None


@pytest.mark.parametrize("pci, name, root", [
    ("0000:01:00.1", "x", "0000:01"),
    ("0002:01:00.0", "x", "0002:01"),
    (None, "enP2p1s0f1np1", "0002:01"),
    (None, "enp1s0f0np0", "0000:01"),
    (None, "eth1", None),
])
def test_pcie_root(pci, name, root):
    assert pcie_root(pci, name) == root


# ---------------------------------------------------------------- cabling patterns

def test_straight_cabling_port1(tmp_path):
    nodes = {"a": spark_node(tmp_path, "a"), "b": spark_node(tmp_path, "b")}
    obs, result = run_discovery(tmp_path, Wire(*straight()), nodes)
    assert result["problems"] == []
    assert result["rails"] == {
        "a": [{"interface": "enp1s0f1np1", "address": "198.18.100.10/24"},
              {"interface": "enP2p1s0f1np1", "address": "198.18.101.10/24"}],
        "b": [{"interface": "enp1s0f1np1", "address": "198.18.100.11/24"},
              {"interface": "enP2p1s0f1np1", "address": "198.18.101.11/24"}],
    }
    assert not result["crossed"] and result["warnings"] == []
    # the probe ended early: every cabled port heard the peer
    assert all(o["probe"]["seconds"] < FAST["max_seconds"] for o in obs.values())
    a = {e["name"]: e for e in obs["a"]["netdevs"]}
    assert a["enp1s0f1np1"]["heard"] == [{"node": "b", "interface": "enp1s0f1np1", "mac": "4c:bb:47:2c:00:01"}]
    assert a["enp1s0f0np0"]["carrier"] is False and a["enp1s0f0np0"]["probed"] is False
    assert a["enp1s0f1np1"]["rdma_device"] == "rocep1s0f1" and a["enp1s0f1np1"]["speed_mbps"] == 200000


def test_straight_cabling_port0_found_from_the_wire_not_names(tmp_path):
    nodes = {"a": spark_node(tmp_path, "a", cabled_ports=(0,)), "b": spark_node(tmp_path, "b", cabled_ports=(0,))}
    _, result = run_discovery(tmp_path, Wire(*straight(port_a=P0, port_b=P0)), nodes,
                              subnets=["192.168.100.0/24", "192.168.101.0/24"])
    assert result["problems"] == []
    assert [r["interface"] for r in result["rails"]["b"]] == P0
    assert [r["address"] for r in result["rails"]["b"]] == ["192.168.100.11/24", "192.168.101.11/24"]


def test_twins_sharing_one_link_pair_by_pcie_root(tmp_path):
    """On a real Spark both twins of a port share the link: each twin hears both of
    the peer's. Rails still pair the same PCIe root on both ends."""
    nodes = {"a": spark_node(tmp_path, "a"), "b": spark_node(tmp_path, "b")}
    wire = Wire({("a", P1[0]), ("a", P1[1]), ("b", P1[0]), ("b", P1[1])})
    _, result = run_discovery(tmp_path, wire, nodes)
    assert result["problems"] == []
    assert [r["interface"] for r in result["rails"]["a"]] == P1
    assert [r["interface"] for r in result["rails"]["b"]] == P1


def test_crossed_cabling_is_refused_then_accepted(tmp_path):
    nodes = {"a": spark_node(tmp_path, "a", cabled_ports=(1,)), "b": spark_node(tmp_path, "b", cabled_ports=(0,))}
    wire = Wire(*straight(port_a=P1, port_b=P0))
    _, refused = run_discovery(tmp_path, wire, nodes)
    assert refused["rails"] == {} and refused["crossed"]
    text = messages(refused)
    assert "crossed: a port 1 (enp1s0f1np1, enP2p1s0f1np1) is cabled to b port 0 (enp1s0f0np0, enP2p1s0f0np0)" in text
    assert "discover_allow_crossed=true" in text

    _, accepted = run_discovery(tmp_path, Wire(*straight(port_a=P1, port_b=P0)), nodes, allow_crossed=True)
    assert accepted["problems"] == []
    assert [r["interface"] for r in accepted["rails"]["b"]] == P0
    assert any("crossed cabling accepted" in w for w in accepted["warnings"])


def test_twins_crossed_between_pcie_roots_is_refused(tmp_path):
    nodes = {"a": spark_node(tmp_path, "a"), "b": spark_node(tmp_path, "b")}
    wire = Wire({("a", P1[0]), ("b", P1[1])}, {("a", P1[1]), ("b", P1[0])})
    _, result = run_discovery(tmp_path, wire, nodes)
    assert "rail 0 would pair a:enp1s0f1np1 (PCIe 0000:01) with b:enp1s0f1np1 (PCIe 0000:01), which heard " \
           "enP2p1s0f1np1 of a" in messages(result)


def test_one_rail_only(tmp_path):
    nodes = {"a": spark_node(tmp_path, "a", no_carrier=[P1[1]]), "b": spark_node(tmp_path, "b", no_carrier=[P1[1]])}
    _, result = run_discovery(tmp_path, Wire({("a", P1[0]), ("b", P1[0])}), nodes)
    assert result["problems"] == []
    assert result["rails"] == {"a": [{"interface": "enp1s0f1np1", "address": "198.18.100.10/24"}],
                               "b": [{"interface": "enp1s0f1np1", "address": "198.18.100.11/24"}]}
    assert any("only one rail" in w for w in result["warnings"])


def test_no_cabled_port(tmp_path):
    nodes = {"a": spark_node(tmp_path, "a"), "b": spark_node(tmp_path, "b", cabled_ports=())}
    obs, result = run_discovery(tmp_path, Wire(), nodes)
    text = messages(result)
    assert "b: cabling is no cabled port (enp1s0f0np0 (no carrier), enp1s0f1np1 (no carrier)" in text
    assert "expected at least one QSFP port with carrier" in text
    assert result["rails"] == {}
    # a's cabled ports heard nobody: the probe ran to its longest
    assert obs["a"]["probe"]["seconds"] >= FAST["max_seconds"]


def test_peer_is_another_machine(tmp_path):
    """b's cable goes to a machine outside the inventory: carrier, but no node answers."""
    nodes = {"a": spark_node(tmp_path, "a"), "b": spark_node(tmp_path, "b")}
    wire = Wire({("b", P1[0]), ("nas", "eth0")}, {("b", P1[1]), ("nas", "eth1")})
    _, result = run_discovery(tmp_path, wire, nodes)
    text = messages(result)
    assert "b: cabling is enp1s0f1np1 has carrier, no node of this inventory answered on it; " \
           "expected the other node a on every cabled port" in text
    assert "discover_ignore_interfaces: ['b:enp1s0f1np1']" in text
    assert result["rails"] == {}


def test_rails_of_a_node_to_different_peers(tmp_path):
    """a's port 1 goes to b; a's port 0 is cabled back into a itself."""
    nodes = {"a": spark_node(tmp_path, "a", cabled_ports=(0, 1)), "b": spark_node(tmp_path, "b")}
    wire = Wire(*straight(), {("a", P0[0]), ("a", P0[1])})
    _, result = run_discovery(tmp_path, wire, nodes)
    text = messages(result)
    assert "a: cabling is enp1s0f0np0 has carrier, only its own node answered (cabled back into this node)" in text
    assert "a: cabling is its cabled ports reach different peers (enP2p1s0f0np0 -> itself, " in text
    assert "expected both rails to b on a two-node cluster" in text


def test_ignored_port_is_left_out(tmp_path):
    nodes = {"a": spark_node(tmp_path, "a", cabled_ports=(0, 1)), "b": spark_node(tmp_path, "b")}
    wire = Wire(*straight(), {("a", P0[0]), ("nas", "eth0")}, {("a", P0[1]), ("nas", "eth1")})
    _, result = run_discovery(tmp_path, wire, nodes, ignore=["a:enp1s0f0np0", "a:enP2p1s0f0np0"])
    assert result["problems"] == []
    assert [r["interface"] for r in result["rails"]["a"]] == P1


def test_three_nodes_on_a_switch(tmp_path):
    names = ["h", "w1", "w2"]
    nodes = {n: spark_node(tmp_path, n) for n in names}
    wire = Wire({(n, P1[0]) for n in names}, {(n, P1[1]) for n in names})
    _, result = run_discovery(tmp_path, wire, nodes)
    assert result["problems"] == []
    assert [r["address"] for r in result["rails"]["w2"]] == ["198.18.100.12/24", "198.18.101.12/24"]


def test_three_node_ring_is_planned_as_a_triangle(tmp_path):
    """Direct cables between three nodes are a triangle now (tests/unit/test_triangle.py
    has the plan in detail); four or more in a ring are refused there."""
    names = ["h", "w1", "w2"]
    nodes = {n: spark_node(tmp_path, n, cabled_ports=(0, 1)) for n in names}
    wire = Wire(*straight("h", "w1", P1, P0), *straight("w1", "w2", P1, P0), *straight("w2", "h", P1, P0))
    _, result = run_discovery(tmp_path, wire, nodes)
    assert result["problems"] == [] and result["topology"] == "triangle"
    assert [len(result["rails"][n]) for n in names] == [4, 4, 4]


@pytest.mark.parametrize("subnets, message", [
    (["198.18.100.0/24"], "discover_rail_subnets is 1 subnet(s) ['198.18.100.0/24']; expected at least 2"),
    (["198.18.100.0/24", "198.18.100.0/25"], "expected each rail on its own subnet"),
    (["198.18.100.1/24", "198.18.101.0/24"], "discover_rail_subnets[0] is '198.18.100.1/24'"),
    (["198.18.100.0/30", "198.18.101.0/30"], "expected room for 2 node(s) from host number 10"),
])
def test_bad_subnets(tmp_path, subnets, message):
    nodes = {"a": spark_node(tmp_path, "a"), "b": spark_node(tmp_path, "b")}
    _, result = run_discovery(tmp_path, Wire(*straight()), nodes, subnets=subnets)
    assert message in messages(result) and result["rails"] == {}


# ---------------------------------------------------------------- observe: admin-down ports

def test_admin_down_port_is_brought_up_and_restored(tmp_path):
    sysfs = spark_node(tmp_path, "a")
    net = FakeNetlink.from_sparkfs(sysfs)
    cx7 = discover(str(sysfs.root), net)
    calls = []

    def set_link(name, up):
        calls.append((name, up))

    def failing_probe(*args, **kwargs):
        raise OSError("boom")

    flags = {"enp1s0f0np0": "0x1002", "enp1s0f1np1": "0x1003"}
    with pytest.raises(OSError):
        observe("a", "r", ["b"], cx7, flags, set_link, lambda: cx7, probe_fn=failing_probe,
                link_wait=0, sleep=lambda s: None)
    assert calls == [("enp1s0f0np0", True), ("enp1s0f0np0", False)]   # restored even on failure

    calls.clear()
    obs = observe("a", "r", ["b"], cx7, flags, set_link, lambda: cx7,
                  probe_fn=lambda *a, **k: {"heard": {}, "errors": {}, "seconds": 0, "started": 0, "ended": 1},
                  link_wait=0, sleep=lambda s: None)
    assert obs["brought_up"] == obs["restored"] == ["enp1s0f0np0"]
    assert calls == [("enp1s0f0np0", True), ("enp1s0f0np0", False)]
    assert {e["name"]: e["admin_up"] for e in obs["netdevs"]}["enp1s0f0np0"] is False

    calls.clear()
    observe("a", "r", ["b"], cx7, flags, set_link, lambda: cx7, bring_up=False,
            probe_fn=lambda *a, **k: {"heard": {}, "errors": {}, "seconds": 0, "started": 0, "ended": 1})
    assert calls == []


def test_probe_reports_a_port_it_cannot_open():
    def opener(ifname):
        raise OSError(1, "Operation not permitted")

    result = probe("a", "r", {"enp1s0f1np1": "02:00:00:00:00:01"}, ["b"], open_socket=opener,
                   wait=short_wait, **FAST)
    assert result["heard"] == {}
    assert "cannot open a raw socket" in result["errors"]["enp1s0f1np1"]


# ---------------------------------------------------------------- outputs

def test_summary_table(tmp_path):
    nodes = {"a": spark_node(tmp_path, "a"), "b": spark_node(tmp_path, "b")}
    obs, result = run_discovery(tmp_path, Wire(*straight()), nodes)
    text = summary_markdown(obs, ["a", "b"], result, "lab")
    assert "| netdev | RDMA device | port | PCIe | carrier | speed | peer | rail |" in text
    assert "| enp1s0f1np1 | rocep1s0f1 | 1 | 0000:01 | yes | 200 Gb/s | b:enp1s0f1np1 | rail 0: 198.18.100.10/24 |" in text
    assert "| enp1s0f0np0 | rocep1s0f0 | 0 | 0000:01 | no | - | (not probed) | - |" in text
    assert "Verdict: **inventory written**" in text


def test_inventory_keeps_the_input_and_sets_rails():
    source = yaml.safe_load("""
spark:
  children:
    spark_head:
      hosts:
        a: {ansible_host: 192.0.2.21}
    spark_workers:
      hosts:
        b:
  vars: {spark_mtu: 9000}
""")
    rails = {"a": [{"interface": "x", "address": "1.1.1.1/24"}], "b": [{"interface": "y", "address": "1.1.1.2/24"}]}
    out, absent = inventory_with_rails(source, rails)
    assert absent == []
    head = out["spark"]["children"]["spark_head"]["hosts"]["a"]
    assert head == {"ansible_host": "192.0.2.21", "spark_rails": rails["a"]}
    assert out["spark"]["children"]["spark_workers"]["hosts"]["b"] == {"spark_rails": rails["b"]}
    assert out["spark"]["vars"] == {"spark_mtu": 9000}
    assert "spark_rails" not in source["spark"]["children"]["spark_head"]["hosts"]["a"]  # input untouched
    assert inventory_with_rails(source, {"zz": []})[1] == ["zz"]


# ---------------------------------------------------------------- the modules

def run_module(module, args, capsys):
    from ansible.module_utils.testing import patch_module_args

    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        module.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def write_input(tmp_path):
    src = tmp_path / "inventory" / "mgmt"
    (src / "group_vars").mkdir(parents=True, exist_ok=True)
    (src / "group_vars" / "spark.yml").write_text("---\nspark_mtu: 9000\n")
    (src / "hosts.yml").write_text(
        "spark:\n  children:\n    spark_head:\n      hosts:\n        a: {ansible_host: 192.0.2.21}\n"
        "    spark_workers:\n      hosts:\n        b: {ansible_host: 192.0.2.22}\n")
    return src


def module_args(tmp_path, obs, **extra):
    args = {"observations": obs, "heads": ["a"], "workers": ["b"], "rail_subnets": LAB_SUBNETS,
            "source": str(write_input(tmp_path)), "output_dir": str(tmp_path / "inventory" / "out"),
            "name": "out", "report_dir": str(tmp_path / "reports"),
            "mgmt": {"a": "192.0.2.21", "b": "192.0.2.22"}}
    args.update(extra)
    return args


def test_module_writes_an_inventory_that_passes_preflight(tmp_path, capsys):
    import discover_inventory
    from spark_cluster.runtime.inventory import validate

    nodes = {"a": spark_node(tmp_path, "a"), "b": spark_node(tmp_path, "b")}
    obs, _ = run_discovery(tmp_path, Wire(*straight()), nodes)
    rc, out = run_module(discover_inventory, module_args(tmp_path, obs), capsys)
    assert rc == 0 and out["changed"] is True, out
    assert "deprecations" not in out and out["notes"] == []
    written = yaml.safe_load((tmp_path / "inventory" / "out" / "hosts.yml").read_text())
    hosts = written["spark"]["children"]
    rails = {"a": hosts["spark_head"]["hosts"]["a"]["spark_rails"],
             "b": hosts["spark_workers"]["hosts"]["b"]["spark_rails"]}
    assert rails == out["rails"]
    assert hosts["spark_head"]["hosts"]["a"]["ansible_host"] == "192.0.2.21"
    assert validate(["a"], ["b"], {h: {"rails": r, "mgmt": h, "mtu": 9000} for h, r in rails.items()}) == []
    assert (tmp_path / "inventory" / "out" / "group_vars" / "spark.yml").read_text() == "---\nspark_mtu: 9000\n"
    assert "| enP2p1s0f1np1 | roceP2p1s0f1 |" in (tmp_path / "inventory" / "out" / "discovery.md").read_text()
    report = json.loads((tmp_path / "reports" / "discovery-out.json").read_text())
    assert report["rails"] == out["rails"] and report["problems"] == []

    rc, again = run_module(discover_inventory, module_args(tmp_path, obs), capsys)
    assert rc == 0 and again["changed"] is False   # same findings: nothing rewritten


def test_module_refuses_and_writes_no_inventory(tmp_path, capsys):
    import discover_inventory

    nodes = {"a": spark_node(tmp_path, "a"), "b": spark_node(tmp_path, "b", cabled_ports=())}
    obs, _ = run_discovery(tmp_path, Wire(), nodes)
    rc, out = run_module(discover_inventory, module_args(tmp_path, obs), capsys)
    assert rc == 1 and out["failed"]
    assert out["msg"].startswith("discovery refused, no inventory written:\n")
    assert "- b: cabling is no cabled port" in out["msg"]
    assert not (tmp_path / "inventory" / "out").exists()
    assert "## Problems" in (tmp_path / "reports" / "discovery-out.md").read_text()


def test_module_refuses_a_rail_address_already_used_on_the_node(tmp_path, capsys):
    import discover_inventory

    nodes = {"a": spark_node(tmp_path, "a"), "b": spark_node(tmp_path, "b")}
    obs, _ = run_discovery(tmp_path, Wire(*straight()), nodes)
    obs["b"]["host"] = {"interfaces": ["lo", "enP7s7"] + P0 + P1, "default_interface": "enP7s7",
                        "default_network": "192.0.2.0/24", "addresses": {"enP7s7": ["198.18.100.11"]}}
    rc, out = run_module(discover_inventory, module_args(tmp_path, obs), capsys)
    assert rc == 1
    assert "the proposed inventory would fail preflight: b: spark_rails[0].address is 198.18.100.11 already on enP7s7" \
        in out["msg"]


def test_cx7_probe_module(tmp_path, monkeypatch, capsys):
    import cx7_probe

    sysfs = spark_node(tmp_path, "a")
    net = FakeNetlink.from_sparkfs(sysfs)
    monkeypatch.setattr(cx7_probe, "make_netlink", lambda: net)
    wire = Wire({("a", P1[0]), ("b", P1[0])})
    monkeypatch.setattr(spark_discover, "PacketSocket", None)
    real_observe = cx7_probe.observe

    def observe_on_wire(*args, **kwargs):
        kwargs["probe_fn"] = functools.partial(probe, open_socket=wire.opener("a"), wait=short_wait)
        return real_observe(*args, **kwargs)

    monkeypatch.setattr(cx7_probe, "observe", observe_on_wire)
    rc, out = run_module(cx7_probe, {"node": "a", "run_id": "r", "peers": ["a", "b"], "sysfs_root": str(sysfs.root),
                                     "max_seconds": 0.3, "min_seconds": 0.1}, capsys)
    assert rc == 0 and out["changed"] is False
    disc = out["discovery"]
    assert disc["source"] == "sysfs" and disc["brought_up"] == []
    assert [e["name"] for e in disc["netdevs"] if e["probed"]] == P1
    assert disc["host"]["default_interface"] == "wlP9s9"
    assert disc["host"]["default_network"] == "192.168.64.0/24"
    assert "enP7s7" in disc["host"]["interfaces"]


def test_packet_socket_on_loopback():
    """The real raw socket: a beacon sent on lo comes back once (the outgoing copy is
    dropped). Needs CAP_NET_RAW."""
    try:
        sock = spark_discover.PacketSocket("lo")
    except PermissionError:
        pytest.skip("no CAP_NET_RAW")
    try:
        frame = beacon_frame("r-lo", "n", "lo", "00:00:00:00:00:00")
        sock.send(frame)
        got = []
        deadline = time.monotonic() + 2
        while not got and time.monotonic() < deadline:
            spark_discover.select_wait(0.1, [sock])
            got = sock.recv()
        assert [parse_frame(f, "r-lo")["node"] for f in got] == ["n"]
    finally:
        sock.close()


def test_node_without_mlx5_core_is_refused(tmp_path):
    """A node whose mlx5_core did not bind (no fallback reason): no port to probe, the
    driver problem is named."""
    nodes = {"a": spark_node(tmp_path, "a"), "b": spark_node(tmp_path, "b")}
    for netdev in P0 + P1:   # b: the driver did not bind
        (nodes["b"].root / "class" / "net" / netdev / "device" / "driver").unlink()
    _, result = run_discovery(tmp_path, Wire(*straight()), nodes)
    text = messages(result)
    assert "b: cabling is no cabled port (no ConnectX-7 netdev at all; no ConnectX-7 netdev (driver mlx5_core)" in text
