"""Node-side rendezvous guard of the serving pair (systemd unit spark-rendezvous-guard.service).

Why: vLLM's headless node watches only its local worker processes. When the head dies,
a worker stays up, half-connected, blocked in its next collective until NCCL's timeout;
a head restarted alone then waits for a worker that never joins again. When a worker
dies, the head's engine blocks in its next collective the same way. Only a supervisor
that sees both sides brings the pair back, and it must not need SSH between nodes.

What: every node watches the rendezvous over rail 0 from its own side, in the kernel's
TCP tables. PyTorch's ``TCPStore`` (what vLLM's ``init_distributed_environment`` creates
behind ``tcp://MASTER_ADDR:MASTER_PORT``) listens on ``::`` dual-stack, so its rows are in
``/proc/net/tcp6`` with v4-mapped addresses (``::ffff:a.b.c.d``); both tables are read and
a mapped address counts as its IPv4 address (docs/real-stack.md: rows of a real store).

- a worker: its runtime's connections to the head's store (``MASTER_ADDR:MASTER_PORT``);
- the head: the connections from every worker's rail-0 address to its store.

**One decision point, the head.** Once the pair has joined (every connection seen
ESTABLISHED since the local unit's current start), the head restarts its own unit when a
worker's joined connections are all gone for ``misses`` probes in a row. Every start of
the head's unit first asks each worker's agent to *prepare* (``spark_cluster.node.watchdog
prepare``, an ``ExecStartPre`` of the watchdog role): a worker whose runtime joined an
earlier head, or is not running, is restarted; a fresh one waiting for the master is left
alone. So a dead worker, a dead head (systemd restarts it) and a stalled pair (the stall
watchdog's coordinated restart) all end in the same ordered start, and no two nodes
react to each other's restarts.

A head that waits in its rendezvous longer than ``--join-timeout`` (a worker that joined
an earlier head slipped past the start's prepare, e.g. a race with its own restart) asks
the agents to prepare again (``--prepare-config``: the watchdog's configuration; the same
``spark_cluster.node.watchdog prepare``): a stale worker is restarted into the waiting rendezvous,
a fresh one left alone, and the head itself is not restarted. Still waiting another
``--join-timeout`` later, the head restarts its own unit: its world may have formed with a
worker that left before the guard's probe saw it (a join and a death within one probe
interval; the lab's back-to-back kills found it), and only a new store admits a worker.

A worker never restarts itself: it records what it sees (``--state``, read by its agent's
*prepare*) and logs that its head is gone or does not answer; the head's next start
restarts it. Nothing happens before the pair first joins, and the state resets at every
start of the unit (its InvocationID). The connections seen when the pair first joined are
the pair's: a new connection from the same peer (a worker restarted alone, knocking at a
head whose world is formed) does not count. Plain functions (``parse_tcp_table``,
``observe``, ``Watch.step``) carry the logic and are unit-tested; ``main`` is the loop
(stdlib only, installed to /usr/local/lib/spark-cluster/).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import subprocess
import sys
import time

ESTABLISHED = "01"
CLOSE_WAIT = "08"  # the peer closed, this process still holds the socket (a blocked collective)
PROG = "spark-rendezvous-watch"


TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def _ip(hex_ip):
    """The kernel's hex address -> text. /proc/net/tcp: one little-endian 32-bit word
    (IPv4); /proc/net/tcp6: four of them (IPv6). A v4-mapped IPv6 address
    (``::ffff:a.b.c.d``, a dual-stack socket's IPv4 peer) is given as ``a.b.c.d``."""
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return ".".join(str(b) for b in reversed(raw))
    if len(raw) != 16:
        raise ValueError(f"not an address: {hex_ip}")
    addr = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
    return str(addr.ipv4_mapped) if addr.ipv4_mapped else addr.compressed


def parse_tcp_table(text):
    """Rows of /proc/net/tcp or /proc/net/tcp6 as (local_ip, local_port, remote_ip,
    remote_port, state); v4-mapped addresses as IPv4."""
    rows = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or ":" not in fields[1]:
            continue
        try:
            lip, lport = fields[1].split(":")
            rip, rport = fields[2].split(":")
            rows.append((_ip(lip), int(lport, 16), _ip(rip), int(rport, 16), fields[3]))
        except ValueError:
            continue
    return rows


def observe(rows, role, master_addr, master_port, peers=()):
    """The rendezvous connections per peer: {peer: {(local_port, remote_port), ...}}.

    worker: one peer, the head's store (``master_addr:master_port``), and this node's
    ESTABLISHED connections to it; head: every worker's rail-0 address and its
    ESTABLISHED connections to ``master_addr:master_port``."""
    established = [r for r in rows if r[4] == ESTABLISHED]
    if role == "worker":
        store = f"{master_addr}:{master_port}"
        return {store: {(r[1], r[3]) for r in established if r[2] == master_addr and r[3] == master_port}}
    conns = {peer: set() for peer in peers}
    for r in established:
        if r[0] == master_addr and r[1] == master_port and r[2] in conns:
            conns[r[2]].add((r[1], r[3]))
    return conns


def read_tables(paths=TCP_TABLES, opener=open):
    """Rows of every table that exists (tcp6 is absent where IPv6 is disabled)."""
    rows = []
    for path in paths:
        try:
            with opener(path, encoding="ascii") as handle:
                rows.extend(parse_tcp_table(handle.read()))
        except FileNotFoundError:
            continue
    return rows


def held_connections(rows, master_addr, master_port):
    """This node's connections to the master's store that a process still holds
    (ESTABLISHED, or CLOSE_WAIT once the head is gone): the runtime that holds one has
    joined a head. A runtime waiting for the master holds none (refused connects leave
    nothing). Read at the moment of asking, so no join is missed between two probes."""
    return sorted((r[1], r[3]) for r in rows
                  if r[2] == master_addr and r[3] == master_port and r[4] in (ESTABLISHED, CLOSE_WAIT))


class Watch:
    """What the guard concludes from one probe, for the head or a worker.

    The connections seen when every peer first joined are the pair's; a peer is lost
    when none of its joined connections is left, even if a new one appeared (a worker
    restarted alone that knocks at a head which already formed its world). Only the head
    acts ("restart" its own unit, whose start prepares the workers); a worker only says
    what it sees: it stays "joined" for the rest of its unit's run (its runtime cannot
    join another head), which is what its agent's *prepare* asks."""

    def __init__(self, role="head", misses=3, probe_misses=30, join_probes=0):
        self.role = role
        self.join_probes = max(0, int(join_probes))
        self.waiting = 0
        self.misses_allowed = max(1, int(misses))
        self.probe_misses_allowed = max(1, int(probe_misses))
        self.invocation = None
        self.reset()

    def reset(self):
        self.joined, self.misses, self.unreachable, self.waiting, self.prepared = None, 0, 0, 0, False

    def lost(self, conns):
        """Peers none of whose joined connections is left."""
        if self.joined is None:
            return []
        return sorted(p for p, ids in self.joined.items() if not ids & conns.get(p, set()))

    def step(self, invocation, active, conns, master_reachable=True):
        """One probe -> (action, reason): action is "none", or for the head "restart" (a
        worker of the joined pair is lost) or "prepare" (the rendezvous waits too long)."""
        if invocation != self.invocation:
            self.invocation = invocation
            self.reset()
        if not active:
            self.reset()
            return "none", "unit not active"
        if self.joined is None:
            if conns and all(conns.values()):
                self.joined = {p: set(ids) for p, ids in conns.items()}
                return "none", "joined"
            self.waiting += 1
            if self.role == "head" and self.join_probes and self.waiting >= self.join_probes:
                self.waiting = 0
                if self.prepared:
                    self.reset()
                    return "restart", "the rendezvous still waits after the workers were prepared"
                self.prepared = True
                return "prepare", "the rendezvous waits too long for a worker"
            return "none", "waiting for the first join"
        if self.lost(conns):
            self.misses += 1
            if self.misses < self.misses_allowed:
                return "none", f"lost ({self.misses}/{self.misses_allowed})"
            if self.role == "worker":
                return "none", ("the head's rendezvous connection is gone: waiting for the head's next "
                                "start, which restarts this node through its agent")
            self.reset()
            return "restart", "the rendezvous connection is gone"
        self.misses = 0
        if master_reachable:
            self.unreachable = 0
            return "none", "ok"
        self.unreachable += 1
        if self.unreachable < self.probe_misses_allowed:
            return "none", f"head unreachable ({self.unreachable}/{self.probe_misses_allowed})"
        return "none", ("the head does not answer on its rendezvous port: waiting for its next start, "
                        "which restarts this node through its agent")

    def record(self, unit, active, reason, now):
        """What the agent's *prepare* reads: has this run of the unit joined a head?"""
        return {"unit": unit, "role": self.role, "invocation": self.invocation, "active": bool(active),
                "joined": self.joined is not None, "status": reason, "at": round(now, 1)}


def save_record(path, record):
    """Write the guard's record atomically (the agent reads it at any time)."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    os.replace(tmp, path)


def connect_probe(addr, port, bind=None, timeout=2.0):
    """Does anything accept on addr:port (from the bind address)?"""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            if bind:
                sock.bind((bind, 0))
            sock.connect((addr, port))
        return True
    except OSError:
        return False


def unit_state(unit, run=subprocess.run):
    """(invocation id, active) of a systemd unit."""
    out = run(["systemctl", "show", "-p", "InvocationID", "-p", "ActiveState", unit],
              capture_output=True, text=True, check=False).stdout
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return props.get("InvocationID", ""), props.get("ActiveState") == "active"


def prepare_workers(config, reason, run=subprocess.run, exists=os.path.exists):
    """Ask the workers' agents to prepare (the stall watchdog, ``python3 -m
    spark_cluster.node.watchdog prepare``, from the package this file belongs to; its
    configuration exists where the watchdog role set it up), without restarting the head.
    Returns the exit code or None."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    program = os.path.join(root, "spark_cluster", "node", "watchdog.py")
    if not config or not exists(config) or not exists(program):
        print(f"{PROG}: {reason}; no watchdog configuration here to prepare the workers with "
              "(watchdog_enabled false?): a person or start.yml must restart them", flush=True)
        return None
    print(f"{PROG}: {reason}: asking the workers' agents to prepare", flush=True)
    return run([sys.executable, "-m", "spark_cluster.node.watchdog", "prepare", "--config", config],
               check=False, env=dict(os.environ, PYTHONPATH=root)).returncode


