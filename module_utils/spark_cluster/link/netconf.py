"""What configures the QSFP rails of a node: netplan files, NetworkManager profiles, addresses.

DGX OS renders netplan with NetworkManager (``01-network-manager-all.yaml``), and
NetworkManager brings the ConnectX-7 ports up on its own (auto-connect wired
profiles). Users also arrive with NVIDIA's ``40-cx7.yaml`` or a hand-made file that
defines the ports. Everything here is pure: the callers read the files and run
``nmcli``; these functions parse and decide.

- ``netplan_view``: the renderer in force (a top-level ``network.renderer``: the last
  file read wins and becomes the default of every definition without its own), the
  definitions that touch each rail, and what to do with each file (keep / move / strip);
- ``parse_nm_*``: ``nmcli -t`` output (connections, one connection's settings, devices);
- ``rail_report``: per rail, who manages it, which addresses are there or configured,
  which of them are foreign, and the conflicts (a foreign static address in another
  subnet) that need ``qsfp_link_takeover``;
- ``apply_commands``: the renderer's own commands for the rails only (apply / restore).

On Ubuntu 23.10 and later (DGX OS) NetworkManager stores its profiles as netplan files,
``/etc/netplan/90-NM-<uuid>.yaml`` (one definition, ``NM-<uuid>``, with a
``networkmanager:`` block carrying the profile's uuid and name), and runs them through
``netplan generate`` as ``/run/NetworkManager/system-connections/netplan-NM-<uuid>.nmconnection``.
Such a definition is a NetworkManager profile, not netplan configuration: it is reported
with the profile, and a takeover turns its autoconnect off through ``nmcli`` (which
rewrites the file itself) instead of moving or stripping the file. A definition NetworkManager
wrote back for one of netplan's own profiles (its id is a rail's, or another file's) stays
netplan configuration. (canonical/netplan: src/netplan.c ``netplan_netdef_write_yaml``,
src/parse-nm.c ``netplan_parser_load_keyfile``, src/nm.c; docs/real-stack.md.)
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os

NETPLAN_DIRS = ("/lib/netplan", "/etc/netplan", "/run/netplan")
DEVICE_SECTIONS = (
    "ethernets", "bonds", "bridges", "vlans", "wifis", "tunnels", "vrfs", "modems",
    "dummy-devices", "virtual-ethernets", "nm-devices",
)
RENDERERS = ("networkd", "NetworkManager")
LINK_LOCAL_V4 = ipaddress.ip_network("169.254.0.0/16")
# The first lines of the role's own netplan file carry this marker.
OWN_MARKER = "(qsfp_link role)"
NETPLAN_NM_PREFIX = "netplan-"
# NetworkManager's own profiles stored by netplan (Ubuntu's NetworkManager netplan patch)
NM_NETPLAN_FILE = "90-NM-*.yaml"
NM_NETPLAN_ID = "NM-"


class NetconfError(Exception):
    pass


# --------------------------------------------------------------------------- netplan

def netplan_files(listing):
    """Effective netplan files in the order netplan reads them.

    listing: {directory: [file names]} of NETPLAN_DIRS. A file in /run shadows the one
    of the same name in /etc, which shadows /lib; files are read sorted by name."""
    by_name = {}
    for directory in NETPLAN_DIRS:
        for name in listing.get(directory, []):
            if name.endswith(".yaml"):
                by_name[name] = os.path.join(directory, name)
    return [by_name[name] for name in sorted(by_name)]


def definitions(path, doc):
    """The device definitions of one parsed netplan file."""
    network = (doc or {}).get("network") or {}
    if not isinstance(network, dict):
        raise NetconfError(f"{path}: 'network' is not a mapping")
    out = []
    for section in DEVICE_SECTIONS:
        devices = network.get(section) or {}
        if not isinstance(devices, dict):
            raise NetconfError(f"{path}: network.{section} is not a mapping")
        section_renderer = devices.get("renderer") if isinstance(devices.get("renderer"), str) else None
        for ident, body in devices.items():
            if ident == "renderer":
                continue
            body = body if isinstance(body, dict) else {}
            link_local = body.get("link-local")
            nm = body.get("networkmanager") if isinstance(body.get("networkmanager"), dict) else {}
            passthrough = nm.get("passthrough") if isinstance(nm.get("passthrough"), dict) else {}
            out.append({
                "file": path,
                "section": section,
                "id": str(ident),
                "renderer": body.get("renderer") or section_renderer,
                "match": body.get("match") if isinstance(body.get("match"), dict) else None,
                "set_name": body.get("set-name"),
                "addresses": [str(a) for a in body.get("addresses") or [] if not isinstance(a, dict)]
                + [str(k) for a in body.get("addresses") or [] if isinstance(a, dict) for k in a],
                "dhcp4": bool(body.get("dhcp4", False)),
                "dhcp6": bool(body.get("dhcp6", False)),
                "link_local": ["ipv6"] if link_local is None else list(link_local),
                "mtu": body.get("mtu"),
                "members": [str(m) for m in body.get("interfaces") or []],
                "nm_uuid": str(nm["uuid"]) if nm.get("uuid") else None,
                "nm_name": str(nm["name"]) if nm.get("name") is not None else None,
                # NM keyfile booleans as netplan passes them through: "false" (or a YAML false)
                "nm_autoconnect": str(passthrough.get("connection.autoconnect", "true")).lower()
                not in ("false", "no", "0"),
            })
    return out


def matches(defn, ifname, mac=None):
    """Whether a definition applies to the interface: by id (no match block),
    set-name, or its match block (name glob, macaddress)."""
    match = defn["match"]
    if match is None:
        return defn["id"] == ifname
    if defn["set_name"] and defn["set_name"] == ifname:
        return True
    if not match:
        return False
    if "name" in match and not fnmatch.fnmatchcase(ifname, str(match["name"])):
        return False
    if "macaddress" in match and (mac or "").lower() != str(match["macaddress"]).lower():
        return False
    return "name" in match or "macaddress" in match


def is_nm_file(path):
    """Whether a netplan file is one NetworkManager writes for a profile (90-NM-<uuid>.yaml)."""
    return fnmatch.fnmatchcase(os.path.basename(path), NM_NETPLAN_FILE)


def _nm_owned(d, rail_names, plain_ids):
    """Whether a definition of a 90-NM file is a profile of NetworkManager's own (made with
    nmcli or the GUI). NetworkManager names it NM-<uuid>, or after the interface for a
    virtual device; saving one of netplan's profiles (netplan-<id>) instead writes a
    definition under netplan's id, which overrides netplan's and stays netplan's. A rail's
    name is never NetworkManager's id for an ethernet profile."""
    if not d["nm_uuid"] or d["id"] in rail_names:
        return False
    return d["id"] == NM_NETPLAN_ID + d["nm_uuid"] or d["id"] not in plain_ids


