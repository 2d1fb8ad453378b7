"""The cluster firewall: one nftables table, ``inet spark_cluster``, computed from the inventory.

What it does (and what it does not):

- the cluster ports (vLLM/torch rendezvous, NCCL/gloo ephemeral range, image stream,
  hub cache share, link validation probes, Ray when used) accept NEW connections only
  from the QSFP rails' subnets; from anywhere else they are dropped;
- the API port accepts NEW connections only from the configured client networks
  (and loopback); from anywhere else it is dropped;
- replies of this node's own connections (``ct state established,related``) and
  loopback are accepted first;
- every other port is unaffected: the chain's policy is accept, the table never
  mentions SSH, and nothing outside the table is touched (the file deletes and
  recreates only ``table inet spark_cluster``, never ``flush ruleset``).

Pure functions (stdlib only), shared by ``library/firewall_ruleset.py`` and the unit tests.
"""

from __future__ import annotations

import ipaddress

TABLE_FAMILY = "inet"
TABLE_NAME = "spark_cluster"
SYSCTL_PORT_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"


class FirewallError(ValueError):
    """An input the firewall refuses (message names the variable)."""


# --------------------------------------------------------------------------- ports

def parse_port_spec(spec, what="port"):
    """One port or range: 29501, "29501", "32768-60999", "32768:60999" -> (lo, hi)."""
    if isinstance(spec, bool):
        raise FirewallError(f"{what}: {spec!r} is not a port")
    if isinstance(spec, int):
        lo = hi = spec
    else:
        text = str(spec).strip().replace(":", "-")
        parts = [p.strip() for p in text.split("-")] if text else []
        if not parts or len(parts) > 2 or not all(p.isdigit() for p in parts):
            raise FirewallError(f"{what}: {spec!r} is not a port or a lo-hi range")
        lo, hi = int(parts[0]), int(parts[-1])
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535) or lo > hi:
        raise FirewallError(f"{what}: {spec!r} is outside 1-65535 or reversed")
    return lo, hi


def merge_ranges(ranges):
    """Sorted, merged (lo, hi) ranges (adjacent and overlapping ones joined): an nft
    interval set refuses overlapping elements."""
    out = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def parse_sysctl_port_range(text):
    """``net.ipv4.ip_local_port_range`` ("32768\\t60999") -> (32768, 60999)."""
    parts = str(text).split()
    if len(parts) != 2:
        raise FirewallError(f"ip_local_port_range: cannot parse {text!r}")
    return parse_port_spec(f"{parts[0]}-{parts[1]}", "ip_local_port_range")


def read_ephemeral_range(path=SYSCTL_PORT_RANGE):
    with open(path, encoding="ascii") as fh:
        return parse_sysctl_port_range(fh.read())


def in_ranges(port, ranges):
    return any(lo <= port <= hi for lo, hi in ranges)


def fmt_range(lo, hi):
    return str(lo) if lo == hi else f"{lo}-{hi}"


# --------------------------------------------------------------------------- networks

def rail_networks(addresses):
    """Rail interface addresses ("198.18.100.10/24", all nodes) -> sorted unique networks."""
    nets = set()
    for addr in addresses:
        try:
            nets.add(ipaddress.ip_interface(str(addr).strip()).network)
        except ValueError as exc:
            raise FirewallError(f"spark_rails: {addr!r} is not an address/prefix ({exc})") from exc
    if not nets:
        raise FirewallError("spark_rails: no rail address in the inventory: nothing to allow the cluster ports from")
    for net in nets:
        if net.prefixlen == 0:
            raise FirewallError(f"spark_rails: {net} would allow the cluster ports from everywhere")
    return sorted(nets, key=lambda n: (n.version, n))


def client_networks(cidrs, what="firewall_api_clients"):
    nets = set()
    for cidr in cidrs or []:
        try:
            nets.add(ipaddress.ip_network(str(cidr).strip(), strict=False))
        except ValueError as exc:
            raise FirewallError(f"{what}: {cidr!r} is not a network (CIDR) ({exc})") from exc
    return sorted(nets, key=lambda n: (n.version, n))