def parse_args(argv):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["head", "worker"], required=True)
    parser.add_argument("--unit", default="spark-runtime.service")
    parser.add_argument("--master-addr", required=True, help="the head's rail-0 address")
    parser.add_argument("--master-port", type=int, required=True)
    parser.add_argument("--peer", action="append", default=[], help="a worker's rail-0 address (head)")
    parser.add_argument("--bind", default=None, help="this node's rail-0 address (worker probe)")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--misses", type=int, default=3)
    parser.add_argument("--probe-misses", type=int, default=30)
    parser.add_argument("--tcp-table", action="append", default=None,
                        help=f"a kernel TCP table to read (default: {' and '.join(TCP_TABLES)})")
    parser.add_argument("--state", default=None, help="where to keep the record the agent reads")
    parser.add_argument("--join-timeout", type=float, default=0,
                        help="head: seconds in the rendezvous before the workers are prepared again (0: never)")
    parser.add_argument("--prepare-config", default=None,
                        help="head: the watchdog's configuration (spark_cluster.node.watchdog prepare); absent: no prepare")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    join_probes = int(args.join_timeout / args.interval) if args.join_timeout > 0 else 0
    watch = Watch(args.role, args.misses, args.probe_misses, join_probes)
    tables = args.tcp_table or TCP_TABLES
    print(f"{PROG}: {args.role} watching {args.unit}: rendezvous {args.master_addr}:{args.master_port}"
          + (f", workers {', '.join(args.peer)}" if args.peer else "")
          + f" ({', '.join(tables)})", flush=True)
    last, saved = None, None
    while True:
        invocation, active = unit_state(args.unit)
        conns = observe(read_tables(tables), args.role, args.master_addr, args.master_port, args.peer)
        reachable = True
        if args.role == "worker" and watch.joined is not None:
            reachable = connect_probe(args.master_addr, args.master_port, args.bind)
        lost = watch.lost(conns)
        action, reason = watch.step(invocation, active, conns, reachable)
        if reason != last and reason != "ok":
            print(f"{PROG}: {reason}" + (f": {', '.join(lost)}" if lost and active else ""), flush=True)
            last = reason
        if args.state:
            record = watch.record(args.unit, active, reason, time.time())
            if {k: v for k, v in record.items() if k != "at"} != saved:
                save_record(args.state, record)
                saved = {k: v for k, v in record.items() if k != "at"}
        if action == "prepare":
            prepare_workers(args.prepare_config, reason)
        if action == "restart":
            print(f"{PROG}: {reason}" + (f" ({', '.join(lost)})" if lost else "")
                  + f": restarting {args.unit} (its start prepares the workers first)", flush=True)
            subprocess.run(["systemctl", "restart", "--no-block", args.unit], check=False)
        time.sleep(args.interval)
