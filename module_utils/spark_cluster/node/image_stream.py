"""Stream a Docker image from one node to another over the QSFP link (stdlib only), as a
program: ``python3 -m spark_cluster.node.image_stream recv|send ...``.

No SSH between nodes: the receiving node runs a one-shot receiver bound to its rail-0
address that accepts one connection, only from the sender's address, and pipes it into
``docker load``; the sending node pipes ``docker save`` into that connection.

    python3 -m spark_cluster.node.image_stream recv --bind 192.168.100.11 --port 29610 --allow 192.168.100.10
    python3 -m spark_cluster.node.image_stream send --image vllm-dspark-runtime:clean \
        --to 192.168.100.11 --port 29610 --bind 192.168.100.10

Exit 0 when the whole stream went through and ``docker load`` succeeded.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time

CHUNK = 1 << 20


def say(msg):
    print(f"spark-image-stream: {msg}", flush=True)


def recv(args):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.bind, args.port))
    srv.listen(1)
    srv.settimeout(args.timeout)
    say(f"listening on {args.bind}:{args.port} for {args.allow}")
    while True:
        try:
            conn, peer = srv.accept()
        except socket.timeout:
            say(f"no sender within {args.timeout} s")
            return 1
        if peer[0] != args.allow:
            say(f"refused a connection from {peer[0]} (only {args.allow})")
            conn.close()
            continue
        break
    srv.close()
    t0 = time.monotonic()
    load = subprocess.Popen(["docker", "load"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    total = 0
    with conn:
        conn.settimeout(args.timeout)
        while True:
            data = conn.recv(CHUNK)
            if not data:
                break
            load.stdin.write(data)
            total += len(data)
    load.stdin.close()
    out = load.stdout.read().decode(errors="replace").strip()
    rc = load.wait()
    dt = max(time.monotonic() - t0, 1e-6)
    say(f"received {total} bytes from {peer[0]} in {dt:.1f} s ({total * 8 / dt / 1e9:.2f} Gb/s)")
    say(f"docker load: {out}")
    return rc


def send(args):
    sock = None
    deadline = time.monotonic() + args.timeout
    while sock is None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if args.bind:
            s.bind((args.bind, 0))
        try:
            s.connect((args.to, args.port))
            sock = s
        except OSError as exc:
            s.close()
            if time.monotonic() > deadline:
                say(f"receiver {args.to}:{args.port} did not answer: {exc}")
                return 1
            time.sleep(0.5)
    t0 = time.monotonic()
    save = subprocess.Popen(["docker", "save", args.image], stdout=subprocess.PIPE)
    total = 0
    with sock:
        while True:
            data = save.stdout.read(CHUNK)
            if not data:
                break
            sock.sendall(data)
            total += len(data)
        sock.shutdown(socket.SHUT_WR)
        # wait for the receiver to close (docker load done reading)
        sock.settimeout(args.timeout)
        try:
            while sock.recv(CHUNK):
                pass
        except OSError:
            pass
    rc = save.wait()
    dt = max(time.monotonic() - t0, 1e-6)
    say(f"sent {args.image}: {total} bytes to {args.to} in {dt:.1f} s ({total * 8 / dt / 1e9:.2f} Gb/s)")
    return rc


def main(argv=None):
    parser = argparse.ArgumentParser(prog="spark-image-stream")
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("recv")
    r.add_argument("--bind", required=True)
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--allow", required=True)
    r.add_argument("--timeout", type=float, default=600)
    s = sub.add_parser("send")
    s.add_argument("--image", required=True)
    s.add_argument("--to", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--bind", default=None)
    s.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    if not shutil.which("docker"):
        say("docker not found")
        return 1
    return recv(args) if args.cmd == "recv" else send(args)


if __name__ == "__main__":
    sys.exit(main())
