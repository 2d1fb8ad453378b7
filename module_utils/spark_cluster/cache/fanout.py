"""Weights fan-out: a worker pulls the head's hub cache over the rails with several rsync
streams at once, and checks each blob against its hash as soon as it has arrived, while
the other files are still on the wire (stdlib only; installed in spark_lib_dir by
roles/hf_cache and run on each worker).

    python3 -m spark_cluster.node.fanout --source rsync://192.168.100.10:873/hf-hub/ \
        --source rsync://192.168.101.10:873/hf-hub/ --dest /var/lib/spark-hf/hub \
        --streams 4 -- --archive --partial-dir=.rsync-partial ...

1. plan: one dry run lists the files that differ (and their sizes);
2. copy: the files go out to ``--streams`` rsync processes at a time, one file each,
   largest first, stream i from source i % len(sources) (both rails when two are given);
3. check: a blob named by its hash (sha256 or git sha1) is hashed when its rsync ends,
   in a thread beside the copies (the page cache still holds it: no second disk read);
   a mismatching blob is removed and pulled once more, then must match;
4. finish: one ordinary pass for the links, directories and anything left, whose itemized
   lines are printed like a plain pull's.

Progress every ``--progress-seconds``: bytes, rate and ETA. Exit 0 when everything arrived
and every blob checked matches; the last line is a JSON summary."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .rules import HEX40, HEX64, file_sha256, git_blob_sha1


def parse_plan(text):
    """Files a dry run (``--out-format='%i %l %n'``) would receive: [(name, size)]."""
    files = []
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0].startswith(">f") and parts[1].isdigit():
            files.append((parts[2], int(parts[1])))
    return files


def assign(files, sources):
    """Largest first, round-robin over the sources: [(name, size, source)]."""
    ordered = sorted(files, key=lambda f: (-f[1], f[0]))
    return [(name, size, sources[i % len(sources)]) for i, (name, size) in enumerate(ordered)]


def expected_hash(name):
    """The hash a blob's file name promises (hub layout: blobs/<sha256 or git sha1>)."""
    base = os.path.basename(name)
    if os.path.basename(os.path.dirname(name)) != "blobs":
        return None
    if HEX64.match(base):
        return "sha256", base
    if HEX40.match(base):
        return "git", base
    return None


def check_blob(path, name):
    """True when the file's content matches its name's hash, or the name promises none."""
    want = expected_hash(name)
    if want is None:
        return True
    actual = file_sha256(path) if want[0] == "sha256" else git_blob_sha1(path)
    return actual == want[1]


def progress_line(done, total, seconds):
    rate = done * 8 / seconds / 1e9 if seconds > 0 else 0.0
    eta = (total - done) * 8 / (rate * 1e9) if rate > 0 else float("inf")
    eta_text = f"{eta:.0f} s" if eta != float("inf") else "unknown"
    pct = 100.0 * done / total if total else 100.0
    return f"spark-fanout: {done / 1e9:.2f} of {total / 1e9:.2f} GB ({pct:.0f}%), {rate:.2f} Gb/s, ETA {eta_text}"


def arrived_bytes(dest, plan, finished):
    """Bytes of the planned files at dest so far: finished files whole, the ones in flight
    by their temporary (``.name.XXXXXX``) or partial-dir files."""
    total = 0
    for name, size, _ in plan:
        if name in finished:
            total += size
            continue
        directory = os.path.join(dest, os.path.dirname(name))
        base = os.path.basename(name)
        for candidate in (os.path.join(directory, ".rsync-partial", base),):
            try:
                total += os.path.getsize(candidate)
            except OSError:
                pass
        try:
            for entry in os.scandir(directory):
                if entry.name.startswith(f".{base}.") and entry.is_file():
                    total += entry.stat().st_size
        except OSError:
            pass
    return total


def without_itemize(rsync_args):
    """The options of the dry run and the per-file copies (their own output format)."""
    return [a for a in rsync_args if a not in ("--itemize-changes", "-i")]


