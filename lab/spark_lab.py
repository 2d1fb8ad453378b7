#!/usr/bin/env python3
"""The Spark lab: two (or more) simulated DGX Sparks as systemd containers.

    spark_lab.py image [--flavour F]       build the node image if needed, print its tag
    spark_lab.py up [--inventory DIR] [--recreate] [--flavour F]
    spark_lab.py replug [--other-port NODE]  cable the lab as the inventory says (or with
                                           NODE's cable moved to its other QSFP port)
    spark_lab.py restart NODE              reboot one node (docker restart), then replug
    spark_lab.py status
    spark_lab.py down                      remove containers, volumes, network, switch

Topology comes from the inventory (``ansible-inventory --list``): every host with
``ansible_host`` (container name), ``spark_mgmt_address`` and ``spark_rails``.
The docker network ``spark-lab-mgmt`` (198.19.0.0/24) plays the Wi-Fi and carries the
default route. Rail i ("QSFP cable" i) is one veth pair when there are exactly two
nodes, or a bridge per rail inside the network namespace ``spark-lab-sw`` (a switch)
when there are more. With ``spark_topology: triangle`` (three nodes) every pair has its
own cables instead: one veth pair per subnet two nodes' rails share (one per link and
twin, six). Rails carry no IP addresses: the Ansible roles assign them.

Flavours (--flavour, or SPARK_LAB_FLAVOUR): ``networkmanager`` (default) behaves like
DGX OS as shipped: NetworkManager renders netplan (01-network-manager-all.yaml), manages
eth0 and auto-connects the CX-7-named ports with its default wired profiles;
``networkd`` is a server-style node where systemd-networkd renders netplan.

Every node carries the four ConnectX-7 netdevs of a Spark (SPARK_PORTS): the ones in
the inventory's ``spark_rails`` are cabled; the others are uncabled ports: a veth whose
peer waits, down, in the namespace ``spark-lab-loose``, so the node sees a real
NO-CARRIER link. ``replug --other-port NODE`` moves NODE's cable to its other QSFP port
(np1 <-> np0 on both twins), as a person re-plugging the cable would; a plain
``replug`` (and ``up``, ``restart``) puts the cabling back as the inventory says. Each
node end carries an ifalias naming its cable, so replug sees what is plugged where.

Env: SPARK_LAB_IMAGE=<image> uses that image and skips the build.
Python 3.11+, stdlib only. Needs root (veth, nsenter) and docker.
"""
from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGE_DIR = REPO / "lab" / "image"
IMAGE_REPO = "spark-lab-node"
DEFAULT_INVENTORY = REPO / "inventory" / "lab"
NETWORK = "spark-lab-mgmt"
SUBNET = "198.19.0.0/24"
GATEWAY = "198.19.0.1"
LABEL = "spark-lab"
SWITCH_NS = "spark-lab-sw"
LOOSE_NS = "spark-lab-loose"   # peers of the uncabled ports: down, so the node sees NO-CARRIER
# The four ConnectX-7 netdevs of a DGX Spark (two QSFP ports x two PCIe-root twins)
SPARK_PORTS = ("enp1s0f0np0", "enp1s0f1np1", "enP2p1s0f0np0", "enP2p1s0f1np1")
OTHER_PORT_RE = re.compile(r"^(?P<head>.+f)(?P<f>[01])np(?P<p>[01])$")
LOOSE_ALIAS = "spark-lab:uncabled"
LOOSE_MTU = 1500   # an uncabled port keeps the driver's default MTU
DEFAULT_MTU = 9000
IFNAMSIZ = 15
VETH_RE = re.compile(r"^sl[0-9a-f]{10}$")  # host-side temporary veth names
BOOT_TIMEOUT = 180
FLAVOURS = ("networkmanager", "networkd")
DEFAULT_FLAVOUR = "networkmanager"

# systemd in a container with the capabilities the lab needs and no more: --privileged
# fails on the sandboxed build hosts this lab is developed and tested on
RUN_FLAGS = [
    "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
    "--stop-signal", "SIGRTMIN+3",
]


class LabError(Exception):
    pass


