"""The collective probe: what NCCL chose and how fast the all-reduce ran.

``parse_log`` reads what one node printed: the probe's ``SPARK_COLLECTIVE <json>`` lines
(``roles/link_validation/files/spark_collective_probe.py``) and NCCL's own
``NCCL_DEBUG=INFO`` lines (the network NCCL used: built-in IB, an external net plugin
or Socket; the HCAs it found and the channels' devices; the GID index NCCL says it used;
the bootstrap/OOB interface). The probe asks for ``NCCL_DEBUG_SUBSYS`` ``ENV`` too, so
NCCL's ``NCCL_IB_GID_INDEX set by environment to N.`` line is there to read.
``collective_section`` turns the parsed logs of all nodes into the link report's
``collective`` section with its verdict:

- not measured (no GPU, as in the lab; a node not ready): ``not_measured``, never pass;
- a node failed, wrong sum, or fewer than all nodes reported: ``fail``;
- RDMA expected (``NCCL_IB_HCA`` pinned, or RDMA devices on the rails) but NCCL used a
  network that is not RDMA (``NET/Socket``, or a plugin such as AWS-OFI's ``Libfabric``):
  ``fail``, with NCCL's own reason (``NET/IB : No device found.``). RDMA is the built-in
  ``IB``, NVIDIA's external IB plugin (``IBext``, ``IBext_vN``) or any external plugin
  whose own ``NET/IB : Using [0]...:1/RoCE`` line lists RoCE/IB devices;
- the GID index NCCL used (its per-connection ``GID n`` lines, else its ``set by
  environment`` line) differs from the one pinned in the env file: ``fail``;
- NCCL's bootstrap/socket interface is not rail 0: ``fail`` (the Wi-Fi trap);
- peak bus bandwidth below ``collective_min_busbw_gbs``: ``fail``;
- a twin in ``NCCL_IB_HCA`` not found or carrying no channel: a warning.

Plain Python 3.11+ (stdlib): the tests parse real captured output with it.
"""

from __future__ import annotations

import json
import re

from .linkprobe import (
    DEFAULT_THRESHOLDS, FAIL, NOT_MEASURED, PASS,
)

MARK = "SPARK_COLLECTIVE"
DEFAULT_MIN_BUSBW_GBS = DEFAULT_THRESHOLDS["collective_min_busbw_gbs"]
BROKEN_HINT = (
    "The field's broken state is ~3 GB/s busbw: check that NCCL_IB_HCA lists both twins "
    "of the cabled port, MTU 9000 on both ends, and the NCCL build (a development build "
    "plateaued at 3.04 GB/s where the release build measured 23.74 GB/s)."
)

