"""Cabling discovery: which ConnectX-7 port of which node reaches which peer.

Used by ``discover.yml``. Three parts, all plain functions:

1. **The probe** (runs on every node at once, ``library/cx7_probe.py``): on every
   candidate port with carrier, broadcast a small Ethernet frame (ethertype 0x88B5,
   IEEE "local experimental") naming this node, the port and the run, and listen for
   the frames of the other nodes. It needs no IP address, no IPv6, no LLDP daemon and
   leaves nothing behind: frames are link-local (never routed), and a port that was
   administratively down is brought up only for the probe and set down again.
2. **The plan** (controller, ``library/discover_inventory.py``): from what every port
   heard, decide which ports are cabled to which peer, refuse what cannot work
   (no cabled port, a peer that is not the expected node, rails to different peers on
   two nodes, crossed cabling unless accepted), then propose rails: rail r is the
   cabled twin on PCIe link r of every node, addressed ``<subnet r> + offset + rank``.
3. **The outputs**: the inventory (hosts.yml with ``spark_rails``), and the Markdown /
   JSON summary (a table per node: netdev, RDMA device, port, carrier, speed, peer).

Peers are identified only by what was heard on the wire, never from interface names.
"""

from __future__ import annotations

import ipaddress
import json
import select
import socket
import time

from ..runtime.inventory import problem as _problem
from . import topology as spark_topology

ETHERTYPE = 0x88B5  # IEEE 802 local experimental ethertype 1
MAGIC = b"spark-discover/1 "
BROADCAST = b"\xff" * 6
MIN_FRAME = 60
PACKET_OUTGOING = 4  # linux/if_packet.h
IFF_UP = 0x1


# ---------------------------------------------------------------- frames

def mac_bytes(mac):
    return bytes(int(part, 16) for part in mac.split(":"))


def beacon_frame(run_id, node, interface, mac):
    """One broadcast Ethernet frame naming the sender (node, interface, MAC) and the run."""
    payload = MAGIC + json.dumps({"run": run_id, "node": node, "interface": interface, "mac": mac},
                                 sort_keys=True).encode()
    frame = BROADCAST + mac_bytes(mac) + ETHERTYPE.to_bytes(2, "big") + payload
    return frame.ljust(MIN_FRAME, b"\0")


def parse_frame(data, run_id):
    """The beacon in a received frame, or None (other ethertype, other run, garbage)."""
    if len(data) < 14 + len(MAGIC) or int.from_bytes(data[12:14], "big") != ETHERTYPE:
        return None
    payload = data[14:]
    if not payload.startswith(MAGIC):
        return None
    try:
        beacon = json.loads(payload[len(MAGIC):].rstrip(b"\0").decode())
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(beacon, dict) or beacon.get("run") != run_id:
        return None
    if not all(isinstance(beacon.get(k), str) for k in ("node", "interface", "mac")):
        return None
    beacon["source_mac"] = ":".join(f"{b:02x}" for b in data[6:12])
    return beacon


class PacketSocket:
    """A raw AF_PACKET socket on one interface for the discovery ethertype (needs
    CAP_NET_RAW: root). ``recv()`` returns the frames that arrived, not the ones sent."""

    def __init__(self, ifname):
        self.ifname = ifname
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
        try:
            self._sock.bind((ifname, ETHERTYPE))
            self._sock.setblocking(False)
        except OSError:
            self._sock.close()
            raise

    def fileno(self):
        return self._sock.fileno()

    def send(self, frame):
        self._sock.send(frame)

    def recv(self):
        frames = []
        while True:
            try:
                data, address = self._sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return frames
            if address[2] != PACKET_OUTGOING:
                frames.append(data)

    def close(self):
        self._sock.close()


def select_wait(timeout, sockets):
    """Wait until a socket has data or the timeout passes."""
    if timeout > 0:
        select.select(list(sockets), [], [], timeout)


# ---------------------------------------------------------------- probe

