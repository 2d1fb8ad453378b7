"""ConnectX-7 discovery from sysfs and netlink.

A DGX Spark's ConnectX-7 shows each physical QSFP port as two netdevs and two RDMA
devices ("twins", one per PCIe x4 link). Names differ between machines (rocep1s0f1,
mlx5_0, ...), so everything is read from sysfs, never assumed:

- a netdev is a ConnectX netdev when ``class/net/<n>/device/driver`` is mlx5_core;
- its RDMA twin is the ``class/infiniband/<hca>`` whose ``device/net/`` holds it;
- its physical port comes from ``phys_port_name`` ("p1" -> 1), else from the PCI
  function number, else from a trailing ``np<N>`` in the name (lab veths);
- its PCIe link (which of the two x4 links, "twins", it hangs off) is the PCI
  ``domain:bus`` ("0002:01"), else read from a predictable name (``enP2p1s0f1np1``).

Addresses come from netlink (``link.netlink``). ``discover()`` returns plain data.
"""

from __future__ import annotations

import os
import pathlib
import re

from ..common.fileio import read_text
from .roce import rdma_devices, rdma_twins

MLX5_DRIVER = "mlx5_core"
PORT_NAME_RE = re.compile(r"^p(\d+)$")
NAME_PORT_RE = re.compile(r"np(\d+)$")
PCI_RE = re.compile(r"^[0-9a-fA-F]{4,}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")
NAME_ROOT_RE = re.compile(r"^en(?:P(\d+))?p(\d+)s\d+f\d+")

# read_text: None when a sysfs attribute cannot be read (real kernels fail reads of
# carrier/speed on down links with EINVAL)


def read_int(path):
    value = read_text(path)
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def link_basename(path):
    """Basename of a symlink's resolved target, None when it is not a link."""
    if not os.path.islink(path):
        return None
    return os.path.basename(os.path.realpath(path))


def parse_carrier(value):
    """'1' -> True, '0' -> False, unreadable -> None."""
    if value is None:
        return None
    return value == "1"