# NCCL's log lines, as its sources print them (NCCL_DEBUG=INFO, INFO(<subsystem>, ...)):
# NVIDIA/nccl v2.28.9-1 (dbc86fd06e8b0c4517b95d8958a09ccacf9520c9, the runtime image's
# NCCL) and master (5067397c2676d5aed50042fc39e5c8ee96eb0027, v2.30.7-1 + nccl4py):
#   src/init.cc            INFO(NCCL_INIT, "Using network %s", comm->ncclNet->name)
#   src/bootstrap.cc       INFO(NCCL_BOOTSTRAP, "Bootstrap: Using%s", line)
#   src/misc/param.cc      ncclLoadParam: INFO(NCCL_ENV, "%s set by environment to %lld.")
#                          (only with ENV in NCCL_DEBUG_SUBSYS; once per process) and
#                          INFO(NCCL_ALL, "Invalid value %s for %s, using default %lld.")
#   src/transport/net_ib.cc (v2.28.9; src/transport/net_ib/init.cc on master):
#                          INFO(NCCL_NET|NCCL_ENV, "NCCL_IB_HCA set to %s"),
#                          INFO(NCCL_INIT|NCCL_NET, "NET/IB : No device found."),
#                          INFO(NCCL_INIT|NCCL_NET, "NET/IB : Using%s %s; OOB %s:%s") with
#                          " [%d]%s:%d/%s" per device (master may add ":rail" "::plane")
#   per connection (RoCE), ncclIbConnect, INFO(NCCL_NET, ...):
#     v2.28.9 net_ib.cc:1490 "NET/IB: %s %d IbDev %d Port %d qpn %d mtu %d GID %ld (%lX/%lX)
#                             fifoRkey=0x%x fifoLkey=0x%x"   (%s: "NCCL Dev"/"NCCL MergedDev")
#     v2.29.7+ net_ib/connect.cc "NET/IB: %s: %s %d IbDev %d Port %d qp_num %d mtu %d GID %ld
#                             (%lX/%lX) ctsFifoRkey=0x%x ctsFifoLkey=0x%x" (first %s: __func__)
#     v2.18.5 "NET/IB: Dev %d Port %d qpn %d mtu %d GID %ld (%lX/%lX)"; v2.19-v2.23 add
#                             "query_ece={...}" before GID.
#     the GID index is commDev->base.gidInfo.localGidIndex: what the QP's sgid_index uses.
#   src/plugin/net.cc      "Initialized NET plugin %s", "Failed to initialize NET plugin %s",
#                          "Assigned NET plugin %s to comm",
#                          "Successfully loaded external network plugin %s"
#   src/plugin/net/net_v*.cc "NET/Plugin: Loaded net plugin %s (v%d)"
#   src/transport/net.cc   "Channel %02d/%d : %d[%d] -> %d[%d] [send] via NET/%s/%d..."
# Mellanox/nccl-rdma-sharp-plugins master (2f5ac02e164336044388b7f1f6242cc0db575fec), the
# external IB plugin (libnccl-net.so, HPC-X): names "IBext_v6".."IBext_v11" (src/ib_plugin.c;
# plain "IBext" before 8a2ef11, Sep 2023), exported as "NCCL RDMA Plugin vN" until its init
# runs (so NCCL's v10-and-older wrappers, which copy the name at load, say "Using network
# NCCL RDMA Plugin v10"); the same "NET/IB : Using%s %s; OOB %s:%s" line (src/p2p_plugin.c)
# and per connection "NET/IB: %s %d IbDev %d Port %d qpn %d mtu %d query_ece={...} GID %ld
# (%lX/%lX) ..." (src/ib_plugin.c). aws/aws-ofi-nccl (2daf7d303aa139a03140aa530957d10521e4478d,
# src/nccl_ofi_interface_nvidia.cpp) names itself "Libfabric"/"AWS Libfabric": not RDMA here.
_RE_NCCL = re.compile(r"NCCL (INFO|WARN) (.*)$")
_RE_VERSION = re.compile(r"NCCL version (\S+)")
_RE_NETWORK = re.compile(r"^Using network (.+?)\s*$")
_RE_BOOTSTRAP = re.compile(r"^Bootstrap\s*:\s*Using\s+([^:\s]+):(\S+?)<\d+>")
_RE_IB_USING = re.compile(r"^NET/IB\s*:\s*Using(.*?)(?:;\s*OOB\s+([^:\s]+):(\S+?)<\d+>)?\s*$")
_RE_IB_DEV = re.compile(r"\[(\d+)\]([^:\s\[\]]+):(\d+)(?::\d*)*/(\w+)")
_RE_IB_QP = re.compile(
    r"^NET/IB\s*:\s*(?:\w+:\s*)?(?:NCCL (?:Merged)?)?Dev (\d+) (?:IbDev (\d+) )?Port (\d+) "
    r"(?:qpn|qp_num) (\d+) mtu (\d+)\b.*?\bGID (-?\d+) \(([0-9A-Fa-f]+)/([0-9A-Fa-f]+)\)")
_RE_SOCK_USING = re.compile(r"^NET/Socket\s*:\s*Using(.*)$")
_RE_SOCK_DEV = re.compile(r"\[(\d+)\]([^:\s]+):(\S+?)<\d+>")
_RE_VIRTUAL = re.compile(r"[Vv]irtual device \[(\d+)\] name=(\S+)")
_RE_CHANNEL = re.compile(
    r"^Channel (\d+)/\d+ : (\d+)\[\w+\] -> (\d+)\[\w+\] \[(send|receive)\] via NET/(.+?)/(\d+)")
