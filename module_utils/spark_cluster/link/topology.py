"""Cluster topology: a switch (every rail reaches every node) or a triangle of three
direct cables (every pair of nodes has its own link). Plain functions, stdlib only.

The inventory says which (``topology``: ``switch``, the default, or
``triangle``). ``spark_rails`` keeps its shape in both: one ``{interface, address}``
per QSFP twin, rail 0 first. What differs is what a rail's subnet means:

- **switch**: rail ``i`` of every node is one subnet (``spark_inventory.check_rails``);
- **triangle**: every rail's subnet is shared by exactly two nodes, the two ends of one
  cable's twin; a rail's *peer* is the other node in its subnet. Each node has rails to
  both other nodes (two links, one or two twins each), all four netdevs addressed,
  one subnet per link and twin (NVIDIA's ``connect-three-sparks``: six subnets).

The one address every node reaches is each node's rail-0 address (its *primary*):
``VLLM_HOST_IP``, the bootstrap address of NCCL and gloo (both take one address per
process, from ``NCCL_SOCKET_IFNAME`` / ``GLOO_SOCKET_IFNAME``), and on the head
``MASTER_ADDR``. A peer's primary that is not on the direct link to it is reached by a
host route over that direct link, via the peer's own address on it: one hop, never
through the third node, never by the default route (docs/topology.md says why).

Functions:

- ``validate(topology, heads, workers, nodes)``: the preflight's rules (problems);
- ``links(order, rails)``: the three links and their twins;
- ``node_facts(order, rails, host)``: one node's view (peers per rail, the path to
  every other node's primary, host routes per interface, pings, NCCL's subnet prefix;
  the NCCL settings themselves are ``spark_env.topology_env``, which the node-side
  pre-start check imports without this file);
- ``probe_directions(order, rails)``: link validation's directions per link and twin;
- ``check_cabling(order, rails, observations)``: the inventory against what the
  discovery probe heard on the wire (preflight);
- ``plan(observations, order, subnets, ...)``: discovery's proposal of a triangle;
- ``draw(order, links, labels)``: the triangle as text, for the reports.
"""

from __future__ import annotations

import ipaddress

from ..runtime.inventory import parse_node_rails, problem

SWITCH = "switch"
TRIANGLE = "triangle"
TOPOLOGIES = (SWITCH, TRIANGLE)

# NVIDIA's three-node ring (connect-three-sparks): node1 port0 - node2 port1,
# node2 port0 - node3 port1, node3 port0 - node1 port1.
CABLING_HINT = ("Cable the triangle as NVIDIA documents it: node 1 port 0 to node 2 port 1, "
                "node 2 port 0 to node 3 port 1, node 3 port 0 to node 1 port 1.")
RING_HINT = ("Direct cables give every pair its own link only with three nodes: in a ring of "
             "four or more, some pairs have no cable and NCCL, gloo and vLLM would need a node "
             "to forward for them. Four or more Sparks need a switch (spark_topology: switch, "
             "every port's twins to it).")
PAIR_HINT = ("Two nodes take one cable: leave spark_topology at switch (the default), which "
             "covers a direct cable between two nodes.")
DEFAULT_SUBNETS = tuple(f"192.168.{100 + i}.0/24" for i in range(6))



def topology_of(value):
    """The topology name, or ValueError naming the choices."""
    name = SWITCH if value in (None, "") else str(value).strip().lower()
    if name not in TOPOLOGIES:
        raise ValueError(f"spark_topology is {value!r}; expected one of {', '.join(TOPOLOGIES)}")
    return name


def _strip(address):
    return str(address).split("/", 1)[0].strip()


def _parsed(order, nodes):
    """{host: [(interface, IPv4Interface)]} and the problems of parsing them."""
    problems, parsed = [], {}
    for host in order:
        entries, found = parse_node_rails(
            host, (nodes.get(host) or {}).get("rails"),
            "a non-empty list of {interface, address}, one per cabled QSFP twin")
        problems += found
        if entries is not None:
            parsed[host] = entries
    return parsed, problems


def _pair_name(a, b):
    return f"{a} <-> {b}"


