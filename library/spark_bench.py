#!/usr/bin/python
"""Ansible module: benchmark the serving API (decode tok/s, draft acceptance) and report."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: spark_bench
short_description: Benchmark the vLLM API (decode tok/s, speculative-decoding acceptance)
description:
  - Streams chat completions to the OpenAI-compatible API of the head with thinking on
    and off, and measures per run TTFT, decode tok/s and output tokens, plus the
    speculative-decoding counter deltas of C(/metrics) around the run (drafts, draft
    tokens, accepted tokens, acceptance rate, mean accepted tokens per draft, per-position
    rates). Logic in C(module_utils/spark_cluster/reports/bench_data.py) (pure) and
    C(module_utils/spark_cluster/reports/bench_client.py) (HTTP).
  - "Runs the HTTP work from where it executes: use C(delegate_to: localhost) with
    C(ansible_python_interpreter: '{{ ansible_playbook_python }}') (httpx and
    prometheus_client come from the controller venv)."
  - C(action=preflight) only checks (server up and C(/health) 200, C(bench_model) in
    C(/v1/models), spec-decode counters in C(/metrics)) and fails with a message saying
    what to do. C(action=measure) runs the checks then one prompt in one mode
    C(repetitions) times. C(action=report) builds the report from measured runs and writes
    C(<report_dir>/bench-<UTC stamp>.{json,md,png}) and C(bench-latest.*).
    C(action=all) does all three for every prompt and mode.
  - Never reports zeros for a server that is down, serves another model or has
    speculative decoding off; it fails before measuring.
  - In check mode only the refusal checks run (no load, nothing written).
version_added: "1.0.0"
author: spark-cluster project
requirements: [httpx, prometheus_client, matplotlib (PNG only)]
options:
  action:
    description: What to do (see description).
    type: str
    choices: [preflight, measure, report, all]
    default: all
  api_url:
    description: Base URL of the API, e.g. C(http://192.168.100.10:8888) (no C(/v1)).
    type: str
  api_key:
    description: Bearer token; defaults to the environment variable C(SPARK_API_KEY).
    type: str
  model:
    description: The served model name that C(/v1/models) must list.
    type: str
    default: deepseek-ai/DeepSeek-V4-Flash-DSpark
  prompt:
    description:
      - For C(action=measure), the prompt key (C(medium), C(long), C(reasoning_code)) or
        a literal prompt text.
    type: str
  thinking:
    description: For C(action=measure), thinking on (C(true)) or off.
    type: bool
  prompts:
    description: For C(action=all), the prompt keys to run.
    type: list
    elements: str
    default: [medium, long, reasoning_code]
  repetitions:
    description: Runs per prompt and mode.
    type: int
    default: 3
  max_tokens:
    description: C(max_tokens) of each request.
    type: int
    default: 1024
  temperature:
    description: Sampling temperature; omitted from the request when not set.
    type: float
  reasoning_effort_on:
    description: C(reasoning_effort) sent with thinking on (empty = not sent).
    type: str
    default: high
  reasoning_effort_off:
    description: C(reasoning_effort) sent with thinking off (empty = not sent).
    type: str
    default: none
  include_usage:
    description: Ask for C(stream_options.include_usage); tokens are counted from deltas otherwise.
    type: bool
    default: true
  timeout:
    description: Seconds a request may take.
    type: float
    default: 600
  runs:
    description:
      - For C(action=report), the measured runs, as registered C(measure) results (a loop
        result with C(results), a list of them, or a flat list of run dicts).
    type: raw
  server:
    description: For C(action=report), the C(server) return value of C(action=preflight).
    type: dict
    default: {}
  report_dir:
    description: Directory of the report files (created). Needed for C(report) and C(all).
    type: path
  formats:
    description: Which report files to write.
    type: list
    elements: str
    choices: [json, md, png]
    default: [json, md, png]
  fail_on_errors:
    description: Fail (after writing the report) when any run failed.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Refuse early when the server is not ready
  spark_bench:
    action: preflight
    api_url: http://192.168.100.10:8888
    model: deepseek-ai/DeepSeek-V4-Flash-DSpark
  delegate_to: localhost
  register: bench_server

- name: One prompt, thinking off, three runs
  spark_bench:
    action: measure
    api_url: http://192.168.100.10:8888
    prompt: reasoning_code
    thinking: false
    repetitions: 3
  delegate_to: localhost
  register: bench_off

- name: Write the report
  spark_bench:
    action: report
    runs: "{{ [bench_off] }}"
    server: "{{ bench_server.server }}"
    report_dir: "{{ playbook_dir }}/reports"
  delegate_to: localhost
"""