def is_own(text):
    return OWN_MARKER in "\n".join((text or "").splitlines()[:3])


def netplan_view(files, rails, own_path):
    """What netplan says about the rails.

    files: [(path, text, parsed document)] in read order (``netplan_files``).
    rails: [{interface, mac}] (mac may be None). own_path: the role's file.

    NetworkManager's own profiles in 90-NM-<uuid>.yaml files are left out of the
    netplan definitions and of the files' actions (never moved or stripped: the profile
    is disabled through nmcli); they are listed in ``nm_netplan`` by uuid, with the rails
    they are bound to, for ``nm_profile``.
    """
    default_renderer, default_file = "networkd", None
    all_defs = []
    file_rows = []
    problems = []
    nm_netplan = {}
    rail_names = [r["interface"] for r in rails]
    macs = {r["interface"]: r.get("mac") for r in rails}
    parsed = [(path, text, doc, definitions(path, doc)) for path, text, doc in files]
    plain_ids = {d["id"] for path, _text, _doc, defs in parsed if not is_nm_file(path) for d in defs}
    for path, text, doc, defs in parsed:
        network = (doc or {}).get("network") or {}
        renderer = network.get("renderer") if isinstance(network, dict) else None
        if renderer:
            default_renderer, default_file = str(renderer), path
        own = path == own_path and is_own(text)
        nm_file = is_nm_file(path) and not own
        for d in defs:
            d["nm_owned"] = nm_file and _nm_owned(d, rail_names, plain_ids)
            # NetworkManager's write-back of netplan's profile of a rail: the rail by its id
            d["by_id"] = nm_file and bool(d["nm_uuid"]) and d["id"] in rail_names
        all_defs += defs
        rail_ids, other_ids, patterns, nm_uuids = [], [], [], []
        for d in defs:
            hits = [r for r in rail_names if _hits(d, r, macs[r])]
            if d["nm_owned"]:
                nm_uuids.append(d["nm_uuid"])
                nm_netplan[d["nm_uuid"]] = {
                    "file": path, "id": d["id"], "uuid": d["nm_uuid"], "name": d["nm_name"],
                    "autoconnect": d["nm_autoconnect"], "rails": hits}
            elif d["match"] is not None and hits and not d["by_id"]:
                patterns.append(d["id"])
            elif hits:
                rail_ids.append(d["id"])
            else:
                other_ids.append(d["id"])
            for member in d["members"]:
                if member in rail_names:
                    problems.append(
                        f"{path}: {d['section']}.{d['id']} uses rail {member} as a member; "
                        "a QSFP twin must be a plain interface: take it out of "
                        f"{d['id']} or out of spark_rails")
        for ident in patterns:
            problems.append(
                f"{path}: definition {ident} matches a rail by a match: block; netplan "
                "would configure the rail from it too: narrow its match (e.g. to the "
                "management interface's name) so it leaves the QSFP twins alone")
        if own:
            action = "own"
        elif not rail_ids:
            action = "keep"
        elif other_ids or nm_uuids or renderer and path == own_path:
            action = "strip"
        else:
            action = "move"
        if path == own_path and not own and action == "strip":
            problems.append(
                f"{path} is the role's file (qsfp_link_netplan_path) but defines other "
                f"interfaces too ({', '.join(other_ids)}): set qsfp_link_netplan_path to "
                "another name (e.g. /etc/netplan/60-spark-qsfp.yaml)")
        file_rows.append({
            "path": path, "own": own, "global_renderer": renderer,
            "rail_ids": rail_ids, "other_ids": other_ids, "action": action,
            "nm_uuids": nm_uuids,
        })
    per_rail = {}
    for r in rail_names:
        per_rail[r] = [
            dict(d, effective_renderer=d["renderer"] or default_renderer,
                 own=any(f["own"] and f["path"] == d["file"] for f in file_rows))
            for d in all_defs if not d["nm_owned"] and _hits(d, r, macs[r])
        ]
    return {
        "default_renderer": default_renderer,
        "default_renderer_file": default_file,
        "files": file_rows,
        "rails": per_rail,
        "nm_netplan": nm_netplan,
        "problems": problems,
    }