def collapse(nets):
    """Per family, without networks inside another one (nft interval sets refuse
    overlapping elements); adjacent networks stay separate (readable: one per rail)."""
    nets = sorted(set(nets), key=lambda n: (n.version, n.prefixlen, n))
    kept = []
    for net in nets:
        if not any(net.version == k.version and net.subnet_of(k) for k in kept):
            kept.append(net)
    kept.sort(key=lambda n: (n.version, n))
    return [n for n in kept if n.version == 4], [n for n in kept if n.version == 6]


# --------------------------------------------------------------------------- plan

def build_plan(rail_addresses, rail_tcp, rail_udp=None, ephemeral_range=None, api_port=None,
               api_clients=None, protected_ports=(22,), client_ports=None):
    """Validate the inputs and return the plan the ruleset is rendered from.

    rail_tcp / rail_udp: {purpose: [port specs]} accepted only from the rails.
    ephemeral_range: (lo, hi) of the NCCL/gloo listening ports (TCP), or None.
    api_port: the API port (TCP), accepted only from api_clients (and loopback); None = no rule.
    protected_ports: ports the firewall must never restrict (SSH).
    client_ports: more services like the API, {name: {"port": p, "clients": [cidr]}}: the
    port (TCP) accepted only from its clients and loopback (Prometheus).
    """
    purposes_tcp = {}
    for purpose, specs in sorted((rail_tcp or {}).items()):
        for spec in specs or []:
            purposes_tcp.setdefault(purpose, []).append(parse_port_spec(spec, f"{purpose} (tcp)"))
    if ephemeral_range:
        purposes_tcp.setdefault("ephemeral", []).append(
            parse_port_spec(fmt_range(*ephemeral_range) if isinstance(ephemeral_range, (tuple, list))
                            else ephemeral_range, "ephemeral range"))
    purposes_udp = {}
    for purpose, specs in sorted((rail_udp or {}).items()):
        for spec in specs or []:
            purposes_udp.setdefault(purpose, []).append(parse_port_spec(spec, f"{purpose} (udp)"))

    tcp = merge_ranges(r for ranges in purposes_tcp.values() for r in ranges)
    udp = merge_ranges(r for ranges in purposes_udp.values() for r in ranges)
    for port in protected_ports or ():
        for proto, ranges, purposes in (("tcp", tcp, purposes_tcp), ("udp", udp, purposes_udp)):
            if in_ranges(int(port), ranges):
                culprit = [p for p, rs in purposes.items() if in_ranges(int(port), rs)]
                raise FirewallError(
                    f"{'/'.join(culprit)}: {proto} port {port} is protected (SSH): the firewall never restricts it")
    if api_port is not None:
        api_port = parse_port_spec(api_port, "spark_api_port")[0]
        if in_ranges(api_port, tcp):
            culprit = [p for p, rs in purposes_tcp.items() if in_ranges(api_port, rs)]
            raise FirewallError(
                f"spark_api_port {api_port} is also a rail-only cluster port ({'/'.join(culprit)}): "
                "choose an API port outside the cluster ports")
        if int(api_port) in [int(p) for p in protected_ports or ()]:
            raise FirewallError(f"spark_api_port {api_port} is protected (SSH)")
    extra = []
    taken = {api_port} if api_port is not None else set()
    for name, spec in sorted((client_ports or {}).items()):
        port = parse_port_spec((spec or {}).get("port"), f"{name} port")[0]
        if in_ranges(port, tcp) or port in taken or port in [int(p) for p in protected_ports or ()]:
            raise FirewallError(
                f"{name} port {port} is already a cluster, API or protected port: choose another one")
        taken.add(port)
        nets_v4, nets_v6 = collapse(client_networks(spec.get("clients"), f"{name} clients"))
        extra.append({"name": name, "port": port, "clients_v4": [str(n) for n in nets_v4],
                      "clients_v6": [str(n) for n in nets_v6]})
    rails_v4, rails_v6 = collapse(rail_networks(rail_addresses))
    clients_v4, clients_v6 = collapse(client_networks(api_clients))
    return {
        "rails_v4": [str(n) for n in rails_v4],
        "rails_v6": [str(n) for n in rails_v6],
        "tcp": [fmt_range(lo, hi) for lo, hi in tcp],
        "udp": [fmt_range(lo, hi) for lo, hi in udp],
        "purposes_tcp": {p: [fmt_range(*r) for r in rs] for p, rs in purposes_tcp.items()},
        "purposes_udp": {p: [fmt_range(*r) for r in rs] for p, rs in purposes_udp.items()},
        "api_port": api_port,
        "api_clients_v4": [str(n) for n in clients_v4],
        "api_clients_v6": [str(n) for n in clients_v6],
        "client_ports": extra,
    }


