"""Inventory validation: the cross-field rules no argument spec can express.

Runs on the controller before any host is changed (the preflight play). Every problem
names the host, the variable, what was found and what was expected.
"""

from __future__ import annotations

import ipaddress
import re

from .runtime_env import check_settings

IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
MTU_MIN = 1280
MTU_MAX = 9216


def problem(host, variable, found, expected, hint=""):
    """One finding, as data and as one readable line."""
    where = f"{host}: " if host else ""
    message = f"{where}{variable} is {found!s}; expected {expected}"
    if hint:
        message += f". {hint}"
    return {"host": host, "variable": variable, "found": found, "expected": expected, "message": message}


def check_groups(heads, workers):
    problems = []
    if len(heads) != 1:
        problems.append(
            problem(
                "",
                "groups.spark_head",
                f"{len(heads)} host(s) {sorted(heads)}",
                "exactly one head",
                "Put one host in spark_head; vLLM's rendezvous (master_addr) runs on it.",
            )
        )
    if not workers:
        problems.append(
            problem(
                "",
                "groups.spark_workers",
                "empty",
                "at least one worker",
                "Tensor parallel across nodes needs one or more workers in spark_workers.",
            )
        )
    both = sorted(set(heads) & set(workers))
    if both:
        problems.append(
            problem("", "groups", f"{both} in both spark_head and spark_workers", "each host in one group")
        )
    return problems


def parse_rail(host, index, rail):
    """Return (interface, IPv4Interface) or a problem."""
    variable = f"spark_rails[{index}]"
    if not isinstance(rail, dict):
        return problem(host, variable, repr(rail), "a mapping with interface and address")
    name = rail.get("interface")
    if not isinstance(name, str) or not IFNAME_RE.match(name):
        return problem(
            host,
            f"{variable}.interface",
            repr(name),
            "a Linux interface name (1-15 characters, letters, digits, . _ : -)",
        )
    address = rail.get("address")
    try:
        iface = ipaddress.IPv4Interface(str(address))
    except ValueError:
        return problem(host, f"{variable}.address", repr(address), "an IPv4 address with prefix, like 192.168.100.10/24")
    if "/" not in str(address):
        return problem(host, f"{variable}.address", repr(address), "an address with its prefix length, like 192.168.100.10/24")
    net = iface.network
    if net.prefixlen < 31 and iface.ip in (net.network_address, net.broadcast_address):
        return problem(host, f"{variable}.address", str(address), f"a host address inside {net}, not its network or broadcast address")
    return name, iface