def _hits(defn, ifname, mac):
    return matches(defn, ifname, mac) or (defn.get("by_id", False) and defn["id"] == ifname)


def strip_rails(doc, rail_names):
    """A copy of a parsed netplan document without the rails' definitions."""
    network = dict(doc.get("network") or {})
    for section in DEVICE_SECTIONS:
        devices = network.get(section)
        if isinstance(devices, dict):
            kept = {k: v for k, v in devices.items() if k not in rail_names}
            if kept and set(kept) != {"renderer"}:
                network[section] = kept
            else:
                network.pop(section)
    return dict(doc, network=network)


# --------------------------------------------------------------------------- nmcli

def split_terse(line):
    """One line of ``nmcli -t`` output -> fields (':' separates, '\\:' and '\\\\' escape)."""
    fields, cur, i = [], [], 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            cur.append(line[i + 1])
            i += 2
            continue
        if ch == ":":
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    fields.append("".join(cur))
    return fields


NM_CONNECTION_FIELDS = "NAME,UUID,TYPE,DEVICE,AUTOCONNECT,FILENAME"
NM_DEVICE_FIELDS = "DEVICE,TYPE,STATE,CONNECTION"
NM_DETAIL_FIELDS = ("connection.id,connection.uuid,connection.interface-name,"
                    "802-3-ethernet.mac-address,ipv4.method,ipv4.addresses,ipv6.method")


def terse_rows(text, width, what):
    """The non-blank lines of ``nmcli -t`` output as field lists of at least ``width``
    fields; a shorter line raises NetconfError naming ``what`` (connection, device)."""
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        fields = split_terse(line)
        if len(fields) < width:
            raise NetconfError(f"unexpected nmcli {what} line: {line!r}")
        yield fields


def parse_nm_connections(text):
    """``nmcli -t -f NAME,UUID,TYPE,DEVICE,AUTOCONNECT,FILENAME connection show``."""
    return [{"name": f[0], "uuid": f[1], "type": f[2], "device": f[3] or None,
             "autoconnect": f[4] == "yes", "filename": f[5] or None}
            for f in terse_rows(text, 6, "connection")]


