"""Link probes between DGX Sparks: command lines, output parsers and verdicts.

Plain Python 3.11+, stdlib only. Used by ``library/link_probe.py`` (runs one probe on
a node), ``library/link_report.py`` (verdicts on the controller) and the unit tests.
Every parser takes the raw text of a tool and returns a dict of plain values; every
verdict is a dict ``{"status": ..., "reason": ...}`` with status one of
``pass``, ``fail``, ``stale_init`` (RDMA only), ``not_measured``.

Nothing in here decides *where* a probe runs: that is the role's job.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

PASS = "pass"
FAIL = "fail"
STALE = "stale_init"
NOT_MEASURED = "not_measured"

# IPv4 (20) + ICMP (8) headers: a don't-fragment ping of MTU-28 payload bytes fills
# exactly one frame of the configured MTU.
PING_HEADER_BYTES = 28

DEFAULT_THRESHOLDS = {
    "ping_max_loss_pct": 0.0,
    "ping_max_rtt_avg_ms": 2.0,
    "mtu": 9000,
    "tcp_min_gbps": 10.0,
    "rdma_pass_gbps": 80.0,
    "rdma_stale_min_gbps": 8.0,
    "rdma_stale_max_gbps": 25.0,
    # NCCL all-reduce peak bus bandwidth (GB/s, nccl-tests' busbw). Field: 20-24 GB/s
    # with both twins, ~12 with one, ~3 when NCCL_IB_HCA/MTU/NCCL build are wrong.
    "collective_min_busbw_gbs": 10.0,
}

STALE_REMEDY = (
    "This 8-25 Gb/s band is the known 'stale initialization' state of the ConnectX-7 "
    "after boot or recabling. Remedy: reboot both Sparks; if the rate stays in this "
    "band, shut both down, remove AC power for 60 s, power on and measure again."
)

# perftest reports MB/sec in 2^20 bytes unless --report_gbits is given.
_PERFTEST_MB = 1048576


def thresholds_with_defaults(thresholds=None):
    """DEFAULT_THRESHOLDS overlaid with the given (non-None) values, as floats/ints."""
    merged = dict(DEFAULT_THRESHOLDS)
    for key, value in (thresholds or {}).items():
        if value is not None:
            merged[key] = value
    merged["mtu"] = int(merged["mtu"])
    for key in merged:
        if key != "mtu":
            merged[key] = float(merged[key])
    return merged


# --------------------------------------------------------------------------- ping

def ping_argv(target, count=10, interval=0.2, timeout=1, payload=None,
              dont_fragment=False, source=None, ping="ping"):
    """argv for iputils ping. ``payload`` is the ICMP data size (``-s``)."""
    argv = [ping, "-n", "-c", str(int(count)), "-i", str(interval), "-W", str(int(timeout))]
    if dont_fragment:
        argv += ["-M", "do"]
    if payload is not None:
        argv += ["-s", str(int(payload))]
    if source:
        argv += ["-I", str(source)]
    argv.append(str(target))
    return argv


_RE_PING_HEAD = re.compile(r"^PING \S+ \(([^)]+)\) (\d+)\((\d+)\) bytes of data", re.M)
_RE_TX = re.compile(r"(\d+) packets transmitted")
_RE_RX = re.compile(r"(\d+) (?:packets )?received")
_RE_ERR = re.compile(r"\+(\d+) errors")
_RE_DUP = re.compile(r"\+(\d+) duplicates")
_RE_LOSS = re.compile(r"([\d.]+)% packet loss")
_RE_RTT = re.compile(
    r"(?:rtt|round-trip) min/avg/max/(?:mdev|stddev) = "
    r"([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")
_RE_LOCAL_MTU = re.compile(r"message too long, mtu=(\d+)")
_RE_FRAG_MTU = re.compile(r"Frag needed and DF set \(mtu = (\d+)\)")


def parse_ping(text):
    """Parse iputils ping output (stdout and stderr joined).

    Returns transmitted/received/errors/duplicates counts, ``loss_pct`` (100.0 when
    nothing could be parsed), RTT min/avg/max/mdev in ms (None without replies),
    ``payload_bytes``/``packet_bytes`` from the header line, ``path_mtu`` when ping
    reported one (local "message too long, mtu=N" or ICMP "Frag needed"), and
    ``error_lines``: the ``ping: ...`` diagnostics.
    """
    text = text or ""
    out = {
        "target": None, "payload_bytes": None, "packet_bytes": None,
        "transmitted": 0, "received": 0, "errors": 0, "duplicates": 0,
        "loss_pct": 100.0,
        "rtt_min_ms": None, "rtt_avg_ms": None, "rtt_max_ms": None, "rtt_mdev_ms": None,
        "path_mtu": None, "error_lines": [], "parsed": False,
    }
    head = _RE_PING_HEAD.search(text)
    if head:
        out["target"] = head.group(1)
        out["payload_bytes"] = int(head.group(2))
        out["packet_bytes"] = int(head.group(3))
    stats = None
    for line in text.splitlines():
        if "packets transmitted" in line:
            stats = line
    if stats:
        out["parsed"] = True
        out["transmitted"] = int(_RE_TX.search(stats).group(1))
        rx = _RE_RX.search(stats)
        out["received"] = int(rx.group(1)) if rx else 0
        for regex, key in ((_RE_ERR, "errors"), (_RE_DUP, "duplicates")):
            match = regex.search(stats)
            if match:
                out[key] = int(match.group(1))
        loss = _RE_LOSS.search(stats)
        if loss:
            out["loss_pct"] = float(loss.group(1))
        elif out["transmitted"]:
            out["loss_pct"] = round(100.0 * (1 - out["received"] / out["transmitted"]), 3)
    rtt = _RE_RTT.search(text)
    if rtt:
        (out["rtt_min_ms"], out["rtt_avg_ms"], out["rtt_max_ms"],
         out["rtt_mdev_ms"]) = (float(v) for v in rtt.groups())
    mtu = _RE_LOCAL_MTU.search(text) or _RE_FRAG_MTU.search(text)
    if mtu:
        out["path_mtu"] = int(mtu.group(1))
    seen = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("ping:") and line not in seen:
            seen.append(line)
    out["error_lines"] = seen
    return out


def ping_verdict(parsed, thresholds=None):
    """Loss and RTT check of a normal ping."""
    th = thresholds_with_defaults(thresholds)
    if parsed is None:
        return {"status": NOT_MEASURED, "reason": "ping did not run"}
    if not parsed.get("parsed"):
        lines = "; ".join(parsed.get("error_lines") or []) or "no ping statistics in the output"
        return {"status": FAIL, "reason": "ping failed: %s" % lines}
    if parsed["received"] == 0:
        return {"status": FAIL, "reason": "no reply: %s%% loss (%d sent)"
                % (_num(parsed["loss_pct"]), parsed["transmitted"])}
    if parsed["loss_pct"] > th["ping_max_loss_pct"]:
        return {"status": FAIL, "reason": "%s%% packet loss (max %s%%)"
                % (_num(parsed["loss_pct"]), _num(th["ping_max_loss_pct"]))}
    if parsed["rtt_avg_ms"] is not None and parsed["rtt_avg_ms"] > th["ping_max_rtt_avg_ms"]:
        return {"status": FAIL, "reason": "RTT avg %s ms above %s ms"
                % (_num(parsed["rtt_avg_ms"]), _num(th["ping_max_rtt_avg_ms"]))}
    return {"status": PASS, "reason": "%s%% loss, RTT avg %s ms"
            % (_num(parsed["loss_pct"]), _num(parsed["rtt_avg_ms"]))}


def mtu_check(parsed_df, thresholds=None, local_mtu=None, peer_mtu=None):
    """Verdict of the don't-fragment ping at MTU-28 payload.

    ``local_mtu``/``peer_mtu`` are the interface MTUs read from sysfs on both ends
    (optional): a mismatch there is named even when the ping itself got through.
    """
    th = thresholds_with_defaults(thresholds)
    want = th["mtu"]
    mismatch = []
    for side, value in (("sender", local_mtu), ("receiver", peer_mtu)):
        if value is not None and int(value) != want:
            mismatch.append("%s interface MTU %s" % (side, value))
    if parsed_df is None:
        return {"status": NOT_MEASURED, "reason": "don't-fragment ping did not run",
                "expected_mtu": want}
    if parsed_df.get("path_mtu") is not None and parsed_df["path_mtu"] < want:
        return {"status": FAIL, "expected_mtu": want,
                "reason": "frames of %d bytes do not fit: ping reports mtu=%d (expected %d)%s"
                % (want, parsed_df["path_mtu"], want, _join_extra(mismatch))}
    if not parsed_df.get("parsed") or parsed_df["received"] == 0:
        return {"status": FAIL, "expected_mtu": want,
                "reason": "%d-byte don't-fragment frames are lost (%s%% loss): MTU mismatch "
                "on the path or on the peer%s" % (want, _num(parsed_df.get("loss_pct", 100.0)),
                                                   _join_extra(mismatch))}
    if parsed_df["loss_pct"] > th["ping_max_loss_pct"]:
        return {"status": FAIL, "expected_mtu": want,
                "reason": "%s%% loss of %d-byte don't-fragment frames%s"
                % (_num(parsed_df["loss_pct"]), want, _join_extra(mismatch))}
    if mismatch:
        return {"status": FAIL, "expected_mtu": want,
                "reason": "%d-byte frames pass but %s (expected %d)"
                % (want, ", ".join(mismatch), want)}
    return {"status": PASS, "expected_mtu": want,
            "reason": "%d-byte frames pass unfragmented" % want}


# ------------------------------------------------------------------------- iperf3

def iperf3_server_argv(port, bind=None, pidfile=None, one_off=True, iperf3="iperf3"):
    """argv for a daemonized iperf3 server on one port."""
    argv = [iperf3, "-s", "-p", str(int(port)), "-D"]
    if one_off:
        argv.append("-1")
    if bind:
        argv += ["-B", str(bind)]
    if pidfile:
        argv += ["-I", str(pidfile)]
    return argv


def iperf3_client_argv(target, port, duration=10, streams=1, bind=None, iperf3="iperf3"):
    """argv for one iperf3 client process with --json."""
    argv = [iperf3, "-c", str(target), "-p", str(int(port)), "-t", str(int(duration)),
            "-P", str(int(streams)), "--json"]
    if bind:
        argv += ["-B", str(bind)]
    return argv


def parse_iperf3(json_text):
    """Parse the ``--json`` output of one iperf3 client.

    iperf3 may exit 0 with an ``error`` key (3.12 does on "Connection refused"), so
    success is decided here: ``ok`` is True only with a ``sum_received`` result.
    ``gbps`` is what the receiver got, in 10^9 bit/s.
    """
    out = {"ok": False, "error": None, "gbps": None, "sent_gbps": None,
           "retransmits": None, "streams": None, "duration_s": None, "port": None,
           "version": None, "cpu_sender_pct": None, "cpu_receiver_pct": None}
    try:
        data = json.loads(json_text or "")
    except ValueError:
        first = (json_text or "").strip().splitlines()[:1]
        out["error"] = "iperf3 output is not JSON: %s" % (first[0] if first else "empty output")
        return out
    start = data.get("start") or {}
    out["version"] = start.get("version")
    out["port"] = (start.get("connecting_to") or {}).get("port")
    out["streams"] = (start.get("test_start") or {}).get("num_streams")
    if data.get("error"):
        out["error"] = str(data["error"])
        return out
    end = data.get("end") or {}
    received = end.get("sum_received") or {}
    sent = end.get("sum_sent") or {}
    if "bits_per_second" not in received:
        out["error"] = "iperf3 JSON has no end.sum_received result"
        return out
    out["ok"] = True
    out["gbps"] = round(received["bits_per_second"] / 1e9, 3)
    if "bits_per_second" in sent:
        out["sent_gbps"] = round(sent["bits_per_second"] / 1e9, 3)
    out["retransmits"] = sent.get("retransmits")
    out["duration_s"] = received.get("seconds") or sent.get("seconds")
    cpu = end.get("cpu_utilization_percent") or {}
    if "host_total" in cpu:
        out["cpu_sender_pct"] = round(cpu["host_total"], 1)
    if "remote_total" in cpu:
        out["cpu_receiver_pct"] = round(cpu["remote_total"], 1)
    return out


def sum_parallel(results):
    """Sum parsed iperf3 results of client processes that ran concurrently.

    ``ok`` only when every process succeeded; ``gbps`` is the sum over the
    successful ones (None when none succeeded).
    """
    results = list(results or [])
    good = [r for r in results if r and r.get("ok")]
    errors = [r.get("error") or "no result" for r in results if not (r and r.get("ok"))]
    retrans = [r.get("retransmits") for r in good if r.get("retransmits") is not None]
    return {
        "ok": bool(results) and len(good) == len(results),
        "processes": len(results),
        "ok_processes": len(good),
        "gbps": round(sum(r["gbps"] for r in good), 3) if good else None,
        "per_process_gbps": [r.get("gbps") if r else None for r in results],
        "retransmits": sum(retrans) if retrans else None,
        "streams_per_process": good[0].get("streams") if good else None,
        "errors": errors,
    }


def tcp_verdict(single, parallel, thresholds=None):
    """TCP check: the best of the single-stream and parallel runs against tcp_min_gbps."""
    th = thresholds_with_defaults(thresholds)
    errors = []
    if single is not None and not single.get("ok"):
        errors.append("single stream: %s" % (single.get("error") or "failed"))
    if parallel is not None and not parallel.get("ok"):
        errors.append("parallel: %s" % ("; ".join(parallel.get("errors") or []) or "failed"))
    values = [v for v in ((single or {}).get("gbps"), (parallel or {}).get("gbps"))
              if v is not None]
    if single is None and parallel is None:
        return {"status": NOT_MEASURED, "reason": "iperf3 did not run", "best_gbps": None}
    if errors:
        return {"status": FAIL, "reason": "iperf3 failed: " + "; ".join(errors),
                "best_gbps": max(values) if values else None}
    best = max(values) if values else None
    if best is None or best < th["tcp_min_gbps"]:
        return {"status": FAIL, "best_gbps": best,
                "reason": "TCP best %s Gb/s below %s Gb/s (traffic may not be on the QSFP "
                "link: the 10 GbE management port tops out near 9.4 Gb/s)"
                % (_num(best), _num(th["tcp_min_gbps"]))}
    return {"status": PASS, "best_gbps": best,
            "reason": "TCP best %s Gb/s >= %s Gb/s" % (_num(best), _num(th["tcp_min_gbps"]))}


# ---------------------------------------------------------------------------- rdma

def ib_write_bw_argv(hca, gid_index, port=18515, size=65536, duration=5, target=None,
                     qps=1, tool="ib_write_bw"):
    """argv for perftest ib_write_bw: server when ``target`` is None, else client."""
    argv = [tool, "-d", str(hca), "-x", str(int(gid_index)), "-p", str(int(port)),
            "-s", str(int(size)), "-D", str(int(duration)), "-q", str(int(qps)),
            "-F", "--report_gbits"]
    if target:
        argv.append(str(target))
    return argv


_RE_BW_HEADER = re.compile(r"BW average\[(Gb/sec|MB/sec|MiB/sec|GB/sec)\]")
_RE_BW_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")
_RE_KV = {
    "device": re.compile(r"Device\s*:\s*(\S+)"),
    "gid_index": re.compile(r"GID index\s*:\s*(\d+)"),
    "mtu": re.compile(r"\bMtu\s*:\s*(\d+)"),
    "link_type": re.compile(r"Link type\s*:\s*(\S+)"),
    "qps": re.compile(r"Number of qps\s*:\s*(\d+)"),
}
_ERROR_WORDS = ("couldn't", "unable", "failed", "error", "not found", "no such")


def _to_gbps(value, unit):
    if unit == "Gb/sec":
        return value
    if unit == "GB/sec":
        return value * 8.0
    return value * _PERFTEST_MB * 8 / 1e9  # MB/sec and MiB/sec: 2^20 bytes


def parse_ib_write_bw(text):
    """Parse perftest ib_write_bw output (client side).

    Returns ``ok`` (a result row was found), ``gbps`` (BW average of the last row,
    converted to 10^9 bit/s), ``peak_gbps``, ``rows`` and the header fields, and
    ``error`` (the diagnostic lines) when no result was printed.
    """
    text = text or ""
    out = {"ok": False, "gbps": None, "peak_gbps": None, "msg_rate_mpps": None,
           "rows": [], "device": None, "gid_index": None, "mtu": None,
           "link_type": None, "qps": None, "error": None}
    for key, regex in _RE_KV.items():
        match = regex.search(text)
        if match:
            value = match.group(1)
            out[key] = int(value) if key in ("gid_index", "mtu", "qps") else value
    unit = None
    for line in text.splitlines():
        header = _RE_BW_HEADER.search(line)
        if header:
            unit = header.group(1)
            continue
        if unit:
            row = _RE_BW_ROW.match(line)
            if row:
                size, iters, peak, avg, rate = row.groups()
                out["rows"].append({
                    "bytes": int(size), "iterations": int(iters),
                    "peak_gbps": round(_to_gbps(float(peak), unit), 3),
                    "gbps": round(_to_gbps(float(avg), unit), 3),
                    "msg_rate_mpps": float(rate)})
    if out["rows"]:
        last = out["rows"][-1]
        out.update(ok=True, gbps=last["gbps"], peak_gbps=last["peak_gbps"],
                   msg_rate_mpps=last["msg_rate_mpps"])
    else:
        errs = [ln.strip() for ln in text.splitlines()
                if any(w in ln.lower() for w in _ERROR_WORDS)]
        out["error"] = "; ".join(errs) or "no bandwidth result in ib_write_bw output"
    return out


def rdma_verdict(gbps, thresholds=None, reason=None):
    """Per-rail RDMA bands: pass >= rdma_pass_gbps; stale_init inside
    [rdma_stale_min_gbps, rdma_stale_max_gbps] (with the remedy); other values fail;
    None is ``not_measured`` (never a pass), with ``reason``."""
    th = thresholds_with_defaults(thresholds)
    if gbps is None:
        return {"status": NOT_MEASURED, "gbps": None, "remedy": None,
                "reason": reason or "RDMA not measured"}
    gbps = float(gbps)
    if gbps >= th["rdma_pass_gbps"]:
        return {"status": PASS, "gbps": gbps, "remedy": None,
                "reason": "%s Gb/s >= %s Gb/s" % (_num(gbps), _num(th["rdma_pass_gbps"]))}
    if th["rdma_stale_min_gbps"] <= gbps <= th["rdma_stale_max_gbps"]:
        return {"status": STALE, "gbps": gbps, "remedy": STALE_REMEDY,
                "reason": "%s Gb/s is in the %s-%s Gb/s stale-initialization band"
                % (_num(gbps), _num(th["rdma_stale_min_gbps"]), _num(th["rdma_stale_max_gbps"]))}
    return {"status": FAIL, "gbps": gbps, "remedy": None,
            "reason": "%s Gb/s below %s Gb/s" % (_num(gbps), _num(th["rdma_pass_gbps"]))}


# ------------------------------------------------------------------------ verdicts

def direction_verdict(checks):
    """Combine the per-check verdicts of one direction.

    ``checks``: mapping name -> verdict dict. ``fail``/``stale_init`` fail the
    direction; ``not_measured`` does not (but the direction is then ``incomplete``
    when nothing failed).
    """
    failures = ["%s: %s" % (name, v.get("reason")) for name, v in checks.items()
                if v and v.get("status") in (FAIL, STALE)]
    unmeasured = [name for name, v in checks.items()
                  if not v or v.get("status") == NOT_MEASURED]
    if failures:
        status = FAIL
    elif unmeasured:
        status = "incomplete"
    else:
        status = PASS
    return {"status": status, "failures": failures, "not_measured": unmeasured}


def rail_verdict(directions):
    """Verdict of one rail from its directions' verdicts (each from direction_verdict):
    fail if any direction failed, incomplete if any was incomplete, else pass."""
    statuses = [d.get("status") for d in directions]
    if not statuses:
        return {"status": NOT_MEASURED, "reason": "no direction measured"}
    if FAIL in statuses:
        bad = sum(1 for s in statuses if s == FAIL)
        return {"status": FAIL, "reason": "%d of %d directions failed" % (bad, len(statuses))}
    if "incomplete" in statuses:
        return {"status": "incomplete",
                "reason": "no failure, but not every check could be measured"}
    return {"status": PASS, "reason": "all %d directions pass" % len(statuses)}


def ceiling_explanation(single_gbps, parallel_gbps, processes, line_rate_gbps,
                        iperf3_version=None, rdma_gbps=None):
    """Explain which TCP ceiling is the tool's and which is the link's (one text)."""
    parts = []
    old = _iperf3_single_threaded(iperf3_version)
    tool = ("one iperf3 process is one thread (iperf3 < 3.16 runs all -P streams in "
            "that thread)" if old in (True, None) else "one iperf3 process")
    if single_gbps is not None:
        parts.append("Single stream: %s Gb/s, the ceiling of %s plus kernel TCP on one "
                     "core." % (_num(single_gbps), tool))
    if parallel_gbps is not None and processes:
        gain = (parallel_gbps / single_gbps) if single_gbps else None
        text = "%d iperf3 processes on separate ports: %s Gb/s together" % (
            processes, _num(parallel_gbps))
        if gain is not None and gain < 1.15:
            text += (" (no real gain: the CPUs / kernel TCP are the limit, not the cable)")
        elif gain is not None:
            text += " (%.1fx: the single-stream figure was the tool's ceiling)" % gain
        parts.append(text + ".")
    if line_rate_gbps:
        best = max([v for v in (single_gbps, parallel_gbps) if v is not None] or [0])
        share = 100.0 * best / line_rate_gbps
        if share > 110:
            parts.append("TCP exceeds the reported %s Gb/s line rate: the sysfs speed is "
                         "not a real limit here (virtual link)." % _num(line_rate_gbps))
        elif share >= 90:
            parts.append("TCP reaches %.0f%% of the %s Gb/s line rate: the link is the "
                         "ceiling." % (share, _num(line_rate_gbps)))
        else:
            parts.append("Line rate (the link's ceiling) is %s Gb/s; TCP uses %.0f%% of it, "
                         "so TCP numbers say nothing about the cable beyond 'it carries "
                         "traffic'. RDMA (ib_write_bw) measures the link." % (
                             _num(line_rate_gbps), share))
    if rdma_gbps is not None:
        parts.append("RDMA reached %s Gb/s." % _num(rdma_gbps))
    return " ".join(parts)


def _iperf3_single_threaded(version):
    """True for iperf3 < 3.16 (single-threaded), None when unknown."""
    match = re.search(r"(\d+)\.(\d+)", version or "")
    if not match:
        return None
    return (int(match.group(1)), int(match.group(2))) < (3, 16)


# ------------------------------------------------------------- running processes

def run_concurrently(argvs, timeout):
    """Start every argv at once, wait for all; return [(rc, stdout, stderr)].

    Used for the parallel iperf3 clients (one process per server port): they must
    overlap in time to measure more than one iperf3 thread can move.
    """
    procs = []
    for argv in argvs:
        try:
            procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
        except OSError as exc:
            procs.append(exc)
    results = []
    deadline = time.monotonic() + timeout
    for proc in procs:
        if isinstance(proc, OSError):
            results.append((127, "", str(proc)))
            continue
        try:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err = (err or "") + "\ntimed out after %ss" % timeout
        results.append((proc.returncode, out or "", err or ""))
    return results


def tcp_listening(port, proc_net=("/proc/net/tcp", "/proc/net/tcp6")):
    """True when something listens on TCP ``port`` (read from /proc, no connect,
    which would use up a one-off iperf3 server)."""
    hexport = ":%04X" % int(port)
    for path in proc_net:
        try:
            with open(path, encoding="ascii") as handle:
                next(handle, None)
                for line in handle:
                    fields = line.split()
                    if len(fields) > 3 and fields[1].endswith(hexport) and fields[3] == "0A":
                        return True
        except OSError:
            continue
    return False


def stop_pidfiles(paths):
    """SIGTERM the processes named in pidfiles (ignore dead ones), remove the files.
    Returns the pids that were signalled."""
    stopped = []
    for path in paths:
        try:
            with open(path, encoding="ascii") as handle:
                pid = int(handle.read().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if pid > 1:
            try:
                os.kill(pid, signal.SIGTERM)
                stopped.append(pid)
            except OSError:
                pass
        try:
            os.unlink(path)
        except OSError:
            pass
    return stopped


# ------------------------------------------------------------------------ helpers

def _num(value):
    if value is None:
        return "n/a"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return "%.3g" % value if abs(value) < 1 else "%.1f" % value
    return str(value)


def _join_extra(items):
    return (" (%s)" % ", ".join(items)) if items else ""
