#!/usr/bin/env python3
"""All-reduce benchmark across the Spark cluster: torch.distributed with NCCL.

Started on every node at once, inside the runtime image, with that node's runtime env
file (VLLM_HOST_IP, NCCL_SOCKET_IFNAME, NCCL_IB_HCA, NCCL_IB_GID_INDEX, MASTER_ADDR,
MASTER_PORT, NODE_RANK, NNODES), so it meets the same rendezvous (rail 0) and the same
NCCL settings as the real start. Run it with NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,NET
(the collective_probe module passes INIT,NET,BOOTSTRAP,ENV) so NCCL says what it chose
(transport, HCAs, bootstrap interface, per-connection GID index). The probe adds ENV to
NCCL_DEBUG_SUBSYS before NCCL starts (keeping what was asked): NCCL prints "NCCL_IB_GID_INDEX
set by environment to N." only under ENV (src/misc/param.cc, ncclLoadParam), and without it
the report could only repeat the pinned value.

Prints one machine-readable line per event, "SPARK_COLLECTIVE <json>":
  start   (rank, world size, torch/NCCL/CUDA versions, GPU, rendezvous, pinned env)
  result  (per size: bytes, iterations, time, algbw and busbw in GB/s, correct)
  error   (stage and message; exit code 3)
  done    (elapsed seconds, peak busbw)
module_utils/spark_cluster/link/collective.py parses these lines and NCCL's own.

Rank: RANK if set, else NODE_RANK x GPUS_PER_NODE + LOCAL_RANK. World size: WORLD_SIZE,
else NNODES x GPUS_PER_NODE. Bus bandwidth follows nccl-tests' all-reduce convention:
busbw = algbw x 2 (n - 1) / n, with algbw = bytes / time and time the slowest rank's.
Python 3.8+ and PyTorch with CUDA; nothing else.
"""

import argparse
import datetime
import json
import os
import socket
import sys
import time

MARK = "SPARK_COLLECTIVE"
PIN_KEYS = ("VLLM_HOST_IP", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "NNODES",
            "GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME", "NCCL_IB_HCA", "NCCL_IB_GID_INDEX",
            "NCCL_IB_DISABLE", "NCCL_IB_ADDR_FAMILY", "NCCL_IB_ROCE_VERSION_NUM",
            "NCCL_NET", "NCCL_IB_MERGE_NICS", "NCCL_NVLS_ENABLE", "NCCL_CUMEM_ENABLE",
            "NCCL_P2P_DISABLE", "NCCL_SHM_DISABLE")
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


DEFAULT_DEBUG_SUBSYS = "INIT,NET,BOOTSTRAP,ENV"  # library/collective_probe.py's extra_env


def debug_subsys(value):
    """NCCL_DEBUG_SUBSYS with ENV let through, everything else as it was.

    NCCL (src/debug.cc) reads a comma list, '^' inverting it, ALL for every subsystem;
    unset means INIT,BOOTSTRAP,ENV (no NET): then the module's list (ENV included).
    'INIT,NET' -> 'INIT,NET,ENV'; '^ENV,COLL' -> '^COLL'; 'ALL' and '^COLL' unchanged;
    '^ALL' (nothing) -> 'ENV'."""
    value = (value or "").strip()
    if not value:
        return DEFAULT_DEBUG_SUBSYS
    invert = value.startswith("^")
    names = [n.strip() for n in value.lstrip("^").split(",") if n.strip()]
    upper = [n.upper() for n in names]
    if invert:
        if "ALL" in upper:  # '^ALL': nothing asked, ENV alone then
            return "ENV"
        kept = [n for n in names if n.upper() != "ENV"]
        return "^" + ",".join(kept) if kept else "ALL"
    if "ENV" in upper or "ALL" in upper:
        return ",".join(names)
    return ",".join(names + ["ENV"])


def parse_size(text):
    """'1M' -> 1048576 (binary units K, M, G; a bare number is bytes)."""
    text = str(text).strip().upper().rstrip("B").rstrip("I")
    unit = text[-1:] if text[-1:] in UNITS and not text[-1:].isdigit() else ""
    number = text[:-1] if unit else text
    value = int(float(number) * UNITS[unit])
    if value < 4:
        raise ValueError("size %r is below 4 bytes" % text)
    return value


def size_list(spec):
    """'1M:1G' (powers of two from..to) or '1M,64M,1G'."""
    if ":" in spec:
        low, high = (parse_size(p) for p in spec.split(":", 1))
        if low > high:
            raise ValueError("size range %r runs backwards" % spec)
        sizes, size = [], low
        while size <= high:
            sizes.append(size)
            size *= 2
        return sizes
    return [parse_size(p) for p in spec.split(",") if p.strip()]


def emit(kind, **fields):
    fields["kind"] = kind
    print("%s %s" % (MARK, json.dumps(fields, sort_keys=True)), flush=True)