_RE_SET = re.compile(r"^(NCCL_[A-Z0-9_]+) set (by environment )?to (.*?)\.?$")
_RE_INVALID = re.compile(r"^Invalid value (.*) for (NCCL_[A-Z0-9_]+), using default (-?\d+)\.?$")
_RE_PLUGIN_LOADED = re.compile(r"^NET/Plugin\s*:\s*Loaded net plugin (.+?) \(v(\d+)\)\s*$")
_RE_PLUGIN_STATE = re.compile(r"^(Initialized|Failed to initialize) NET plugin (.+?)\s*$")
_RE_IB_PLUGIN = re.compile(r"^IBext(?:_v\d+)?$")
_RE_C_INT = re.compile(r"^\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
INTERNAL_NETS = ("IB", "Socket")
RDMA_LINK_LAYERS = ("RoCE", "IB")


def _hca_names(value):
    """NCCL_IB_HCA value -> device names ('=a:1,b' -> ['a', 'b']; '^x' excludes: [])."""
    value = (value or "").strip()
    if not value or value.startswith("^"):
        return []
    return [p.split(":")[0].strip() for p in value.lstrip("=").split(",") if p.strip()]


def subsys_logs(value, name):
    """Does NCCL_DEBUG_SUBSYS=value let subsystem name through? NCCL's own reading
    (src/debug.cc): comma list, '^' inverts it, ALL is every one; unset is NCCL's default
    INIT,BOOTSTRAP,ENV."""
    if value is None:
        return name.upper() in ("INIT", "BOOTSTRAP", "ENV")
    invert = value.startswith("^")
    names = {t.strip().upper() for t in value.lstrip("^").split(",") if t.strip()}
    listed = name.upper() in names or "ALL" in names
    return not listed if invert else listed


def _c_int(value):
    """An NCCL integer parameter as NCCL reads it (strtoll base 0: '3', '0x3', '03');
    None when absent, empty or not a number."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    m = _RE_C_INT.match(str(value))
    if not m:
        return None
    digits = m.group(2)
    base = 16 if digits[:2].lower() == "0x" else 8 if len(digits) > 1 and digits[0] == "0" \
        else 10
    number = int(digits, base)
    return -number if m.group(1) == "-" else number


def _gid_address(prefix_hex, iface_hex):
    """The '(%lX/%lX)' of NCCL's GID line -> the address it carries (the two 64-bit halves
    are the GID's raw bytes read as little-endian integers, as on x86-64 and aarch64):
    '0/A64A8C0FFFF0000' -> '192.168.100.10' (RoCE v2 IPv4-mapped); None if unreadable."""
    import ipaddress
    try:
        raw = int(prefix_hex, 16).to_bytes(8, "little") + int(iface_hex, 16).to_bytes(8, "little")
    except (ValueError, OverflowError):
        return None
    addr = ipaddress.IPv6Address(raw)
    return str(addr.ipv4_mapped or addr)


def parse_log(text):
    """One node's output -> {start, init, done, results, errors, nccl}."""
    out = {"start": None, "init": None, "done": None, "results": [], "errors": [],
           "nccl": {"version": None, "network": None, "bootstrap": None, "oob": None,
                    "ib_devices": [], "ib_no_device": False, "ib_failed": False,
                    "virtual_devices": {}, "socket_devices": [], "settings": {},
                    "env_settings": {}, "invalid_settings": {}, "net_plugin": None,
                    "net_plugins": {}, "ib_connections": [], "channels": [],
                    "warnings": []}}
    nccl = out["nccl"]
    pending_ib = None  # the last 'NET/IB : Using' devices, until a plugin says it is up
    for raw in (text or "").splitlines():
        line = raw.strip()
        if line.startswith(MARK + " "):
            try:
                event = json.loads(line[len(MARK) + 1:])
            except ValueError:
                continue
            kind = event.pop("kind", None)
            if kind == "result":
                out["results"].append(event)
            elif kind == "error":
                out["errors"].append(event)
            elif kind in ("start", "init", "done"):
                out[kind] = event
            continue
        match = _RE_NCCL.search(line)
        if not match:
            continue
        level, msg = match.group(1), match.group(2).strip()
        if level == "WARN":
            nccl["warnings"].append(msg)
            continue
        if (m := _RE_VERSION.search(msg)) and not nccl["version"]:
            nccl["version"] = m.group(1)
        elif m := _RE_NETWORK.match(msg):
            nccl["network"] = m.group(1)
        elif m := _RE_BOOTSTRAP.match(msg):
            nccl["bootstrap"] = {"interface": m.group(1), "address": m.group(2),
                                 "source": "Bootstrap line"}
        elif msg.startswith("NET/IB") and "No device found" in msg:
            nccl["ib_no_device"] = True
        elif m := _RE_IB_USING.match(msg):
            nccl["ib_devices"] = pending_ib = [
                {"index": int(d[0]), "name": d[1], "port": int(d[2]), "link_layer": d[3]}
                for d in _RE_IB_DEV.findall(m.group(1))]
            if m.group(2):
                nccl["oob"] = {"interface": m.group(2), "address": m.group(3)}
        elif m := _RE_IB_QP.match(msg):
            nccl["ib_connections"].append({
                "net_device": int(m.group(1)), "ib_device": int(m.group(2) or m.group(1)),
                "port": int(m.group(3)), "qpn": int(m.group(4)), "mtu": int(m.group(5)),
                "gid_index": int(m.group(6)),
                "gid_address": _gid_address(m.group(7), m.group(8))})
        elif m := _RE_SOCK_USING.match(msg):
            nccl["socket_devices"] = [
                {"index": int(d[0]), "interface": d[1], "address": d[2]}
                for d in _RE_SOCK_DEV.findall(m.group(1))]
        elif m := _RE_VIRTUAL.search(msg):
            nccl["virtual_devices"][int(m.group(1))] = m.group(2).split("+")
        elif m := _RE_PLUGIN_LOADED.match(msg):
            nccl["net_plugin"] = {"name": m.group(1), "api": int(m.group(2))}
        elif m := _RE_PLUGIN_STATE.match(msg):
            name, up = m.group(2), m.group(1) == "Initialized"
            nccl["net_plugins"][name] = {"initialized": up, "ib_devices": pending_ib or []}
            pending_ib = None
            if not up and (name == "IB" or _RE_IB_PLUGIN.match(name)):
                nccl["ib_failed"] = True
        elif m := _RE_CHANNEL.match(msg):
            nccl["channels"].append({"channel": int(m.group(1)), "from": int(m.group(2)),
                                     "to": int(m.group(3)), "direction": m.group(4),
                                     "transport": "NET/" + m.group(5),
                                     "device": int(m.group(6))})
        elif m := _RE_SET.match(msg):
            nccl["settings"][m.group(1)] = m.group(3).strip()
            if m.group(2):
                nccl["env_settings"][m.group(1)] = m.group(3).strip()
        elif m := _RE_INVALID.match(msg):
            nccl["invalid_settings"][m.group(2)] = {"value": m.group(1),
                                                    "default": int(m.group(3))}
    out["results"].sort(key=lambda r: r.get("size_bytes") or 0)
    return out


def rdma_network(nccl):
    """(is RDMA, why) for the network NCCL used ('Using network <name>')."""
    name = nccl.get("network")
    if not name:
        return False, None
    if name == "IB":
        return True, "NCCL's built-in IB transport"
    if name == "Socket":
        return False, None
    if _RE_IB_PLUGIN.match(name):
        return True, "NVIDIA's external IB plugin %s" % name
    plugin = (nccl.get("net_plugins") or {}).get(name)
    devices = plugin["ib_devices"] if plugin else (
        nccl.get("ib_devices") or [] if not nccl.get("net_plugins") else [])
    rdma = [d for d in devices if d["link_layer"] in RDMA_LINK_LAYERS]
    if rdma:
        return True, "external net plugin %s on %s" % (name, ",".join(
            "%s/%s" % (d["name"], d["link_layer"]) for d in rdma))
    return False, None


def _one_or_list(values):
    values = sorted(v for v in values if v is not None)
    return None if not values else values[0] if len(values) == 1 else values


def gid_summary(nccl, pins):
    """The GID index pinned in the env file and the one NCCL says it used.

    Used: the per-connection 'NET/IB: NCCL Dev .. GID n (..)' lines (the QPs' sgid_index,
    RoCE only), else NCCL's own 'NCCL_IB_GID_INDEX set by environment to n.' (ENV
    subsystem). A mismatch (text, else None) when either differs from the pinned one."""
    pinned_raw = pins.get("NCCL_IB_GID_INDEX")
    pinned = _c_int(pinned_raw)
    env_raw = nccl["env_settings"].get("NCCL_IB_GID_INDEX")
    env_value = _c_int(env_raw)
    invalid = nccl["invalid_settings"].get("NCCL_IB_GID_INDEX")
    if invalid and env_value is None:
        env_value = invalid["default"]
    names = {d["index"]: d["name"] for d in nccl["ib_devices"]}
    by_dev = {}
    for conn in nccl["ib_connections"]:
        name = names.get(conn["ib_device"], "dev%d" % conn["ib_device"])
        entry = by_dev.setdefault(name, {"gid_index": set(), "address": set()})
        entry["gid_index"].add(conn["gid_index"])
        entry["address"].add(conn["gid_address"])
    by_dev = {n: {k: _one_or_list(v) for k, v in e.items()} for n, e in sorted(by_dev.items())}
    indexes = sorted({c["gid_index"] for c in nccl["ib_connections"]})
    if indexes:
        used, source = _one_or_list(indexes), "NCCL's per-connection 'NET/IB: ... GID n' lines"
    elif env_value is not None and env_value >= 0 and not invalid:
        used, source = env_value, "NCCL's 'NCCL_IB_GID_INDEX set by environment to %d.' line" % (
            env_value)
    else:
        used, source = None, None
    mismatch = None
    if pinned is not None:
        if invalid:
            mismatch = ("NCCL rejected NCCL_IB_GID_INDEX=%s and used its default %d "
                        "(auto-selection)" % (invalid["value"], invalid["default"]))
        elif env_value is not None and env_value != pinned:
            mismatch = "NCCL read NCCL_IB_GID_INDEX=%s from its environment" % env_raw
        elif indexes and indexes != [pinned]:
            mismatch = "NCCL's connections used GID index %s" % ",".join(
                "%d" % i for i in indexes)
        if mismatch:
            mismatch += ", the env file pins %s" % pinned_raw
    return {"gid_index_pinned": pinned if pinned is not None else pinned_raw,
            "gid_index_used": used, "gid_index_source": source,
            "gid_index_nccl_env": env_raw, "gid_by_device": by_dev,
            "gid_index_mismatch": mismatch}


def node_summary(parsed, rc=None):
    """What NCCL chose on one node, flattened for the report."""
    nccl = parsed["nccl"]
    start = parsed.get("start") or {}
    pins = start.get("pins") or {}
    transports = sorted({c["transport"] for c in nccl["channels"]})
    network = nccl["network"]
    transport = ("NET/" + network) if network else (transports[0] if len(transports) == 1
                                                     else None)
    if not network and transport:
        network = transport[len("NET/"):]
    rdma, rdma_reason = rdma_network(dict(nccl, network=network))
    names = {d["index"]: [d["name"]] for d in nccl["ib_devices"]}
    names.update(nccl["virtual_devices"])
    used = sorted({n for c in nccl["channels"] if rdma and c["transport"] == transport
                   for n in names.get(c["device"], ["dev%d" % c["device"]])})
    boot = nccl["bootstrap"]
    if not boot and nccl["oob"]:
        boot = dict(nccl["oob"], source="NET/IB OOB line")
    if not boot and nccl["socket_devices"]:
        first = nccl["socket_devices"][0]
        boot = {"interface": first["interface"], "address": first["address"],
                "source": "NET/Socket line (same NCCL_SOCKET_IFNAME selection)"}
    summary = {
        "rc": rc,
        "rank": start.get("rank"),
        "nccl_version": nccl["version"] or start.get("nccl"),
        "torch": start.get("torch"),
        "gpu": start.get("gpu"),
        "network": network,
        "transport": transport,
        "rdma": rdma,
        "rdma_reason": rdma_reason,
        "net_plugin": (nccl["net_plugin"] or {}).get("name"),
        "channel_transports": transports,
        "ib_hca_pinned": _hca_names(pins.get("NCCL_IB_HCA")),
        "ib_disabled": pins.get("NCCL_IB_DISABLE") == "1",
        "ib_devices_found": [d["name"] for d in nccl["ib_devices"]],
        "ib_devices_used": used,
        "ib_no_device": nccl["ib_no_device"] or nccl["ib_failed"],
        "nccl_debug_subsys": start.get("nccl_debug_subsys"),
        "bootstrap_interface": (boot or {}).get("interface"),
        "bootstrap_address": (boot or {}).get("address"),
        "bootstrap_source": (boot or {}).get("source"),
        "socket_ifname": pins.get("NCCL_SOCKET_IFNAME"),
        "errors": ["%s: %s" % (e.get("stage"), e.get("error")) for e in parsed["errors"]],
        "nccl_warnings": nccl["warnings"][:10],
        "results": len(parsed["results"]),
    }
    summary.update(gid_summary(nccl, pins))
    return summary


def _fmt_size(size):
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return "%d %s" % (size // factor, unit)
    return "%d B" % size


def not_measured(reason, threshold=DEFAULT_MIN_BUSBW_GBS, nodes=None):
    return {"status": NOT_MEASURED, "reason": reason, "failures": [], "warnings": [],
            "threshold_busbw_gbs": float(threshold), "sizes": [], "peak_busbw_gbs": None,
            "peak_size_bytes": None, "world_size": None, "nodes": nodes or {}}


def collective_section(runs, expect=None, threshold=DEFAULT_MIN_BUSBW_GBS, order=None):
    """The report's collective section.

    runs: {host: {"measured": bool, "reason": str, "rc": int, "output": str}} (the
      probe module's results; "output" is the node's whole log).
    expect: {host: {"rail0_interface": str, "rdma_devices": [hca, ...]}} from the
      inventory and the link facts.
    threshold: lowest tolerated peak bus bandwidth, GB/s.
    order: host names in rank order (head first); the first measured host's sizes are
      the cluster's (every rank reports the slowest rank's time).
    """
    threshold = float(DEFAULT_MIN_BUSBW_GBS if threshold is None else threshold)
    expect = expect or {}
    runs = runs or {}
    hosts = [h for h in (order or sorted(runs)) if h in runs]
    if not hosts:
        return not_measured("the collective probe did not run (skipped tag 'collective' "
                            "or link_validation_collective: false)", threshold)
    unmeasured = ["%s: %s" % (h, runs[h].get("reason") or "not run") for h in hosts
                  if not runs[h].get("measured")]
    if unmeasured:
        return not_measured("; ".join(unmeasured), threshold)
    failures, warnings, nodes = [], [], {}
    parsed = {h: parse_log(runs[h].get("output")) for h in hosts}
    for host in hosts:
        summary = node_summary(parsed[host], runs[host].get("rc"))
        nodes[host] = summary
        exp = expect.get(host) or {}
        if summary["errors"] or (summary["rc"] not in (0, None)):
            failures.append("%s: the probe failed (exit %s): %s" % (
                host, summary["rc"], "; ".join(summary["errors"]) or runs[host].get("reason")
                or "no error line; see the node's log"))
            continue
        if not parsed[host]["done"]:
            failures.append("%s: the probe did not finish (no 'done' line)" % host)
        rdma_expected = bool(summary["ib_hca_pinned"] and not summary["ib_disabled"]) or \
            bool(exp.get("rdma_devices"))
        if rdma_expected and not summary["rdma"]:
            why = ("NCCL_IB_DISABLE=1 in the env file (rendered where no RDMA device "
                   "was found: re-run site.yml once the twins are up)"
                   if summary["ib_disabled"] else
                   "NCCL said 'NET/IB : No device found' / could not initialize IB"
                   if summary["ib_no_device"] else
                   "the external net plugin %s is not an IB/RoCE transport (no 'NET/IB : "
                   "Using ...RoCE' line of its own)" % summary["network"]
                   if summary["network"] and summary["network"] not in INTERNAL_NETS else
                   "see the NCCL lines in the node's log")
            failures.append(
                "%s: RDMA expected (NCCL_IB_HCA=%s, RDMA devices %s) but NCCL used %s: %s. "
                "Check /dev/infiniband is passed to the container, the HCA names "
                "(ibdev2netdev) and that the twins are up" % (
                    host, ",".join(summary["ib_hca_pinned"]) or "unset",
                    ",".join(exp.get("rdma_devices") or []) or "none", summary["transport"]
                    or "no network", why))
        rail0 = exp.get("rail0_interface")
        boot = summary["bootstrap_interface"]
        if rail0 and boot and boot != rail0:
            failures.append(
                "%s: NCCL's bootstrap/socket interface is %s (%s), not rail 0 %s: "
                "NCCL_SOCKET_IFNAME=%s pins the wrong interface" % (
                    host, boot, summary["bootstrap_address"], rail0, summary["socket_ifname"]))
        if summary["gid_index_mismatch"]:
            failures.append(
                "%s: GID index mismatch: %s. The pin is not what NCCL runs with: check the "
                "env file reaches the container and that no NCCL env plugin or nccl.conf "
                "changes it" % (host, summary["gid_index_mismatch"]))
        if summary["rdma"] and summary["gid_index_used"] is None:
            subsys = summary["nccl_debug_subsys"]
            lacking = [n for n in ("NET", "ENV") if not subsys_logs(subsys, n)]
            warnings.append(
                "%s: NCCL did not say which GID index it used (no per-connection 'GID n' "
                "line, no 'NCCL_IB_GID_INDEX set by environment' line)%s" % (
                    host, "; NCCL_DEBUG_SUBSYS=%s lacks %s" % (subsys, "/".join(lacking))
                    if subsys is not None and lacking else ""))
        if summary["rdma"]:
            pinned = summary["ib_hca_pinned"]
            found = summary["ib_devices_found"]
            missing = [h for h in pinned if h not in found]
            idle = [h for h in found if summary["ib_devices_used"] and
                    h not in summary["ib_devices_used"]]
            if missing:
                warnings.append("%s: one twin unused: NCCL found %s of NCCL_IB_HCA=%s "
                                "(missing %s): half the port's bandwidth" % (
                                    host, ",".join(found) or "none", ",".join(pinned),
                                    ",".join(missing)))
            elif idle:
                warnings.append("%s: one twin unused: no channel ran over %s (channels on %s); "
                                "NCCL_IB_MERGE_NICS=1 or more channels spread the rings" % (
                                    host, ",".join(idle), ",".join(summary["ib_devices_used"])))
            elif len(pinned) < 2 and len(exp.get("rdma_devices") or []) >= 2:
                warnings.append("%s: one twin unused: NCCL_IB_HCA=%s lists one of the RDMA "
                                "devices %s" % (host, ",".join(pinned),
                                                ",".join(exp["rdma_devices"])))
    first = next((h for h in hosts if parsed[h]["results"]), None)
    sizes = parsed[first]["results"] if first else []
    world = (parsed[first]["start"] or {}).get("world_size") if first else None
    if not failures:
        reporting = [h for h in hosts if parsed[h]["results"]]
        if len(reporting) < len(hosts):
            failures.append("only %s of %d nodes reported results" % (
                ", ".join(reporting) or "none", len(hosts)))
        if world is not None and world != len(hosts):
            warnings.append("world size %s differs from the %d nodes probed (GPUs per "
                            "node > 1?)" % (world, len(hosts)))
    wrong = [_fmt_size(r["size_bytes"]) for r in sizes if r.get("correct") is False]
    if wrong:
        failures.append("all-reduce gave a wrong sum at %s" % ", ".join(wrong))
    peak = max(sizes, key=lambda r: r.get("busbw_gbs") or 0) if sizes else None
    if peak and peak["busbw_gbs"] < threshold:
        failures.append("peak bus bandwidth %.2f GB/s (at %s) is below %.2f GB/s "
                        "(link_validation_collective_min_busbw_gbs). %s" % (
                            peak["busbw_gbs"], _fmt_size(peak["size_bytes"]), threshold,
                            BROKEN_HINT))
    elif not sizes and not failures:
        failures.append("no all-reduce result in any node's output")
    status = FAIL if failures else PASS
    transports = sorted({n["transport"] or "unknown" for n in nodes.values()})
    reason = ("; ".join(failures) if failures else
              "all-reduce over %s on %d node(s), peak busbw %.2f GB/s at %s" % (
                  "/".join(transports), len(hosts), peak["busbw_gbs"],
                  _fmt_size(peak["size_bytes"])))
    return {"status": status, "reason": reason, "failures": failures, "warnings": warnings,
            "threshold_busbw_gbs": threshold, "world_size": world,
            "sizes": [{k: r.get(k) for k in ("size_bytes", "iterations", "time_us",
                                             "algbw_gbs", "busbw_gbs", "correct")}
                      for r in sizes],
            "peak_busbw_gbs": peak["busbw_gbs"] if peak else None,
            "peak_size_bytes": peak["size_bytes"] if peak else None,
            "nodes": nodes}


def render_markdown(section):
    """The report's '## Collective' part (list of lines)."""
    lines = ["## Collective (NCCL all-reduce)", "",
             "Verdict: **%s** (%s)." % (section["status"].replace("_", " "),
                                        section["reason"].rstrip(".")),
             ""]
    if section["nodes"]:
        lines += ["| node | transport | HCAs found / used | GID index | bootstrap interface | NCCL |",
                  "|---|---|---|---|---|---|"]
        for host, n in section["nodes"].items():
            hcas = "%s / %s" % (",".join(n["ib_devices_found"]) or "-",
                                ",".join(n["ib_devices_used"]) or "-")
            used = n["gid_index_used"]
            gid = "-" if n["gid_index_pinned"] is None and used is None else \
                "pinned %s / NCCL %s%s" % (
                "-" if n["gid_index_pinned"] is None else n["gid_index_pinned"],
                "-" if used is None else ",".join(map(str, used)) if isinstance(used, list)
                else used, " (MISMATCH)" if n["gid_index_mismatch"] else "")
            lines.append("| %s | %s%s | %s | %s | %s %s | %s |" % (
                host, n["transport"] or "n/a", " (RDMA)" if n["rdma"] else "", hcas, gid,
                n["bootstrap_interface"] or "n/a",
                "(%s)" % n["bootstrap_address"] if n["bootstrap_address"] else "",
                n["nccl_version"] or "n/a"))
        lines.append("")
    if section["sizes"]:
        lines += ["| size | iterations | time us | algbw GB/s | busbw GB/s | correct |",
                  "|---|---|---|---|---|---|"]
        for r in section["sizes"]:
            lines.append("| %s | %s | %s | %.2f | %.2f | %s |" % (
                _fmt_size(r["size_bytes"]), r["iterations"], r["time_us"], r["algbw_gbs"],
                r["busbw_gbs"], "yes" if r["correct"] else "NO"))
        lines += ["", "Threshold: peak busbw >= %.2f GB/s. busbw = algbw x 2(n-1)/n "
                  "(nccl-tests' all-reduce convention)." % section["threshold_busbw_gbs"], ""]
    for w in section["warnings"]:
        lines.append("- warning: " + w)
    if section["warnings"]:
        lines.append("")
    return lines


# ----------------------------------------------------------------- running on a node

PROBE_IN_CONTAINER = "/opt/spark-collective-probe.py"
CONTAINER_NAME = "spark-collective-probe"
GPU_DEVICE = "/dev/nvidiactl"


def read_env_file(path):
    """{key: value} of a docker env file (comments and blank lines skipped)."""
    out = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                out[key.strip()] = value
    return out


def probe_argv(image, env_file, probe, python="python3", sizes="1M:1G", timeout=300,
               extra_env=None, infiniband=False, docker="docker", name=CONTAINER_NAME):
    """docker run of the probe in the runtime image, with the node's env file, host
    network and IPC (rendezvous on rail 0 like the real start), all GPUs, RDMA devices
    when the node has them."""
    argv = [docker, "run", "--rm", "--name", name, "--network", "host", "--ipc", "host",
            "--gpus", "all", "--ulimit", "memlock=-1", "--env-file", env_file]
    for key, value in sorted((extra_env or {}).items()):
        argv += ["-e", "%s=%s" % (key, value)]
    if infiniband:
        argv += ["--device", "/dev/infiniband"]
    argv += ["-v", "%s:%s:ro" % (probe, PROBE_IN_CONTAINER), "--entrypoint", python, image,
             PROBE_IN_CONTAINER, "--sizes", str(sizes), "--timeout", str(int(timeout))]
    return argv


def port_in_use(address, port):
    """True when address:port cannot be bound (someone listens: the serving runtime)."""
    import errno
    import socket
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((address, int(port)))
    except OSError as exc:
        return exc.errno == errno.EADDRINUSE
    finally:
        sock.close()
    return False


def readiness(env_file, image, gpu_device=GPU_DEVICE, image_present=None, docker=None,
              port_check=port_in_use):
    """Can this node run the probe now? {ready, reason, node_rank, master, env}.

    image_present(image) -> bool; docker: path of the docker binary or None. Checked in
    order, the first missing thing is the reason (the lab stops at the GPU)."""
    import os
    out = {"ready": False, "reason": None, "node_rank": None, "master": None}
    if not os.path.exists(gpu_device):
        out["reason"] = "no NVIDIA GPU (%s missing): the all-reduce needs the real nodes" % (
            gpu_device)
        return out
    if not os.path.isfile(env_file):
        out["reason"] = "runtime env file %s missing: run site.yml first" % env_file
        return out
    try:
        env = read_env_file(env_file)
    except OSError as exc:
        out["reason"] = "cannot read %s: %s" % (env_file, exc)
        return out
    out["node_rank"] = int(env["NODE_RANK"]) if env.get("NODE_RANK", "").isdigit() else None
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "NNODES") if not env.get(k)]
    if missing:
        out["reason"] = "%s lacks %s: re-run site.yml (runtime_env)" % (env_file, ", ".join(missing))
        return out
    out["master"] = "%s:%s" % (env["MASTER_ADDR"], env["MASTER_PORT"])
    if not docker:
        out["reason"] = "docker not found on this node"
        return out
    if image_present is not None and not image_present(image):
        out["reason"] = "runtime image %s not on this node: run site.yml first" % image
        return out
    if env.get("NODE_RANK") == "0" and port_check(env["MASTER_ADDR"], env["MASTER_PORT"]):
        out["reason"] = ("master port %s is in use (the serving runtime holds the GPUs and "
                         "the rendezvous): stop spark-runtime.service on every node, run "
                         "validate-link.yml --tags collective, then start it again"
                         % out["master"])
        return out
    out["ready"] = True
    return out