def _by_subnet(parsed):
    """{network: [(host, rail index, interface, IPv4Interface)]} in host/rail order."""
    out = {}
    for host, entries in parsed.items():
        for index, (name, iface) in enumerate(entries):
            out.setdefault(iface.network, []).append((host, index, name, iface))
    return out


def validate(topology, heads, workers, nodes):
    """The rules of the topology's rails (controller, before any change). A switch's
    rules are ``spark_inventory.check_rails`` (nothing here); a triangle's are below.
    nodes: {host: {"rails": [...]}}. Every problem names the host or the link."""
    try:
        topology = topology_of(topology)
    except ValueError as exc:
        return [problem("", "spark_topology", repr(topology), f"one of {', '.join(TOPOLOGIES)}", str(exc))]
    if topology == SWITCH:
        return []
    order = list(heads) + [w for w in workers if w not in heads]
    if len(order) != 3:
        hint = RING_HINT if len(order) > 3 else PAIR_HINT
        return [problem("", "spark_topology", f"triangle with {len(order)} node(s) ({', '.join(order)})",
                        "exactly three nodes (one head, two workers)", hint)]
    parsed, problems = _parsed(order, nodes)
    if problems:
        return problems
    prefixes = {}
    seen = {}
    for host, entries in parsed.items():
        for index, (_, iface) in enumerate(entries):
            prefixes.setdefault(iface.network.prefixlen, []).append(f"{host} spark_rails[{index}]")
            key = str(iface.ip)
            if key in seen:
                problems.append(problem(host, f"spark_rails[{index}].address", key,
                                        "an address no other node or rail uses", f"{seen[key]} already has it"))
            else:
                seen[key] = f"{host} spark_rails[{index}]"
    if len(prefixes) > 1:
        detail = "; ".join(f"/{p}: {', '.join(w)}" for p, w in sorted(prefixes.items()))
        problems.append(problem("", "spark_rails[*].address", f"prefix lengths differ ({detail})",
                                "one prefix length on every rail",
                                "NCCL's subnet-aware routing compares every device with one prefix "
                                "length (NCCL_IB_SUBNET_PREFIX_LEN)."))
    by_subnet = _by_subnet(parsed)
    for net, members in by_subnet.items():
        hosts = sorted({m[0] for m in members}, key=order.index)
        for host in hosts:
            mine = [m for m in members if m[0] == host]
            if len(mine) > 1:
                rails = " and ".join(f"spark_rails[{m[1]}] ({m[2]})" for m in mine)
                problems.append(problem(host, "spark_rails[*].address", f"{rails} both in {net}",
                                        "each rail of a node in its own subnet (one subnet per link and twin)"))
        if len(hosts) == 1:
            host, index, name, iface = members[0]
            problems.append(problem(host, f"spark_rails[{index}].address",
                                    f"{iface} on {name}: no other node has an address in {net}",
                                    "the peer's twin in the same subnet (one subnet per link and twin, "
                                    "shared by the two nodes its cable joins)"))
        elif len(hosts) > 2:
            problems.append(problem("", f"subnet {net}", f"shared by {', '.join(hosts)}",
                                    "exactly two nodes per subnet in a triangle",
                                    "A subnet on three nodes is a switch's: set spark_topology: switch "
                                    "if the rails go through one."))
    nets = sorted(by_subnet, key=lambda n: (int(n.network_address), n.prefixlen))
    for i, a in enumerate(nets):
        for b in nets[i + 1:]:
            if a.overlaps(b):
                problems.append(problem("", "spark_rails[*].address", f"{a} overlapping {b}",
                                        "each link and twin on its own subnet"))
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            shared = [net for net, members in by_subnet.items() if {m[0] for m in members} == {a, b}]
            if not shared:
                problems.append(problem("", f"link {_pair_name(a, b)}",
                                        "missing: no rail of either node shares a subnet with the other",
                                        "one cable between every pair (its twins addressed in a subnet "
                                        "of their own on both nodes)", CABLING_HINT))
            elif len(shared) > 2:
                problems.append(problem("", f"link {_pair_name(a, b)}",
                                        f"{len(shared)} shared subnets ({', '.join(map(str, shared))}): "
                                        "more than one cable between the pair",
                                        "one cable (at most two twins) between a pair",
                                        "A second cable between the same pair leaves the third node "
                                        "without one of its links. " + CABLING_HINT))
    return problems