def parse_nm_details(text):
    """``nmcli -t -f <settings> connection show <uuid>`` -> {setting: value}."""
    out = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def parse_nm_devices(text):
    """``nmcli -t -f DEVICE,TYPE,STATE,CONNECTION device`` -> {device: {...}}."""
    out = {}
    for f in terse_rows(text, 4, "device"):
        out[f[0]] = {"type": f[1], "state": f[2], "connection": f[3] or None}
    return out


def nm_profile(conn, details, nm_netplan=None):
    """One NetworkManager profile, as the report shows it.

    nm_netplan: netplan_view()['nm_netplan'], NetworkManager's own profiles stored as
    90-NM-<uuid>.yaml. Such a profile is NetworkManager's (``netplan`` false) although
    netplan generates it as netplan-NM-<uuid>.nmconnection; ``netplan_file`` names its
    YAML. Only netplan's own profiles (netplan-<id>, from the netplan files) are
    ``netplan``."""
    addresses = [a.strip() for a in details.get("ipv4.addresses", "").split(",")
                 if a.strip() and a.strip() != "--"]
    mac = details.get("802-3-ethernet.mac-address", "")
    ifname = details.get("connection.interface-name", "")
    filename = conn.get("filename") or ""
    base = os.path.basename(filename)
    stored = (nm_netplan or {}).get(conn["uuid"])
    nm_stored = bool(stored) or base == f"{NETPLAN_NM_PREFIX}{NM_NETPLAN_ID}{conn['uuid']}.nmconnection"
    return {
        "name": conn["name"],
        "uuid": conn["uuid"],
        "type": conn["type"],
        "device": conn["device"],
        "autoconnect": conn["autoconnect"],
        "filename": filename or None,
        "interface_name": None if ifname in ("", "--") else ifname,
        "mac": None if mac in ("", "--") else mac.lower(),
        "ipv4_method": details.get("ipv4.method") or None,
        "ipv4_addresses": addresses,
        "ipv6_method": details.get("ipv6.method") or None,
        "netplan": not nm_stored and (base.startswith(NETPLAN_NM_PREFIX)
                                      or conn["name"].startswith(NETPLAN_NM_PREFIX)),
        "netplan_file": stored["file"] if stored else None,
    }


def profile_touches(profile, ifname, mac=None):
    """Whether a profile is on the rail now, or could auto-connect on it."""
    if profile["device"] == ifname:
        return True
    if profile["type"] not in ("802-3-ethernet", "ethernet"):
        return False
    if profile["interface_name"]:
        return profile["interface_name"] == ifname
    if profile["mac"]:
        return bool(mac) and profile["mac"] == mac.lower()
    return profile["autoconnect"]  # unbound wired profile: any ethernet port


# --------------------------------------------------------------------------- rails

def _net(address):
    return ipaddress.ip_interface(address).network


def _kind(address, dhcp):
    iface = ipaddress.ip_interface(address)
    if iface.version == 4 and iface.ip in LINK_LOCAL_V4:
        return "link-local"
    if iface.version == 6 and iface.ip.is_link_local:
        return "link-local"
    return "dhcp" if dhcp else "static"


