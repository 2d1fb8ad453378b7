"""The one netlink reader of the project (pyroute2), and a fake of it for tests.

Both classes offer the same read-only methods:

- ``links()`` -> list of ``{name, index, operstate, carrier, mtu, kind, mac}``
  (operstate as the kernel names it: 'UP', 'DOWN', 'UNKNOWN', ...; kind is the
  rtnetlink link kind such as 'veth' or 'bridge', None for physical NICs and lo)
- ``addresses(ifname=None)`` -> list of ``{ifname, address, prefixlen, family, scope}``
  (family 4 or 6; scope 'global', 'site', 'link', 'host' or 'nowhere')
- ``route_get(dst)`` -> ``{dev, src, gateway}``: the kernel's ``ip route get`` answer
  (no packet is sent). Raises OSError when the kernel has no route.
- ``default_route()`` -> ``{dev, gateway, src}`` of the IPv4 default route, or None.

Both are context managers. pyroute2 is imported only when a real reader talks to the
kernel, so this file imports without it (the node-side pre-start check runs it with
Debian's python3-pyroute2).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket

SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
MAIN_TABLE = 254


def scope_name(scope) -> str:
    """rtnetlink scope number -> the name ``ip`` prints ('global', 'link', ...)."""
    if isinstance(scope, str):
        return scope
    return SCOPES.get(scope, str(scope))


def ip_family(address: str) -> int:
    """4 or 6 for an address (with or without /prefix)."""
    return ipaddress.ip_interface(address).version


class NetlinkReader:
    """Reads links, addresses and routes from the kernel (pyroute2 IPRoute).

    Use as a context manager to share one netlink socket between calls; without it
    each call opens and closes its own socket.
    """

    def __init__(self):
        self._ipr = None

    def __enter__(self):
        from pyroute2 import IPRoute

        self._ipr = IPRoute()
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    def close(self) -> None:
        if self._ipr is not None:
            try:
                self._ipr.close()
            finally:
                self._ipr = None

    @contextlib.contextmanager
    def _session(self):
        if self._ipr is not None:
            yield self._ipr
            return
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            yield ipr

    @staticmethod
    def _names(ipr) -> dict:
        return {msg["index"]: msg.get("IFLA_IFNAME") for msg in ipr.get_links()}

    def links(self) -> list:
        with self._session() as ipr:
            result = []
            for msg in ipr.get_links():
                info = msg.get("IFLA_LINKINFO")
                kind = info.get("IFLA_INFO_KIND") if info else None
                result.append(
                    {
                        "name": msg.get("IFLA_IFNAME"),
                        "index": msg["index"],
                        "operstate": msg.get("IFLA_OPERSTATE") or "UNKNOWN",
                        "carrier": bool(msg.get("IFLA_CARRIER")),
                        "mtu": msg.get("IFLA_MTU"),
                        "kind": kind,
                        "mac": msg.get("IFLA_ADDRESS"),
                    }
                )
            return result

    def addresses(self, ifname=None) -> list:
        with self._session() as ipr:
            names = self._names(ipr)
            result = []
            for msg in ipr.get_addr():
                name = names.get(msg["index"])
                if ifname is not None and name != ifname:
                    continue
                family = 4 if msg["family"] == socket.AF_INET else 6
                # IFA_LOCAL is this host's address (IFA_ADDRESS is the peer's on
                # point-to-point links); IPv6 only has IFA_ADDRESS.
                address = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
                result.append(
                    {
                        "ifname": name,
                        "address": address,
                        "prefixlen": msg["prefixlen"],
                        "family": family,
                        "scope": scope_name(msg["scope"]),
                    }
                )
            return result

    def route_get(self, dst: str) -> dict:
        from pyroute2.netlink.exceptions import NetlinkError

        family = socket.AF_INET if ip_family(dst) == 4 else socket.AF_INET6
        with self._session() as ipr:
            try:
                answer = ipr.route("get", dst=dst, family=family)
            except NetlinkError as exc:
                raise OSError(exc.code, f"no route to {dst}: {exc}") from exc
            if not answer:
                raise OSError(errno.ENETUNREACH, f"no route to {dst}")
            msg = answer[0]
            names = self._names(ipr)
            return {
                "dev": names.get(msg.get("RTA_OIF")),
                "src": msg.get("RTA_PREFSRC"),
                "gateway": msg.get("RTA_GATEWAY"),
            }

    def default_route(self):
        with self._session() as ipr:
            routes = [
                msg
                for msg in ipr.get_default_routes(family=socket.AF_INET)
                if msg.get("RTA_TABLE", msg.get("table")) == MAIN_TABLE
            ]
            if not routes:
                return None
            best = min(routes, key=lambda m: m.get("RTA_PRIORITY") or 0)
            names = self._names(ipr)
            dev = names.get(best.get("RTA_OIF"))
            src = best.get("RTA_PREFSRC")
        if src is None:
            try:
                answer = self.route_get("8.8.8.8")
            except OSError:
                answer = {}
            if answer.get("dev") == dev:
                src = answer.get("src")
        return {"dev": dev, "gateway": best.get("RTA_GATEWAY"), "src": src}


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
            operstate = _read(path / "operstate", "unknown").upper()
            carrier = _read(path / "carrier", "0") == "1"
            mtu = int(_read(path / "mtu", "1500"))
            index = int(_read(path / "ifindex", "0"))
            kind = None
            if not (path / "device").exists() and name != "lo":
                kind = "bridge" if name.startswith("docker") else "veth"
            mac = _read(path / "address", None)
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


def _read(path, default):
    try:
        return path.read_text().strip()
    except OSError:
        return default