def run(argv, capture=True):
    done = subprocess.run(argv, capture_output=capture, text=True)
    return done.returncode, done.stdout or "", done.stderr or ""


def pull(sources, dest, streams, rsync_args, progress_seconds=10, say=print):
    """The whole fan-out; returns the summary dict (ok, files, bytes, seconds, refetched, ...)."""
    dest = dest.rstrip("/") + "/"
    quiet_args = without_itemize(rsync_args)
    rc, out, err = run(["rsync", *quiet_args, "--dry-run", "--out-format=%i %l %n", sources[0], dest])
    if rc != 0:
        return {"ok": False, "error": f"dry run against {sources[0]} failed (rc {rc}): {err.strip()[-500:]}"}
    plan = assign(parse_plan(out), sources)
    total = sum(size for _, size, _ in plan)
    say(f"spark-fanout: {len(plan)} file(s), {total / 1e9:.2f} GB to copy, {min(streams, max(len(plan), 1))} stream(s) "
        f"from {', '.join(sources)}")
    finished, bad, failed, refetched = set(), [], [], []
    lock = threading.Lock()
    t0 = time.monotonic()
    stop = threading.Event()

    def report():
        while not stop.wait(progress_seconds):
            with lock:
                done = set(finished)
            say(progress_line(arrived_bytes(dest, plan, done), total, time.monotonic() - t0))

    def copy_and_check(item, checker):
        name, _size, source = item
        os.makedirs(os.path.dirname(dest + name), exist_ok=True)
        for attempt in (1, 2):
            rc, _out, err = run(["rsync", *quiet_args, source + name, dest + name])
            if rc != 0:
                with lock:
                    failed.append(f"{name}: rsync rc {rc} from {source}: {err.strip()[-300:]}")
                return
            with lock:
                finished.add(name)
            if checker.submit(check_blob, dest + name, name).result():
                return
            if attempt == 1:
                with lock:
                    refetched.append(name)
                    finished.discard(name)
                os.unlink(dest + name)
        with lock:
            bad.append(name)

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(4, streams))) as checker, \
                ThreadPoolExecutor(max_workers=max(1, streams)) as copier:
            list(copier.map(lambda item: copy_and_check(item, checker), plan))
    finally:
        stop.set()
    seconds = time.monotonic() - t0
    if plan:
        say(progress_line(total if not (failed or bad) else arrived_bytes(dest, plan, finished), total, seconds))
    rc, out, err = run(["rsync", *quiet_args, "--itemize-changes", sources[0], dest])
    final_lines = [line for line in out.splitlines() if line.strip()]
    summary = {
        "ok": rc == 0 and not failed and not bad,
        "files": len(plan), "bytes": total, "seconds": round(seconds, 3),
        "gbps": round(total * 8 / seconds / 1e9, 3) if plan and seconds > 0 else 0.0,
        "streams": streams, "sources": sources,
        "refetched": refetched, "bad": bad, "failed": failed,
        "changed": bool(plan) or bool(final_lines),
    }
    if rc != 0:
        summary["error"] = f"final pass against {sources[0]} failed (rc {rc}): {err.strip()[-500:]}"
    for line in final_lines:
        say(line)
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(prog="spark_fanout.py", description=__doc__.split("\n")[0])
    parser.add_argument("--source", action="append", required=True, help="rsync://ADDRESS:PORT/MODULE/ (one per rail)")
    parser.add_argument("--dest", required=True)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--progress-seconds", type=float, default=10.0)
    parser.add_argument("rsync_args", nargs=argparse.REMAINDER, help="-- then the rsync options of every pass")
    args = parser.parse_args(argv)
    rsync_args = [a for a in args.rsync_args if a != "--"]
    summary = pull(args.source, args.dest, args.streams, rsync_args, args.progress_seconds,
                   say=lambda line: print(line, flush=True))
    print(json.dumps(summary), flush=True)
    return 0 if summary["ok"] else 1