def rail_report(rail, now, netplan_defs, profiles, nm_device=None, default_renderer="networkd"):
    """One rail: who manages it, addresses present or configured, foreign ones, conflicts.

    rail: {interface, address, mac}; now: addresses on the interface ('a/nn');
    netplan_defs: netplan_view()['rails'][ifname]; profiles: nm_profile() dicts that
    touch the rail; nm_device: parse_nm_devices() entry or None (NM not running)."""
    ifname, wanted = rail["interface"], rail["address"]
    wanted_net = _net(wanted)
    dhcp_active = any(p["device"] == ifname and p["ipv4_method"] == "auto" for p in profiles)
    foreign = []
    seen = set()

    def add(address, source, dhcp=False, dormant=False):
        iface = ipaddress.ip_interface(address)
        if str(iface) == str(ipaddress.ip_interface(wanted)) or (address, source) in seen:
            return
        if iface.version == 6 and iface.ip.is_link_local:
            return  # the kernel's fe80 on every up link; not a configured address
        seen.add((address, source))
        kind = _kind(address, dhcp)
        foreign.append({
            "address": str(iface), "source": source, "kind": kind,
            "other_subnet": iface.version == 4 and iface.network != wanted_net,
            "dormant": dormant,
        })

    for d in netplan_defs:
        if d["own"]:
            continue
        for a in d["addresses"]:
            add(a, f"netplan {d['file']} ({d['id']})")
    for p in profiles:
        if p["netplan"]:
            continue
        stored = f" in {p['netplan_file']}" if p.get("netplan_file") else ""
        # autoconnect off and not up here (what a takeover leaves): reported, no conflict
        dormant = not p["autoconnect"] and p["device"] != ifname
        for a in p["ipv4_addresses"]:
            add(a, f"NetworkManager profile '{p['name']}' ({p['uuid']}){stored}"
                f"{' (autoconnect off)' if dormant else ''}", dormant=dormant)
    configured = {f["address"] for f in foreign}
    for a in now:
        if a not in configured:
            add(a, f"on {ifname} now", dhcp=dhcp_active)
    conflicts = [f for f in foreign if f["kind"] == "static" and f["other_subnet"] and not f["dormant"]]
    nm_state = (nm_device or {}).get("state") or ""
    if nm_device and "externally" not in nm_state and nm_state not in ("unmanaged", "unavailable"):
        managed_by = "NetworkManager"
    elif netplan_defs:
        managed_by = netplan_defs[-1]["effective_renderer"]
    else:
        managed_by = "NetworkManager" if nm_device else "none"
    return {
        "interface": ifname,
        "wanted": wanted,
        "managed_by": managed_by,
        "nm_state": nm_device["state"] if nm_device else None,
        "nm_connection": nm_device["connection"] if nm_device else None,
        "addresses": list(now),
        "netplan": [{"file": d["file"], "id": d["id"], "renderer": d["effective_renderer"],
                     "addresses": d["addresses"], "dhcp4": d["dhcp4"], "own": d["own"]}
                    for d in netplan_defs],
        "nm_profiles": [{"name": p["name"], "uuid": p["uuid"], "autoconnect": p["autoconnect"],
                         "active": p["device"] == ifname,
                         "bound": p["interface_name"] == ifname
                         or bool(p["mac"] and rail.get("mac") and p["mac"] == rail["mac"].lower()), "method": p["ipv4_method"],
                         "addresses": p["ipv4_addresses"], "netplan": p["netplan"],
                         "filename": p["filename"], "netplan_file": p.get("netplan_file")}
                        for p in profiles],
        "foreign": foreign,
        "conflicts": conflicts,
    }


def target_renderer(requested, default_renderer):
    """The renderer for the rails: as requested, or ('auto') the one in force."""
    if requested == "auto":
        return default_renderer if default_renderer in RENDERERS else "networkd"
    if requested not in RENDERERS:
        raise NetconfError(f"renderer {requested!r}: expected auto, networkd or NetworkManager")
    return requested


def check(view, reports, renderer, nm_running, takeover):
    """Problems that stop the role before any change (each says what to do; the caller
    names the host)."""
    problems = list(view["problems"])
    if renderer == "NetworkManager" and not nm_running:
        where = view["default_renderer_file"] or "qsfp_link_renderer"
        problems.append(
            f"the rails' renderer is NetworkManager (from {where}) but "
            "NetworkManager is not running: start it (systemctl enable --now "
            "NetworkManager) or set qsfp_link_renderer: networkd")
    if not takeover:
        for rep in reports:
            for c in rep["conflicts"]:
                problems.append(
                    f"{rep['interface']} holds a foreign static address {c['address']} "
                    f"({c['source']}), outside the rail's subnet {_net(rep['wanted'])}; "
                    "expected nothing or the rail's own address. Set qsfp_link_takeover: "
                    "true to replace it (the original is journaled and can be restored), "
                    "or fix spark_rails")
    return problems


