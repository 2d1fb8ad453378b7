#!/usr/bin/env python3
"""Capture the kernel's TCP tables around a real PyTorch TCPStore rendezvous.

    capture_rendezvous.py --out DIR [--port 29501] [--fake-store]

Why: the node-side watchdog (module_utils/spark_cluster/runtime/rendezvous.py) finds the rendezvous
between vLLM's ranks in the kernel's TCP table. vLLM's ``init_distributed_environment``
creates a ``torch.distributed.TCPStore`` behind ``tcp://MASTER_ADDR:MASTER_PORT``
(its daemon on the head, clients on the workers), and that store's sockets are IPv6
(the daemon binds ``::`` dual stack, the clients connect to a v4-mapped address), so
the rows live in ``/proc/net/tcp6``, not ``/proc/net/tcp``. The files this script
writes are the fixtures of tests/unit/test_rendezvous.py
(tests/unit/fixtures/rendezvous/): what the tables really hold, not what we think.

What: two network namespaces joined by a veth pair named ``enp1s0f1np1`` at both ends
(rail 0 of the lab: head 198.18.100.10/24, worker 198.18.100.11/24). In the head
namespace a TCPStore master (``is_master=True, world_size=2, wait_for_workers=True``)
on port 29501; in the worker namespace a client of 198.18.100.10:29501. Each side
``set``s a key and ``get``s the other's, then both stay alive while the script reads
``/proc/net/tcp``, ``/proc/net/tcp6`` (and ``ss -tanp`` where installed) from a
process inside each namespace. Scenarios, each in a fresh pair of namespaces:

- ``head.*``, ``worker.*``: the joined pair (default backend: libuv in torch >= 2.4);
- ``head-after-worker-killed.*``: the head's tables 1 s after the worker got SIGKILL;
- ``worker-after-head-killed.*``: the worker's tables 1 s after the head got SIGKILL;
- ``legacy-head.*``, ``legacy-worker.*``: the joined pair with ``use_libuv=False``
  (the older poll-based daemon), where this torch still has it.

Each scenario writes ``<name>.tcp``, ``<name>.tcp6`` and ``<name>.ss`` (``ss -tanp``,
or a line saying why not), byte for byte as read. Also ``meta.json`` (torch and Python
versions, ``uname -r``, date, addresses, port, TORCH_TCPSTORE_USE_LIBUV / USE_LIBUV,
the backend each store reported) and ``capture.json`` (every file above in one JSON
object, for transports that carry few files). Children's stderr goes to ``logs/``.

How: the namespaces are held by two small child processes of this script
(``unshare(CLONE_NEWNET)``); everything else enters them with ``setns`` on
``/proc/PID/ns/net``. The veth and addresses are set over rtnetlink from the stdlib,
so neither ``ip`` nor pyroute2 is needed, and nothing outlives the script: the
namespaces vanish with their last process, also when the script dies. Needs root
(CAP_SYS_ADMIN, CAP_NET_ADMIN), Linux, Python 3.8+, and torch (not with
``--fake-store``: a stdlib stand-in that binds and connects the way TCPStore does,
for testing this harness only; never a source of fixtures).
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import platform
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

HEAD_ADDR = "198.18.100.10"
WORKER_ADDR = "198.18.100.11"
PREFIX_LEN = 24
PORT = 29501
IFNAME = "enp1s0f1np1"  # rail 0's name on the nodes; the same at both ends (own namespaces)
READY_TIMEOUT = 120.0  # s: importing torch in a cold container is slow
SETTLE = 1.0  # s between a kill (or the join) and reading the tables

CLONE_NEWNET = 0x40000000

# rtnetlink (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/veth.h)
NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
RTM_NEWLINK, RTM_NEWADDR = 16, 20
IFLA_IFNAME, IFLA_LINKINFO, IFLA_NET_NS_PID = 3, 18, 19
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFF_UP = 0x1

_LIBC = ctypes.CDLL(None, use_errno=True)
_KEEP = []  # --fake-store's sockets


# --- namespaces -------------------------------------------------------------------

def _check(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare_net():
    _check(_LIBC.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")


def enter_net(pid):
    """setns into the network namespace of process ``pid`` (this thread/process)."""
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        _check(_LIBC.setns(fd, CLONE_NEWNET), f"setns(/proc/{pid}/ns/net)")
    finally:
        os.close(fd)


# --- rtnetlink --------------------------------------------------------------------

def _rta(kind, payload):
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _ifinfo(index=0, flags=0, change=0):
    return struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


def _netlink(msg_type, body, flags=0):
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        header = struct.pack("=LHHLL", 16 + len(body), msg_type,
                             NLM_F_REQUEST | NLM_F_ACK | flags, 1, 0)
        sock.send(header + body)
        reply = sock.recv(65536)
    _, kind, _, _, _ = struct.unpack_from("=LHHLL", reply)
    if kind == NLMSG_ERROR:
        (code,) = struct.unpack_from("=i", reply, 16)
        if code:
            raise OSError(-code, f"rtnetlink {msg_type}: {os.strerror(-code)}")


def add_veth(name, peer_name, peer_pid):
    """veth ``name`` here, its peer ``peer_name`` in the namespace of ``peer_pid``."""
    peer = _ifinfo() + _rta(IFLA_IFNAME, peer_name.encode() + b"\0") + \
        _rta(IFLA_NET_NS_PID, struct.pack("=I", peer_pid))
    info = _rta(IFLA_INFO_KIND, b"veth\0") + _rta(IFLA_INFO_DATA, _rta(VETH_INFO_PEER, peer))
    body = _ifinfo() + _rta(IFLA_IFNAME, name.encode() + b"\0") + _rta(IFLA_LINKINFO, info)
    _netlink(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL)


def link_up(name):
    _netlink(RTM_NEWLINK, _ifinfo(socket.if_nametoindex(name), IFF_UP, IFF_UP))


def add_addr(name, addr, prefix_len):
    raw = socket.inet_aton(addr)
    body = struct.pack("=BBBBi", socket.AF_INET, prefix_len, 0, 0, socket.if_nametoindex(name))
    body += _rta(IFA_LOCAL, raw) + _rta(IFA_ADDRESS, raw)
    _netlink(RTM_NEWADDR, body, NLM_F_CREATE | NLM_F_EXCL)


# --- children ---------------------------------------------------------------------

def run_holder():
    """Holds a fresh network namespace; configures it on request (lines on stdin).

    ``veth NAME PEER PEER_PID`` / ``addr NAME ADDR PLEN`` / ``up NAME``; answers
    ``ok`` or ``err ...``. Exits at EOF (its namespace goes with it)."""
    unshare_net()
    link_up("lo")
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        try:
            if words[0] == "veth":
                add_veth(words[1], words[2], int(words[3]))
            elif words[0] == "addr":
                add_addr(words[1], words[2], int(words[3]))
            elif words[0] == "up":
                link_up(words[1])
            else:
                raise ValueError(f"unknown request {line!r}")
            print("ok", flush=True)
        except (OSError, ValueError, IndexError) as exc:
            print(f"err {exc}", flush=True)


def run_role(role, master, port, legacy, fake):
    """One rank's store: prints one JSON line once joined, then waits to be killed."""
    other = "worker" if role == "head" else "head"
    if fake:
        report = _fake_store(role, master, port)
    else:
        from datetime import timedelta

        import torch
        import torch.distributed as dist

        kwargs = {"use_libuv": False} if legacy else {}
        store = dist.TCPStore(master, port, world_size=2, is_master=(role == "head"),
                              timeout=timedelta(seconds=60), wait_for_workers=True, **kwargs)
        store.set(f"{role}/alive", role)
        seen = store.get(f"{other}/alive").decode()
        report = {"torch": torch.__version__, "got": seen,
                  "libuv_backend": getattr(store, "libuvBackend", None)}
        _keep = store  # noqa: F841 (the store must stay alive until the kill)
    report.update(role=role, pid=os.getpid())
    print(json.dumps(report), flush=True)
    while True:
        signal.pause()