def probe(node, run_id, ports, peers, open_socket=PacketSocket, wait=select_wait,
          clock=time.monotonic, interval=0.2, min_seconds=1.0, max_seconds=10.0, linger=1.0):
    """Beacon on every port and listen, until every port has heard every peer (then
    ``linger`` seconds more, so late starters hear us too) or ``max_seconds`` pass.

    ports: {ifname: mac}; peers: the other nodes expected on every cabled port.
    Returns {heard: {ifname: [{node, interface, mac}]}, errors: {ifname: str},
    seconds, started, ended} (started/ended: wall clock, to check the nodes' windows
    overlapped).
    """
    started_wall = time.time()
    start = clock()
    sockets, errors = {}, {}
    for ifname in ports:
        try:
            sockets[ifname] = open_socket(ifname)
        except OSError as exc:
            errors[ifname] = f"cannot open a raw socket: {exc}"
    heard = {ifname: {} for ifname in sockets}
    peers = set(peers)
    done_at = None
    next_send = start
    try:
        while sockets:
            now = clock()
            if now >= next_send:
                for ifname, sock in sockets.items():
                    try:
                        sock.send(beacon_frame(run_id, node, ifname, ports[ifname]))
                    except OSError as exc:
                        errors.setdefault(ifname, f"cannot send: {exc}")
                next_send = now + interval
            for ifname, sock in sockets.items():
                for data in sock.recv():
                    beacon = parse_frame(data, run_id)
                    if beacon is not None:
                        key = (beacon["node"], beacon["interface"])
                        heard[ifname][key] = {"node": beacon["node"], "interface": beacon["interface"],
                                              "mac": beacon["mac"]}
            now = clock()
            elapsed = now - start
            if done_at is None and elapsed >= min_seconds and all(
                    peers <= {n for n, _ in seen} for seen in heard.values()):
                done_at = now + linger
            if elapsed >= max_seconds or (done_at is not None and now >= done_at):
                break
            wait(max(0.0, min(next_send, done_at or next_send) - clock()), sockets.values())
    finally:
        for sock in sockets.values():
            sock.close()
    return {
        "heard": {ifname: sorted(seen.values(), key=lambda b: (b["node"], b["interface"]))
                  for ifname, seen in heard.items()},
        "errors": errors,
        "seconds": round(clock() - start, 2),
        "started": started_wall,
        "ended": time.time(),
    }


def admin_up(flags):
    """IFF_UP from a sysfs ``flags`` value ('0x1003'); None when unreadable."""
    try:
        return bool(int(flags, 16) & IFF_UP)
    except (TypeError, ValueError):
        return None


def observe(node, run_id, peers, cx7, flags, set_link, rediscover, probe_fn=probe,
            bring_up=True, link_wait=5.0, clock=time.monotonic, sleep=time.sleep, **probe_args):
    """What one node sees: its ConnectX-7 netdevs (``cx7``, cx7.discover()), and
    on every port with carrier, which nodes answered.

    flags: {netdev: sysfs flags}; set_link(name, up) sets the admin state;
    rediscover() re-reads cx7 after ports were brought up. A port that was
    administratively down (its carrier cannot be read) is set up for the probe when
    ``bring_up``, and down again before this returns, whatever happens.
    """
    names = [n["name"] for n in cx7["netdevs"]]
    down = [name for name in names if admin_up(flags.get(name)) is False]
    brought_up, restored = [], []
    try:
        if bring_up and down:
            for name in down:
                set_link(name, True)
                brought_up.append(name)
            deadline = clock() + link_wait
            while True:   # real ports train their link for a few seconds
                cx7 = rediscover()
                if all(cx7["by_name"].get(n, {}).get("carrier") for n in brought_up) or clock() >= deadline:
                    break
                sleep(0.5)
        ports = {n["name"]: n["mac"] for n in cx7["netdevs"] if n["carrier"] and n["mac"]}
        result = probe_fn(node, run_id, ports, peers, **probe_args)
    finally:
        for name in brought_up:
            set_link(name, False)
            restored.append(name)
    netdevs = []
    for entry in cx7["netdevs"]:
        netdevs.append({
            "name": entry["name"],
            "rdma_device": entry["rdma_device"],
            "port": entry["port"],
            "pcie_root": entry.get("pcie_root"),
            "mac": entry["mac"],
            "carrier": entry["carrier"],
            "speed_mbps": entry["speed_mbps"] if entry["carrier"] else None,
            "admin_up": entry["name"] not in down,
            "probed": entry["name"] in result["heard"],
            "heard": result["heard"].get(entry["name"], []),
            "error": result["errors"].get(entry["name"]),
        })
    return {
        "node": node,
        "source": cx7["source"],
        "fallback_reason": cx7.get("fallback_reason"),
        "missing": cx7.get("missing", []),
        "problem": cx7.get("problem"),
        "netdevs": netdevs,
        "brought_up": brought_up,
        "restored": restored,
        "probe": {k: result[k] for k in ("seconds", "started", "ended")},
    }


