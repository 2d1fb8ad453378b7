"""Build sysfs trees shaped like a real DGX Spark's, for unit tests.

A real Spark (DGX OS) has one ConnectX-7 with two QSFP ports. Each physical port shows
up as two netdevs and two RDMA devices ("twins"), one per PCIe x4 link:

    PCI 0000:01:00.0  enp1s0f0np0    rocep1s0f0     port 0 (p0)
    PCI 0000:01:00.1  enp1s0f1np1    rocep1s0f1     port 1 (p1, outer/right)
    PCI 0002:01:00.0  enP2p1s0f0np0  roceP2p1s0f0   port 0 (p0)
    PCI 0002:01:00.1  enP2p1s0f1np1  roceP2p1s0f1   port 1 (p1)

plus the 10 GbE management NIC ``enP7s7`` (r8169) and the Wi-Fi ``wlP9s9`` (mt7925e),
and virtual devices (lo, docker0) without a ``device`` link.

Layout written (the parts the project reads), relative to the tree root::

    devices/pci<dom>:00/<pci>/driver -> ../../../bus/pci/drivers/<driver>
    devices/pci<dom>:00/<pci>/net/<netdev>/{operstate,carrier,speed,mtu,address,
                                           phys_port_name,ifindex,type}
    devices/pci<dom>:00/<pci>/net/<netdev>/device -> ../..
    devices/pci<dom>:00/<pci>/infiniband/<hca>/device -> ../..
    devices/pci<dom>:00/<pci>/infiniband/<hca>/ports/1/{state,phys_state,link_layer,rate}
    devices/pci<dom>:00/<pci>/infiniband/<hca>/ports/1/gids/<n>
    devices/pci<dom>:00/<pci>/infiniband/<hca>/ports/1/gid_attrs/types/<n>
    devices/pci<dom>:00/<pci>/infiniband/<hca>/ports/1/gid_attrs/ndevs/<n>
    class/net/<netdev> -> ../../devices/.../net/<netdev>
    class/infiniband/<hca> -> ../../devices/.../infiniband/<hca>

Unused GID entries read as all zeros, and their type/ndev files fail with EINVAL on a
real kernel; here they are simply absent.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import pathlib

EMPTY_GID = "0000:0000:0000:0000:0000:0000:0000:0000"
ROCE_V1 = "IB/RoCE v1"
ROCE_V2 = "RoCE v2"


@dataclasses.dataclass
class Twin:
    netdev: str
    hca: str | None
    pci: str
    port: int  # physical QSFP port (phys_port_name p<port>)
    driver: str = "mlx5_core"


SPARK_TWINS = [
    Twin("enp1s0f0np0", "rocep1s0f0", "0000:01:00.0", 0),
    Twin("enp1s0f1np1", "rocep1s0f1", "0000:01:00.1", 1),
    Twin("enP2p1s0f0np0", "roceP2p1s0f0", "0002:01:00.0", 0),
    Twin("enP2p1s0f1np1", "roceP2p1s0f1", "0002:01:00.1", 1),
]

OTHER_NICS = [
    Twin("enP7s7", None, "0007:01:00.0", 0, driver="r8169"),
    Twin("wlP9s9", None, "0009:01:00.0", 0, driver="mt7925e"),
]


def mac_for(index: int) -> str:
    return f"4c:bb:47:2c:00:{index:02x}"


def link_local_gid(mac: str) -> str:
    """fe80::/64 GID from a MAC (EUI-64), formatted as sysfs prints it."""
    octets = [int(x, 16) for x in mac.split(":")]
    octets[0] ^= 0x02
    eui = octets[:3] + [0xFF, 0xFE] + octets[3:]
    groups = ["fe80", "0000", "0000", "0000"]
    groups += [f"{eui[i]:02x}{eui[i + 1]:02x}" for i in range(0, 8, 2)]
    return ":".join(groups)


def ipv4_gid(address: str) -> str:
    """The IPv4-mapped GID (::ffff:a.b.c.d) as sysfs prints it."""
    ip = ipaddress.IPv4Address(address.split("/")[0])
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    return mapped.exploded


def default_gid_table(netdev: str, mac: str, address: str | None):
    """The usual table: fe80 v1/v2 at 0/1, then ::ffff:ip v1/v2 at 2/3."""
    fe80 = link_local_gid(mac)
    table = [(fe80, ROCE_V1, netdev), (fe80, ROCE_V2, netdev)]
    if address:
        gid = ipv4_gid(address)
        table += [(gid, ROCE_V1, netdev), (gid, ROCE_V2, netdev)]
    return table


class SparkSysfs:
    """Writes a Spark-shaped sysfs tree.

    cabled_ports: physical ports with a cable (carrier on both twins).
    addresses:    netdev -> "a.b.c.d/nn" (also used for the GID tables).
    renames:      netdev or hca -> other name (real Sparks differ: mlx5_0, ...).
    gid_tables:   hca (after renames) -> list of (gid, type, ndev) or None (empty slot).
    mtu:          netdev -> mtu (default 1500, 9000 for addressed QSFP netdevs).
    rdma:         False writes no infiniband class at all (RDMA module not loaded).
    """

    def __init__(
        self,
        root: pathlib.Path,
        cabled_ports=(1,),
        addresses=None,
        renames=None,
        gid_tables=None,
        mtu=None,
        rdma=True,
        roce_v1_only=False,
    ):
        self.root = pathlib.Path(root)
        self.cabled_ports = set(cabled_ports)
        self.addresses = dict(addresses or {})
        self.renames = dict(renames or {})
        self.gid_tables = dict(gid_tables or {})
        self.mtu = dict(mtu or {})
        self.rdma = rdma
        self.roce_v1_only = roce_v1_only
        self.twins: list[Twin] = []

    def name(self, original: str | None) -> str | None:
        if original is None:
            return None
        return self.renames.get(original, original)

    def _write(self, path: pathlib.Path, value) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{value}\n")

    def _link(self, link: pathlib.Path, target: pathlib.Path) -> None:
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(target, link.parent))

    def build(self) -> "SparkSysfs":
        (self.root / "class" / "net").mkdir(parents=True, exist_ok=True)
        if self.rdma:
            (self.root / "class" / "infiniband").mkdir(parents=True, exist_ok=True)
        for index, twin in enumerate(SPARK_TWINS + OTHER_NICS):
            t = Twin(self.name(twin.netdev), self.name(twin.hca), twin.pci, twin.port, twin.driver)
            self.twins.append(t)
            self._build_twin(index, t)
        self._build_virtual("lo", 1, "unknown", 65536)
        self._build_virtual("docker0", 99, "down", 1500)
        return self

    def _pci_dir(self, pci: str) -> pathlib.Path:
        domain = pci.split(":")[0]
        return self.root / "devices" / f"pci{domain}:00" / f"{domain}:00:00.0" / pci

    def _build_twin(self, index: int, twin: Twin) -> None:
        pci_dir = self._pci_dir(twin.pci)
        drivers = self.root / "bus" / "pci" / "drivers" / twin.driver
        drivers.mkdir(parents=True, exist_ok=True)
        self._link(pci_dir / "driver", drivers)

        is_qsfp = twin.hca is not None
        cabled = is_qsfp and twin.port in self.cabled_ports
        if not is_qsfp:
            cabled = True  # management NICs are up
        address = self.addresses.get(twin.netdev)
        mac = mac_for(index)

        net = pci_dir / "net" / twin.netdev
        self._write(net / "operstate", "up" if cabled else "down")
        self._write(net / "carrier", "1" if cabled else "0")
        self._write(net / "speed", ("200000" if is_qsfp else "10000") if cabled else "-1")
        default_mtu = 9000 if (is_qsfp and address) else 1500
        self._write(net / "mtu", self.mtu.get(twin.netdev, default_mtu))
        self._write(net / "address", mac)
        self._write(net / "ifindex", index + 2)
        self._write(net / "type", "1")
        if is_qsfp:
            self._write(net / "phys_port_name", f"p{twin.port}")
        self._link(net / "device", pci_dir)
        self._link(self.root / "class" / "net" / twin.netdev, net)

        if not (is_qsfp and self.rdma):
            return
        hca = pci_dir / "infiniband" / twin.hca
        port = hca / "ports" / "1"
        self._link(hca / "device", pci_dir)
        self._link(self.root / "class" / "infiniband" / twin.hca, hca)
        self._write(port / "state", "4: ACTIVE" if cabled else "1: DOWN")
        self._write(port / "phys_state", "5: LinkUp" if cabled else "3: Disabled")
        self._write(port / "link_layer", "Ethernet")
        self._write(port / "rate", "200 Gb/sec (4X HDR)" if cabled else "Invalid argument")

        table = self.gid_tables.get(twin.hca)
        if table is None:
            table = default_gid_table(twin.netdev, mac, address)
            if self.roce_v1_only:
                table = [entry for entry in table if entry[1] == ROCE_V1]
        slots = max(len(table), 8)
        for n in range(slots):
            entry = table[n] if n < len(table) else None
            if entry is None:
                self._write(port / "gids" / str(n), EMPTY_GID)
                continue
            gid, gid_type, ndev = entry
            self._write(port / "gids" / str(n), gid)
            self._write(port / "gid_attrs" / "types" / str(n), gid_type)
            self._write(port / "gid_attrs" / "ndevs" / str(n), ndev)

    def _build_virtual(self, name: str, ifindex: int, operstate: str, mtu: int) -> None:
        net = self.root / "devices" / "virtual" / "net" / name
        self._write(net / "operstate", operstate)
        self._write(net / "carrier", "1")
        self._write(net / "mtu", mtu)
        self._write(net / "ifindex", ifindex)
        self._write(net / "type", "772" if name == "lo" else "1")
        self._link(self.root / "class" / "net" / name, net)
