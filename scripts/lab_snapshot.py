#!/usr/bin/env python3
"""Hash manifest of the files the roles manage on the lab nodes, and its comparison.

    lab_snapshot.py take [--inventory DIR] [-o FILE]   manifest of every lab node (JSON)
    lab_snapshot.py compare BEFORE.json AFTER.json      exit 1 when a managed file differs

What is captured, per node (``docker exec`` into the node's container):
  /etc/spark-cluster, /etc/netplan, /etc/systemd/system (units and their enablement
  links), /usr/local/lib/spark-cluster, /etc/exports.d, /etc/hosts, and the loaded
  ``inet spark_cluster`` nftables table. Each file: sha256, mode, owner, size (links:
  their target). Contents are never stored, so secrets (the API key) stay on the node.

``__pycache__`` (written by Python when a program runs) is left out. Between two fresh
labs, expect ``watchdog.key`` (a random secret per cluster) and ``compose.yml`` (it
names the image ID, new with every build of a changed recipe) to differ.

Use it to prove a refactor changes nothing on the nodes: converge the lab from the old
tree, ``take``, converge from the new tree, ``take``, ``compare``. Run it under the lab
lock (it only reads). Python 3.11+, stdlib only.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_INVENTORY = REPO / "inventory" / "lab"
PATHS = ["/etc/spark-cluster", "/etc/netplan", "/etc/systemd/system",
         "/usr/local/lib/spark-cluster", "/etc/exports.d", "/etc/hosts"]
NFT_TABLE = ["nft", "-s", "list", "table", "inet", "spark_cluster"]  # -s: no counters (traffic is not a change)

# Runs on the node (python3 there): walks PATHS, prints one JSON object.
_WALKER = r"""
import hashlib, json, os, pwd, grp, stat, sys
out = {}
def owner(st):
    try: u = pwd.getpwuid(st.st_uid).pw_name
    except KeyError: u = str(st.st_uid)
    try: g = grp.getgrgid(st.st_gid).gr_name
    except KeyError: g = str(st.st_gid)
    return u + ":" + g
def entry(p):
    st = os.lstat(p)
    e = {"mode": oct(stat.S_IMODE(st.st_mode)), "owner": owner(st)}
    if stat.S_ISLNK(st.st_mode):
        e["link"] = os.readlink(p)
    elif stat.S_ISDIR(st.st_mode):
        e["type"] = "dir"
    elif stat.S_ISREG(st.st_mode):
        with open(p, "rb") as f:
            e["sha256"] = hashlib.sha256(f.read()).hexdigest()
        e["size"] = st.st_size
    else:
        e["type"] = "other"
    out[p] = e
for root in sys.argv[1:]:
    if not os.path.lexists(root):
        out[root] = {"absent": True}
        continue
    entry(root)
    if os.path.isdir(root) and not os.path.islink(root):
        for d, dirs, files in os.walk(root):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")  # Python's, not ours
            for n in sorted(dirs + files):
                entry(os.path.join(d, n))
print(json.dumps(out, sort_keys=True))
"""


def lab_nodes(inventory: Path) -> dict[str, str]:
    """inventory_hostname -> container name, for every host of group spark."""
    res = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-inventory"), "-i", str(inventory),
                          "--list"], check=True, capture_output=True, text=True)
    inv = json.loads(res.stdout)
    hostvars = inv.get("_meta", {}).get("hostvars", {})
    hosts: list[str] = []

    def walk(group: str) -> None:
        g = inv.get(group, {})
        for h in g.get("hosts", []):
            if h not in hosts:
                hosts.append(h)
        for c in g.get("children", []):
            walk(c)
    walk("spark")
    return {h: str(hostvars.get(h, {}).get("ansible_host", h)) for h in hosts}


def node_manifest(container: str) -> dict:
    res = subprocess.run(["docker", "exec", container, "python3", "-c", _WALKER, *PATHS],
                         capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise SystemExit(f"{container}: could not read the node's files ({res.stderr.strip()}); "
                         "is the lab up (make lab-status)?")
    files = json.loads(res.stdout)
    nft = subprocess.run(["docker", "exec", container, *NFT_TABLE],
                         capture_output=True, text=True, timeout=60)
    files["nft:inet spark_cluster"] = (
        {"sha256": hashlib.sha256(nft.stdout.encode()).hexdigest()}
        if nft.returncode == 0 else {"absent": True})
    return files


def take(inventory: Path) -> dict:
    return {name: node_manifest(container) for name, container in lab_nodes(inventory).items()}


def compare(before: dict, after: dict) -> list[str]:
    """Human-readable differences; empty when both manifests are identical."""
    diffs: list[str] = []
    for node in sorted(set(before) | set(after)):
        b, a = before.get(node), after.get(node)
        if b is None or a is None:
            diffs.append(f"{node}: only in {'after' if b is None else 'before'}")
            continue
        for path in sorted(set(b) | set(a)):
            if b.get(path) != a.get(path):
                diffs.append(f"{node}: {path}: {b.get(path, 'missing')} -> {a.get(path, 'missing')}")
    return diffs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lab_snapshot.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("take", help="manifest of every lab node")
    t.add_argument("--inventory", "-i", type=Path, default=DEFAULT_INVENTORY)
    t.add_argument("--output", "-o", type=Path, help="write here (default: stdout)")
    c = sub.add_parser("compare", help="compare two manifests (exit 1 on a difference)")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "take":
        text = json.dumps(take(args.inventory), indent=1, sort_keys=True) + "\n"
        if args.output:
            args.output.write_text(text)
            n = sum(len(v) for v in json.loads(text).values())
            print(f"==> {args.output}: {n} entries")
        else:
            sys.stdout.write(text)
        return 0
    diffs = compare(json.loads(args.before.read_text()), json.loads(args.after.read_text()))
    for d in diffs:
        print(d)
    total = sum(len(v) for v in json.loads(args.after.read_text()).values())
    print(f"==> {len(diffs)} difference(s) in {total} entries")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