def takeover_plan(view, reports):
    """What a takeover changes: netplan files to move or strip, NM profiles to disable
    (those NetworkManager stores as 90-NM-<uuid>.yaml too: nmcli rewrites that file, so a
    later run reads the profile as disabled and plans nothing)."""
    files = [{"path": f["path"], "action": f["action"], "rail_ids": f["rail_ids"]}
             for f in view["files"] if f["action"] in ("move", "strip")]
    profiles = {}
    for rep in reports:
        for p in rep["nm_profiles"]:
            # only profiles bound to the rail or up on it now: an unbound profile may be
            # what brings the management interface up after a reboot
            if not p["netplan"] and p["autoconnect"] and (p["bound"] or p["active"]):
                profiles[p["uuid"]] = {"uuid": p["uuid"], "name": p["name"],
                                       "filename": p["filename"], "interface": rep["interface"],
                                       "netplan_file": p.get("netplan_file")}
    return {"files": files, "nm_profiles": list(profiles.values())}


def apply_commands(renderer, interfaces, nm_running, restore=False):
    """The renderer's own commands for the rails only: [{argv, may_fail}].

    Never ``netplan apply`` (it reconfigures every interface). networkd: generate,
    let NetworkManager drop the rails (netplan lists them in its unmanaged-devices),
    reload and reconfigure the rails. NetworkManager: generate, reload the profiles,
    bring up netplan's profile of each rail. A restore brings each rail up with
    whatever profile NetworkManager now prefers, and a missing one is not fatal."""
    cmds = [{"argv": ["netplan", "generate"], "may_fail": False}]
    if renderer == "networkd":
        if nm_running:
            cmds.append({"argv": ["nmcli", "general", "reload", "conf"], "may_fail": False})
        cmds.append({"argv": ["networkctl", "reload"], "may_fail": False})
        cmds.append({"argv": ["networkctl", "reconfigure", *interfaces], "may_fail": False})
        return cmds
    cmds.append({"argv": ["nmcli", "general", "reload", "conf"], "may_fail": False})
    cmds.append({"argv": ["nmcli", "connection", "reload"], "may_fail": False})
    for ifname in interfaces:
        if restore:
            cmds.append({"argv": ["nmcli", "device", "set", ifname, "managed", "yes"], "may_fail": True})
            cmds.append({"argv": ["nmcli", "device", "disconnect", ifname], "may_fail": True})
            cmds.append({"argv": ["nmcli", "device", "connect", ifname], "may_fail": True})
        else:
            cmds.append({"argv": ["nmcli", "connection", "up", NETPLAN_NM_PREFIX + ifname,
                                  "ifname", ifname], "may_fail": False})
    return cmds


def parse_ip_addr(data):
    """``ip -j addr show`` JSON (parsed) -> {ifname: {mac, mtu, addresses: ['a/nn', ...]}}."""
    out = {}
    for link in data or []:
        out[link["ifname"]] = {
            "mac": (link.get("address") or "").lower() or None,
            "mtu": link.get("mtu"),
            "addresses": [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                          if a.get("family") in ("inet", "inet6") and "local" in a],
        }
    return out


def summary_lines(state):
    """Human lines for preflight: the renderer in force and what touches each rail."""
    where = state["default_renderer_file"] or "no file sets it: netplan's default"
    lines = [f"netplan renderer in force: {state['default_renderer']} ({where}); "
             f"rails will be rendered by {state['renderer']}; NetworkManager "
             f"{'running' if state['nm_running'] else 'not running'}"]
    for f in state["files"]:
        if f["action"] != "keep":
            lines.append(f"netplan file {f['path']}: defines {', '.join(f['rail_ids']) or '-'}"
                         f" -> {f['action']}")
    for rep in state["rails"]:
        parts = [f"{rep['interface']}: managed by {rep['managed_by']}",
                 f"addresses now {', '.join(rep['addresses']) or 'none'}",
                 f"wanted {rep['wanted']}"]
        if rep["nm_profiles"]:
            parts.append("NM profiles " + ", ".join(
                f"'{p['name']}' ({'autoconnect' if p['autoconnect'] else 'no autoconnect'}"
                f"{', active' if p['active'] else ''}"
                f"{', in ' + p['netplan_file'] if p.get('netplan_file') else ''})"
                for p in rep["nm_profiles"]))
        if rep["foreign"]:
            parts.append("foreign " + ", ".join(
                f"{x['address']} {x['kind']} from {x['source']}" for x in rep["foreign"]))
        lines.append("; ".join(parts))
    return lines


