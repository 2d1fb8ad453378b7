"""Interface-pinning check: does the runtime env keep all socket traffic on the QSFP
interface, and can it?

Every library that opens sockets between the nodes picks an interface on its own
unless told, and the default route of a DGX Spark is on a management link (``wlP9s9``
Wi-Fi or ``enP7s7``). Pinned to the management link, everything *works*, slowly:
only a check like this one notices. ``check_pinning()`` returns plain data;
``format_problems()`` turns it into journal lines.

Who reads what: VLLM_HOST_IP (vLLM), GLOO_SOCKET_IFNAME (PyTorch gloo, one exact
name), NCCL_SOCKET_IFNAME (NCCL: prefix list, ``=`` exact, ``^`` exclude),
TP_SOCKET_IFNAME (TensorPipe), UCX_NET_DEVICES (UCX), OMPI_MCA_btl_tcp_if_include
(Open MPI), MN_IF_NAME (NVIDIA's scripts).
"""

from __future__ import annotations

import ipaddress

# The address vLLM's get_ip() "connects" a UDP socket to when VLLM_HOST_IP is unset.
VLLM_PROBE_ADDRESS = "8.8.8.8"
NCCL_DEFAULT = "^docker,lo"

SINGLE_NAME_VARIABLES = {
    # variable: (reader, what happens when it is unset)
    "GLOO_SOCKET_IFNAME": (
        "PyTorch gloo",
        "gloo uses the address of the hostname (often loopback: one rank fails with "
        "'Connection refused, remote=[127.0.0.1]', the other hangs until its timeout)",
    ),
    "TP_SOCKET_IFNAME": (
        "TensorPipe",
        "TensorPipe picks an interface on its own (the hostname's or the default route's)",
    ),
    "MN_IF_NAME": (
        "NVIDIA's multi-node scripts",
        "NVIDIA's scripts fall back to their built-in interface name",
    ),
}


def problem(check, message, variable=None, found=None, expected=None) -> dict:
    return {"check": check, "variable": variable, "found": found, "expected": expected,
            "message": message}


def strip_prefix(address: str) -> str:
    """'192.168.100.10/24' -> '192.168.100.10'."""
    return str(address).split("/", 1)[0].strip()


def env_value(env, name):
    """The variable's value as a string; None when unset or empty (libraries treat
    an empty value like an unset one)."""
    value = (env or {}).get(name)
    if value is None:
        return None
    value = str(value)
    return value if value.strip() else None


def split_list(value: str) -> list:
    return [item.strip() for item in value.split(",") if item.strip()]


def addresses_by_interface(net) -> dict:
    """ifname -> list of address entries (netlink ``addresses()``)."""
    result = {}
    for entry in net.addresses():
        result.setdefault(entry["ifname"], []).append(entry)
    return result


def owner_of(address: str, by_if: dict):
    """The interface of this node holding ``address``, or None."""
    for ifname, entries in by_if.items():
        if any(e["address"] == address for e in entries):
            return ifname
    return None


def is_up(link: dict) -> bool:
    """Operstate UP with carrier (UNKNOWN with carrier counts: some drivers never
    report an operstate)."""
    return bool(link.get("carrier")) and link.get("operstate") in ("UP", "UNKNOWN")


def describe_link(name: str, links: dict, by_if: dict) -> str:
    """'wlP9s9 (192.168.64.198)' / 'enp1s0f0np0 (down, no carrier)'."""
    link = links.get(name, {})
    parts = [e["address"] for e in by_if.get(name, []) if e["family"] == 4]
    if link and not is_up(link):
        parts.append(f"{str(link.get('operstate', '?')).lower()}, "
                     f"{'carrier' if link.get('carrier') else 'no carrier'}")
    return f"{name} ({', '.join(parts)})" if parts else name


# ---------------------------------------------------------------- NCCL syntax

