"""What the QSFP link modules read on a node, through an AnsibleModule (its run_command,
get_bin_path and fail_json): the ConnectX-7 twins (cx7.discover over sysfs and netlink),
what configures the rails (netplan files, NetworkManager, the links: netconf.build_state's
inputs), the management side (default route, its interface, its NetworkManager profile)
and the files a rollback puts back. library/cx7_facts.py, library/qsfp_netstate.py and
library/qsfp_link_facts.py (all of them in one call) read through these functions only.
"""

from __future__ import annotations

import base64
import json
import os

from .cx7 import discover
from .netconf import (
    NETPLAN_DIRS,
    NM_CONNECTION_FIELDS,
    NM_DETAIL_FIELDS,
    NM_DEVICE_FIELDS,
    NetconfError,
    build_state,
    netplan_files,
    parse_ip_addr,
    parse_nm_connections,
    parse_nm_details,
    parse_nm_devices,
    summary_lines,
)

# a public address for `ip route get`: a lookup in the routing table, nothing is sent
ROUTE_PROBE = "8.8.8.8"


def read_twins(module, sysfs_root, fallback_interfaces, fallback_reason, make_netlink):
    """cx7.discover over sysfs and netlink (make_netlink() opens the reader: tests pass a
    fake); fails the module with what to install or what could not be read."""
    try:
        with make_netlink() as net:
            return discover(sysfs_root, net, fallback_interfaces, fallback_reason)
    except ImportError as exc:
        module.fail_json(msg=f"reading the ConnectX-7 needs pyroute2 on the target (python3-pyroute2): {exc}")
    except OSError as exc:
        module.fail_json(msg=f"could not read the ConnectX-7 from sysfs/netlink: {exc}")


def read_netplan(module, root):
    import yaml

    listing = {}
    for directory in NETPLAN_DIRS:
        real = os.path.join(root, directory.lstrip("/"))
        if os.path.isdir(real):
            listing[directory] = sorted(os.listdir(real))
    files = []
    for path in netplan_files(listing):
        real = os.path.join(root, path.lstrip("/"))
        try:
            with open(real, encoding="utf-8") as handle:
                text = handle.read()
            doc = yaml.safe_load(text) or {}
        except (OSError, yaml.YAMLError) as exc:
            module.fail_json(msg=f"cannot read netplan file {path}: {exc}; fix or remove it "
                                 "(netplan itself would refuse it)")
        files.append((path, text, doc))
    return files


def nmcli(module, *args):
    rc, out, err = module.run_command(["nmcli", "-t", *args])
    if rc != 0:
        module.fail_json(msg=f"nmcli {' '.join(args)} failed ({rc}): {err.strip()}")
    return out


def read_netstate(module, rails, renderer="auto", netplan_path="/etc/netplan/40-cx7.yaml", takeover=False, root="/"):
    """What configures the rails now and what follows from it (netconf.build_state), with
    the human summary lines."""
    rails = [{"interface": str(r["interface"]), "address": str(r["address"])} for r in rails]
    files = read_netplan(module, root)
    rc, out, err = module.run_command(["ip", "-j", "addr", "show"])
    if rc != 0:
        module.fail_json(msg=f"ip -j addr show failed: {err.strip()}")
    links = parse_ip_addr(json.loads(out or "[]"))

    nm_running = False
    connections, details, devices = [], {}, {}
    if module.get_bin_path("nmcli"):
        rc, out, _err = module.run_command(["nmcli", "-t", "-f", "RUNNING", "general"])
        nm_running = rc == 0 and out.strip() == "running"
    if nm_running:
        connections = parse_nm_connections(nmcli(module, "-f", NM_CONNECTION_FIELDS, "connection", "show"))
        for conn in connections:
            rc, out, _err = module.run_command(
                ["nmcli", "-t", "-f", NM_DETAIL_FIELDS, "connection", "show", "uuid", conn["uuid"]])
            # a profile deleted between the listing and this call is simply not there
            details[conn["uuid"]] = parse_nm_details(out) if rc == 0 else {}
        devices = parse_nm_devices(nmcli(module, "-f", NM_DEVICE_FIELDS, "device"))
    rc, out, _err = module.run_command(["systemctl", "is-active", "systemd-networkd"])
    networkd_running = out.strip() == "active"

    try:
        state = build_state(rails, files, links, nm_running, connections, details, devices,
                            requested_renderer=renderer, own_path=netplan_path,
                            takeover=takeover, networkd_running=networkd_running)
    except (NetconfError, ValueError) as exc:
        module.fail_json(msg=f"cannot make sense of the rails' configuration: {exc}")
    state["summary"] = summary_lines(state)
    return state


def management_side(route, addr_info, nm_connection):
    """The management side from `ip -j -4 route get` (its first entry), `ip -j -4 addr show
    dev <its interface>` (the entry's addr_info) and the NetworkManager profile holding the
    interface ('' where none): interface, gateway, addresses, nm_connection."""
    route = route or {}
    return {"interface": route.get("dev", ""), "gateway": route.get("gateway", ""),
            "addresses": [a["local"] for a in addr_info or [] if "local" in a],
            "nm_connection": nm_connection or ""}


def _json_first(rc, out):
    if rc != 0 or not out.strip():
        return {}
    return (json.loads(out) or [{}])[0]


def read_management(module):
    """The default route's interface, gateway and addresses, and its NetworkManager profile
    (a lookup of the route to a public address, as Ansible's default_ipv4 finds it). The
    QSFP role reads it before and after a change: the two must be equal."""
    route = _json_first(*module.run_command(["ip", "-j", "-4", "route", "get", ROUTE_PROBE])[:2])
    dev = route.get("dev", "")
    addr = _json_first(*module.run_command(["ip", "-j", "-4", "addr", "show", "dev", dev or "lo"])[:2])
    nm = ""
    if module.get_bin_path("nmcli"):
        rc, out, _err = module.run_command(["nmcli", "-t", "-g", "GENERAL.CONNECTION", "device", "show", dev or "lo"])
        nm = out.strip() if rc == 0 else ""
    return management_side(route, addr.get("addr_info", []), nm)


def read_files(paths, root="/"):
    """{path: {exists, content}} for each path (content base64, null where absent or not a
    regular file): what a rollback writes back."""
    out = {}
    for path in paths:
        real = os.path.join(root, str(path).lstrip("/"))
        if os.path.isfile(real):
            with open(real, "rb") as handle:
                out[path] = {"exists": True, "content": base64.b64encode(handle.read()).decode("ascii")}
        else:
            out[path] = {"exists": os.path.lexists(real), "content": None}
    return out