def build_state(rails, files, links, nm_running, nm_connections, nm_details, nm_devices,
                requested_renderer="auto", own_path="/etc/netplan/40-cx7.yaml",
                takeover=False, networkd_running=False):
    """Everything the role needs to know, from raw readings (all parsed already).

    rails: [{interface, address}]; files: [(path, text, doc)] in read order;
    links: parse_ip_addr(); nm_connections: parse_nm_connections(); nm_details:
    {uuid: parse_nm_details()}; nm_devices: parse_nm_devices() ({} if NM is not running)."""
    rails = [dict(r, mac=(links.get(r["interface"]) or {}).get("mac")) for r in rails]
    view = netplan_view(files, rails, own_path)
    profiles = [nm_profile(c, nm_details.get(c["uuid"], {}), view["nm_netplan"]) for c in nm_connections]
    reports = []
    for r in rails:
        ifname = r["interface"]
        mine = [p for p in profiles if profile_touches(p, ifname, r["mac"])]
        reports.append(rail_report(
            r, (links.get(ifname) or {}).get("addresses", []), view["rails"][ifname], mine,
            nm_devices.get(ifname) if nm_running else None, view["default_renderer"]))
    renderer = target_renderer(requested_renderer, view["default_renderer"])
    plan = takeover_plan(view, reports)
    interfaces = [r["interface"] for r in rails]
    return {
        "default_renderer": view["default_renderer"],
        "default_renderer_file": view["default_renderer_file"],
        "renderer": renderer,
        "nm_running": nm_running,
        "networkd_running": networkd_running,
        "files": view["files"],
        "rails": reports,
        "problems": check(view, reports, renderer, nm_running, takeover),
        "plan": plan,
        "apply": apply_commands(renderer, interfaces, nm_running),
        "restore": restore_commands(view, interfaces, nm_running),
    }


def restore_commands(view, interfaces, nm_running):
    """Re-apply the rails with the renderer the (restored) files give each of them,
    not the role's: a rail's own definition's renderer, else NetworkManager where one of
    its 90-NM profiles is bound to the rail, else the default in force."""
    by_renderer = {}
    nm_rails = {r for p in (view.get("nm_netplan") or {}).values() for r in p["rails"]}
    for ifname in interfaces:
        defs = view["rails"].get(ifname) or []
        if defs:
            renderer = defs[-1]["effective_renderer"]
        else:  # a profile NetworkManager keeps in netplan (renderer: NetworkManager) binds it
            renderer = "NetworkManager" if ifname in nm_rails else view["default_renderer"]
        by_renderer.setdefault(renderer, []).append(ifname)
    cmds = []
    for renderer, names in sorted(by_renderer.items()):
        for cmd in apply_commands(renderer, names, nm_running, restore=True):
            if cmd not in cmds:
                cmds.append(cmd)
    return cmds


# --------------------------------------------------------------------------- journal
# A takeover keeps the originals of everything it moves, strips or disables in one
# directory <journal_root>/<UTC timestamp>/ (files/<original path>, manifest.json), so a
# restore puts them back. A restored journal is renamed <stamp>.restored.

MANIFEST = "manifest.json"
RESTORED_SUFFIX = ".restored"


def _real(root, path):
    return os.path.join(root, path.lstrip("/"))


def _write_private(path, text, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, mode)