RETURN = r"""
server:
  description: What the checks found (C(api_url), C(model), C(models), C(health), C(metrics) snapshot).
  returned: for preflight, measure and all
  type: dict
refusal:
  description: Why the benchmark refused (C(server_down), C(not_healthy), C(unauthorized), C(wrong_model), C(no_spec_decode), C(bad_effort)).
  returned: on refusal
  type: str
runs:
  description: One dict per run (C(ttft_s), C(decode_tok_s), C(output_tokens), C(output_tokens_source), C(metrics_delta), rates, C(content_null), C(error)).
  returned: for measure and all
  type: list
  elements: dict
summary:
  description: One line per prompt and mode (decode tok/s, acceptance).
  returned: for measure, report and all
  type: list
  elements: str
report:
  description: The full report (what the JSON file holds, schema C(spark-bench-report) v1).
  returned: for report and all
  type: dict
paths:
  description: Written files, keys C(json), C(md), C(png), C(latest_json), ...
  returned: for report and all, unless check mode
  type: dict
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

try:
    import httpx  # noqa: F401  (presence check; used by module_utils)
    HTTPX_ERR = None
except ImportError:
    HTTPX_ERR = traceback.format_exc()
try:
    import prometheus_client  # noqa: F401
    PROM_ERR = None
except ImportError:
    PROM_ERR = traceback.format_exc()

from ansible.module_utils.spark_cluster.reports.bench_client import BenchClient  # noqa: E402
from ansible.module_utils.spark_cluster.reports.bench_data import (  # noqa: E402
    PROMPTS, BenchRefusal, aggregate, build_report, check_efforts, write_report,
)


def flatten_runs(runs):
    """Runs from registered results: a loop result, a list of results, or run dicts."""
    out = []
    if isinstance(runs, dict):
        runs = runs.get("results", [runs]) if "results" in runs else [runs]
    for item in runs or []:
        if not isinstance(item, dict) or item.get("skipped"):
            continue
        if "results" in item:
            out += flatten_runs(item["results"])
        elif "runs" in item:
            out += [r for r in item["runs"] or [] if isinstance(r, dict)]
        elif "prompt" in item and "thinking" in item:
            out.append(item)
    return out


def summary_lines(runs):
    cells, _ = aggregate(runs)
    lines = []
    for c in cells:
        acc = c["acceptance_rate"]
        lines.append("%s thinking %s: %d/%d ok, decode %s tok/s, TTFT %s s, acceptance %s, "
                     "accepted/draft %s%s" % (
                         c["prompt"], c["thinking"].upper(), c["ok_runs"], c["runs"],
                         "n/a" if c["decode_tok_s"] is None else "%.2f" % c["decode_tok_s"],
                         "n/a" if c["ttft_s"] is None else "%.3f" % c["ttft_s"],
                         "n/a" if acc is None else "%.1f%%" % (100 * acc),
                         "n/a" if c["mean_accepted_per_draft"] is None
                         else "%.2f" % c["mean_accepted_per_draft"],
                         ", content null in %d run(s)" % c["content_null_runs"]
                         if c["content_null_runs"] else ""))
    return lines


def settings_of(p):
    return {"repetitions": p["repetitions"], "max_tokens": p["max_tokens"],
            "temperature": p["temperature"], "reasoning_effort_on": p["reasoning_effort_on"],
            "reasoning_effort_off": p["reasoning_effort_off"],
            "include_usage": p["include_usage"]}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            action=dict(type="str", choices=["preflight", "measure", "report", "all"],
                        default="all"),
            api_url=dict(type="str"),
            api_key=dict(type="str", no_log=True, fallback=(env_fallback, ["SPARK_API_KEY"])),
            model=dict(type="str", default="deepseek-ai/DeepSeek-V4-Flash-DSpark"),
            prompt=dict(type="str"),
            thinking=dict(type="bool"),
            prompts=dict(type="list", elements="str",
                         default=["medium", "long", "reasoning_code"]),
            repetitions=dict(type="int", default=3),
            max_tokens=dict(type="int", default=1024),
            temperature=dict(type="float"),
            reasoning_effort_on=dict(type="str", default="high"),
            reasoning_effort_off=dict(type="str", default="none"),
            include_usage=dict(type="bool", default=True),
            timeout=dict(type="float", default=600),
            runs=dict(type="raw"),
            server=dict(type="dict", default={}),
            report_dir=dict(type="path"),
            formats=dict(type="list", elements="str", choices=["json", "md", "png"],
                         default=["json", "md", "png"]),
            fail_on_errors=dict(type="bool", default=True),
        ),
        required_if=[
            ("action", "preflight", ("api_url",)),
            ("action", "measure", ("api_url", "prompt", "thinking")),
            ("action", "report", ("runs", "report_dir")),
            ("action", "all", ("api_url", "report_dir")),
        ],
        supports_check_mode=True,
    )
    p = module.params
    action = p["action"]
    if p["repetitions"] < 1:
        module.fail_json(msg="repetitions must be >= 1, got %d" % p["repetitions"])
    if action != "report":
        for lib, err in (("httpx", HTTPX_ERR), ("prometheus_client", PROM_ERR)):
            if err:
                module.fail_json(msg=missing_required_lib(lib) + " (run the benchmark from "
                                 "the controller venv: delegate_to localhost with "
                                 "ansible_python_interpreter={{ ansible_playbook_python }})",
                                 exception=err)
    result = dict(changed=False)

    if action == "report":
        runs = flatten_runs(p["runs"])
        if not runs and module.check_mode:
            module.exit_json(msg="check mode: nothing was measured, no report written",
                             **result)
        if not runs:
            module.fail_json(msg="no measured runs to report (were the measure tasks skipped?)")
        finish(module, p, runs, p["server"], result)

    try:
        check_efforts(p["reasoning_effort_on"], p["reasoning_effort_off"])
    except BenchRefusal as exc:
        module.fail_json(msg=str(exc), refusal=exc.reason)
    if action == "all":
        unknown = [x for x in p["prompts"] if x not in PROMPTS]
        if unknown:
            module.fail_json(msg="unknown prompt key(s) %s; known: %s"
                             % (unknown, ", ".join(PROMPTS)))
    try:
        client = BenchClient(p["api_url"], p["model"], api_key=p["api_key"],
                             timeout=p["timeout"])
    except Exception as exc:  # bad URL and the like  # pylint: disable=broad-except
        module.fail_json(msg="cannot talk to %s: %s" % (p["api_url"], exc))
    with client:
        try:
            server = client.preflight()
        except BenchRefusal as exc:
            module.fail_json(msg=str(exc), refusal=exc.reason)
        result["server"] = server
        if action == "preflight" or module.check_mode:
            if module.check_mode and action != "preflight":
                result["msg"] = "check mode: the server passed the checks; nothing measured"
            module.exit_json(**result)

        effort = {True: p["reasoning_effort_on"], False: p["reasoning_effort_off"]}
        if action == "measure":
            plan = [(p["prompt"], p["thinking"])]
        else:
            plan = [(prompt, thinking) for prompt in p["prompts"] for thinking in (True, False)]
        runs = []
        for prompt, thinking in plan:
            runs += client.run(prompt, thinking, effort[thinking], p["repetitions"],
                               p["max_tokens"], p["temperature"], p["include_usage"])
    result["runs"] = runs
    if action == "measure":
        result["summary"] = summary_lines(runs)
        failed = [r["error"] for r in runs if r.get("error")]
        if failed and len(failed) == len(runs) and p["fail_on_errors"]:
            module.fail_json(msg="every run failed: %s" % failed[0], **result)
        module.exit_json(**result)
    finish(module, p, runs, server, result)


def finish(module, p, runs, server, result):
    settings = settings_of(p)
    try:
        report = build_report(runs, settings=settings, server=server)
    except (KeyError, TypeError, ValueError) as exc:
        module.fail_json(msg="cannot build the bench report: %s" % exc,
                         exception=traceback.format_exc())
    result.update(report=report, summary=summary_lines(runs))
    if not module.check_mode:
        try:
            result["paths"] = write_report(report, p["report_dir"], formats=p["formats"])
        except (OSError, ImportError) as exc:
            module.fail_json(msg="cannot write the bench report: %s" % exc,
                             exception=traceback.format_exc())
        result["changed"] = True
    errors = [r for r in runs if r.get("error")]
    if errors and p["fail_on_errors"]:
        module.fail_json(msg="%d of %d run(s) failed (report written): %s"
                         % (len(errors), len(runs), errors[0]["error"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