def iterations(size, budget_bytes, low, high):
    """More iterations for small sizes, fewer for large ones (bounded time per size)."""
    return max(low, min(high, budget_bytes // max(size, 1)))


def _env_int(*names, default=None):
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            return int(value)
    return default


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1M:1G", help="'1M:1G' (powers of two) or '1M,64M,1G'")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--min-iters", type=int, default=5)
    ap.add_argument("--max-iters", type=int, default=50)
    ap.add_argument("--budget", default="4G", help="bytes per size that set the iterations")
    ap.add_argument("--timeout", type=int, default=300, help="rendezvous/collective timeout, s")
    ap.add_argument("--gpus-per-node", type=int, default=_env_int("GPUS_PER_NODE", default=1))
    args = ap.parse_args(argv)
    t0 = time.time()
    # before torch loads NCCL: NCCL reads NCCL_DEBUG_SUBSYS once, at its first log line
    os.environ["NCCL_DEBUG_SUBSYS"] = debug_subsys(os.environ.get("NCCL_DEBUG_SUBSYS"))
    try:
        sizes = size_list(args.sizes)
        budget = parse_size(args.budget)
    except ValueError as exc:
        emit("error", stage="arguments", error=str(exc))
        return 2
    local_rank = _env_int("LOCAL_RANK", default=0)
    node_rank = _env_int("NODE_RANK", default=0)
    rank = _env_int("RANK", default=node_rank * args.gpus_per_node + local_rank)
    world = _env_int("WORLD_SIZE", default=_env_int("NNODES", default=1) * args.gpus_per_node)
    master = "%s:%s" % (os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT"))
    pins = {k: os.environ[k] for k in PIN_KEYS if k in os.environ}
    try:
        import torch
        import torch.distributed as dist
    except ImportError as exc:
        emit("error", stage="import", rank=rank, error="PyTorch not importable: %s" % exc)
        return 3
    info = dict(rank=rank, world_size=world, local_rank=local_rank, node_rank=node_rank,
                host=socket.gethostname(), master=master, pins=pins,
                torch=torch.__version__, cuda=torch.version.cuda, nccl=None, gpu=None,
                sizes=sizes, nccl_debug=os.environ.get("NCCL_DEBUG"),
                nccl_debug_subsys=os.environ["NCCL_DEBUG_SUBSYS"])
    if not torch.cuda.is_available():
        emit("error", stage="cuda", rank=rank, error="no CUDA device visible to PyTorch")
        return 3
    try:
        info["nccl"] = ".".join(str(p) for p in torch.cuda.nccl.version())
    except (AttributeError, RuntimeError):
        pass
    torch.cuda.set_device(local_rank)
    info["gpu"] = torch.cuda.get_device_name(local_rank)
    emit("start", **info)
    if not os.environ.get("MASTER_ADDR") or not os.environ.get("MASTER_PORT"):
        emit("error", stage="rendezvous", rank=rank,
             error="MASTER_ADDR/MASTER_PORT not set: start with the node's runtime env file")
        return 3
    device = torch.device("cuda", local_rank)
    stage = "init"
    try:
        kwargs = {}
        if "device_id" in dist.init_process_group.__code__.co_varnames:
            kwargs["device_id"] = device  # eager NCCL init: its choices are logged now
        dist.init_process_group(
            backend="nccl", init_method="tcp://%s" % master, rank=rank, world_size=world,
            timeout=datetime.timedelta(seconds=args.timeout), **kwargs)
        emit("init", rank=rank, seconds=round(time.time() - t0, 3))
        peak = 0.0
        for size in sizes:
            stage = "all_reduce %d bytes" % size
            numel = size // 4
            buf = torch.empty(numel, dtype=torch.float32, device=device)
            buf.fill_(rank + 1)
            dist.all_reduce(buf)
            torch.cuda.synchronize()
            expected = world * (world + 1) / 2
            correct = bool(torch.all(buf == expected).item())
            iters = iterations(size, budget, args.min_iters, args.max_iters)
            for _ in range(args.warmup):
                dist.all_reduce(buf)
            torch.cuda.synchronize()
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                dist.all_reduce(buf)
            end.record()
            torch.cuda.synchronize()
            local_s = start.elapsed_time(end) / 1000.0 / iters
            slowest = torch.tensor([local_s], dtype=torch.float64, device=device)
            dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
            seconds = float(slowest.item())
            algbw = numel * 4 / seconds / 1e9
            busbw = algbw * 2 * (world - 1) / world if world > 1 else algbw
            peak = max(peak, busbw)
            emit("result", rank=rank, size_bytes=numel * 4, iterations=iters,
                 time_us=round(seconds * 1e6, 1), algbw_gbs=round(algbw, 3),
                 busbw_gbs=round(busbw, 3), correct=correct)
            del buf
        dist.destroy_process_group()
    except Exception as exc:  # the failure text is the finding: report it, exit non-zero
        first = (str(exc).strip().splitlines() or [""])[0][:400]
        emit("error", stage=stage, rank=rank, error="%s: %s" % (type(exc).__name__, first))
        return 3
    emit("done", rank=rank, seconds=round(time.time() - t0, 3), peak_busbw_gbs=round(peak, 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