def journal_takeover(plan, rail_names, journal_root, stamp, root="/", dump=None, load=None):
    """Journal the originals, then move or strip the netplan files of ``plan``.

    Returns the journal directory (as seen under ``root``) and its manifest. The
    NetworkManager profiles of the plan are recorded; the caller turns their
    autoconnect off. A profile NetworkManager stores as a netplan file (90-NM-<uuid>.yaml)
    gets a copy of that file in the journal (``stored``), for the record only: the file
    stays where it is, NetworkManager's to rewrite, and a restore turns autoconnect back
    on through NetworkManager rather than copying it back. dump/load: YAML functions
    (yaml.safe_dump / safe_load)."""
    import json
    import shutil

    base = _real(root, journal_root)
    directory = os.path.join(base, stamp)
    n = 0
    while os.path.exists(directory) or os.path.exists(directory + RESTORED_SUFFIX):
        n += 1
        directory = os.path.join(base, f"{stamp}-{n}")
    os.makedirs(os.path.join(directory, "files"), mode=0o700)
    os.chmod(base, 0o700)
    manifest = {"created": stamp, "files": [], "nm_profiles": [dict(p) for p in plan["nm_profiles"]]}
    for p in manifest["nm_profiles"]:
        real = _real(root, p["netplan_file"]) if p.get("netplan_file") else None
        if real and os.path.isfile(real):
            p["stored"] = os.path.join("files", p["netplan_file"].lstrip("/"))
            os.makedirs(os.path.dirname(os.path.join(directory, p["stored"])), mode=0o700, exist_ok=True)
            shutil.copy2(real, os.path.join(directory, p["stored"]))
    for f in plan["files"]:
        real = _real(root, f["path"])
        st = os.stat(real)
        stored = os.path.join("files", f["path"].lstrip("/"))
        os.makedirs(os.path.dirname(os.path.join(directory, stored)), mode=0o700, exist_ok=True)
        shutil.copy2(real, os.path.join(directory, stored))
        manifest["files"].append({"path": f["path"], "action": f["action"], "stored": stored,
                                  "mode": st.st_mode & 0o7777, "uid": st.st_uid, "gid": st.st_gid})
    _write_private(os.path.join(directory, MANIFEST), json.dumps(manifest, indent=2) + "\n")
    for f in plan["files"]:
        real = _real(root, f["path"])
        if f["action"] == "move":
            os.unlink(real)
        else:
            with open(real, encoding="utf-8") as handle:
                doc = load(handle.read()) or {}
            kept = dump(strip_rails(doc, rail_names), default_flow_style=False, sort_keys=False)
            header = (f"# Rails {', '.join(f['rail_ids'])} taken out by the qsfp_link role; "
                      f"original in {directory}\n")
            _write_private(real, header + kept, os.stat(real).st_mode & 0o7777)
    return directory, manifest


def journal_restore(directory, root="/"):
    """Put a journal's files back (modes and owners as they were); returns the manifest.
    The caller turns the recorded profiles' autoconnect back on (a profile's ``stored``
    90-NM copy is not put back: NetworkManager rewrites that file itself)."""
    import json
    import shutil

    with open(os.path.join(directory, MANIFEST), encoding="utf-8") as handle:
        manifest = json.load(handle)
    for f in manifest["files"]:
        real = _real(root, f["path"])
        os.makedirs(os.path.dirname(real), exist_ok=True)
        shutil.copy2(os.path.join(directory, f["stored"]), real)
        os.chmod(real, f["mode"])
        if os.geteuid() == 0:
            os.chown(real, f["uid"], f["gid"])
    os.rename(directory, directory + RESTORED_SUFFIX)
    return manifest


def active_journals(journal_root, root="/"):
    """Journal directories not yet restored, newest first."""
    base = _real(root, journal_root)
    if not os.path.isdir(base):
        return []
    dirs = [os.path.join(base, d) for d in os.listdir(base)
            if not d.endswith(RESTORED_SUFFIX) and os.path.isfile(os.path.join(base, d, MANIFEST))]
    return sorted(dirs, reverse=True)


# --------------------------------------------------------------------------- start-up drift

def rail_drift(rails, mtu, net):
    """Problems of the rails at service start: MTU other than ``mtu`` (a firmware update
    is known to reset the ports to 1500) or the rail's address missing. Each line says
    what to run. net: a NetlinkReader-like object (links, addresses)."""
    links = {link["name"]: link for link in net.links()}
    problems = []
    for rail in rails:
        name, want = rail["interface"], str(rail["address"])
        fix = (f"re-apply the rail: `sudo nmcli connection up {NETPLAN_NM_PREFIX}{name}` "
               f"(NetworkManager) or `sudo networkctl reconfigure {name}` (networkd), or from the "
               "controller `ansible-playbook -i <inventory> site.yml --tags qsfp_link`")
        link = links.get(name)
        if link is None:
            problems.append(f"{name}: no such interface (spark_rails); check the cable and `ip -br link`")
            continue
        if mtu and link.get("mtu") != int(mtu):
            problems.append(f"{name}: MTU {link.get('mtu')}, expected {mtu} (a firmware update is "
                            f"known to reset the ports to 1500; both ends must match); {fix}")
        have = [f"{a['address']}/{a['prefixlen']}" for a in net.addresses(name) if a["family"] == 4]
        wanted = want if "/" in want else None
        if (wanted and wanted not in have) or (not wanted and want not in [h.split("/")[0] for h in have]):
            problems.append(f"{name}: address {want} missing (found {', '.join(have) or 'none'}); {fix}")
    return problems