def _fake_store(role, master, port):
    """Stand-in for TCPStore (harness test only): a dual-stack listener on ``::``
    (IPV6_V6ONLY off, as libuv and c10d's socket.cpp set it) and clients that
    connect to the v4-mapped address (getaddrinfo AF_INET6 + AI_V4MAPPED, as
    socket.cpp's SocketConnectOp does first)."""
    import threading

    conns = _KEEP  # module-level: the sockets must outlive this function
    if role == "head":
        server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        server.bind(("::", port))
        server.listen(16)
        threading.Thread(target=lambda: [conns.append(server.accept()) for _ in range(2)],
                         daemon=True).start()
        conns.append(server)
    family, kind, proto, _, addr = socket.getaddrinfo(
        master, port, socket.AF_INET6, socket.SOCK_STREAM, 0,
        socket.AI_V4MAPPED | socket.AI_ALL | socket.AI_NUMERICSERV)[0]
    client = socket.socket(family, kind, proto)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.connect(addr)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    conns.append(client)
    while role == "head" and len(conns) < 4:  # server, own client, two accepted
        time.sleep(0.05)
    return {"torch": None, "fake_store": True}


# --- the capture ------------------------------------------------------------------

PR_SET_PDEATHSIG = 1


def _child_setup(netns_pid):
    """In the forked child: die with this script (no orphan keeps a namespace alive),
    then enter the namespace."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if netns_pid:
        enter_net(netns_pid)


class Child:
    def __init__(self, argv, netns_pid=None, stderr=None, stdin=False):
        def preexec():
            _child_setup(netns_pid)
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=stderr, preexec_fn=preexec, text=True)

    def line(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer from {self.proc.args} in {timeout:.0f} s")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                text = self.proc.stdout.readline()
                if not text:
                    raise RuntimeError(f"{self.proc.args} exited (rc {self.proc.wait()})")
                return text.strip()

    def ask(self, request):
        self.proc.stdin.write(request + "\n")
        self.proc.stdin.flush()
        answer = self.line(10)
        if answer != "ok":
            raise RuntimeError(f"{request}: {answer}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def _self(*args):
    return [sys.executable, os.path.abspath(__file__), *args]


class Pair:
    """A head and a worker namespace joined by a veth pair, rail 0's addresses."""

    def __init__(self):
        self.head = Child(_self("--_hold"), stdin=True)
        self.worker = Child(_self("--_hold"), stdin=True)
        try:
            for holder in (self.head, self.worker):
                if holder.line(30) != "ready":
                    raise RuntimeError("namespace holder did not start")
            self.head.ask(f"veth {IFNAME} {IFNAME} {self.worker.proc.pid}")
            for holder, addr in ((self.head, HEAD_ADDR), (self.worker, WORKER_ADDR)):
                holder.ask(f"addr {IFNAME} {addr} {PREFIX_LEN}")
                holder.ask(f"up {IFNAME}")
        except BaseException:
            self.close()
            raise

    def ns(self, side):
        return (self.head if side == "head" else self.worker).proc.pid

    def close(self):
        for holder in (self.head, self.worker):
            if holder.proc.poll() is None:
                holder.proc.stdin.close()
            holder.proc.wait()


