"""Time to serving: where the last start of the runtime went, from its journal.

Input: ``journalctl -u spark-runtime -o json --since <the unit's InactiveExitTimestamp>``
(one JSON object a line; the unit runs ``docker compose up`` attached, so the runtime's
own log lines are in its journal, prefixed by the compose service name). Each start-up
phase (``spark_serving.PHASE_PATTERNS``: rendezvous, shard loading, torch.compile,
autotune / JIT, KV cache, CUDA graph capture, engine init, ready) is timed from the
first line that shows it; the first answered completion (an access-log line
``"POST /v1/chat/completions ..." 200``) marks the first token served. Phases are summed
into the groups a user asks about: before loading, load, compile + autotune/JIT,
KV cache + graph capture, and ready to first completion.

Plain Python 3.11+, stdlib only.
"""

from __future__ import annotations

import datetime
import json
import re

from ..runtime.serving import PHASE_LABELS, PHASE_PATTERNS, strip_prefix

FIRST_COMPLETION_RE = re.compile(r'"POST /v1/(?:chat/)?completions HTTP/[0-9.]+" 200')
GROUPS = (
    ("before loading (pre-start check, container, rendezvous)", ("starting", "rendezvous")),
    ("load weights", ("loading", "loaded")),
    ("torch.compile, autotune / JIT", ("compile", "autotune")),
    ("KV cache, CUDA graph capture, engine init", ("kv_cache", "cuda_graphs", "engine_init")),
    ("ready to first completion", ("ready",)),
)


def _message(entry):
    msg = entry.get("MESSAGE")
    if isinstance(msg, list):  # journald sends non-UTF-8 messages as byte arrays
        msg = bytes(v for v in msg if isinstance(v, int) and 0 <= v < 256).decode("utf-8", "replace")
    return str(msg or "")


def journal_entries(text):
    """``journalctl -o json`` output -> [(seconds since the epoch, message)]."""
    out = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            entry = json.loads(line)
            stamp = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
        except (ValueError, KeyError, TypeError):
            continue
        out.append((stamp, _message(entry)))
    return out


def time_to_serving(entries):
    """Phases of the start the entries cover (they begin at the unit's start).

    Returns {started_at, phases: [{phase, label, at_s, duration_s}], groups: [{name,
    duration_s}], ready_s, first_completion_s, lines} or {} without entries. A phase's
    duration runs to the next phase seen; the last one's to the first completion."""
    if not entries:
        return {}
    t0 = entries[0][0]
    first = {}
    completion = None
    for stamp, message in entries:
        line = strip_prefix(message)
        for name, pattern in PHASE_PATTERNS:
            if pattern.search(line):
                first.setdefault(name, stamp)
                break
        if completion is None and "ready" in first and FIRST_COMPLETION_RE.search(line):
            completion = stamp
    first.setdefault("starting", t0)
    ordered = sorted(first.items(), key=lambda kv: kv[1])
    phases = []
    for i, (name, stamp) in enumerate(ordered):
        end = ordered[i + 1][1] if i + 1 < len(ordered) else completion
        phases.append({"phase": name, "label": PHASE_LABELS.get(name, name),
                       "at_s": round(stamp - t0, 3),
                       "duration_s": round(end - stamp, 3) if end is not None else None})
    groups = []
    for label, names in GROUPS:
        spans = [p["duration_s"] for p in phases if p["phase"] in names]
        if spans:
            groups.append({"name": label,
                           "duration_s": round(sum(s for s in spans if s is not None), 3)
                           if any(s is not None for s in spans) else None})
    return {
        "started_at": datetime.datetime.fromtimestamp(t0, datetime.timezone.utc)
        .strftime("%Y-%m-%dT%H:%M:%SZ"),
        "phases": phases,
        "groups": groups,
        "ready_s": round(first["ready"] - t0, 3) if "ready" in first else None,
        "first_completion_s": round(completion - t0, 3) if completion is not None else None,
        "lines": len(entries),
    }