# ---------------------------------------------------------------- plan

def _port_label(node, port, names):
    return f"{node} port {port} ({', '.join(names)})"


def _peer_text(heard, host):
    nodes = sorted({b["node"] for b in heard})
    if not nodes:
        return "no node of this inventory answered on it"
    if nodes == [host]:
        return "only its own node answered (cabled back into this node)"
    return "answered by " + ", ".join(nodes)


def check_subnets(subnets, count):
    """The rail subnets: valid IPv4 networks, enough of them, no overlap."""
    problems, nets = [], []
    for index, value in enumerate(subnets):
        try:
            nets.append(ipaddress.IPv4Network(str(value)))
        except ValueError as exc:
            problems.append(_problem("", f"discover_rail_subnets[{index}]", repr(value),
                                     "an IPv4 network like 192.168.100.0/24", str(exc)))
    if problems:
        return problems, nets
    if len(nets) < count:
        problems.append(_problem("", "discover_rail_subnets", f"{len(nets)} subnet(s) {[str(n) for n in nets]}",
                                 f"at least {count}, one per rail", "Give one subnet per rail, e.g. "
                                 "[192.168.100.0/24, 192.168.101.0/24]."))
    for a in range(len(nets)):
        for b in range(a + 1, len(nets)):
            if nets[a].overlaps(nets[b]):
                problems.append(_problem("", f"discover_rail_subnets[{b}]", f"{nets[b]} overlapping {nets[a]}",
                                         "each rail on its own subnet",
                                         "Same subnet on both twins breaks routing and discovery."))
    return problems, nets


