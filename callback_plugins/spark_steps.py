"""Callback: the record of each step of a run (plays' start and end, the background steps'
launch and finish) in reports/steps-<UTC>.json, steps-latest.json and steps-latest.md.

The logic lives in module_utils/spark_cluster/reports/steps.py; this file only feeds it.
The record is written at the end of every run, a failed one included (v2_playbook_on_stats);
a run that changes nothing still writes one. Set SPARK_STEPS_DIR to write elsewhere; the
newest SPARK_STEPS_KEEP (default 50) stamped records are kept, older ones removed.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: spark_steps
type: aggregate
short_description: Record each step's start and end in reports/steps-*.json and .md
description:
  - Records the start and end of every play (plays named "<step> - <what>" share a step)
    and the launch and finish of steps that tasks mark with a fact holding C(spark_step)
    and C(event) (launched, finished, failed).
  - Writes reports/steps-<UTC>.json, reports/steps-latest.json and reports/steps-latest.md at
    the end of the run, also when it failed.
requirements:
  - enabled in ansible.cfg (callbacks_enabled)
options: {}
"""

import json
import os
import pathlib
import sys
import time

from ansible.plugins.callback import CallbackBase

_ROOT = pathlib.Path(__file__).resolve().parents[1]
_MODULE_UTILS = str(_ROOT / "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.append(_MODULE_UTILS)

from spark_cluster.reports import steps as spark_steps  # noqa: E402


def write_record(record, directory, t, keep=spark_steps.KEEP):
    """reports/steps-<stamp>.json, steps-latest.json and steps-latest.md; the paths written.
    Only the newest `keep` stamped records stay (SPARK_STEPS_KEEP)."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=2) + "\n"
    paths = [directory / f"steps-{spark_steps.stamp(t)}.json", directory / "steps-latest.json",
             directory / "steps-latest.md"]
    for path, content in zip(paths, (text, text, spark_steps.steps_markdown(record))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(content)
        os.replace(tmp, path)
    for name in spark_steps.stale_records(os.listdir(directory), keep):
        (directory / name).unlink(missing_ok=True)
    return paths


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "spark_steps"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._recorder = spark_steps.StepRecorder()
        self._directory = os.environ.get("SPARK_STEPS_DIR") or str(_ROOT / "reports")

    def v2_playbook_on_play_start(self, play):
        self._recorder.play_start(play.get_name(), time.time())

    def v2_runner_on_ok(self, result):
        # only set_fact and registered results are looked at: a dict lookup per task
        marks = spark_steps.find_marks(result._result)
        for mark in marks:
            self._recorder.mark(result._host.get_name(), mark, time.time())

    def v2_playbook_on_stats(self, stats):
        now = time.time()
        failed = any(stats.failures.values()) or any(stats.dark.values())
        record = self._recorder.finish(now, ok=not failed)
        try:
            paths = write_record(record, self._directory, now,
                                 int(os.environ.get("SPARK_STEPS_KEEP") or spark_steps.KEEP))
        except OSError as err:
            self._display.warning(f"spark_steps: the record of the steps was not written: {err}")
            return
        self._display.display(f"steps of this run: {paths[-1]} (also {paths[0].name})")