def read_in_ns(pid, argv):
    """stdout of ``argv`` run inside the network namespace of ``pid`` (text, as is)."""
    result = subprocess.run(argv, preexec_fn=lambda: enter_net(pid), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"{argv} in netns of {pid}: rc {result.returncode}: {result.stdout}")
    return result.stdout


def dump(pair, side, name, out, files):
    pid = pair.ns(side)
    for table in ("tcp", "tcp6"):
        files[f"{name}.{table}"] = read_in_ns(pid, ["cat", f"/proc/net/{table}"])
    ss = shutil.which("ss")
    files[f"{name}.ss"] = read_in_ns(pid, [ss, "-tanp"]) if ss else "ss: not installed\n"
    for suffix in ("tcp", "tcp6", "ss"):
        with open(os.path.join(out, f"{name}.{suffix}"), "w") as handle:
            handle.write(files[f"{name}.{suffix}"])


def start_pair_stores(pair, args, logs, tag, legacy=False):
    extra = ["--port", str(args.port)] + (["--_legacy"] if legacy else []) + \
        (["--fake-store"] if args.fake_store else [])
    stores = {}
    for side in ("head", "worker"):
        log = open(os.path.join(logs, f"{tag}-{side}.log"), "w")
        stores[side] = Child(_self("--_role", side, *extra), netns_pid=pair.ns(side), stderr=log)
        log.close()
    reports = {}
    try:
        for side, store in stores.items():
            reports[side] = json.loads(store.line(READY_TIMEOUT))
    except BaseException:
        for store in stores.values():
            store.kill()
        raise
    return stores, reports