def links(order, rails):
    """The links of a valid triangle, in rank order of their ends ((0,1), (0,2), (1,2)):
    ``[{a, b, twins: [{subnet, a: {rail, interface, address}, b: {...}}]}]``, twins in
    the order of ``a``'s rails. rails: {host: spark_rails}. Assumes ``validate`` passed."""
    nodes = {h: {"rails": rails.get(h)} for h in order}
    parsed, _ = _parsed(order, nodes)
    by_subnet = _by_subnet(parsed)
    out = []
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            twins = []
            for net, members in by_subnet.items():
                if {m[0] for m in members} != {a, b}:
                    continue
                ends = {}
                for host, index, name, iface in members:
                    ends[host] = {"rail": index, "interface": name, "address": str(iface.ip)}
                twins.append({"subnet": str(net), "a": ends[a], "b": ends[b]})
            twins.sort(key=lambda t: t["a"]["rail"])
            out.append({"a": a, "b": b, "twins": twins})
    return out


def _end(twin, link, host):
    """(mine, theirs) ends of a twin for ``host``."""
    return (twin["a"], twin["b"]) if link["a"] == host else (twin["b"], twin["a"])


def node_facts(order, rails, host):
    """One node's view of a valid triangle.

    - ``rail_peers``: per rail of ``host``, the peer's address on it (a list, like
      spark_common's ``spark_rail_peers``);
    - ``peers``: the other nodes' primary (rail-0) addresses, in rank order;
    - ``peer_paths``: per other node, how its primary is reached: ``{host, address,
      interface, via}`` (``via`` None: on the link's subnet; else the peer's own
      address on the direct link, the gateway of a host route);
    - ``routes``: ``{interface: [{to, via}]}``, the host routes to put on the rails;
    - ``pings``: ``[{rail, interface, host, peer}]`` for the don't-fragment pings;
    - ``prefix_len``: the rails' prefix length (NCCL_IB_SUBNET_PREFIX_LEN).
    """
    own = rails[host]
    all_links = [link for link in links(order, rails) if host in (link["a"], link["b"])]
    rail_peers = [[] for _ in own]
    pings = []
    for link in all_links:
        other = link["b"] if link["a"] == host else link["a"]
        for twin in link["twins"]:
            mine, theirs = _end(twin, link, host)
            rail_peers[mine["rail"]].append(theirs["address"])
            pings.append({"rail": mine["rail"], "interface": mine["interface"], "host": other,
                          "peer": theirs["address"]})
    pings.sort(key=lambda p: (p["rail"], order.index(p["host"])))
    routes, peer_paths = {}, []
    for other in order:
        if other == host:
            continue
        link = next(link for link in all_links if other in (link["a"], link["b"]))
        target = _strip(rails[other][0]["address"])
        on_link = None
        for twin in link["twins"]:
            mine, theirs = _end(twin, link, host)
            if theirs["address"] == target:
                on_link = mine
        if on_link is not None:
            peer_paths.append({"host": other, "address": target, "interface": on_link["interface"], "via": None})
            continue
        mine, theirs = _end(link["twins"][0], link, host)
        routes.setdefault(mine["interface"], []).append({"to": f"{target}/32", "via": theirs["address"]})
        peer_paths.append({"host": other, "address": target, "interface": mine["interface"],
                           "via": theirs["address"]})
    prefix = ipaddress.IPv4Interface(str(own[0]["address"])).network.prefixlen
    return {
        "rail_peers": rail_peers,
        "peers": [p["address"] for p in peer_paths],
        "peer_paths": peer_paths,
        "routes": routes,
        "pings": pings,
        "prefix_len": prefix,
    }


