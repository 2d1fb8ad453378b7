"""Node-side watchdog of the serving pair (systemd unit spark-runtime-watchdog.service).

Why: vLLM's headless node watches only its local worker processes. When the head dies,
a worker stays up, half-connected, blocked in its next collective until NCCL's timeout;
a head restarted alone then waits for a worker that never joins again. When a worker
dies, the head's engine blocks in its next collective the same way. Only a supervisor
that sees both sides brings the pair back, and it must not need SSH between nodes.

What: every node watches the rendezvous over rail 0 from its own side, in the kernel's
TCP table (``/proc/net/tcp``; the runtime uses the host's network):

- a worker: its runtime's connection to the head's store (``MASTER_ADDR:MASTER_PORT``);
- the head: one connection from every worker's rail-0 address to its store.

Once the pair has joined (every connection seen ESTABLISHED since the local unit's
current start), losing one for ``misses`` probes in a row restarts the local unit: the
worker's restart makes it wait for the (new) head and join it; the head's restart makes
it wait in a fresh rendezvous for every worker. A head that vanished without closing
its connections (power loss) is seen by the worker's connect probe: refused or timed
out ``probe_misses`` times in a row (longer: a rail flapping for a few seconds keeps the
TCP connection and must not restart anything). Nothing happens before the pair first joins (a start is
the serving role's and systemd's job), and the state resets at every start of the unit
(its InvocationID).

The connections seen when the pair first joined are the pair's: a new connection from
the same peer (a worker restarted alone, knocking at a head whose world is formed) does
not count. Plain functions (``parse_tcp_table``, ``observe``, ``Watch.step``) carry the logic and
are unit-tested; ``main`` is the loop (stdlib only, installed to
/usr/local/lib/spark-cluster/).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time

ESTABLISHED = "01"
PROG = "spark-rendezvous-watch"


def _ip(hex_ip):
    """/proc/net/tcp's little-endian hex IPv4 -> dotted quad."""
    raw = bytes.fromhex(hex_ip)
    return ".".join(str(b) for b in reversed(raw))


def parse_tcp_table(text):
    """Rows of /proc/net/tcp as (local_ip, local_port, remote_ip, remote_port, state)."""
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


class Watch:
    """The decision: restart the local unit when the joined pair loses a connection.

    The connections seen when every peer first joined are the pair's; a peer is lost
    when none of its joined connections is left, even if a new one appeared (a worker
    restarted alone that knocks at a head which already formed its world)."""

    def __init__(self, misses=3, probe_misses=30):
        self.misses_allowed = max(1, int(misses))
        self.probe_misses_allowed = max(1, int(probe_misses))
        self.invocation = None
        self.joined = None
        self.misses = 0
        self.unreachable = 0

    def reset(self):
        self.joined, self.misses, self.unreachable = None, 0, 0

    def lost(self, conns):
        """Peers none of whose joined connections is left."""
        if self.joined is None:
            return []
        return sorted(p for p, ids in self.joined.items() if not ids & conns.get(p, set()))

    def step(self, invocation, active, conns, master_reachable=True):
        """One probe -> (action, reason): action is "none" or "restart"."""
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
            return "none", "waiting for the first join"
        if self.lost(conns):
            self.misses += 1
            if self.misses < self.misses_allowed:
                return "none", f"lost ({self.misses}/{self.misses_allowed})"
            self.reset()
            return "restart", "the rendezvous connection is gone"
        self.misses = 0
        if master_reachable:
            self.unreachable = 0
            return "none", "ok"
        self.unreachable += 1
        if self.unreachable < self.probe_misses_allowed:
            return "none", f"head unreachable ({self.unreachable}/{self.probe_misses_allowed})"
        self.reset()
        return "restart", "the head does not answer on its rendezvous port"


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
    parser.add_argument("--tcp-table", default="/proc/net/tcp")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    watch = Watch(args.misses, args.probe_misses)
    print(f"{PROG}: {args.role} watching {args.unit}: rendezvous {args.master_addr}:{args.master_port}"
          + (f", workers {', '.join(args.peer)}" if args.peer else ""), flush=True)
    last = None
    while True:
        invocation, active = unit_state(args.unit)
        with open(args.tcp_table, encoding="ascii") as handle:
            rows = parse_tcp_table(handle.read())
        conns = observe(rows, args.role, args.master_addr, args.master_port, args.peer)
        reachable = True
        if args.role == "worker" and watch.joined is not None:
            reachable = connect_probe(args.master_addr, args.master_port, args.bind)
        lost = watch.lost(conns)
        action, reason = watch.step(invocation, active, conns, reachable)
        if reason != last and reason != "ok":
            print(f"{PROG}: {reason}" + (f": {', '.join(lost)}" if lost and active else ""), flush=True)
            last = reason
        if action == "restart":
            print(f"{PROG}: {reason} ({', '.join(lost) or 'head unreachable'}): restarting {args.unit}",
                  flush=True)
            subprocess.run(["systemctl", "restart", "--no-block", args.unit], check=False)
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