def parse_nccl_ifname(value: str):
    """NCCL_SOCKET_IFNAME -> (exclude, exact, names). '^' = exclude list, '=' =
    exact names (both may combine as '^='), else prefixes; ':port' suffixes are
    dropped as NCCL ignores them for sockets."""
    value = value.strip()
    exclude = value.startswith("^")
    if exclude:
        value = value[1:]
    exact = value.startswith("=")
    if exact:
        value = value[1:]
    names = [item.split(":", 1)[0] for item in split_list(value)]
    return exclude, exact, names


def nccl_matches(value: str, ifname: str) -> bool:
    exclude, exact, names = parse_nccl_ifname(value)
    # NCCL compares case-sensitively (strcmp / strncmp): 'enp1' does not match 'enP2p1...'.
    hit = any(ifname == n if exact else ifname.startswith(n) for n in names)
    return hit != exclude


def nccl_candidates(by_if: dict) -> list:
    """Interfaces NCCL considers: those with an IPv4 or a non-loopback IPv6 address."""
    names = []
    for ifname, entries in by_if.items():
        for e in entries:
            if e["family"] == 4 or not ipaddress.ip_address(e["address"]).is_loopback:
                names.append(ifname)
                break
    return names


def nccl_selects(value: str, by_if: dict) -> list:
    """This node's interfaces NCCL would use for sockets with this value."""
    return [name for name in nccl_candidates(by_if) if nccl_matches(value, name)]


# ---------------------------------------------------------------- single checks

def check_interface(interface, address, links, by_if) -> list:
    if interface not in links:
        present = ", ".join(sorted(links)) or "none"
        return [problem(
            "interface_exists",
            f"interface {interface} does not exist on this node (present: {present}); "
            f"everything pinned to it fails, gloo with 'Unable to find address for: {interface}'. "
            f"Fix spark_rails[0].interface for this host or the netdev name.",
            found=None, expected=interface)]
    problems = []
    link = links[interface]
    if not is_up(link):
        state = f"operstate={link.get('operstate')}, carrier={bool(link.get('carrier'))}"
        problems.append(problem(
            "interface_up",
            f"interface {interface} is not up with carrier ({state}): check the QSFP cable "
            f"and 'ip link set {interface} up'.",
            found=state, expected="operstate=UP, carrier=True"))
    held = [e["address"] for e in by_if.get(interface, [])]
    if address not in held:
        elsewhere = owner_of(address, by_if)
        where = f"; {address} is on {elsewhere} instead" if elsewhere else ""
        problems.append(problem(
            "interface_address",
            f"interface {interface} does not hold {address} (it holds: {', '.join(held) or 'no address'}"
            f"{where}): gloo pinned to it fails with 'Unable to find address for: {interface}' "
            f"and the peers cannot reach this node. Apply the network config (netplan apply).",
            found=held, expected=address))
    return problems


def check_path_routes(peer_paths, net):
    """A triangle's routes: each other node's primary address must leave through the
    rail on the direct link to it (``interface``), with no gateway when it is on that
    link's subnet or exactly the peer's own address on the link (``via``, the host
    route's gateway): never another interface, never the default route."""
    routes, problems = [], []
    for path in peer_paths:
        peer, want_dev, want_via = strip_prefix(path["address"]), path["interface"], path.get("via") or None
        who = f"{path['host']} " if path.get("host") else ""
        expected = f"{want_dev} via {want_via}" if want_via else f"{want_dev} (on its subnet)"
        try:
            answer = net.route_get(peer)
        except OSError as exc:
            routes.append({"peer": peer, "dev": None, "src": None, "via_gateway": False, "ok": False})
            problems.append(problem(
                "route", f"no route to peer {who}{peer} ({exc}): expected {expected}; re-run site.yml "
                f"--tags qsfp_link (the host routes of the triangle are in its netplan file).",
                found=None, expected=expected))
            continue
        gateway = answer.get("gateway") or None
        ok = answer.get("dev") == want_dev and gateway == want_via
        routes.append({"peer": peer, "dev": answer.get("dev"), "src": answer.get("src"),
                       "via_gateway": bool(gateway), "ok": ok})
        if ok:
            continue
        how = f"{answer.get('dev')}" + (f" via {gateway}" if gateway else "")
        if gateway and answer.get("dev") != want_dev:
            how += " (not the direct link: the default route, or another node)"
        problems.append(problem(
            "route",
            f"the route to peer {who}{peer} leaves through {how}, not {expected}: its traffic "
            f"would not take the direct cable; check the rails' addresses and the host routes "
            f"(site.yml --tags qsfp_link).",
            found=how, expected=expected))
    return routes, problems


