"""Unified-memory guard of the serving start (node side, stdlib only).

A DGX Spark's GPU and CPU share one pool of memory. vLLM takes
``gpu_memory_utilization`` x total at start and fails its memory check (or, worse,
the node freezes) when that much is not free. Two field failures lead here: a start
right after the 167 GB of weights were copied (the page cache holds them), and a
restart loop that leaks unified memory. The guard, called by the pre-start check
(``runtime.prestart``) before every start:

1. reads ``/proc/meminfo``: ``MemAvailable`` (the kernel's estimate, which counts the
   reclaimable part of the page cache) and the page cache itself;
2. computes what the runtime will take: ``utilization x MemTotal + margin``;
3. drops the page cache (``sync``, ``vm.drop_caches=1``: clean pages only, nothing is
   lost) when the model's weights were written since the last start that passed the
   guard, or when only the page cache stands between the budget and a fit;
4. refuses the start, with the numbers, when the budget still does not fit.

Plain functions; ``guard()`` takes its readers as arguments so the tests drive it.
"""

from __future__ import annotations

import os

GIB = 1024 ** 3
MEMINFO = "/proc/meminfo"
DROP_CACHES = "/proc/sys/vm/drop_caches"


def parse_meminfo(text):
    """/proc/meminfo text -> {field: bytes}."""
    out = {}
    for line in str(text or "").splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if not parts:
            continue
        try:
            value = int(parts[0])
        except ValueError:
            continue
        unit = parts[1].lower() if len(parts) > 1 else ""
        out[name.strip()] = value * 1024 if unit == "kb" else value
    return out


def gib(value):
    return f"{value / GIB:.1f} GiB"


def budget(meminfo, utilization, margin_bytes):
    """What the start needs and what the node has, all in bytes.

    ``page_cache`` is Cached + Buffers + SReclaimable minus Shmem (tmpfs and shared
    memory are counted in Cached but cannot be dropped); ``could_fit`` says whether
    dropping it would make room (free + page cache >= need)."""
    for key in ("MemTotal", "MemAvailable", "MemFree"):
        if key not in meminfo:
            raise ValueError(f"{MEMINFO} has no {key} (kernel >= 3.14 reports MemAvailable)")
    utilization = float(utilization)
    if not 0 < utilization <= 1:
        raise ValueError(f"gpu_memory_utilization {utilization} is outside (0, 1]")
    if margin_bytes < 0:
        raise ValueError(f"the memory margin {margin_bytes} is negative")
    total = meminfo["MemTotal"]
    page_cache = max(0, meminfo.get("Cached", 0) + meminfo.get("Buffers", 0)
                     + meminfo.get("SReclaimable", 0) - meminfo.get("Shmem", 0))
    runtime = int(utilization * total)
    need = runtime + int(margin_bytes)
    available = meminfo["MemAvailable"]
    return {
        "total": total,
        "available": available,
        "free": meminfo["MemFree"],
        "page_cache": page_cache,
        "utilization": utilization,
        "runtime": runtime,
        "margin": int(margin_bytes),
        "need": need,
        "fits": available >= need,
        "could_fit": meminfo["MemFree"] + page_cache >= need,
    }


def describe(b):
    """One line with the numbers."""
    return (f"need {gib(b['need'])} ({b['utilization']:g} x {gib(b['total'])} total = "
            f"{gib(b['runtime'])} for the runtime + {gib(b['margin'])} margin), "
            f"available {gib(b['available'])} (MemAvailable; free {gib(b['free'])}, "
            f"page cache {gib(b['page_cache'])})")


def newest_mtime(root):
    """Newest modification time of a file under ``root`` (0 when none)."""
    newest = 0.0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
            except OSError:
                continue
    return newest


def weights_fresh(weights_dir, stamp_path):
    """True when a file under weights_dir is newer than the stamp of the last start
    that passed the guard (or there is no stamp yet and there are weights)."""
    if not weights_dir or not os.path.isdir(weights_dir):
        return False
    newest = newest_mtime(weights_dir)
    if not newest:
        return False
    try:
        return newest > os.stat(stamp_path).st_mtime
    except OSError:
        return True


def drop_page_cache(path=DROP_CACHES):
    """sync, then drop clean page cache. Returns '' or the error text."""
    try:
        os.sync()
        with open(path, "w", encoding="ascii") as handle:
            handle.write("1\n")
        return ""
    except OSError as exc:
        return f"{exc.strerror or exc} ({path})"


def touch(path):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a", encoding="ascii"):
        pass
    os.utime(path, None)


def guard(utilization, margin_gib, weights_dir=None, stamp_path=None, read_meminfo=None,
          drop=drop_page_cache, check_only=False):
    """Run the guard. Returns (ok, lines): lines for the journal; when not ok the last
    line says what to do."""
    if read_meminfo is None:
        def read_meminfo():
            with open(MEMINFO, encoding="ascii") as handle:
                return handle.read()
    margin = int(float(margin_gib) * GIB)
    b = budget(parse_meminfo(read_meminfo()), utilization, margin)
    lines = []
    fresh = bool(stamp_path) and weights_fresh(weights_dir, stamp_path)
    if fresh or (not b["fits"] and b["could_fit"]):
        why = ("the model's weights were written since the last start" if fresh
               else "only the page cache stands between the budget and a fit")
        if check_only:
            lines.append(f"memory: would drop the page cache ({why}); --check-only: not dropped")
        else:
            error = drop()
            if error:
                lines.append(f"memory: could not drop the page cache ({why}): {error}")
            else:
                before = b
                b = budget(parse_meminfo(read_meminfo()), utilization, margin)
                lines.append(f"memory: dropped the page cache ({why}): available "
                             f"{gib(before['available'])} -> {gib(b['available'])}")
    if not b["fits"]:
        lines.append(f"memory: refusing to start: {describe(b)}, short by {gib(b['need'] - b['available'])}")
        lines.append("memory: free memory on this node (stop what else runs, check for a leaked "
                     "runtime: docker ps, nvidia-smi), or lower serving_gpu_memory_utilization / "
                     "serving_memory_margin_gib, then start again")
        return False, lines
    lines.append(f"memory: ok: {describe(b)}")
    if stamp_path and not check_only:
        try:
            touch(stamp_path)
        except OSError as exc:
            lines.append(f"memory: cannot write the stamp {stamp_path}: {exc}")
    return True, lines
