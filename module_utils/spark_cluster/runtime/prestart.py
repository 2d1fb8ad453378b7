"""Node-side pre-start check of the serving service (systemd ExecStartPre).

Runs on the node at every service start, outside Ansible, from the same package the
playbook used (spark_cluster, installed to /usr/local/lib/spark-cluster/)::

    PYTHONPATH=/usr/local/lib/spark-cluster python3 -m spark_cluster.node.prestart \
        --params /etc/spark-cluster/runtime-env.json

1. reads the inputs the spark_runtime_env module saved (params file);
2. re-resolves the RoCE v2 GID index (link.roce.resolve: it can drift after a
   reboot) and re-renders the env file with the same runtime_env functions, rewriting
   it only when it changed (and saying so: "GID index drifted 3 -> 4 on rocep1s0f1");
3. checks the interface pinning of the rendered env against the kernel
   (link.pinning.check_pinning with the real netlink reader);
4. with ``--gpu-memory-utilization``: the unified-memory guard (memory.guard):
   MemAvailable against utilization x total + ``--memory-margin-gib``, the page cache
   dropped when the weights under ``--weights-dir`` were written since the last start
   (``--memory-stamp``), the start refused with the numbers when it does not fit.
5. (params with ``mtu``) checks every rail's MTU and address (link.netconf.rail_drift):
   a firmware update is known to reset the ports' MTU to 1500; says what to run.

Exit 0 when all is well (one summary line on stdout), 1 on any problem (one line per
problem on stderr), so systemd does not start a service that would hang or silently
send its traffic over Wi-Fi. ``--check-only`` writes nothing (the playbook runs it
once at provisioning to fail early).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..common.envfile import parse
from ..common.fileio import read_text, write_atomic
from ..link.netconf import rail_drift
from ..link.netlink import NetlinkReader
from ..link.pinning import check_pinning, format_problems
from ..link.roce import GidError, resolve
from .image import check_access
from .memory import guard as memory_guard
from .runtime_env import build_env, rail_interfaces, render

DEFAULT_PARAMS = "/etc/spark-cluster/runtime-env.json"
PROG = "spark-prestart"


def drift_lines(old_env, gid):
    """Human lines describing how the NCCL/GID part changed between two renders."""
    lines = []
    old_index = old_env.get("NCCL_IB_GID_INDEX")
    new_env = gid["nccl_env"]
    devices = gid["devices"]
    if old_index is not None:
        for device in devices:
            if str(device["gid_index"]) != old_index:
                lines.append(
                    f"GID index drifted {old_index} -> {device['gid_index']} on {device['hca']}"
                )
    elif old_env.get("NCCL_IB_HCA") and "NCCL_IB_GID_INDEX" in new_env:
        lines.append(
            f"GID index is {new_env['NCCL_IB_GID_INDEX']} on all devices again "
            "(was per device)"
        )
    if "NCCL_IB_GID_INDEX" not in new_env and devices and old_index is not None:
        per_device = ", ".join(f"{d['hca']}: {d['gid_index']}" for d in devices)
        lines.append(
            f"GID index differs per device ({per_device}): NCCL_IB_GID_INDEX left unset, "
            "NCCL picks per device (NCCL_IB_ADDR_FAMILY=AF_INET, NCCL_IB_ROCE_VERSION_NUM=2)"
        )
    old_hca, new_hca = old_env.get("NCCL_IB_HCA"), new_env.get("NCCL_IB_HCA")
    if old_hca != new_hca and (old_hca or new_hca):
        lines.append(f"NCCL_IB_HCA changed {old_hca or '(unset)'} -> {new_hca or '(unset)'}")
    if old_env.get("NCCL_IB_DISABLE") != new_env.get("NCCL_IB_DISABLE"):
        lines.append(
            "RDMA " + ("gone: NCCL falls back to TCP sockets" if new_env.get("NCCL_IB_DISABLE")
                       else "present again: NCCL uses RoCE")
        )
    return lines


def changed_keys(old_env, new_env):
    keys = list(dict.fromkeys(list(old_env) + list(new_env)))
    return [k for k in keys if old_env.get(k) != new_env.get(k)]


def summary(node, gid):
    if gid["rdma_present"]:
        hcas = gid["nccl_env"]["NCCL_IB_HCA"]
        index = gid["nccl_env"].get("NCCL_IB_GID_INDEX")
        how = f"RoCE v2 GID {index}" if index else "RoCE v2 GID per device"
        transport = f"{how} on {hcas}"
    else:
        transport = "TCP sockets (no RDMA)"
    return (
        f"{PROG}: ok: {node['role']} rank {node['rank']}/{node['nnodes']}, "
        f"pinned to {node['interface']} {node['address']}, {transport}"
    )


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Re-render the runtime env file and check interface pinning "
        "(systemd ExecStartPre of the serving service).",
    )
    parser.add_argument("--params", default=DEFAULT_PARAMS, help="saved inputs (JSON)")
    parser.add_argument("--sysfs-root", default=None, help="sysfs root (default: from params, /sys)")
    parser.add_argument(
        "--check-only", action="store_true", help="write nothing; report and check only"
    )
    parser.add_argument("--gpu-memory-utilization", type=float, default=None,
                        help="run the memory guard for this share of total memory")
    parser.add_argument("--memory-margin-gib", type=float, default=4.0,
                        help="memory the node keeps on top of the runtime's share")
    parser.add_argument("--weights-dir", default=None, help="the hub cache (page cache dropped when newer)")
    parser.add_argument("--memory-stamp", default=None, help="stamp of the last start that passed the guard")
    parser.add_argument(
        "--access", default=None,
        help="what the runtime uid must read/write (JSON: uid, gids, entries)",
    )
    return parser.parse_args(argv)


def main(argv=None, net=None, sysfs_root=None, out=None, err=None, meminfo=None):
    """Returns the exit code. ``net`` (a netlink reader; tests pass a double),
    ``sysfs_root`` and ``meminfo`` (a callable returning /proc/meminfo text) are
    injectable for tests; ``out``/``err`` default to stdout/stderr."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = parse_args(argv)

    def fail(message):
        for line in str(message).splitlines():
            print(f"{PROG}: {line}", file=err)
        return 1

    try:
        with open(args.params, encoding="utf-8") as handle:
            params = json.load(handle)
        node, rails, path = params["node"], params["rails"], params["path"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return fail(f"cannot read the params file {args.params}: {exc!r} (re-run the playbook)")
    peers = params.get("peers") or []
    root = sysfs_root or args.sysfs_root or params.get("sysfs_root") or "/sys"

    try:
        interfaces = rail_interfaces(rails)
        gid = resolve(root, interfaces)
        env = build_env(node, gid, params.get("topology"))
        text = render(env, params)
    except (GidError, ValueError) as exc:
        return fail(exc)

    old_text = read_text(path, strip=False)
    if old_text != text:
        try:
            old_env = parse(old_text) if old_text is not None else {}
        except ValueError:
            old_env = {}
        if old_text is None:
            notes = [f"{path} is missing"]
        else:
            notes = drift_lines(old_env, gid)
            keys = changed_keys(old_env, env)
            if keys:
                notes.append(f"changed: {', '.join(keys)}")
            elif not notes:
                notes.append("header or layout changed")
        for note in notes:
            print(f"{PROG}: {note}", file=out)
        if args.check_only:
            print(f"{PROG}: --check-only: {path} not rewritten", file=out)
        else:
            try:
                mode = int(str(params.get("mode") or "0600"), 8)
            except ValueError:
                mode = 0o600
            try:
                write_atomic(path, text, default_mode=mode)
            except OSError as exc:
                return fail(f"cannot write {path}: {exc}")
            print(f"{PROG}: rewrote {path}", file=out)

    reader = net if net is not None else NetlinkReader()
    try:
        with reader:
            result = check_pinning(node["interface"], node["address"], peers, env, reader,
                                   peer_paths=(params.get("topology") or {}).get("peer_paths"))
    except ImportError as exc:
        return fail(f"cannot read the network state: {exc} (install python3-pyroute2)")
    except OSError as exc:
        return fail(f"cannot read the network state (netlink): {exc!r}")
    if not result["ok"]:
        return fail(format_problems(result))
    if args.gpu_memory_utilization is not None:
        try:
            fits, lines = memory_guard(args.gpu_memory_utilization, args.memory_margin_gib,
                                       args.weights_dir, args.memory_stamp, read_meminfo=meminfo,
                                       check_only=args.check_only)
        except (OSError, ValueError) as exc:
            return fail(f"memory: {exc}")
        if not fits:
            return fail("\n".join(lines))
        for line in lines:
            print(f"{PROG}: {line}", file=out)
    if params.get("mtu"):
        try:
            drift = rail_drift(rails, params["mtu"], net if net is not None else NetlinkReader())
        except (ImportError, OSError) as exc:
            return fail(f"cannot read the rails (netlink): {exc!r}")
        if drift:
            return fail("\n".join(drift))
    if args.access:
        problems = access_problems(args.access)
        if problems:
            return fail("\n".join(problems))
    print(summary(node, gid), file=out)
    return 0


def access_problems(path, stat=os.stat, listdir=os.listdir):
    """What the runtime uid cannot read or write (the access file the serving role writes)."""
    try:
        with open(path, encoding="utf-8") as handle:
            spec = json.load(handle)
        uid, gids, entries = int(spec["uid"]), [int(g) for g in spec["gids"]], spec["entries"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"cannot read the access file {path}: {exc!r} (re-run the playbook)"]
    return check_access(entries, uid, gids, stat=stat, listdir=listdir)