def check_routes(interface, address, peers, net, by_if):
    """Route to each peer: must leave through ``interface``, not via a gateway."""
    routes, problems = [], []
    for peer in peers:
        peer = strip_prefix(peer)
        family = ipaddress.ip_address(peer).version
        subnets = [f"{e['address']}/{e['prefixlen']}" for e in by_if.get(interface, [])
                   if e["family"] == family]
        try:
            answer = net.route_get(peer)
        except OSError as exc:
            routes.append({"peer": peer, "dev": None, "src": None, "via_gateway": False, "ok": False})
            problems.append(problem(
                "route", f"no route to peer {peer} ({exc}): put {interface} and the peer in one subnet.",
                found=None, expected=interface))
            continue
        via_gateway = bool(answer.get("gateway"))
        ok = answer.get("dev") == interface and not via_gateway
        routes.append({"peer": peer, "dev": answer.get("dev"), "src": answer.get("src"),
                       "via_gateway": via_gateway, "ok": ok})
        if ok:
            continue
        how = f"{answer.get('dev')}"
        if via_gateway:
            how += f" via gateway {answer['gateway']}" + (
                " (a router on the rail, not the peer at the cable's other end)"
                if answer.get("dev") == interface else " (the default route)")
        problems.append(problem(
            "route",
            f"the route to peer {peer} leaves through {how}, not directly through {interface} "
            f"({', '.join(subnets) or 'no address'}): the peer is not in {interface}'s subnet; "
            f"check the peer's address and the prefix length on both nodes.",
            found=answer.get("dev"), expected=interface))
    return routes, problems


def check_host_ip(env, interface, address, peers, by_if, would_pick) -> list:
    value = env_value(env, "VLLM_HOST_IP")
    fix = f"set VLLM_HOST_IP={address} (this node's {interface} address)"
    if value is None:
        if would_pick:
            fallback = (f"the default-route source address {would_pick['address']} "
                        f"({would_pick['interface']})")
        else:
            fallback = "the default-route source address, and this node has no default route"
        return [problem(
            "vllm_host_ip",
            f"VLLM_HOST_IP is not set: vLLM will fall back to {fallback} and advertise it to "
            f"the other node; {fix}.",
            variable="VLLM_HOST_IP", found=None, expected=address)]
    if value == address:
        return []
    owner = owner_of(value, by_if)
    if owner:
        why = f"is the address of {owner} on this node, not of {interface}"
    elif value in {strip_prefix(p) for p in peers}:
        why = "is not an address of this node: it is another node's (the value must be set per node)"
    else:
        why = "is not an address of this node"
    return [problem("vllm_host_ip", f"VLLM_HOST_IP={value} {why}; {fix}.",
                    variable="VLLM_HOST_IP", found=value, expected=address)]


def _unknown_or_unaddressed(names, links, by_if):
    """Texts for named interfaces that do not exist / have no address."""
    texts = []
    for name in names:
        if name not in links:
            texts.append(f"{name} does not exist")
        elif not by_if.get(name):
            texts.append(f"{name} has no address")
    return texts