def runs_from_registered(raw):
    """{host: {check, run}} as the role registered them -> ({host: run}, [hosts in rank
    order]) for collective_section; None when the collective step did not run."""
    if not raw:
        return None
    runs, ranks = {}, {}
    for host, item in raw.items():
        check = (item or {}).get("check") or {}
        run = (item or {}).get("run") or {}
        ranks[host] = check.get("node_rank")
        if run.get("finished") and "output" in run:
            runs[host] = {"measured": bool(run.get("measured")), "rc": run.get("rc"),
                          "output": run.get("output") or "", "reason": run.get("reason")}
        elif check.get("ready") is False:
            runs[host] = {"measured": False, "reason": check.get("reason") or "not ready"}
        elif check.get("ready"):
            runs[host] = {"measured": False, "reason": (
                run.get("msg") or run.get("reason") or
                "ready, but not started: another node was not ready")}
        else:
            runs[host] = {"measured": False, "reason": check.get("msg") or
                          "the readiness check did not run"}
    order = sorted(runs, key=lambda h: (ranks[h] is None, ranks[h] or 0, h))
    return {"runs": runs, "order": order}


def expect_from_links(links):
    """{host: {rail0_interface, rdma_devices}} from the link facts (one dict per rail)."""
    out = {}
    for host, rails in (links or {}).items():
        rails = rails or []
        out[host] = {"rail0_interface": (rails[0] or {}).get("interface") if rails else None,
                     "rdma_devices": [r.get("rdma_device") for r in rails
                                      if r and r.get("rdma_device")]}
    return out