def plan(observations, heads, workers, subnets, host_offset=10, allow_crossed=False, ignore=(),
         triangle_subnets=None):
    """Rails for every node from what every port heard.

    observations: {host: observe() result}; heads/workers: the inventory groups (rank
    order: head 0, workers 1..N); ignore: "host:ifname" entries left out on purpose.
    Three nodes or more whose every cabled port hears one node (direct cables, a ring)
    are planned as a triangle by ``spark_topology.plan`` (``triangle_subnets``: six,
    one per link and twin) or refused (four or more).
    Returns {rails: {host: [{interface, address}]}, problems, warnings, links, crossed}
    (and ``topology: triangle`` for a triangle).
    """
    order = list(heads) + [w for w in workers if w not in heads]
    problems, warnings = [], []
    ignore = set(ignore)
    two_nodes = len(order) == 2
    info = {}   # (host, ifname) -> netdev entry
    for host in order:
        obs = observations.get(host)
        if obs is None:
            problems.append(_problem(host, "discovery", "no probe result", "a result from every node",
                                     "The node was unreachable or its probe failed: see the task output above."))
            continue
        for entry in obs["netdevs"]:
            info[(host, entry["name"])] = entry
    if problems:
        return {"rails": {}, "problems": problems, "warnings": warnings, "links": [], "crossed": False}

    windows = [observations[h]["probe"] for h in order]
    if max(w["started"] for w in windows) >= min(w["ended"] for w in windows):
        warnings.append("the nodes' probe windows did not overlap (by their clocks): a node that "
                        "heard nobody may have started late; raise discover_probe_seconds")
    if spark_topology.classify(observations, order, ignore) == "ring":
        result = spark_topology.plan(observations, order, triangle_subnets or spark_topology.DEFAULT_SUBNETS,
                                     host_offset=host_offset, ignore=ignore)
        result["warnings"] = warnings + result["warnings"]
        return result

    usable = {}   # host -> [entry] (carrier, heard exactly the expected peers)
    for host in order:
        expected = set(order) - {host}
        obs = observations[host]
        entries = [e for e in obs["netdevs"] if f"{host}:{e['name']}" not in ignore]
        cabled = [e for e in entries if e["carrier"]]
        if not cabled:
            seen = ", ".join(f"{e['name']} ({'no carrier' if e['carrier'] is False else 'carrier unknown'})"
                             for e in entries) or "no ConnectX-7 netdev at all"
            if obs.get("missing"):
                seen += f"; absent: {', '.join(obs['missing'])}"
            if obs.get("problem"):
                seen += f"; {obs['problem']}"
            problems.append(_problem(host, "cabling", f"no cabled port ({seen})",
                                     "at least one QSFP port with carrier",
                                     "Plug the QSFP cable (both nodes), check the link with `ip -br link`, "
                                     "then run discover.yml again."))
            continue
        good, peer_sets, labels = [], {}, {}
        for entry in cabled:
            heard_nodes = {b["node"] for b in entry["heard"]}
            nodes = heard_nodes - {host}
            peer_sets[entry["name"]] = nodes
            labels[entry["name"]] = ", ".join(sorted(nodes)) or ("itself" if host in heard_nodes else "nobody")
            if nodes == expected:
                good.append(entry)
                continue
            if entry.get("error"):
                found = f"{entry['name']} has carrier but could not be probed ({entry['error']})"
            else:
                found = f"{entry['name']} has carrier, {_peer_text(entry['heard'], host)}"
            want = f"the other node{'s' if len(expected) > 1 else ''} {', '.join(sorted(expected))}"
            hint = ("It is cabled to something else (another machine, a switch port without the other "
                    "nodes) or the peer port is down. Fix the cable, or leave the port out with "
                    f"discover_ignore_interfaces: ['{host}:{entry['name']}'].")
            if len(expected) > 1:
                hint += (" With more than two nodes every rail must reach every other node "
                         "(a switch); direct rings are not supported by this inventory's rails.")
            problems.append(_problem(host, "cabling", found, f"{want} on every cabled port", hint))
        distinct = {frozenset(s) for s in peer_sets.values()}
        if two_nodes and len(distinct) > 1 and any(s == expected for s in peer_sets.values()):
            detail = ", ".join(f"{n} -> {label}" for n, label in sorted(labels.items()))
            problems.append(_problem(host, "cabling", f"its cabled ports reach different peers ({detail})",
                                     f"both rails to {', '.join(sorted(expected))} on a two-node cluster",
                                     "Both twins of the one QSFP cable must reach the other node."))
        usable[host] = good
    if problems:
        return {"rails": {}, "problems": problems, "warnings": warnings, "links": [], "crossed": False}

    # the head's port: the one with most usable twins (ties: the higher port, the field's choice)
    head = order[0]
    by_port = {}
    for entry in usable[head]:
        by_port.setdefault(entry["port"], []).append(entry)
    head_port = max(by_port, key=lambda p: (len(by_port[p]), p if p is not None else -1))
    if len(by_port) > 1:
        warnings.append(f"{head}: more than one port is cabled; port {head_port} is used "
                        "(a second cable adds no bandwidth on a Spark)")
    chosen = {head: sorted(by_port[head_port], key=lambda e: (e["pcie_root"] or "", e["name"]))}
    head_names = {e["name"] for e in chosen[head]}
    links, crossed = [], []
    for host in order[1:]:
        # this node's port that hears the head's chosen port
        ports = {}
        for entry in usable[host]:
            if any(b["node"] == head and b["interface"] in head_names for b in entry["heard"]):
                ports.setdefault(entry["port"], []).append(entry)
        port = max(ports, key=lambda p: (len(ports[p]), p if p is not None else -1))
        if len(ports) > 1:
            warnings.append(f"{host}: more than one port hears {head}'s port {head_port}; port {port} is used")
        chosen[host] = sorted(ports[port], key=lambda e: (e["pcie_root"] or "", e["name"]))
        if port != head_port:
            crossed.append(f"{_port_label(head, head_port, [e['name'] for e in chosen[head]])} is cabled to "
                           f"{_port_label(host, port, [e['name'] for e in chosen[host]])}")
        for entry in chosen[host]:
            for b in entry["heard"]:
                if b["node"] == head and b["interface"] in head_names:
                    links.append({"a": f"{head}:{b['interface']}", "b": f"{host}:{entry['name']}"})

    # rails: one per PCIe link present (cabled and usable) on every node
    roots = [[e["pcie_root"] for e in chosen[h]] for h in order]
    count = min(len(r) for r in roots)
    if any(len(r) != count for r in roots):
        short = [h for h, r in zip(order, roots) if len(r) == count]
        warnings.append(f"only {count} rail(s): {', '.join(short)} has fewer cabled twins than the others; "
                        "a Spark needs both twins of its port for full bandwidth")
    elif count == 1:
        warnings.append("only one rail: one twin of the port has no link; RDMA runs at about half the "
                        "bandwidth (both twins are needed for ~200 Gb/s)")
    # a rail must join twins of the same PCIe link position that heard each other
    for r in range(count):
        head_entry = chosen[head][r]
        for host in order[1:]:
            entry = chosen[host][r]
            heard_ifs = {b["interface"] for b in entry["heard"] if b["node"] == head}
            if head_entry["name"] not in heard_ifs:
                crossed.append(f"rail {r} would pair {head}:{head_entry['name']} (PCIe {head_entry['pcie_root']}) "
                               f"with {host}:{entry['name']} (PCIe {entry['pcie_root']}), which heard "
                               f"{', '.join(sorted(heard_ifs)) or 'nothing'} of {head}")
    if crossed and not allow_crossed:
        problems.append(_problem("", "cabling", "crossed: " + "; ".join(crossed),
                                 "the cable in the same port on both nodes (port 0 to port 0, or 1 to 1)",
                                 "It works, but each rail then pairs interfaces of a different port "
                                 "(PCI function) on each node, which is easy to get wrong later. Re-plug "
                                 "the cable into the same port on both nodes, or accept this cabling "
                                 "with -e discover_allow_crossed=true."))
    elif crossed:
        warnings.append("crossed cabling accepted (discover_allow_crossed): " + "; ".join(crossed))

    subnet_problems, nets = check_subnets(subnets, count)
    problems += subnet_problems
    rails = {}
    if not problems:
        for rank, host in enumerate(order):
            rails[host] = []
            for r in range(count):
                net = nets[r]
                address = net.network_address + host_offset + rank
                if address not in net or address in (net.network_address, net.broadcast_address):
                    problems.append(_problem(host, f"discover_rail_subnets[{r}]", str(net),
                                             f"room for {len(order)} node(s) from host number {host_offset}",
                                             "Use a larger subnet or a smaller discover_host_offset."))
                    break
                rails[host].append({"interface": chosen[host][r]["name"], "address": f"{address}/{net.prefixlen}"})
    return {"rails": rails if not problems else {}, "problems": problems, "warnings": warnings,
            "links": links, "crossed": bool(crossed)}


