"""A fake of module_utils/spark_cluster/link/netlink.py's NetlinkReader, from plain data (tests only).

Same read-only methods as NetlinkReader; ``FakeNetlink.from_sparkfs`` builds the kernel
view that matches a SparkSysfs tree (sparkfs.py). Test code: never installed on a node.
"""

from __future__ import annotations

import errno
import ipaddress

from spark_cluster.common.fileio import read_text
from spark_cluster.link.netlink import ip_family


class FakeNetlink:
    """The same methods as NetlinkReader, from plain data (for tests).

    links:     list of dicts as ``links()`` returns (missing keys get defaults)
    addresses: list of dicts as ``addresses()`` returns; ``address`` may carry the
               prefix ("a.b.c.d/nn") instead of a separate ``prefixlen``
    routes:    list of ``{dst: cidr, dev, src, gateway}``; ``route_get`` does a
               longest-prefix match, a ``0.0.0.0/0`` entry is the default route.
               Like the kernel, a destination that is one of the addresses is
               answered with dev 'lo'.
    """

    def __init__(self, links=(), addresses=(), routes=()):
        self._links = [self._link(i, link) for i, link in enumerate(links)]
        self._addresses = [self._address(a) for a in addresses]
        self._routes = [dict(r) for r in routes]

    @staticmethod
    def _link(position: int, link: dict) -> dict:
        entry = {
            "name": link["name"],
            "index": link.get("index", position + 1),
            "operstate": link.get("operstate", "UP"),
            "carrier": bool(link.get("carrier", True)),
            "mtu": link.get("mtu", 1500),
            "kind": link.get("kind"),
            "mac": link.get("mac"),
        }
        return entry

    @staticmethod
    def _address(addr: dict) -> dict:
        value = addr["address"]
        if "/" in value:
            iface = ipaddress.ip_interface(value)
            address, prefixlen = str(iface.ip), iface.network.prefixlen
        else:
            address = value
            prefixlen = addr.get("prefixlen", 32 if ip_family(value) == 4 else 128)
        return {
            "ifname": addr["ifname"],
            "address": address,
            "prefixlen": prefixlen,
            "family": ip_family(address),
            "scope": addr.get("scope", "global"),
        }

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def close(self) -> None:
        pass

    def links(self) -> list:
        return [dict(link) for link in self._links]

    def addresses(self, ifname=None) -> list:
        return [dict(a) for a in self._addresses if ifname is None or a["ifname"] == ifname]

    def route_get(self, dst: str) -> dict:
        ip = ipaddress.ip_address(dst)
        for addr in self._addresses:
            if ipaddress.ip_address(addr["address"]) == ip:
                return {"dev": "lo", "src": addr["address"], "gateway": None}
        best = None
        for route in self._routes:
            net = ipaddress.ip_network(route["dst"], strict=False)
            if net.version != ip.version or ip not in net:
                continue
            if best is None or net.prefixlen > best[0].prefixlen:
                best = (net, route)
        if best is None:
            raise OSError(errno.ENETUNREACH, f"no route to {dst}")
        route = best[1]
        return {"dev": route.get("dev"), "src": route.get("src"), "gateway": route.get("gateway")}

    def default_route(self):
        for route in self._routes:
            if ipaddress.ip_network(route["dst"], strict=False) == ipaddress.ip_network("0.0.0.0/0"):
                return {"dev": route.get("dev"), "gateway": route.get("gateway"), "src": route.get("src")}
        return None

    @classmethod
    def from_sparkfs(
        cls,
        sysfs,
        default_dev="wlP9s9",
        default_src="192.168.64.198/24",
        gateway="192.168.64.1",
        extra_addresses=None,
        extra_routes=(),
    ):
        """A fake kernel matching a SparkSysfs tree (tests/unit/sparkfs.py).

        Links (state, carrier, mtu, ifindex) are read from the tree, addresses come
        from ``sysfs.addresses`` plus 127.0.0.1/8 on lo and ``default_src`` on
        ``default_dev``; each address gets its connected route, and ``default_dev``
        carries the default route via ``gateway``. ``default_dev=None`` means no
        default route (and no management address). ``extra_addresses`` (netdev ->
        "a.b.c.d/nn") and ``extra_routes`` are added as given.
        """
        root = sysfs.root / "class" / "net"
        links = []
        for path in sorted(root.iterdir()):
            name = path.name
            operstate = read_text(path / "operstate", default="unknown").upper()
            carrier = read_text(path / "carrier", default="0") == "1"
            mtu = int(read_text(path / "mtu", default="1500"))
            index = int(read_text(path / "ifindex", default="0"))
            kind = None
            if not (path / "device").exists() and name != "lo":
                kind = "bridge" if name.startswith("docker") else "veth"
            mac = read_text(path / "address", default=None)
            links.append(
                {"name": name, "index": index, "operstate": operstate, "carrier": carrier,
                 "mtu": mtu, "kind": kind, "mac": mac}
            )
        addresses = {"lo": "127.0.0.1/8"}
        addresses.update(sysfs.addresses)
        if default_dev and default_src:
            addresses[default_dev] = default_src
        addresses.update(extra_addresses or {})
        addr_list, routes = [], []
        for ifname, value in addresses.items():
            addr_list.append({"ifname": ifname, "address": value,
                              "scope": "host" if ifname == "lo" else "global"})
            iface = ipaddress.ip_interface(value)
            routes.append({"dst": str(iface.network), "dev": ifname, "src": str(iface.ip),
                           "gateway": None})
        if default_dev:
            src = str(ipaddress.ip_interface(default_src).ip) if default_src else None
            routes.append({"dst": "0.0.0.0/0", "dev": default_dev, "src": src, "gateway": gateway})
        routes.extend(extra_routes)
        return cls(links=links, addresses=addr_list, routes=routes)