def parse_node_rails(host, rails, expected="a non-empty list of {interface, address}, one per QSFP twin"):
    """One node's spark_rails -> ([(interface, IPv4Interface)] or None when any rail is
    bad, problems): the list itself, each rail (parse_rail), one interface per rail."""
    if not isinstance(rails, list) or not rails:
        return None, [problem(host, "spark_rails", repr(rails), expected)]
    problems, entries = [], []
    for index, rail in enumerate(rails):
        result = parse_rail(host, index, rail)
        if isinstance(result, dict):
            problems.append(result)
        else:
            entries.append(result)
    names = [r.get("interface") for r in rails if isinstance(r, dict)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(problem(host, "spark_rails[*].interface", f"{dupes} used by more than one rail", "one interface per rail"))
    return (entries if len(entries) == len(rails) else None), problems


def check_rails(nodes):
    """nodes: {host: {"rails": [...]}} -> problems."""
    problems = []
    parsed = {}
    for host, node in nodes.items():
        entries, found = parse_node_rails(host, node.get("rails"))
        problems += found
        if entries is not None:
            parsed[host] = entries

    counts = {host: len(entries) for host, entries in parsed.items()}
    if len(set(counts.values())) > 1:
        problems.append(problem("", "spark_rails", f"rail counts {counts}", "the same number of rails on every node"))
        return problems

    seen = {}
    for host, entries in parsed.items():
        for index, (_, iface) in enumerate(entries):
            key = str(iface.ip)
            if key in seen:
                other = seen[key]
                problems.append(
                    problem(host, f"spark_rails[{index}].address", key, "an address no other node or rail uses", f"{other} already has it")
                )
            else:
                seen[key] = f"{host} spark_rails[{index}]"

    rail_count = next(iter(counts.values()), 0)
    subnets = []
    for index in range(rail_count):
        members = {host: entries[index][1] for host, entries in parsed.items()}
        networks = {str(iface.network) for iface in members.values()}
        if len(networks) > 1:
            detail = ", ".join(f"{h}={i}" for h, i in sorted(members.items()))
            problems.append(
                problem("", f"spark_rails[{index}].address", detail, f"all nodes of rail {index} in one subnet", "Both ends of a rail must share its /24.")
            )
            continue
        if members:
            subnets.append((index, next(iter(members.values())).network))
    for a in range(len(subnets)):
        for b in range(a + 1, len(subnets)):
            (ia, na), (ib, nb) = subnets[a], subnets[b]
            if na.overlaps(nb):
                problems.append(
                    problem(
                        "",
                        f"spark_rails[{ib}].address",
                        f"rail {ib} in {nb}, overlapping rail {ia} ({na})",
                        "each rail on its own subnet",
                        "Same subnet on both twins breaks routing and discovery (field notes).",
                    )
                )
    return problems


def check_management(nodes):
    """Management addresses unique, and no rail inside a management network."""
    problems = []
    seen = {}
    for host, node in nodes.items():
        mgmt = node.get("mgmt")
        if not mgmt:
            continue
        if mgmt in seen:
            problems.append(problem(host, "ansible_host", mgmt, "an address no other host uses", f"{seen[mgmt]} already has it"))
        seen[mgmt] = host
    mgmt_networks = []
    for host, node in nodes.items():
        for net in node.get("mgmt_networks") or []:
            try:
                mgmt_networks.append((host, ipaddress.IPv4Network(net, strict=False)))
            except ValueError:
                continue
    for host, node in nodes.items():
        for index, rail in enumerate(node.get("rails") or []):
            try:
                iface = ipaddress.IPv4Interface(str(rail.get("address")))
            except (ValueError, AttributeError):
                continue
            for mhost, mnet in mgmt_networks:
                if iface.network.overlaps(mnet):
                    problems.append(
                        problem(
                            host,
                            f"spark_rails[{index}].address",
                            f"{iface} overlapping the management network {mnet} (of {mhost})",
                            "a rail subnet separate from the management network",
                        )
                    )
    return problems


def check_mtu(nodes):
    """Each node's spark_mtu in range, and the same on every node (both ends of a rail
    must match: a mismatch drops full-size frames)."""
    problems = []
    values = {}
    for host, node in nodes.items():
        mtu = node.get("mtu", 9000)
        if isinstance(mtu, str) and mtu.isdigit():
            mtu = int(mtu)
        if isinstance(mtu, bool) or not isinstance(mtu, int) or not MTU_MIN <= mtu <= MTU_MAX:
            problems.append(problem(host, "spark_mtu", repr(mtu), f"an integer from {MTU_MIN} to {MTU_MAX} (9000 for full bandwidth)"))
        else:
            values[host] = mtu
    if len(set(values.values())) > 1:
        problems.append(problem("", "spark_mtu", f"{values}", "the same MTU on every node (both ends of a rail must match)"))
    return problems


def check_topology_names(nodes):
    """The cluster's one ``topology`` (each node's ``topology``, default switch)
    and the problems of nodes that disagree."""
    names = {host: str((node or {}).get("topology") or "switch") for host, node in nodes.items()}
    distinct = sorted(set(names.values()))
    if len(distinct) > 1:
        detail = ", ".join(f"{h}={t}" for h, t in sorted(names.items()))
        return "switch", [problem("", "spark_topology", f"different per node ({detail})",
                                  "one value for the cluster (set it in group_vars/spark)")]
    return (distinct[0] if distinct else "switch"), []


def validate(heads, workers, nodes, topology=None):
    """All controller-side checks. nodes: {host: {rails, mgmt, mgmt_networks, mtu,
    topology}}. topology (default: the nodes' ``topology``): ``switch`` (rail i of every
    node in one subnet) or ``triangle`` (every rail's subnet shared by the two ends of
    one cable: ``spark_topology.validate``)."""
    problems = check_groups(heads, workers)
    if topology is None:
        topology, disagree = check_topology_names(nodes)
        problems += disagree
    if topology in ("", "switch"):
        problems += check_rails(nodes)
    else:
        from ..link.topology import validate as validate_topology  # imports this module: late
        problems += validate_topology(topology, heads, workers, nodes)
    problems += check_management(nodes)
    problems += check_mtu(nodes)
    return problems


def check_host(host, rails, interfaces, default_interface, host_addresses, default_network=""):
    """Checks that need the host's facts: run on each node before changes.

    interfaces: names present on the host; default_interface: the default route's
    interface; host_addresses: {interface: [ipv4 addresses]} currently assigned;
    default_network: the network (CIDR) of the default route's interface.
    """
    problems = []
    if default_network:
        nodes = {host: {"rails": rails, "mgmt_networks": [default_network]}}
        problems += check_management(nodes)
    for index, rail in enumerate(rails):
        name = rail["interface"]
        ip = str(ipaddress.IPv4Interface(rail["address"]).ip)
        if name not in interfaces:
            present = ", ".join(sorted(interfaces))
            problems.append(
                problem(host, f"spark_rails[{index}].interface", f"{name!r} (not on this host)", f"one of: {present}", "Check the QSFP netdev names with `ip -br link`.")
            )
        if name == default_interface:
            problems.append(
                problem(
                    host,
                    f"spark_rails[{index}].interface",
                    f"{name} (it carries the default route)",
                    "a QSFP interface, not the management interface",
                    "The project never touches the management interface.",
                )
            )
        for other, addrs in host_addresses.items():
            if other != name and ip in addrs:
                problems.append(problem(host, f"spark_rails[{index}].address", f"{ip} already on {other}", f"{ip} free or on {name}"))
    return problems


def check_environment(host, variable, settings):
    """Extra container environment (e.g. ``serving_environment``) by the runtime env's
    own rules (``runtime_env.check_settings``: no secret-looking key, no pinned key).

    Compose's ``environment:`` wins over the env file, so a pinned key there would
    bypass the pinning and the pre-start check, and a secret would show in
    ``docker inspect``: each offending key is one problem."""
    if settings in (None, ""):
        return []
    if not isinstance(settings, dict):
        return [problem(host, variable, repr(settings), "a mapping of environment variable names to values")]
    problems = []
    for key, value in sorted(settings.items(), key=lambda item: str(item[0])):
        try:
            check_settings({key: value})
        except ValueError as exc:
            # the value is never shown: it may be a secret
            problems.append(problem(host, f"{variable}.{key}", "set", "not set here", str(exc)))
    return problems
