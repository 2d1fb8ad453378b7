"""The record of a run's steps: each play's start and end, and the background steps'
launch and finish (the start and wait tasks mark them), written to reports/ by the
controller callback callback_plugins/spark_steps.py.

Pure functions over plain data (times are UTC seconds since the epoch):

    recorder = StepRecorder(); recorder.play_start(name, t); recorder.mark(host, mark, t)
    record = recorder.finish(t, ok)      -> {'started', 'ended', 'ok', 'steps', 'overlaps'}
    steps_markdown(record)               -> a Markdown table of the steps
    step_name(play_name)                 -> the step a play belongs to ("Serving - x" -> "Serving")
    find_marks(result)                   -> the step marks a task result carries
"""

from __future__ import annotations

import datetime

# The background steps and the events their tasks mark, in order
MARK_KEY = "spark_step"
EVENTS = ("launched", "finished", "failed")


def step_name(play_name):
    """The step of a play: its name up to the first ' - ' (plays of one step share it)."""
    name = (play_name or "").strip() or "(unnamed play)"
    return name.split(" - ", 1)[0].strip()


def find_marks(result):
    """The step marks in a task result: a dict carrying 'spark_step' (and 'event') either
    at the top of the result or as the value of a fact the task set (set_fact)."""
    if not isinstance(result, dict):
        return []
    candidates = [result] + list((result.get("ansible_facts") or {}).values())
    marks = []
    for value in candidates:
        if isinstance(value, dict) and isinstance(value.get(MARK_KEY), str) and value.get("event") in EVENTS:
            marks.append({"step": value[MARK_KEY], "event": value["event"]})
    return marks


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp(t):
    """The record's file name part: reports/steps-<stamp>.json."""
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


# stamped records kept in reports/ (every playbook run writes one; the tests run hundreds)
KEEP = 50


def stale_records(names, keep=KEEP):
    """The stamped record names (steps-<stamp>.json) beyond the newest `keep`, oldest first:
    what the callback removes after writing a new one (steps-latest.* are never among them)."""
    stamped = sorted(n for n in names if n.startswith("steps-") and n.endswith(".json") and n != "steps-latest.json")
    return stamped[:max(len(stamped) - keep, 0)]


class StepRecorder:
    """Collects plays and marks as the callback sees them; finish() gives the record."""

    def __init__(self, started=None):
        self.started = started
        self._plays = []        # [{'step', 'start', 'end'}] in order
        self._background = {}   # step -> {'launched', 'finished', 'failed', 'hosts'}

    def play_start(self, play_name, t):
        if self.started is None:
            self.started = t
        self._close_play(t)
        self._plays.append({"step": step_name(play_name), "start": t, "end": None})

    def _close_play(self, t):
        if self._plays and self._plays[-1]["end"] is None:
            self._plays[-1]["end"] = t

    def mark(self, host, mark, t):
        """A background step's event on one host: the first launch and the last finish count."""
        entry = self._background.setdefault(mark["step"], {"launched": None, "finished": None,
                                                           "failed": None, "hosts": []})
        if host not in entry["hosts"]:
            entry["hosts"].append(host)
        event = mark["event"]
        if event == "launched":
            entry["launched"] = t if entry["launched"] is None else min(entry["launched"], t)
        else:
            entry[event] = t if entry[event] is None else max(entry[event], t)

    def finish(self, t, ok):
        self._close_play(t)
        started = self.started if self.started is not None else t
        steps = []
        by_name = {}
        for play in self._plays:
            if play["step"] in by_name:  # plays of one step (also apart): first start, last end
                entry = by_name[play["step"]]
                entry["end"] = max(entry["end"], play["end"])
                continue
            entry = {"step": play["step"], "kind": "play", "start": play["start"], "end": play["end"]}
            by_name[play["step"]] = entry
            steps.append(entry)
        for name, bg in self._background.items():
            end = bg["finished"] if bg["finished"] is not None else bg["failed"]
            steps.append({"step": name, "kind": "marked", "start": bg["launched"], "end": end,
                          "hosts": sorted(bg["hosts"]),
                          "state": ("failed" if bg["failed"] is not None and bg["finished"] is None
                                    else "finished" if end is not None
                                    else "unfinished" if bg["launched"] is not None else "unknown")})
        for entry in steps:
            entry["seconds"] = (round(entry["end"] - entry["start"], 1)
                                if entry["start"] is not None and entry["end"] is not None else None)
            entry["offset_s"] = round(entry["start"] - started, 1) if entry["start"] is not None else None
            entry["start_utc"] = iso(entry["start"]) if entry["start"] is not None else None
            entry["end_utc"] = iso(entry["end"]) if entry["end"] is not None else None
        return {"started": iso(started), "ended": iso(t), "seconds": round(t - started, 1), "ok": bool(ok),
                "steps": steps, "overlaps": overlaps(steps)}


def overlaps(steps):
    """Seconds each pair of background steps ran at the same time ({'a/b': s}, > 0 only)."""
    background = [s for s in steps if s["kind"] == "marked" and s["start"] is not None]
    found = {}
    for i, first in enumerate(background):
        for second in background[i + 1:]:
            end_a = first["end"] if first["end"] is not None else float("inf")
            end_b = second["end"] if second["end"] is not None else float("inf")
            seconds = min(end_a, end_b) - max(first["start"], second["start"])
            if seconds > 0 and seconds != float("inf"):
                found[first["step"] + "/" + second["step"]] = round(seconds, 1)
    return found


def _cell(value):
    return "-" if value is None else str(value)


def steps_markdown(record):
    """The record as a Markdown table (offsets from the run's start, durations in seconds)."""
    lines = [
        f"# Steps of the run started {record['started']} ({'ok' if record['ok'] else 'FAILED'}, "
        f"{record['seconds']} s)",
        "",
        "Plays: start and end. Marked steps: launched (the start task) and seen finished (the wait); the background download and image run between them.",
        "",
        "| step | kind | start (+s) | end (UTC) | seconds | note |",
        "|---|---|---|---|---|---|",
    ]
    for step in record["steps"]:
        note = ""
        if step["kind"] == "marked":
            note = f"{step['state']} on {', '.join(step['hosts'])}"
        lines.append(f"| {step['step']} | {step['kind']} | {_cell(step['offset_s'])} | {_cell(step['end_utc'])} "
                     f"| {_cell(step['seconds'])} | {note} |")
    if record["overlaps"]:
        lines += ["", "Marked steps running at the same time: "
                  + ", ".join(f"{pair} {seconds} s" for pair, seconds in record["overlaps"].items()) + "."]
    return "\n".join(lines) + "\n"
