"""The one netlink reader of the project (pyroute2).

Its read-only methods (the unit tests' double offers the same ones from plain data):

- ``links()`` -> list of ``{name, index, operstate, carrier, mtu, kind, mac}``
  (operstate as the kernel names it: 'UP', 'DOWN', 'UNKNOWN', ...; kind is the
  rtnetlink link kind such as 'veth' or 'bridge', None for physical NICs and lo)
- ``addresses(ifname=None)`` -> list of ``{ifname, address, prefixlen, family, scope}``
  (family 4 or 6; scope 'global', 'site', 'link', 'host' or 'nowhere')
- ``route_get(dst)`` -> ``{dev, src, gateway}``: the kernel's ``ip route get`` answer
  (no packet is sent). Raises OSError when the kernel has no route.
- ``default_route()`` -> ``{dev, gateway, src}`` of the IPv4 default route, or None.

It is a context manager. pyroute2 is imported only when a real reader talks to the
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
