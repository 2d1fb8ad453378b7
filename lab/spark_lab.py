#!/usr/bin/env python3
"""The Spark lab: two (or more) simulated DGX Sparks as systemd containers.

    spark_lab.py image [--flavour F]       build the node image if needed, print its tag
    spark_lab.py up [--inventory DIR] [--recreate] [--flavour F]
    spark_lab.py replug                    re-create missing rail cables (after a restart)
    spark_lab.py restart NODE              reboot one node (docker restart), then replug
    spark_lab.py status
    spark_lab.py down                      remove containers, volumes, network, switch

Topology comes from the inventory (``ansible-inventory --list``): every host with
``ansible_host`` (container name), ``spark_mgmt_address`` and ``spark_rails``.
The docker network ``spark-lab-mgmt`` (198.19.0.0/24) plays the Wi-Fi and carries the
default route. Rail i ("QSFP cable" i) is one veth pair when there are exactly two
nodes, or a bridge per rail inside the network namespace ``spark-lab-sw`` (a switch)
when there are more. Rails carry no IP addresses: the Ansible roles assign them.

Flavours (--flavour, or SPARK_LAB_FLAVOUR): ``networkmanager`` (default) behaves like
DGX OS as shipped: NetworkManager renders netplan (01-network-manager-all.yaml), manages
eth0 and auto-connects the CX-7-named ports with its default wired profiles;
``networkd`` is a server-style node where systemd-networkd renders netplan.

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
DEFAULT_MTU = 9000
IFNAMSIZ = 15
VETH_RE = re.compile(r"^sl[0-9a-f]{10}$")  # host-side temporary veth names
BOOT_TIMEOUT = 180
FLAVOURS = ("networkmanager", "networkd")
DEFAULT_FLAVOUR = "networkmanager"

# exactly the capability set of shared/lab-facts.md (--privileged fails on this kind of host)
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


@dataclass(frozen=True)
class Topology:
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    bridges: tuple[str, ...] = ()   # in SWITCH_NS; empty for a 2-node (direct cable) lab
    mtu: int = DEFAULT_MTU

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
        nodes.append(Node(name=host, container=str(hv.get("ansible_host", host)),
                          mgmt_address=str(hv["spark_mgmt_address"]), rails=rails,
                          mtu=int(hv.get("spark_mtu", DEFAULT_MTU))))
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


def plan_topology(nodes: list[Node]) -> Topology:
    """Which veth pairs (and bridges) make the cables. 2 nodes: direct; more: switch."""
    validate_nodes(nodes)
    nrails = len(nodes[0].rails)
    mtu = nodes[0].mtu
    links: list[Link] = []
    bridges: list[str] = []
    if len(nodes) == 2:
        n0, n1 = nodes
        for i in range(nrails):
            links.append(Link(rail=i,
                              a=End(veth_name(n0.container, i), n0.rails[i], n0.container),
                              b=End(veth_name(n1.container, i), n1.rails[i], n1.container)))
    else:
        for i in range(nrails):
            bridge = f"rail{i}"
            bridges.append(bridge)
            for n in nodes:
                port = veth_name("sw", n.container, i)
                links.append(Link(rail=i,
                                  a=End(veth_name(n.container, i), n.rails[i], n.container),
                                  b=End(port, port, None, bridge)))
    names = [e.tmpname for link in links for e in (link.a, link.b)]
    if len(set(names)) != len(names):   # a hash collision: astronomically unlikely
        raise LabError("veth name collision in topology plan")
    return Topology(nodes=tuple(nodes), links=tuple(links), bridges=tuple(bridges), mtu=mtu)


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


def _bring_up(end: End, pids: dict[str, int]) -> None:
    if end.container is None:
        in_switch("link", "set", end.ifname, "master", end.bridge or "", "up")
    else:
        in_netns(pids[end.container], "ip", "link", "set", end.ifname, "up")


def plug(link: Link, pids: dict[str, int], mtu: int) -> None:
    for e in (link.a, link.b):   # leftovers of an older, interrupted plug
        if ok(["ip", "link", "show", e.tmpname]):
            run(["ip", "link", "del", e.tmpname])
    run(["ip", "link", "add", *end_spec(link.a, pids), "mtu", str(mtu), "type", "veth",
         "peer", "name", *end_spec(link.b, pids), "mtu", str(mtu)])
    try:
        for e in (link.a, link.b):
            _bring_up(e, pids)
    except LabError:
        remove_end(link.a, pids)
        raise


def end_present(end: End, pids: dict[str, int], cache: dict) -> bool:
    key = end.container or SWITCH_NS
    if key not in cache:
        cache[key] = switch_links() if end.container is None else node_links(pids[end.container])
    return end.ifname in cache[key]


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
    """Create the cables that are missing. Returns how many were created."""
    pids = {n.container: container_pid(n.container) for n in topo.nodes}
    if topo.switched:
        ensure_switch(topo)
    cache: dict = {}
    created = 0
    for link in topo.links:
        present = [end_present(e, pids, cache) for e in (link.a, link.b)]
        if all(present):
            continue
        for e, p in zip((link.a, link.b), present):
            if p:   # half a cable: the other end's namespace was replaced
                remove_end(e, pids)
        say(f"cable: plugging {describe(link, topo)}")
        plug(link, pids, topo.mtu)
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
    topo = plan_topology(load_inventory(args.inventory))
    n = replug(topo)
    say(f"{n} cable(s) plugged" if n else "all cables present: nothing changed")
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
    rows = [("NODE", "CONTAINER", "STATE", "SYSTEMD", "MGMT-IP", "RAILS")]
    for n in topo.nodes:
        info = container_info(n.container)
        if info is None:
            rows.append((n.name, n.container, "absent", "-", "-", "-"))
            continue
        running = info["State"]["Running"]
        ip = (info["NetworkSettings"]["Networks"].get(NETWORK) or {}).get("IPAddress") or "-"
        if running:
            links = node_links(int(info["State"]["Pid"]))
            rails = " ".join(link_summary(links, r) for r in n.rails)
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
    sub.add_parser("replug", parents=[common], help="re-create missing rail cables")
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