def check_single_name(variable, env, interface, allowed, links, by_if) -> list:
    reader, unset = SINGLE_NAME_VARIABLES[variable]
    value = env_value(env, variable)
    fix = f"set {variable}={interface}"
    if value is None:
        return [problem(f"{variable.lower()}", f"{variable} is not set: {unset}; {fix}.",
                        variable=variable, found=None, expected=interface)]
    names = split_list(value)
    if len(names) != 1:
        return [problem(variable.lower(),
                        f"{variable}={value} must name exactly one interface for {reader}; {fix}.",
                        variable=variable, found=value, expected=interface)]
    name = names[0]
    if name not in links or not by_if.get(name):
        what = "does not exist" if name not in links else "has no address"
        extra = (f" ({reader} fails with 'Unable to find address for: {name}')"
                 if variable == "GLOO_SOCKET_IFNAME" else "")
        return [problem(variable.lower(),
                        f"{variable}={name}: {name} {what} on this node{extra}; {fix}.",
                        variable=variable, found=value, expected=interface)]
    if name not in allowed:
        return [problem(variable.lower(),
                        f"{variable}={name} pins {reader} to {describe_link(name, links, by_if)}, "
                        f"not to the QSFP interface: its traffic silently goes over {name}; {fix}.",
                        variable=variable, found=value, expected=interface)]
    return []


def ompi_interfaces(value, by_if) -> list:
    """OMPI_MCA_btl_tcp_if_include entries (names or CIDRs) -> interface names."""
    result = []
    for item in split_list(value):
        if "/" in item:
            try:
                network = ipaddress.ip_network(item, strict=False)
            except ValueError:
                result.append(item)
                continue
            for ifname, entries in by_if.items():
                if any(ipaddress.ip_address(e["address"]) in network for e in entries):
                    result.append(ifname)
        else:
            result.append(item)
    return list(dict.fromkeys(result))


def check_ompi(env, interface, allowed, links, by_if) -> list:
    variable = "OMPI_MCA_btl_tcp_if_include"
    value = env_value(env, variable)
    fix = f"set {variable}={','.join(allowed)}"
    if value is None:
        return [problem("ompi_btl_tcp_if_include",
                        f"{variable} is not set: Open MPI's TCP transport uses every interface "
                        f"but loopback, the management links included; {fix}.",
                        variable=variable, found=None, expected=",".join(allowed))]
    names = ompi_interfaces(value, by_if)
    bad = [n for n in names if n not in allowed] + _unknown_or_unaddressed(
        [n for n in names if n in allowed], links, by_if)
    if not names or bad:
        what = ", ".join(bad) if bad else "no interface of this node"
        return [problem("ompi_btl_tcp_if_include",
                        f"{variable}={value} selects {what} (allowed: {', '.join(allowed)}); {fix}.",
                        variable=variable, found=value, expected=",".join(allowed))]
    return []


def check_ucx(env, interface, allowed, allowed_ucx_devices, links, by_if) -> list:
    variable = "UCX_NET_DEVICES"
    value = env_value(env, variable)
    expected = ",".join(allowed)
    fix = f"set {variable}={expected}"
    if allowed_ucx_devices:
        fix += f" (RDMA devices of the allowed twins also fit: {','.join(allowed_ucx_devices)})"
    if value is None or value.strip().lower() == "all":
        held = " is not set" if value is None else f"={value}"
        return [problem("ucx_net_devices",
                        f"{variable}{held}: UCX uses every device it finds, the management "
                        f"links included; {fix}.",
                        variable=variable, found=value, expected=expected)]
    ucx_devices = {d.split(":", 1)[0] for d in (allowed_ucx_devices or [])}
    bad = []
    for item in split_list(value):
        device = item.split(":", 1)[0]
        if ":" in item and device in ucx_devices:
            continue
        if device in allowed:
            bad.extend(_unknown_or_unaddressed([device], links, by_if))
            continue
        bad.append(f"{item} is not allowed")
    if bad:
        return [problem("ucx_net_devices",
                        f"{variable}={value}: {', '.join(bad)}; {fix}.",
                        variable=variable, found=value, expected=expected)]
    return []