def probe_directions(order, rails):
    """Link validation's directions, before ports: per link (rank order) and twin,
    a -> b then b -> a, each with both ends' rail index, interface and address, the
    link's name and the twin's number. ``rail`` numbers the link and twin (0..5: the
    report groups both directions of one cable's twin under it); each end's own rail
    index is ``src_rail`` / ``dst_rail``."""
    out = []
    group = 0
    for link in links(order, rails):
        for number, twin in enumerate(link["twins"]):
            for src, dst, s, d in ((link["a"], link["b"], twin["a"], twin["b"]),
                                   (link["b"], link["a"], twin["b"], twin["a"])):
                out.append({"link": _pair_name(link["a"], link["b"]), "twin": number, "subnet": twin["subnet"],
                            "src": src, "dst": dst, "rail": group, "src_rail": s["rail"],
                            "dst_rail": d["rail"], "src_interface": s["interface"],
                            "dst_interface": d["interface"], "src_address": s["address"],
                            "dst_address": d["address"]})
            group += 1
    return out


# ---------------------------------------------------------------- cabling

def _heard_nodes(entry, host):
    return {b["node"] for b in entry.get("heard") or []} - {host}


def check_cabling(order, rails, observations):
    """The inventory's triangle against what the discovery probe heard on the wire
    (``spark_discover.observe`` results: {host: {netdevs: [{name, carrier, heard}]}}).
    Every rail must hear its peer's twin, and only that node; a cabled port that hears
    a node of the cluster and is not in the inventory is a second cable. Problems name
    the host, the rail and the link."""
    problems = []
    expected = {}   # (host, interface) -> (peer, peer interface, rail index)
    for link in links(order, rails):
        for twin in link["twins"]:
            expected[(link["a"], twin["a"]["interface"])] = (link["b"], twin["b"]["interface"], twin["a"]["rail"])
            expected[(link["b"], twin["b"]["interface"])] = (link["a"], twin["a"]["interface"], twin["b"]["rail"])
    for host in order:
        obs = observations.get(host)
        if obs is None:
            problems.append(problem(host, "cabling", "no probe result", "a result from every node",
                                    "The node was unreachable or its probe failed: see the task output above."))
            continue
        entries = {e["name"]: e for e in obs.get("netdevs") or []}
        for (h, name), (peer, peer_if, index) in expected.items():
            if h != host:
                continue
            link = f"link {_pair_name(*sorted((host, peer), key=order.index))}"
            entry = entries.get(name)
            variable = f"spark_rails[{index}].interface"
            if entry is None or not entry.get("carrier"):
                if entry is None:
                    what = "is not a ConnectX-7 netdev here"
                elif entry.get("admin_up") is False:
                    what = ("is administratively down, so its cable cannot be checked (bring it up: "
                            f"ip link set {name} up)")
                else:
                    what = "has no carrier"
                problems.append(problem(host, variable, f"{name} {what}",
                                        f"a cable to {peer} ({link})", CABLING_HINT))
                continue
            nodes = _heard_nodes(entry, host)
            if not nodes:
                problems.append(problem(host, variable, f"{name} has carrier but heard no node of the cluster",
                                        f"{peer} at the other end ({link})",
                                        "The other end is another machine or its port is down."))
            elif nodes != {peer}:
                problems.append(problem(host, variable, f"{name} reaches {', '.join(sorted(nodes))}",
                                        f"{peer} ({link}, as the inventory's subnets say)",
                                        "The cabling does not match the inventory: re-plug, or run "
                                        "discover.yml and review the inventory it proposes. " + CABLING_HINT))
            else:
                heard_ifs = {b["interface"] for b in entry["heard"] if b["node"] == peer}
                if peer_if not in heard_ifs:
                    problems.append(problem(host, variable,
                                            f"{name} hears {peer}'s {', '.join(sorted(heard_ifs))}",
                                            f"{peer}'s {peer_if}, its twin in the same subnet ({link})",
                                            "The twins are paired the other way round: swap the two "
                                            "addresses on one end, or run discover.yml."))
        for name, entry in sorted(entries.items()):
            if (host, name) in expected or not entry.get("carrier"):
                continue
            nodes = _heard_nodes(entry, host) & set(order)
            if nodes:
                problems.append(problem(host, "cabling",
                                        f"{name} (not in spark_rails) also reaches {', '.join(sorted(nodes))}",
                                        "one cable between a pair of nodes",
                                        "Two cables between the same pair: "
                                        + "; ".join(f"link {_pair_name(*sorted((host, n), key=order.index))}"
                                                    for n in sorted(nodes, key=order.index))
                                        + ". " + CABLING_HINT))
    return problems