def say(msg: str) -> None:
    print(f"[lab] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- topology
# Pure functions over inventory data: no docker, no ip. Unit-tested.

@dataclass(frozen=True)
class Node:
    name: str            # inventory_hostname (= container hostname)
    container: str       # ansible_host (= container name)
    mgmt_address: str    # on spark-lab-mgmt
    rails: tuple[str, ...]  # interface name per rail index
    mtu: int = DEFAULT_MTU
    addresses: tuple[str, ...] = ()   # address/prefix per rail index (a triangle pairs by subnet)
    topology: str = "switch"          # spark_topology: switch (2 nodes direct, more a switch) or triangle

    @property
    def ports(self) -> tuple[str, ...]:
        """Every QSFP netdev the node carries: a Spark's four, plus any other rail name."""
        return SPARK_PORTS + tuple(r for r in self.rails if r not in SPARK_PORTS)


@dataclass(frozen=True)
class End:
    """One end of a veth pair: inside a node (container set) or inside the switch ns."""
    tmpname: str             # name while it lives in the host namespace (unique, <= 15)
    ifname: str              # final name in its namespace
    container: str | None    # None: the switch namespace
    bridge: str | None = None  # switch port: the rail's bridge


@dataclass(frozen=True)
class Link:
    rail: int
    a: End
    b: End

    @property
    def alias(self) -> str:
        """ifalias of the node end(s): names the cable, so replug can tell where it is."""
        far = f"{self.b.container}:{self.b.ifname}" if self.b.container else f"switch:{self.b.bridge}"
        return f"spark-lab:rail{self.rail}:{self.a.container}:{self.a.ifname}<->{far}"


@dataclass(frozen=True)
class Loose:
    """An uncabled port: the node end, and its peer kept down in LOOSE_NS (NO-CARRIER)."""
    end: End           # inside the node
    peer: str          # peer's name in LOOSE_NS


@dataclass(frozen=True)
class Topology:
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    bridges: tuple[str, ...] = ()   # in SWITCH_NS; empty for a 2-node (direct cable) lab
    mtu: int = DEFAULT_MTU
    loose: tuple[Loose, ...] = ()   # uncabled ports

    @property
    def switched(self) -> bool:
        return bool(self.bridges)


def veth_name(*parts: str | int) -> str:
    """Deterministic host-side veth name: 'sl' + 10 hex = 12 chars (<= IFNAMSIZ)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()
    return "sl" + digest[:10]


def _group_hosts(inv: dict, group: str, seen: set[str] | None = None) -> list[str]:
    """Hosts of a group of `ansible-inventory --list` output, children included, in order."""
    seen = seen if seen is not None else set()
    if group in seen or group not in inv:
        return []
    seen.add(group)
    out = list(inv[group].get("hosts", []))
    for child in inv[group].get("children", []):
        out += [h for h in _group_hosts(inv, child, seen) if h not in out]
    return out


def nodes_from_inventory(inv: dict) -> list[Node]:
    """Lab nodes from `ansible-inventory --list` JSON: head(s) first, then workers in order."""
    hostvars = inv.get("_meta", {}).get("hostvars", {})
    order: list[str] = []
    for group in ("spark_head", "spark_workers", "spark", "all"):
        order += [h for h in _group_hosts(inv, group) if h not in order]
    order += [h for h in hostvars if h not in order]
    nodes = []
    for host in order:
        hv = hostvars.get(host, {})
        if "spark_rails" not in hv:
            continue
        missing = [k for k in ("spark_mgmt_address",) if k not in hv]
        if missing:
            raise LabError(f"{host}: missing {', '.join(missing)}")
        rails = tuple(str(r["interface"]) for r in hv["spark_rails"])
        addresses = tuple(str(r.get("address", "")) for r in hv["spark_rails"])
        nodes.append(Node(name=host, container=str(hv.get("ansible_host", host)),
                          mgmt_address=str(hv["spark_mgmt_address"]), rails=rails,
                          mtu=int(hv.get("spark_mtu", DEFAULT_MTU)), addresses=addresses,
                          topology=str(hv.get("spark_topology") or "switch")))
    validate_nodes(nodes)
    return nodes


def validate_nodes(nodes: list[Node]) -> None:
    if len(nodes) < 2:
        raise LabError(f"need at least 2 lab nodes with spark_rails, found {len(nodes)}")
    counts = {len(n.rails) for n in nodes}
    if len(counts) != 1 or 0 in counts:
        raise LabError("every node needs the same, non-zero number of spark_rails: "
                       + ", ".join(f"{n.name}={len(n.rails)}" for n in nodes))
    net = ipaddress.ip_network(SUBNET)
    for attr in ("name", "container", "mgmt_address"):
        values = [getattr(n, attr) for n in nodes]
        if len(set(values)) != len(values):
            raise LabError(f"duplicate {attr} among lab nodes: {values}")
    for n in nodes:
        if ipaddress.ip_address(n.mgmt_address) not in net or n.mgmt_address == GATEWAY:
            raise LabError(f"{n.name}: spark_mgmt_address {n.mgmt_address} not usable in {SUBNET}")
        for ifname in n.rails:
            if not ifname or len(ifname) > IFNAMSIZ or "/" in ifname or ifname in ("eth0", "lo"):
                raise LabError(f"{n.name}: bad rail interface name {ifname!r}")
        if len(set(n.rails)) != len(n.rails):
            raise LabError(f"{n.name}: the same interface on two rails: {n.rails}")
    if len({n.mtu for n in nodes}) != 1:
        raise LabError("spark_mtu differs between lab nodes")
    topologies = {n.topology for n in nodes}
    if len(topologies) != 1 or not topologies <= {"switch", "triangle"}:
        raise LabError("spark_topology must be switch or triangle, the same on every node: "
                       + ", ".join(f"{n.name}={n.topology}" for n in nodes))
    if topologies == {"triangle"} and len(nodes) != 3:
        raise LabError(f"a triangle has three nodes, found {len(nodes)} (four or more need a switch)")


def triangle_pairs(nodes: list[Node]) -> list[tuple[Node, int, Node, int]]:
    """A triangle's cables: (node a, rail of a, node b, rail of b), one per subnet that
    two nodes share (one per link and twin), in node then rail order of a."""
    members: dict = {}
    for n in nodes:
        for i, address in enumerate(n.addresses):
            try:
                net = ipaddress.ip_interface(address).network
            except ValueError:
                raise LabError(f"{n.name}: spark_rails[{i}].address {address!r} is not an address/prefix") from None
            members.setdefault(net, []).append((n, i))
    pairs = []
    for net, ends in members.items():
        if len(ends) != 2 or ends[0][0] == ends[1][0]:
            who = ", ".join(f"{n.name} rail {i}" for n, i in ends)
            raise LabError(f"triangle: subnet {net} has {who}; expected one rail on each of two nodes "
                           "(one subnet per link and twin)")
        (a, i), (b, j) = ends
        pairs.append((a, i, b, j))
    order = {n.name: k for k, n in enumerate(nodes)}
    return sorted(pairs, key=lambda p: (order[p[0].name], p[1]))


def other_port(ifname: str) -> str:
    """The twin of the same PCIe root on the other QSFP port: enp1s0f1np1 <-> enp1s0f0np0."""
    m = OTHER_PORT_RE.match(ifname)
    if not m or m.group("f") != m.group("p"):
        raise LabError(f"{ifname}: not a ConnectX-7 port name (...f<N>np<N>): "
                       "cannot tell its other port")
    n = 1 - int(m.group("f"))
    return f"{m.group('head')}{n}np{n}"


def plan_topology(nodes: list[Node], moved=()) -> Topology:
    """Which veth pairs (and bridges) make the cables. 2 nodes: direct; more: switch;
    a triangle (spark_topology): one direct veth per subnet two nodes share.

    moved: names of nodes whose cable sits in their other QSFP port (replug --other-port).
    Every port of a node that no cable reaches is an uncabled (loose) port."""
    validate_nodes(nodes)
    unknown = sorted(set(moved) - {n.name for n in nodes} - {n.container for n in nodes})
    if unknown:
        raise LabError(f"unknown node(s) {', '.join(unknown)}; known: {', '.join(n.name for n in nodes)}")
    nrails = len(nodes[0].rails)
    mtu = nodes[0].mtu

    def plugged(n: Node, i: int) -> str:
        return other_port(n.rails[i]) if {n.name, n.container} & set(moved) else n.rails[i]

    links: list[Link] = []
    bridges: list[str] = []
    if nodes[0].topology == "triangle":
        for a, i, b, j in triangle_pairs(nodes):
            links.append(Link(rail=i,
                              a=End(veth_name(a.container, i), plugged(a, i), a.container),
                              b=End(veth_name(b.container, j), plugged(b, j), b.container)))
    elif len(nodes) == 2:
        n0, n1 = nodes
        for i in range(nrails):
            links.append(Link(rail=i,
                              a=End(veth_name(n0.container, i), plugged(n0, i), n0.container),
                              b=End(veth_name(n1.container, i), plugged(n1, i), n1.container)))
    else:
        for i in range(nrails):
            bridge = f"rail{i}"
            bridges.append(bridge)
            for n in nodes:
                port = veth_name("sw", n.container, i)
                links.append(Link(rail=i,
                                  a=End(veth_name(n.container, i), plugged(n, i), n.container),
                                  b=End(port, port, None, bridge)))
    cabled = {(e.container, e.ifname) for link in links for e in (link.a, link.b) if e.container}
    loose: list[Loose] = []
    for n in nodes:
        for ifname in n.ports + tuple(plugged(n, i) for i in range(nrails)):
            if (n.container, ifname) in cabled or any(l.end.ifname == ifname and l.end.container == n.container
                                                       for l in loose):
                continue
            loose.append(Loose(end=End(veth_name("loose", n.container, ifname), ifname, n.container),
                               peer=veth_name("loosepeer", n.container, ifname)))
    names = [e.tmpname for link in links for e in (link.a, link.b)]
    names += [x for l in loose for x in (l.end.tmpname, l.peer)]
    if len(set(names)) != len(names):   # a hash collision: astronomically unlikely
        raise LabError("veth name collision in topology plan")
    return Topology(nodes=tuple(nodes), links=tuple(links), bridges=tuple(bridges), mtu=mtu,
                    loose=tuple(loose))


def recipe_tag(image_dir: Path = IMAGE_DIR) -> str:
    """Short hash over the image recipe (every file under lab/image: names, modes, bytes)."""
    h = hashlib.sha256()
    for p in sorted(image_dir.rglob("*")):
        if p.is_dir() or "__pycache__" in p.parts or p.name.endswith((".pyc", "~")):
            continue
        rel = p.relative_to(image_dir).as_posix()
        h.update(f"{rel}\0{os.stat(p).st_mode & 0o111 and 'x' or '-'}\0".encode())
        h.update(p.read_bytes() if not p.is_symlink() else os.readlink(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


# --------------------------------------------------------------------------- shell helpers

def run(cmd: list[str], check: bool = True, capture: bool = True,
        timeout: float | None = None) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, text=True, capture_output=capture, timeout=timeout)
    if check and res.returncode != 0:
        err = (res.stderr or res.stdout or "").strip() if capture else ""
        raise LabError(f"command failed ({res.returncode}): {' '.join(cmd)}\n{err}")
    return res


def ok(cmd: list[str]) -> bool:
    return run(cmd, check=False).returncode == 0


def docker(*args: str, check: bool = True, capture: bool = True, timeout: float | None = None):
    return run(["docker", *args], check=check, capture=capture, timeout=timeout)


def in_netns(pid: int, *args: str, check: bool = True):
    return run(["nsenter", "-t", str(pid), "-n", *args], check=check)


def in_switch(*args: str, check: bool = True):
    return run(["ip", "-n", SWITCH_NS, *args], check=check)


# --------------------------------------------------------------------------- inventory / image

def ansible_inventory_bin() -> str:
    cand = Path(sys.executable).parent / "ansible-inventory"
    if cand.exists():
        return str(cand)
    found = shutil.which("ansible-inventory")
    if not found:
        raise LabError("ansible-inventory not found (next to sys.executable or on PATH)")
    return found


def load_inventory(path: str | Path) -> list[Node]:
    res = run([ansible_inventory_bin(), "-i", str(path), "--list"])
    return nodes_from_inventory(json.loads(res.stdout))


def image_exists(ref: str) -> bool:
    return ok(["docker", "image", "inspect", ref])


def flavour_from_env(value: str | None = None) -> str:
    flavour = value or os.environ.get("SPARK_LAB_FLAVOUR") or DEFAULT_FLAVOUR
    if flavour not in FLAVOURS:
        raise LabError(f"flavour {flavour!r}: expected one of {', '.join(FLAVOURS)}")
    return flavour


def image_ref(tag: str, flavour: str) -> str:
    """build.sh makes both flavours: <repo>:<tag> (networkmanager), <repo>:<tag>-networkd."""
    return f"{IMAGE_REPO}:{tag}" + ("" if flavour == DEFAULT_FLAVOUR else f"-{flavour}")


def ensure_image(flavour: str = DEFAULT_FLAVOUR) -> str:
    env = os.environ.get("SPARK_LAB_IMAGE")
    if env:
        say(f"image: SPARK_LAB_IMAGE={env} (no build)")
        return env
    ref = image_ref(recipe_tag(), flavour)
    if image_exists(ref):
        say(f"image: {ref} exists (recipe unchanged), no build")
        return ref
    say(f"image: building {ref} (debootstrap trixie; takes a few minutes)")
    t0 = time.monotonic()
    run(["bash", str(IMAGE_DIR / "build.sh"), image_ref(recipe_tag(), DEFAULT_FLAVOUR)], capture=False)
    size = docker("image", "inspect", "-f", "{{.Size}}", ref).stdout.strip()
    say(f"image: built {ref} in {time.monotonic() - t0:.0f} s, {int(size) / 1e6:.0f} MB")
    return ref


# --------------------------------------------------------------------------- docker state

def container_info(name: str) -> dict | None:
    res = docker("container", "inspect", name, check=False)
    if res.returncode != 0:
        return None
    return json.loads(res.stdout)[0]


def container_pid(name: str) -> int:
    info = container_info(name)
    if not info or not info["State"]["Running"]:
        raise LabError(f"container {name} is not running")
    return int(info["State"]["Pid"])


def ensure_network() -> bool:
    res = docker("network", "inspect", NETWORK, check=False)
    if res.returncode == 0:
        cfg = json.loads(res.stdout)[0].get("IPAM", {}).get("Config") or [{}]
        if cfg[0].get("Subnet") != SUBNET:
            raise LabError(f"network {NETWORK} exists with subnet {cfg[0].get('Subnet')}, "
                           f"want {SUBNET}: run `down` first")
        return False
    say(f"network: creating {NETWORK} {SUBNET} gw {GATEWAY}")
    docker("network", "create", "--driver", "bridge", "--subnet", SUBNET, "--gateway", GATEWAY,
           "--label", f"{LABEL}=1", NETWORK)
    return True


def volume_name(node: Node) -> str:
    return f"{node.container}-docker"


def run_node(node: Node, image: str) -> None:
    vol = volume_name(node)
    if not ok(["docker", "volume", "inspect", vol]):
        docker("volume", "create", "--label", f"{LABEL}=1", vol)
    docker("run", "-d", "--name", node.container, "--hostname", node.name,
           "--network", NETWORK, "--ip", node.mgmt_address, *RUN_FLAGS,
           "-v", f"{vol}:/var/lib/docker",
           "--label", f"{LABEL}=1", "--label", f"{LABEL}.node={node.name}", image)


def ensure_node(node: Node, image: str, recreate: bool) -> bool:
    """Container running with the wanted image. Returns True if something changed."""
    info = container_info(node.container)
    if info is not None:
        want_id = docker("image", "inspect", "-f", "{{.Id}}", image).stdout.strip()
        if info["Image"] != want_id:
            if not recreate:
                say(f"{node.name}: runs another image ({info['Config']['Image']}); "
                    f"kept (use --recreate to replace it with {image})")
            else:
                say(f"{node.name}: recreating with {image}")
                docker("rm", "-f", node.container)
                info = None
    if info is None:
        say(f"{node.name}: starting container {node.container} ({node.mgmt_address})")
        run_node(node, image)
        return True
    if not info["State"]["Running"]:
        say(f"{node.name}: container exists but is stopped: starting it")
        docker("start", node.container)
        return True
    return False


def system_state(container: str) -> str:
    res = docker("exec", container, "systemctl", "is-system-running", check=False, timeout=30)
    return (res.stdout or "").strip() or "unknown"


def wait_systemd(node: Node, timeout: float = BOOT_TIMEOUT) -> str:
    t0 = time.monotonic()
    state = "unknown"
    while time.monotonic() - t0 < timeout:
        state = system_state(node.container)
        if state in ("running", "degraded"):
            break
        time.sleep(1)
    else:
        raise LabError(f"{node.name}: systemd did not finish booting in {timeout:.0f} s (state {state})")
    if state == "degraded":
        failed = docker("exec", node.container, "systemctl", "--failed", "--no-legend",
                        "--plain", check=False).stdout.strip()
        say(f"{node.name}: systemd degraded; failed units:\n    " + failed.replace("\n", "\n    "))
    return state


# --------------------------------------------------------------------------- cables

def node_links(pid: int) -> dict[str, dict]:
    """ifname -> `ip -j link` entry, inside a node's netns."""
    res = in_netns(pid, "ip", "-j", "link", "show", check=False)
    return {l["ifname"]: l for l in json.loads(res.stdout or "[]")}


def switch_links() -> dict[str, dict]:
    res = in_switch("-j", "link", "show", check=False)
    if res.returncode != 0:
        return {}
    return {l["ifname"]: l for l in json.loads(res.stdout or "[]")}


def switch_exists() -> bool:
    return SWITCH_NS in run(["ip", "netns", "list"], check=False).stdout.split()


def ensure_switch(topo: Topology) -> bool:
    changed = False
    if not switch_exists():
        say(f"switch: creating netns {SWITCH_NS}")
        run(["ip", "netns", "add", SWITCH_NS])
        in_switch("link", "set", "lo", "up")
        changed = True
    have = switch_links()
    for br in topo.bridges:
        if br not in have:
            say(f"switch: bridge {br}")
            in_switch("link", "add", br, "mtu", str(topo.mtu), "type", "bridge")
            in_switch("link", "set", br, "up")
            changed = True
    return changed


def end_spec(end: End, pids: dict[str, int]) -> list[str]:
    """`ip link add` arguments that create an end in its namespace under its final name
    (a node's NetworkManager then sees the CX-7 name from the start: it binds its default
    wired profile to the first name it sees)."""
    ns = SWITCH_NS if end.container is None else str(pids[end.container])
    return [end.ifname, "netns", ns]


def _bring_up(end: End, pids: dict[str, int], alias: str) -> None:
    if end.container is None:
        in_switch("link", "set", end.ifname, "master", end.bridge or "", "up")
    else:
        in_netns(pids[end.container], "ip", "link", "set", end.ifname, "alias", alias, "up")


def plug(link: Link, pids: dict[str, int], mtu: int) -> None:
    for e in (link.a, link.b):   # leftovers of an older, interrupted plug
        if ok(["ip", "link", "show", e.tmpname]):
            run(["ip", "link", "del", e.tmpname])
    run(["ip", "link", "add", *end_spec(link.a, pids), "mtu", str(mtu), "type", "veth",
         "peer", "name", *end_spec(link.b, pids), "mtu", str(mtu)])
    try:
        for e in (link.a, link.b):
            _bring_up(e, pids, link.alias)
    except LabError:
        remove_end(link.a, pids)
        raise


def loose_ns_exists() -> bool:
    return LOOSE_NS in run(["ip", "netns", "list"], check=False).stdout.split()


def ensure_loose_ns() -> None:
    if not loose_ns_exists():
        run(["ip", "netns", "add", LOOSE_NS])


def plug_loose(loose: Loose, pids: dict[str, int]) -> None:
    """An uncabled port: admin up inside the node, its peer down in LOOSE_NS, so the
    node's end reports NO-CARRIER (carrier 0), like a QSFP port with no cable."""
    ensure_loose_ns()
    run(["ip", "-n", LOOSE_NS, "link", "del", loose.peer], check=False)   # leftover peer
    run(["ip", "link", "add", *end_spec(loose.end, pids), "mtu", str(LOOSE_MTU), "type", "veth",
         "peer", "name", loose.peer, "netns", LOOSE_NS])
    try:
        _bring_up(loose.end, pids, LOOSE_ALIAS)
    except LabError:
        remove_end(loose.end, pids)
        raise


def end_present(end: End, pids: dict[str, int], cache: dict, alias: str | None = None) -> bool:
    """The end exists (and, inside a node, carries the alias of the cable it belongs to)."""
    key = end.container or SWITCH_NS
    if key not in cache:
        cache[key] = switch_links() if end.container is None else node_links(pids[end.container])
    entry = cache[key].get(end.ifname)
    if entry is None:
        return False
    return alias is None or end.container is None or entry.get("ifalias") == alias


def remove_end(end: End, pids: dict[str, int]) -> None:
    if end.container is None:
        in_switch("link", "del", end.ifname, check=False)
    else:
        in_netns(pids[end.container], "ip", "link", "del", end.ifname, check=False)


def describe(link: Link, topo: Topology) -> str:
    names = {n.container: n.name for n in topo.nodes}
    side = lambda e: f"{names[e.container]}:{e.ifname}" if e.container else f"switch:{e.bridge}"
    return f"rail {link.rail}: {side(link.a)} <-> {side(link.b)}"


def replug(topo: Topology) -> int:
    """Make the cabling what the topology says: every cable in place (node ends named
    by their alias), every other port uncabled. Returns how many cables and uncabled
    ports were (re)created."""
    pids = {n.container: container_pid(n.container) for n in topo.nodes}
    if topo.switched:
        ensure_switch(topo)

    def wrong(cache: dict) -> tuple[list[Link], list[Loose]]:
        links = [l for l in topo.links
                 if not all(end_present(e, pids, cache, l.alias) for e in (l.a, l.b))]
        loose = [l for l in topo.loose if not end_present(l.end, pids, cache, LOOSE_ALIAS)]
        return links, loose

    # pass 1: unplug what is not where it should be (a moved cable, half a cable after a
    # node restart, a loose port where a cable goes); deleting one end of a veth removes
    # the other, so the state is read again before plugging
    bad_links, bad_loose = wrong({})
    for link in bad_links:
        for e in (link.a, link.b):
            remove_end(e, pids)
    for l in bad_loose:
        remove_end(l.end, pids)
    cache: dict = {}
    bad_links, bad_loose = wrong(cache)
    created = 0
    for link in bad_links:
        for e in (link.a, link.b):
            if end_present(e, pids, cache):
                remove_end(e, pids)
        say(f"cable: plugging {describe(link, topo)}")
        plug(link, pids, topo.mtu)
        created += 1
    names = {n.container: n.name for n in topo.nodes}
    for l in bad_loose:
        if end_present(l.end, pids, cache):
            remove_end(l.end, pids)
        say(f"port: {names[l.end.container]}:{l.end.ifname} uncabled (no carrier)")
        plug_loose(l, pids)
        created += 1
    return created


# --------------------------------------------------------------------------- commands

def cmd_image(args) -> int:
    print(ensure_image(flavour_from_env(args.flavour)))
    return 0


def cmd_up(args) -> int:
    t0 = time.monotonic()
    topo = plan_topology(load_inventory(args.inventory))
    say(f"inventory: {len(topo.nodes)} nodes, {len(topo.nodes[0].rails)} rails, "
        f"{'switched' if topo.switched else 'direct cables'}")
    flavour = flavour_from_env(args.flavour)
    say(f"flavour: {flavour}")
    image = ensure_image(flavour)
    changed = ensure_network()
    for node in topo.nodes:
        changed |= ensure_node(node, image, args.recreate)
    say("waiting for systemd in every node")
    for node in topo.nodes:
        state = wait_systemd(node)
        say(f"{node.name}: systemd {state}")
    n = replug(topo)
    changed |= n > 0
    dt = time.monotonic() - t0
    if changed:
        say(f"lab is up ({n} cables plugged) in {dt:.0f} s")
    else:
        say(f"lab already up: nothing changed ({dt:.0f} s)")
    return 0


def cmd_replug(args) -> int:
    topo = plan_topology(load_inventory(args.inventory), moved=args.other_port or ())
    for node in args.other_port or ():
        say(f"{node}: cable in the other QSFP port")
    n = replug(topo)
    say(f"{n} cable(s)/port(s) plugged" if n else "cabling as planned: nothing changed")
    return 0


def cmd_restart(args) -> int:
    topo = plan_topology(load_inventory(args.inventory))
    node = next((n for n in topo.nodes if args.node in (n.name, n.container)), None)
    if node is None:
        raise LabError(f"unknown node {args.node}; known: {', '.join(n.name for n in topo.nodes)}")
    say(f"{node.name}: docker restart (reboot)")
    docker("restart", node.container)
    say(f"{node.name}: systemd {wait_systemd(node)}")
    n = replug(topo)
    say(f"{n} cable(s) plugged back in")
    return 0


def lab_objects(kind: str) -> list[str]:
    if kind == "container":
        res = docker("ps", "-a", "--filter", f"label={LABEL}=1", "--format", "{{.Names}}")
    else:
        res = docker(kind, "ls", "-q", "--filter", f"label={LABEL}=1")
    return res.stdout.split()


def cmd_down(args) -> int:
    did = False
    for c in lab_objects("container"):
        say(f"removing container {c}")
        docker("rm", "-f", "-v", c)
        did = True
    for v in lab_objects("volume"):
        say(f"removing volume {v}")
        docker("volume", "rm", "-f", v)
        did = True
    if ok(["docker", "network", "inspect", NETWORK]):
        say(f"removing network {NETWORK}")
        docker("network", "rm", NETWORK)
        did = True
    if switch_exists():
        say(f"removing switch netns {SWITCH_NS}")
        run(["ip", "netns", "del", SWITCH_NS])
        did = True
    if loose_ns_exists():
        say(f"removing netns {LOOSE_NS} (peers of the uncabled ports)")
        run(["ip", "netns", "del", LOOSE_NS])
        did = True
    for l in json.loads(run(["ip", "-j", "link", "show"]).stdout or "[]"):
        if VETH_RE.match(l["ifname"]):
            say(f"removing leftover veth {l['ifname']}")
            run(["ip", "link", "del", l["ifname"]], check=False)
            did = True
    say("lab is down" if did else "lab already down: nothing to do")
    return 0


def link_summary(links: dict[str, dict], ifname: str) -> str:
    l = links.get(ifname)
    if l is None:
        return f"{ifname}:MISSING"
    up = "UP" in l.get("flags", []) and "LOWER_UP" in l.get("flags", [])
    return f"{ifname}:{'up' if up else 'DOWN'}/{l.get('mtu')}"


def cmd_status(args) -> int:
    topo = plan_topology(load_inventory(args.inventory))
    rows = [("NODE", "CONTAINER", "STATE", "SYSTEMD", "MGMT-IP", "QSFP PORTS (up = carrier)")]
    for n in topo.nodes:
        info = container_info(n.container)
        if info is None:
            rows.append((n.name, n.container, "absent", "-", "-", "-"))
            continue
        running = info["State"]["Running"]
        ip = (info["NetworkSettings"]["Networks"].get(NETWORK) or {}).get("IPAddress") or "-"
        if running:
            links = node_links(int(info["State"]["Pid"]))
            rails = " ".join(link_summary(links, r) for r in n.ports)
            sysd = system_state(n.container)
        else:
            rails, sysd = "-", "-"
        rows.append((n.name, n.container, info["State"]["Status"], sysd, ip, rails))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if topo.switched:
        print(f"switch netns {SWITCH_NS}: {'present' if switch_exists() else 'absent'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="spark_lab.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--inventory", "-i", default=str(DEFAULT_INVENTORY),
                   help="inventory of the lab (default: inventory/lab)")
    sub = p.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)   # --inventory after the subcommand too
    common.add_argument("--inventory", "-i", default=argparse.SUPPRESS)
    flav = argparse.ArgumentParser(add_help=False)
    flav.add_argument("--flavour", choices=FLAVOURS, default=None,
                      help=f"node flavour (default: $SPARK_LAB_FLAVOUR or {DEFAULT_FLAVOUR})")
    sub.add_parser("image", parents=[flav], help="build the node image if needed, print its tag")
    up = sub.add_parser("up", parents=[common, flav], help="start the lab (idempotent)")
    up.add_argument("--recreate", action="store_true",
                    help="replace node containers that run another image")
    rp = sub.add_parser("replug", parents=[common],
                        help="cable the lab as the inventory says (plug what is missing or moved)")
    rp.add_argument("--other-port", action="append", metavar="NODE",
                    help="move NODE's cable to its other QSFP port (np1 <-> np0, both twins); repeatable")
    rs = sub.add_parser("restart", parents=[common], help="reboot one node, then replug its cables")
    rs.add_argument("node")
    sub.add_parser("down", parents=[common], help="remove everything the lab created (idempotent)")
    sub.add_parser("status", parents=[common], help="nodes, state, mgmt IP, rail links")
    args = p.parse_args(argv)
    handlers = {"image": cmd_image, "up": cmd_up, "replug": cmd_replug,
                "restart": cmd_restart, "down": cmd_down, "status": cmd_status}
    try:
        return handlers[args.cmd](args)
    except LabError as e:
        print(f"[lab] ERROR: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