def capture(args):
    out = os.path.abspath(args.out)
    logs = os.path.join(out, "logs")
    os.makedirs(logs, exist_ok=True)
    files, scenarios, errors = {}, {}, {}

    def scenario(tag, body):
        pair = Pair()
        stores = {}
        try:
            stores, reports = start_pair_stores(pair, args, logs, tag, legacy=tag == "legacy")
            scenarios[tag] = reports
            time.sleep(SETTLE)
            body(pair, stores)
        except Exception as exc:  # recorded in meta.json; the other scenarios still run
            errors[tag] = f"{type(exc).__name__}: {exc}"
            print(f"scenario {tag}: {errors[tag]}", file=sys.stderr)
        finally:
            for store in stores.values():
                store.kill()
            pair.close()

    def joined(pair, stores):
        dump(pair, "head", "head", out, files)
        dump(pair, "worker", "worker", out, files)

    def worker_killed(pair, stores):
        stores["worker"].kill()
        time.sleep(SETTLE)
        dump(pair, "head", "head-after-worker-killed", out, files)

    def head_killed(pair, stores):
        stores["head"].kill()
        time.sleep(SETTLE)
        dump(pair, "worker", "worker-after-head-killed", out, files)

    def legacy(pair, stores):
        dump(pair, "head", "legacy-head", out, files)
        dump(pair, "worker", "legacy-worker", out, files)

    scenario("joined", joined)
    scenario("worker-killed", worker_killed)
    scenario("head-killed", head_killed)
    if not args.no_legacy:
        scenario("legacy", legacy)

    any_report = next((r for s in scenarios.values() for r in s.values()), {})
    meta = {
        "script": "scripts/capture_rendezvous.py",
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": any_report.get("torch"),
        "fake_store": bool(args.fake_store),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "head_addr": HEAD_ADDR, "worker_addr": WORKER_ADDR, "prefix_len": PREFIX_LEN,
        "port": args.port, "port_hex": f"{args.port:04X}", "ifname": IFNAME,
        "env": {name: os.environ.get(name) for name in ("TORCH_TCPSTORE_USE_LIBUV", "USE_LIBUV")},
        "store_kwargs": "TCPStore(master, port, world_size=2, is_master=<head>, "
                        "timeout=60s, wait_for_workers=True[, use_libuv=False for legacy])",
        "settle_s": SETTLE,
        "scenarios": scenarios,
        "errors": errors,
        "files": sorted(files),
    }
    with open(os.path.join(out, "meta.json"), "w") as handle:
        json.dump(meta, handle, indent=2, sort_keys=True)
        handle.write("\n")
    with open(os.path.join(out, "capture.json"), "w") as handle:
        json.dump({"meta": meta, "files": files}, handle, indent=1, sort_keys=True)
        handle.write("\n")
    print(json.dumps({"out": out, "files": sorted(files), "errors": errors}, indent=1))
    return 1 if errors.get("joined") or not files else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", help="output directory (created)")
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--fake-store", action="store_true",
                        help="stdlib stand-in for TCPStore: tests this harness, no fixtures")
    parser.add_argument("--no-legacy", action="store_true",
                        help="skip the use_libuv=False scenario")
    parser.add_argument("--_hold", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_role", choices=("head", "worker"), help=argparse.SUPPRESS)
    parser.add_argument("--_legacy", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._hold:
        return run_holder()
    if args._role:
        return run_role(args._role, HEAD_ADDR, args.port, args._legacy, args.fake_store)
    if not args.out:
        parser.error("--out DIR is required")
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    return capture(args)


if __name__ == "__main__":
    sys.exit(main())
