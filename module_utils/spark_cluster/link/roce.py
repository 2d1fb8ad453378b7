"""RoCE v2 GID index resolution from sysfs: the one place the GID index is chosen.

Each RDMA port has a GID table in sysfs::

    class/infiniband/<hca>/ports/<p>/gids/<n>              GID, e.g. 0000:...:ffff:c0a8:640a
    class/infiniband/<hca>/ports/<p>/gid_attrs/types/<n>   "IB/RoCE v1" or "RoCE v2"
    class/infiniband/<hca>/ports/<p>/gid_attrs/ndevs/<n>   netdev the entry belongs to

Empty slots read as all zeros, and their types/ndevs files fail with EINVAL on a real
kernel. The entry NCCL must use is the RoCE v2 one whose GID is the IPv4-mapped
address (``::ffff:a.b.c.d``) of the twin's address: usually index 3, but it can drift
(3 -> 4 after reboots) and differ per node, so it is resolved per node at every
service start and never defaulted (NCCL's default 0 is the link-local GID, which
stalls on RoCE v2; an empty value becomes 0 too).

Plain Python 3.11+ stdlib: runs inside Ansible modules and in the node-side pre-start
check.
"""

from __future__ import annotations

import ipaddress
import os

from ..common.fileio import listdir, read_text

ROCE_V2 = "RoCE v2"


class GidError(Exception):
    """A twin with an RDMA device has no usable RoCE v2 IPv4 GID."""


def _numeric_sorted(names):
    return sorted((n for n in names if n.isdigit()), key=int)


def bare_address(address):
    """'192.168.100.10/24' or '192.168.100.10' -> IPv4Address('192.168.100.10')."""
    text = str(address).strip().split("/")[0]
    try:
        return ipaddress.IPv4Address(text)
    except ValueError as exc:
        raise GidError(f"not an IPv4 address: {address!r}") from exc


def _parse_gid(text):
    if not text:
        return None
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


def rdma_devices(sysfs_root, netdev=None):
    """RDMA devices (hca names, sorted) of the node, or only those whose PCI function
    carries ``netdev`` (its RDMA twin: ``class/infiniband/<hca>/device/net/<netdev>``)."""
    ib_class = os.path.join(sysfs_root, "class", "infiniband")
    hcas = sorted(listdir(ib_class))
    if netdev is None:
        return hcas
    return [hca for hca in hcas if os.path.exists(os.path.join(ib_class, hca, "device", "net", netdev))]


def rdma_twins(sysfs_root):
    """netdev name -> its RDMA device (the first by name when several carry it)."""
    ib_class = os.path.join(sysfs_root, "class", "infiniband")
    twins = {}
    for hca in rdma_devices(sysfs_root):
        for netdev in sorted(listdir(os.path.join(ib_class, hca, "device", "net"))):
            twins.setdefault(netdev, hca)
    return twins


def read_gid_table(sysfs_root, hca, port):
    """Non-empty entries of one port's GID table: list of dicts index/gid/type/ndev."""
    port_dir = os.path.join(sysfs_root, "class", "infiniband", hca, "ports", str(port))
    table = []
    for name in _numeric_sorted(listdir(os.path.join(port_dir, "gids"))):
        raw = read_text(os.path.join(port_dir, "gids", name))
        gid = _parse_gid(raw)
        if gid is None or gid.packed == bytes(16):
            continue  # empty slot
        table.append(
            {
                "index": int(name),
                "gid": raw,
                "type": read_text(os.path.join(port_dir, "gid_attrs", "types", name)),
                "ndev": read_text(os.path.join(port_dir, "gid_attrs", "ndevs", name)),
            }
        )
    return table


def ports(sysfs_root, hca):
    """Port numbers of an RDMA device, sorted."""
    return [int(p) for p in _numeric_sorted(listdir(os.path.join(sysfs_root, "class", "infiniband", hca, "ports")))]


def _port_state(sysfs_root, hca, port):
    return read_text(os.path.join(sysfs_root, "class", "infiniband", hca, "ports", str(port), "state"))


def _format_table(table):
    if not table:
        return "    (no entries: the GID table is empty)"
    return "\n".join(
        f"    {e['index']:>3}  {e['gid']}  {e['type'] or '?'}  {e['ndev'] or '?'}" for e in table
    )