def check_nccl(env, interface, allowed, links, by_if) -> list:
    variable = "NCCL_SOCKET_IFNAME"
    value = env_value(env, variable)
    expected = "=" + ",".join(allowed)
    fix = f"set {variable}={expected}"
    if value is None:
        picks = nccl_selects(NCCL_DEFAULT, by_if)
        shown = ", ".join(describe_link(n, links, by_if) for n in picks) or "nothing"
        return [problem("nccl_socket_ifname",
                        f"{variable} is not set: NCCL picks on its own ('{NCCL_DEFAULT}'), "
                        f"here {shown}; {fix}.",
                        variable=variable, found=None, expected=expected)]
    picks = nccl_selects(value, by_if)
    if not picks:
        return [problem("nccl_socket_ifname",
                        f"{variable}={value} matches no interface with an address on this node: "
                        f"NCCL fails at init; {fix}.",
                        variable=variable, found=value, expected=expected)]
    extra = [n for n in picks if n not in allowed]
    if extra:
        shown = ", ".join(describe_link(n, links, by_if) for n in extra)
        return [problem("nccl_socket_ifname",
                        f"{variable}={value} lets NCCL use {shown} besides the allowed "
                        f"{', '.join(allowed)}: NCCL may send over them (slow, or hang on a "
                        f"link without carrier); {fix}.",
                        variable=variable, found=value, expected=expected)]
    return []


# ---------------------------------------------------------------- entry points

def would_pick(net):
    """What vLLM's get_ip() picks without VLLM_HOST_IP: the source of the route to
    8.8.8.8 (no packet is sent). None when there is no such route."""
    try:
        answer = net.route_get(VLLM_PROBE_ADDRESS)
    except OSError:
        return None
    if not answer.get("dev"):
        return None
    return {"interface": answer.get("dev"), "address": answer.get("src")}


def check_pinning(interface, address, peers, env, net, allowed_interfaces=None,
                  allowed_ucx_devices=None, peer_paths=None) -> dict:
    """Checks the interface, the routes to the peers and the pinning variables in
    ``env``. ``address`` is this node's QSFP address (a /prefix is ignored);
    ``allowed_interfaces`` defaults to [interface]; ``allowed_ucx_devices`` lists
    UCX 'dev:port' entries (or bare RDMA device names) that are fine too.
    ``peer_paths`` (a triangle: [{host, address, interface, via}]) replaces the
    one-interface route rule: each peer by its own direct link (``check_path_routes``)."""
    address = strip_prefix(address)
    peers = [strip_prefix(p) for p in (peers or [])]
    env = env or {}
    allowed = list(allowed_interfaces or [interface])
    links = {link["name"]: link for link in net.links()}
    by_if = addresses_by_interface(net)
    pick = would_pick(net)

    problems = check_interface(interface, address, links, by_if)
    if peer_paths:
        routes, route_problems = check_path_routes(peer_paths, net)
    else:
        routes, route_problems = check_routes(interface, address, peers, net, by_if)
    problems += route_problems
    problems += check_host_ip(env, interface, address, peers, by_if, pick)
    problems += check_single_name("GLOO_SOCKET_IFNAME", env, interface, allowed, links, by_if)
    problems += check_nccl(env, interface, allowed, links, by_if)
    problems += check_single_name("TP_SOCKET_IFNAME", env, interface, allowed, links, by_if)
    problems += check_single_name("MN_IF_NAME", env, interface, allowed, links, by_if)
    problems += check_ompi(env, interface, allowed, links, by_if)
    problems += check_ucx(env, interface, allowed, allowed_ucx_devices, links, by_if)
    return {"ok": not problems, "problems": problems, "would_pick": pick, "routes": routes}


def format_problems(result) -> str:
    """One line per problem ('' when there is none), for the journal / fail msg."""
    return "\n".join(f"pinning: {p['message']}" for p in result.get("problems", []))