# ---------------------------------------------------------------- discovery

def classify(observations, order, ignore=()):
    """'switch' when a cabled port hears more than one other node (or with two nodes),
    'ring' when every cabled port hears at most one (direct cables, three nodes or more)."""
    ignore = set(ignore)
    if len(order) < 3:
        return SWITCH
    for host in order:
        for entry in (observations.get(host) or {}).get("netdevs") or []:
            if f"{host}:{entry['name']}" in ignore or not entry.get("carrier"):
                continue
            if len(_heard_nodes(entry, host)) > 1:
                return SWITCH
    return "ring"


def _usable(obs, host, ignore):
    return [e for e in obs["netdevs"] if e.get("carrier") and f"{host}:{e['name']}" not in ignore]


def plan(observations, order, subnets=DEFAULT_SUBNETS, host_offset=10, ignore=()):
    """Discovery's proposal for direct cables between three nodes: the links (which
    port of which node hears which node), then rails per node (the link to the head
    first, the head's to rank 1; twins in PCIe order), each link and twin on its own
    subnet (``subnets[2 * link + twin]``), addressed ``subnet + host_offset + rank``.

    Refuses a ring of four or more, a missing cable and two cables between one pair,
    naming the link. Returns {rails, problems, warnings, links, crossed, topology}."""
    ignore = set(ignore)
    problems, warnings = [], []
    empty = {"rails": {}, "problems": problems, "warnings": warnings, "links": [], "crossed": False,
             "topology": TRIANGLE}
    if len(order) != 3:
        problems.append(problem("", "cabling", f"direct cables between {len(order)} nodes (a ring)",
                                "three nodes in a triangle, or a switch", RING_HINT))
        return empty
    # per host and peer: the ports (and their twins) that hear the peer
    reach = {}
    for host in order:
        for entry in _usable(observations[host], host, ignore):
            for peer in _heard_nodes(entry, host):
                if peer not in order:
                    problems.append(problem(host, "cabling", f"{entry['name']} reaches {peer}, not a node of "
                                            "this inventory", "cables only between the three nodes",
                                            f"Fix the cable or leave the port out with "
                                            f"discover_ignore_interfaces: ['{host}:{entry['name']}']."))
                    continue
                reach.setdefault((host, peer), {}).setdefault(entry["port"], []).append(entry)
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            ports_a, ports_b = reach.get((a, b), {}), reach.get((b, a), {})
            name = f"link {_pair_name(a, b)}"
            if not ports_a and not ports_b:
                problems.append(problem("", "cabling", f"{name}: no cable (no port of {a} hears {b}, "
                                        f"none of {b} hears {a})", "a cable between every pair of the three",
                                        CABLING_HINT))
            elif len(ports_a) > 1 or len(ports_b) > 1:
                where = "; ".join(f"{h} ports {', '.join(str(p) for p in sorted(ps, key=lambda x: (x is None, x)))}"
                                  for h, ps in ((a, ports_a), (b, ports_b)) if len(ps) > 1)
                problems.append(problem("", "cabling", f"{name}: two cables ({where} reach the other node)",
                                        "one cable between a pair of nodes",
                                        "The second cable takes the port the third node's cable needs. "
                                        + CABLING_HINT))
            elif not ports_a or not ports_b:
                deaf = a if not ports_a else b
                problems.append(problem(deaf, "cabling", f"{name}: heard one way only (nothing of "
                                        f"{a if deaf == b else b} arrived on {deaf})",
                                        "both ends hear each other",
                                        "The port may be down or its probe failed: see the task output."))
    if problems:
        return empty
    from_subnets = []
    for index, value in enumerate(subnets or ()):
        try:
            from_subnets.append(ipaddress.IPv4Network(str(value)))
        except ValueError as exc:
            problems.append(problem("", f"discover_triangle_subnets[{index}]", repr(value),
                                    "an IPv4 network like 192.168.100.0/24", str(exc)))
    if not problems and len(from_subnets) < 6:
        problems.append(problem("", "discover_triangle_subnets", f"{len(from_subnets)} subnet(s)",
                                "six, one per link and twin (three links of two twins)"))
    for i, a in enumerate(from_subnets):
        for b in from_subnets[i + 1:]:
            if a.overlaps(b):
                problems.append(problem("", "discover_triangle_subnets", f"{b} overlapping {a}",
                                        "each link and twin on its own subnet"))
    if problems:
        return empty
    found_links = []
    link_twins = {}
    for li, (a, b) in enumerate(((order[0], order[1]), (order[0], order[2]), (order[1], order[2]))):
        (port_a, ents_a), = reach[(a, b)].items()
        (port_b, ents_b), = reach[(b, a)].items()
        ents_a = sorted(ents_a, key=lambda e: (e.get("pcie_root") or "", e["name"]))
        by_name_b = {e["name"]: e for e in ents_b}
        twins = []
        for entry in ents_a:
            heard = [x["interface"] for x in entry["heard"] if x["node"] == b and x["interface"] in by_name_b]
            if len(heard) != 1:
                continue
            twins.append((entry, by_name_b[heard[0]]))
            found_links.append({"a": f"{a}:{entry['name']}", "b": f"{b}:{heard[0]}"})
        if not twins:
            problems.append(problem("", "cabling", f"link {_pair_name(a, b)}: the twins of {a} port {port_a} "
                                    f"and {b} port {port_b} do not pair (each must hear exactly one twin)",
                                    "twin to twin across the cable"))
            continue
        if len(twins) == 1:
            warnings.append(f"link {_pair_name(a, b)}: only one twin has a link; RDMA on it runs at about half "
                            "the bandwidth")
        link_twins[(a, b)] = (li, twins)
    if problems:
        return empty
    addresses = {}
    for (a, b), (li, twins) in link_twins.items():
        for t, (ea, eb) in enumerate(twins):
            net = from_subnets[2 * li + t]
            for host, entry in ((a, ea), (b, eb)):
                address = net.network_address + host_offset + order.index(host)
                if address not in net or address in (net.network_address, net.broadcast_address):
                    problems.append(problem(host, f"discover_triangle_subnets[{2 * li + t}]", str(net),
                                            f"room for 3 nodes from host number {host_offset}"))
                    continue
                addresses[(host, a if host == b else b, t)] = {"interface": entry["name"],
                                                               "address": f"{address}/{net.prefixlen}"}
    if problems:
        return empty
    rails = {}
    for rank, host in enumerate(order):
        others = [h for h in order if h != host]
        others.sort(key=lambda h: (h != order[0], order.index(h)))   # the head first (for the head: rank 1)
        rails[host] = [addresses[(host, peer, t)] for peer in others for t in range(2)
                       if (host, peer, t) in addresses]
    return {"rails": rails, "problems": problems, "warnings": warnings, "links": found_links,
            "crossed": False, "topology": TRIANGLE}


# ---------------------------------------------------------------- drawing

def draw(order, labels=None):
    """The triangle as text: the head on top, its two workers below, each side
    labelled (``labels``: {(a, b): text}, a before b in rank order)."""
    a, b, c = order
    labels = labels or {}

    def label(x, y):
        return labels.get((x, y)) or labels.get((y, x)) or ""

    ab, ac, bc = label(a, b), label(a, c), label(b, c)
    width = max(len(b) + len(c) + 12, len(a) + 4, 30)
    lines = [a.center(width),
             "/".rjust(width // 2 - 1) + "\\".rjust(3),
             f"{ab}".rjust(width // 2 - 2) + "   " + f"{ac}",
             "/".rjust(width // 2 - 3) + "\\".rjust(7),
             (b + " " + "-" * max(width - len(b) - len(c) - 2, 3) + " " + c),
             bc.center(width)]
    return "\n".join(line.rstrip() for line in lines)