def _gid_error(sysfs_root, netdev, address, hcas, tables):
    wanted = ipaddress.IPv6Address(f"::ffff:{address}")
    lines = [
        f"no RoCE v2 GID for {address} (wanted ::ffff:{address}, in sysfs {wanted.exploded}, "
        f"type {ROCE_V2!r}, ndev {netdev}) "
        f"on RDMA device {', '.join(hcas)} of {netdev}; refusing to guess an index "
        "(NCCL's default 0 is the link-local GID and stalls on RoCE v2)."
    ]
    causes = set()
    for (hca, port), table in tables.items():
        state = _port_state(sysfs_root, hca, port)
        lines.append(f"  {hca} port {port} (state: {state or 'unknown'}), index gid type ndev:")
        lines.append(_format_table(table))
        if state and "ACTIVE" not in state:
            causes.add(f"port {hca}/{port} is not ACTIVE (no carrier, cable out or peer down)")
        with_address = [e for e in table if _parse_gid(e["gid"]) == wanted]
        if not with_address:
            causes.add(f"{address} is not (yet) assigned to {netdev}, or assigned to another netdev")
        elif all(e["type"] != ROCE_V2 for e in with_address):
            causes.add("only RoCE v1 entries carry the address (RoCE v2 disabled?)")
        elif all(e["ndev"] != netdev for e in with_address if e["type"] == ROCE_V2):
            causes.add(f"the RoCE v2 entry for {address} belongs to another netdev")
    if causes:
        lines.append("  likely cause: " + "; ".join(sorted(causes)))
    return GidError("\n".join(lines))


def _find(sysfs_root, netdev, address):
    """(device dict) for one twin, None without RDMA device; raises GidError."""
    hcas = rdma_devices(sysfs_root, netdev)
    if not hcas:
        return None
    wanted = ipaddress.IPv6Address(f"::ffff:{address}")
    tables = {}
    for hca in hcas:
        for port in ports(sysfs_root, hca):
            table = read_gid_table(sysfs_root, hca, port)
            tables[(hca, port)] = table
            for entry in table:
                if (
                    entry["type"] == ROCE_V2
                    and entry["ndev"] == netdev
                    and _parse_gid(entry["gid"]) == wanted
                ):
                    return {
                        "netdev": netdev,
                        "hca": hca,
                        "port": port,
                        "gid_index": entry["index"],
                        "gid": entry["gid"],
                        "address": str(address),
                    }
    raise _gid_error(sysfs_root, netdev, address, hcas, tables)


def resolve(sysfs_root, interfaces):
    """Resolve the RoCE v2 GID of each given twin and the NCCL environment for them.

    interfaces: {netdev: ipv4 address (a prefix is tolerated and ignored)}, in rail
    order. Only these twins are looked at: HCAs of unused ports never appear in the
    result (listing them in NCCL_IB_HCA causes ibv_modify_qp timeouts).

    Returns {rdma_present, devices: [{netdev, hca, port, gid_index, gid, address}],
    nccl_env, message}. Raises GidError when a twin with an RDMA device has no
    matching RoCE v2 entry.
    """
    if not interfaces:
        raise GidError("no interfaces given to resolve a GID for")
    sysfs_root = str(sysfs_root)
    devices = []
    without_rdma = []
    for netdev, address in interfaces.items():
        device = _find(sysfs_root, netdev, bare_address(address))
        if device is None:
            without_rdma.append(netdev)
        else:
            devices.append(device)

    netdevs = list(interfaces)
    if not devices:
        return {
            "rdma_present": False,
            "devices": [],
            "nccl_env": {"NCCL_IB_DISABLE": "1"},
            "message": (
                f"no RDMA device for {', '.join(netdevs)}: "
                f"NCCL falls back to TCP sockets over {netdevs[0]}"
            ),
        }

    hcas = []
    for device in devices:
        if device["hca"] not in hcas:
            hcas.append(device["hca"])
    indexes = sorted({d["gid_index"] for d in devices})
    per_device = ", ".join(f"{d['hca']}: {d['gid_index']}" for d in devices)
    if len(indexes) == 1:
        nccl_env = {"NCCL_IB_HCA": ",".join(hcas), "NCCL_IB_GID_INDEX": str(indexes[0])}
        message = f"RoCE v2 GID index {indexes[0]} on {', '.join(hcas)}"
    else:
        # NCCL takes one NCCL_IB_GID_INDEX per process, applied to every HCA. When the
        # twins disagree (one drifted from 3 to 4), any single index is wrong on one
        # of them. With NCCL_IB_GID_INDEX unset, NCCL >= 2.21 selects the GID per
        # device by address family and RoCE version, which yields exactly the
        # RoCE v2 ::ffff:a.b.c.d entry resolved here on each device.
        nccl_env = {
            "NCCL_IB_HCA": ",".join(hcas),
            "NCCL_IB_ADDR_FAMILY": "AF_INET",
            "NCCL_IB_ROCE_VERSION_NUM": "2",
        }
        message = (
            f"RoCE v2 GID index differs per device ({per_device}): NCCL takes only one "
            "NCCL_IB_GID_INDEX per process, so it is left unset and NCCL (>= 2.21) "
            "picks the GID per device (NCCL_IB_ADDR_FAMILY=AF_INET, "
            "NCCL_IB_ROCE_VERSION_NUM=2)"
        )
    if without_rdma:
        message += f"; no RDMA device for {', '.join(without_rdma)} (not in NCCL_IB_HCA)"
    return {"rdma_present": True, "devices": devices, "nccl_env": nccl_env, "message": message}