# --------------------------------------------------------------------------- render

def _set(name, kind, elements):
    lines = [f"\tset {name} {{", f"\t\ttype {kind}", "\t\tflags interval"]
    if elements:
        lines.append(f"\t\telements = {{ {', '.join(elements)} }}")
    lines.append("\t}")
    return lines


def render(plan, header=""):
    """The nft file: creates, deletes and recreates only table inet spark_cluster (atomic
    under ``nft -f``), so a reload replaces our rules and nothing else."""
    t = f"{TABLE_FAMILY} {TABLE_NAME}"
    out = ["#!/usr/sbin/nft -f"]
    out += [f"# {line}" if line else "#" for line in header.splitlines()] if header else []
    out += ["# Cluster ports by purpose (rails only):"]
    for purpose, ranges in sorted(plan["purposes_tcp"].items()):
        out.append(f"#   tcp {purpose}: {', '.join(ranges)}")
    for purpose, ranges in sorted(plan["purposes_udp"].items()):
        out.append(f"#   udp {purpose}: {', '.join(ranges)}")
    if plan["api_port"] is not None:
        clients = plan["api_clients_v4"] + plan["api_clients_v6"]
        out.append(f"# API tcp {plan['api_port']}: loopback{', ' + ', '.join(clients) if clients else ' only'}")
    for cp in plan.get("client_ports", []):
        clients = cp["clients_v4"] + cp["clients_v6"]
        out.append(f"# {cp['name']} tcp {cp['port']}: loopback{', ' + ', '.join(clients) if clients else ' only'}")
    out += [
        "",
        "# Only this table is replaced; the rest of the ruleset (Docker's, the admin's) stays.",
        f"table {t}",
        f"delete table {t}",
        "",
        f"table {t} {{",
    ]
    out += _set("rail_nets_v4", "ipv4_addr", plan["rails_v4"])
    out += _set("rail_nets_v6", "ipv6_addr", plan["rails_v6"])
    out += _set("rail_tcp_ports", "inet_service", plan["tcp"])
    out += _set("rail_udp_ports", "inet_service", plan["udp"])
    out += _set("api_clients_v4", "ipv4_addr", plan["api_clients_v4"])
    out += _set("api_clients_v6", "ipv6_addr", plan["api_clients_v6"])
    out += [
        "",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy accept;",
        '\t\tct state established,related accept comment "replies to this node\'s own connections"',
        '\t\tiifname "lo" accept comment "loopback"',
        '\t\ttcp dport @rail_tcp_ports ip saddr @rail_nets_v4 accept comment "cluster ports from the rails"',
        "\t\ttcp dport @rail_tcp_ports ip6 saddr @rail_nets_v6 accept",
        '\t\ttcp dport @rail_tcp_ports counter drop comment "cluster ports: not from the rails"',
        "\t\tudp dport @rail_udp_ports ip saddr @rail_nets_v4 accept",
        "\t\tudp dport @rail_udp_ports ip6 saddr @rail_nets_v6 accept",
        '\t\tudp dport @rail_udp_ports counter drop comment "cluster ports (udp): not from the rails"',
    ]
    if plan["api_port"] is not None:
        port = plan["api_port"]
        out += [
            f'\t\ttcp dport {port} ip saddr @api_clients_v4 accept comment "API from the configured clients"',
            f"\t\ttcp dport {port} ip6 saddr @api_clients_v6 accept",
            f'\t\ttcp dport {port} counter drop comment "API: not a configured client"',
        ]
    for cp in plan.get("client_ports", []):
        port, name = cp["port"], cp["name"]
        for family, nets in (("ip", cp["clients_v4"]), ("ip6", cp["clients_v6"])):
            if nets:
                out.append(f"\t\ttcp dport {port} {family} saddr {{ {', '.join(nets)} }} accept")
        out.append(f'\t\ttcp dport {port} counter drop comment "{name}: not a configured client"')
    out += ["\t}", "}", ""]
    return "\n".join(out)