def sysfs_count(value):
    """A sysfs number (speed in Mb/s, mtu) as int; -1 (speed unknown, link down) and
    unreadable -> None."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def pci_function(pci):
    """'0000:01:00.1' -> 1; None when not a PCI address."""
    if not pci or "." not in pci:
        return None
    try:
        return int(pci.rsplit(".", 1)[1], 16)
    except ValueError:
        return None


def physical_port(phys_port_name, pci, name):
    """The QSFP port number: phys_port_name 'p<N>', else the PCI function, else a
    trailing 'np<N>' in the netdev name; None if none of them tells."""
    match = PORT_NAME_RE.match(phys_port_name or "")
    if match:
        return int(match.group(1))
    function = pci_function(pci)
    if function is not None:
        return function
    match = NAME_PORT_RE.search(name or "")
    if match:
        return int(match.group(1))
    return None


def pcie_root(pci, name):
    """The PCIe link a netdev hangs off, as 'domain:bus' (hex): '0002:01:00.1' ->
    '0002:01'; without a PCI address, from a predictable name ('enP2p1s0f1np1' ->
    '0002:01', 'enp1s0f0np0' -> '0000:01'); None if neither tells."""
    if pci and PCI_RE.match(pci):
        domain, bus, _ = pci.split(":", 2)
        return f"{int(domain, 16):04x}:{int(bus, 16):02x}"
    match = NAME_ROOT_RE.match(name or "")
    if match:
        return f"{int(match.group(1) or 0):04x}:{int(match.group(2)):02x}"
    return None


def netdev_names(sysfs_root):
    base = pathlib.Path(sysfs_root) / "class" / "net"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir())


def netdev_driver(sysfs_root, name):
    return link_basename(pathlib.Path(sysfs_root) / "class" / "net" / name / "device" / "driver")


def split_addresses(entries):
    """netlink address entries -> {'ipv4': ['a.b.c.d/nn', ...], 'ipv6': [...]}."""
    result = {"ipv4": [], "ipv6": []}
    for entry in entries:
        key = "ipv4" if entry["family"] == 4 else "ipv6"
        result[key].append(f"{entry['address']}/{entry['prefixlen']}")
    return result


def describe_netdev(sysfs_root, name, net, link=None, rdma_device=None):
    """One netdev as a dict, from sysfs where it is readable, else from the netlink
    link entry ``link`` (a dict of ``links()``), else None."""
    link = link or {}
    path = pathlib.Path(sysfs_root) / "class" / "net" / name
    pci = link_basename(path / "device")
    if pci and not PCI_RE.match(pci):
        pci = None  # virtio, usb, ...: not a PCI function
    operstate = read_text(path / "operstate")
    operstate = operstate.upper() if operstate else link.get("operstate")
    carrier = parse_carrier(read_text(path / "carrier"))
    if carrier is None and link:
        carrier = bool(link.get("carrier"))
    mtu = read_int(path / "mtu")
    if mtu is None:
        mtu = link.get("mtu")
    mac = read_text(path / "address") or link.get("mac")
    addresses = split_addresses(net.addresses(name) if net is not None else [])
    return {
        "name": name,
        "pci": pci,
        "driver": netdev_driver(sysfs_root, name),
        "operstate": operstate,
        "carrier": carrier,
        "speed_mbps": sysfs_count(read_text(path / "speed")),
        "mtu": mtu,
        "mac": mac,
        "addresses": addresses["ipv4"] + addresses["ipv6"],
        "ipv4": addresses["ipv4"],
        "ipv6": addresses["ipv6"],
        "rdma_device": rdma_device,
        "port": physical_port(read_text(path / "phys_port_name"), pci, name),
        "pcie_root": pcie_root(pci, name),
        "cabled": carrier is True,
    }


def group_ports(netdevs):
    """netdev entries -> [{port, netdevs, rdma_devices, cabled}] sorted by port."""
    ports = {}
    for entry in netdevs:
        port = ports.setdefault(
            entry["port"],
            {"port": entry["port"], "netdevs": [], "rdma_devices": [], "cabled": False},
        )
        port["netdevs"].append(entry["name"])
        if entry["rdma_device"]:
            port["rdma_devices"].append(entry["rdma_device"])
        port["cabled"] = port["cabled"] or entry["cabled"]
    return sorted(ports.values(), key=lambda p: (p["port"] is None, p["port"] or 0))


def _sort_key(entry):
    return (entry["pci"] is None, entry["pci"] or "", entry["name"])


def missing_driver_problem(sysfs_root, names):
    """The message for a node without any mlx5_core netdev (driver not bound)."""
    present = [f"{n} (driver: {netdev_driver(sysfs_root, n) or 'none'})"
               for n in names if n in set(netdev_names(sysfs_root))]
    seen = f" Rail interfaces present: {', '.join(present)}." if present else ""
    return (
        f"no ConnectX-7 netdev (driver {MLX5_DRIVER}) on this node: the driver did not bind "
        "or the card is not seen, so no interface can be proven a cabled QSFP twin."
        f"{seen} Check `lspci -d 15b3:`, `lsmod | grep mlx5` and `dmesg | grep -i mlx5`, "
        "then reboot or reload mlx5_core. (A lab whose rails are not ConnectX-7 netdevs "
        "says so with a fallback reason; real Sparks never need one.)"
    )


def discover(sysfs_root="/sys", net=None, fallback_interfaces=(), fallback_reason=""):
    """ConnectX-7 netdevs, their RDMA twins and QSFP ports.

    net: a NetlinkReader-like object (addresses, links); None opens a real
    NetlinkReader (needs pyroute2).

    When no mlx5_core netdev exists, the result has source 'none', no netdevs and a
    ``problem`` saying the driver is missing: a Spark whose mlx5_core did not bind must
    not pass as one whose named interfaces merely exist. Only with a ``fallback_reason``
    (the lab, whose rails are veths) are the names in ``fallback_interfaces`` described
    instead (source 'fallback', the reason kept in the result), the absent ones listed
    in ``missing``.
    """
    if net is None:
        from .netlink import NetlinkReader
        with NetlinkReader() as reader:
            return discover(sysfs_root, reader, fallback_interfaces, fallback_reason)

    twins = rdma_twins(sysfs_root)
    names = [n for n in netdev_names(sysfs_root) if netdev_driver(sysfs_root, n) == MLX5_DRIVER]
    missing = []
    problem = None
    fallback_reason = (fallback_reason or "").strip()
    if names:
        source = "sysfs"
        netdevs = [describe_netdev(sysfs_root, n, net, rdma_device=twins.get(n)) for n in names]
        netdevs.sort(key=_sort_key)
        fallback_reason = ""
    elif not fallback_reason:
        source = "none"
        netdevs = []
        problem = missing_driver_problem(sysfs_root, fallback_interfaces)
    else:
        source = "fallback"
        present = set(netdev_names(sysfs_root))
        links = {link["name"]: link for link in net.links()}
        netdevs = []
        for name in fallback_interfaces:
            if name not in present and name not in links:
                missing.append(name)
                continue
            netdevs.append(describe_netdev(sysfs_root, name, net, link=links.get(name)))

    return {
        "source": source,
        "netdevs": netdevs,
        "by_name": {entry["name"]: entry for entry in netdevs},
        "ports": group_ports(netdevs),
        "rdma_present": bool(rdma_devices(sysfs_root)),
        "rdma_devices": sorted(e["rdma_device"] for e in netdevs if e["rdma_device"]),
        "missing": missing,
        "fallback_reason": fallback_reason or None,
        "problem": problem,
    }