# ---------------------------------------------------------------- outputs

def _speed(mbps):
    if mbps is None:
        return "-"
    return f"{mbps // 1000} Gb/s" if mbps >= 1000 else f"{mbps} Mb/s"


def _carrier(value):
    return {True: "yes", False: "no"}.get(value, "unknown")


def summary_markdown(observations, order, result, name):
    """The Markdown summary: what was found per node, the rails proposed, the problems."""
    rail_of = {}
    for host, rails in result["rails"].items():
        for index, rail in enumerate(rails):
            rail_of[(host, rail["interface"])] = f"rail {index}: {rail['address']}"
    lines = [f"# Discovery: {name}", ""]
    verdict = "refused" if result["problems"] else "inventory written"
    lines += [f"Verdict: **{verdict}**.", ""]
    if result.get("topology") == spark_topology.TRIANGLE:
        lines += ["Topology: **triangle** (a cable between every pair; `spark_topology: triangle`).", ""]
        if result["rails"] and len(order) == 3:
            found = spark_topology.links(order, result["rails"])
            labels = {(link["a"], link["b"]): ", ".join(t["subnet"] for t in link["twins"]) for link in found}
            lines += ["```", spark_topology.draw(order, labels), "```", ""]
    for host in order:
        obs = observations.get(host)
        lines += [f"## {host}", ""]
        if obs is None:
            lines += ["No probe result.", ""]
            continue
        if obs.get("problem"):
            lines += [obs["problem"], ""]
        elif obs["source"] != "sysfs":
            lines += [f"No mlx5_core netdev: the names in discover_fallback_interfaces were read instead "
                      f"({obs.get('fallback_reason') or obs['source']}).", ""]
        lines += ["| netdev | RDMA device | port | PCIe | carrier | speed | peer | rail |",
                  "|---|---|---|---|---|---|---|---|"]
        for e in obs["netdevs"]:
            peer = ", ".join(f"{b['node']}:{b['interface']}" for b in e["heard"]) or (
                "(not probed)" if not e["probed"] else "nobody answered")
            lines.append(f"| {e['name']} | {e['rdma_device'] or '-'} | {e['port'] if e['port'] is not None else '-'} "
                         f"| {e['pcie_root'] or '-'} | {_carrier(e['carrier'])} | {_speed(e['speed_mbps'])} "
                         f"| {peer} | {rail_of.get((host, e['name']), '-')} |")
        if obs["missing"]:
            lines.append(f"\nAbsent: {', '.join(obs['missing'])}.")
        if obs["brought_up"]:
            lines.append(f"\nSet up for the probe and down again: {', '.join(obs['restored'])}.")
        lines.append("")
    if result["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in result["warnings"]] + [""]
    if result["problems"]:
        lines += ["## Problems", ""] + [f"- {p['message']}" for p in result["problems"]] + [""]
    return "\n".join(lines)


def summary_json(observations, order, result, name):
    return {"name": name, "order": order, "observations": {h: observations.get(h) for h in order},
            "rails": result["rails"], "links": result["links"], "crossed": result["crossed"],
            "warnings": result["warnings"], "problems": result["problems"]}


def inventory_with_rails(inventory, rails):
    """A loaded YAML inventory (the input) with ``spark_rails`` set on every host of
    ``rails``, wherever the host appears. Returns (new inventory, hosts not found)."""
    import copy

    out = copy.deepcopy(inventory)
    found = set()

    def walk(group):
        if not isinstance(group, dict):
            return
        hosts = group.get("hosts")
        if isinstance(hosts, dict):
            for host in list(hosts):
                if host in rails:
                    entry = hosts[host] if isinstance(hosts[host], dict) else {}
                    entry["spark_rails"] = [dict(r) for r in rails[host]]
                    hosts[host] = entry
                    found.add(host)
        for child in (group.get("children") or {}).values():
            walk(child)

    for group in (out or {}).values():
        walk(group)
    return out, sorted(set(rails) - found)
