#!/usr/bin/python
"""Ansible module: the serving benchmark - refusal checks, one llama-benchy run with
/metrics around every batch, and the matrix report."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: spark_bench
short_description: Benchmark the vLLM API with llama-benchy (tok/s x concurrency x prompt length, draft acceptance)
description:
  - C(action=preflight) checks the server before any load (up, C(/health) 200, C(model)
    listed in C(/v1/models), C(vllm:spec_decode_*) counters in C(/metrics)), that
    llama-benchy is installed in this Python and that the matrix fits the server's
    C(max_model_len); every problem is reported at once and nothing is measured.
  - C(action=measure) runs the checks, then llama-benchy (PyPI) once for one prompt length
    and one thinking mode over every concurrency level, reading C(/metrics) after every
    batch (its C(--post-run-cmd)), and returns per cell the tool's numbers and the
    acceptance from the counter deltas of the cell's measured batches.
  - C(action=report) writes C(<report_dir>/bench-<UTC stamp>.{json,md,png}) and
    C(bench-latest.*) from the measured items, beside the recipe's published matrix, the
    field report's table, the profile that ran and the time to serving parsed from the
    runtime's journal.
  - The API key is given to llama-benchy on stdin, never on a command line.
  - Logic in C(module_utils/spark_cluster/reports/bench_tool.py), C(bench_matrix.py),
    C(bench_startup.py), C(bench_data.py) and C(bench_client.py).
  - In check mode only the checks run (no load, nothing written).
version_added: "1.0.0"
author: spark-cluster project
requirements: [httpx, prometheus_client, llama-benchy 0.4.0 (measure), matplotlib (PNG)]
options:
  action:
    description: What to do (see description).
    type: str
    choices: [preflight, measure, report]
    default: measure
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
  prompt_lengths:
    description: For C(preflight), every prompt length (tokens) of the matrix.
    type: list
    elements: int
    default: []
  prompt_tokens:
    description: For C(measure), the prompt length (tokens) of this run.
    type: int
  concurrency:
    description: Concurrency levels (simultaneous streams).
    type: list
    elements: int
    default: [1, 2, 4, 6]
  output_tokens:
    description: Tokens generated per request (exact with C(exact_output)).
    type: int
    default: 128
  runs:
    description: Measured batches per cell (llama-benchy adds one warm-up batch).
    type: int
    default: 2
  thinking:
    description: For C(measure), thinking on (C(true)) or off (C(chat_template_kwargs.thinking)).
    type: bool
    default: false
  exact_output:
    description: Send C(min_tokens) and C(ignore_eos) (llama-benchy C(--exact-tg)), as the recipe's matrix did.
    type: bool
    default: true
  unique_prompts:
    description: A unique suffix per prompt, no prefix cache (llama-benchy C(--no-cache)), as the recipe's cold prefixes.
    type: bool
    default: true
  tokenizer:
    description:
      - What llama-benchy counts prompt tokens with - a hub name (downloaded by the
        tool), a local C(tokenizer.json) or directory (offline), or C(word-level) (a
        whitespace tokenizer generated here, for a server that counts words).
    type: str
  corpus:
    description:
      - Text the prompts are cut from - empty (llama-benchy's default book, downloaded
        once and cached by the tool), C(generated) (a word corpus made here, offline) or
        the path of a local text file (seeded into the tool's cache, offline).
    type: str
    default: ""
  work_dir:
    description: For C(measure), where the launcher, tokenizer and the tool's raw output go.
    type: path
  tool_timeout:
    description: Seconds one llama-benchy run may take.
    type: float
    default: 7200
  timeout:
    description: Seconds one check request may take.
    type: float
    default: 60
  items:
    description: For C(report), the registered C(measure) results (a loop result, a list of results, or their C(run) values).
    type: raw
  server:
    description: For C(report), what the checks found, plus C(runtime) (image, ID, digests, command, stand-in label).
    type: dict
    default: {}
  profile:
    description: For C(report), the profile that ran (name, model, revision, image, settings).
    type: dict
    default: {}
  settings:
    description: For C(report), the benchmark's settings as run.
    type: dict
    default: {}
  startup_journal:
    description: For C(report), C(journalctl -o json) of the runtime's last start (empty when not read).
    type: str
    default: ""
  startup_note:
    description: For C(report), why the journal is missing, when it is.
    type: str
    default: ""
  report_dir:
    description: Directory of the report files (created).
    type: path
  formats:
    description: Which report files to write.
    type: list
    elements: str
    choices: [json, md, png]
    default: [json, md, png]
  fail_on_errors:
    description: Fail (after writing the report) when any run failed or measured nothing.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Refuse early when the server or the matrix is not right
  spark_bench:
    action: preflight
    api_url: http://192.168.100.10:8888
    model: deepseek-v4-flash
    prompt_lengths: [256, 2048]
  delegate_to: localhost
  register: bench_server

- name: 256-token prompts, thinking off, 1/2/4/6 streams
  spark_bench:
    action: measure
    api_url: http://192.168.100.10:8888
    model: deepseek-v4-flash
    prompt_tokens: 256
    thinking: false
    tokenizer: deepseek-ai/DeepSeek-V4-Flash-0731
    work_dir: /tmp/spark-bench
  delegate_to: localhost
  register: bench_item

- name: Write the report
  spark_bench:
    action: report
    items: "{{ [bench_item] }}"
    server: "{{ bench_server.server }}"
    report_dir: "{{ playbook_dir }}/reports"
  delegate_to: localhost
"""

RETURN = r"""
server:
  description: What the checks found (C(api_url), C(model), C(models), C(max_model_len), C(health), C(metrics) snapshot).
  returned: for preflight and measure
  type: dict
tool:
  description: llama-benchy's version in this Python.
  returned: for preflight and measure
  type: str
refusal:
  description: Why the benchmark refused (C(server_down), C(not_healthy), C(unauthorized), C(wrong_model), C(no_spec_decode), C(no_tool), C(bad_plan)).
  returned: on refusal
  type: str
run:
  description: One run - C(thinking), C(prompt_tokens), C(concurrency), C(command) (no key), C(rc), C(error), C(cells) (per concurrency - per-stream, aggregate, TTFT, acceptance or C(not measured) and why).
  returned: for measure
  type: dict
summary:
  description: One line per cell.
  returned: for measure and report
  type: list
  elements: str
report:
  description: The full report (what the JSON file holds, schema C(spark-bench-report) v2).
  returned: for report
  type: dict
paths:
  description: Written files, keys C(json), C(md), C(png), C(latest_json), ...
  returned: for report, unless check mode
  type: dict
"""

import sys
import tempfile
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
from ansible.module_utils.spark_cluster.reports.bench_data import BenchRefusal  # noqa: E402
from ansible.module_utils.spark_cluster.reports.bench_matrix import (  # noqa: E402
    build_report, runtime_summary, write_report)
from ansible.module_utils.spark_cluster.reports.bench_startup import journal_entries, time_to_serving  # noqa: E402
from ansible.module_utils.spark_cluster.reports.bench_tool import (  # noqa: E402
    NOT_MEASURED, TOOL, TOOL_VERSION, measure, plan_problems)


def tool_version():
    """llama-benchy's version in this Python, or None when it is not installed."""
    try:
        from importlib.metadata import PackageNotFoundError, version
        return version(TOOL)
    except (ImportError, PackageNotFoundError):
        return None


def flatten_items(items):
    """Items from registered results: a loop result, a list of results, or items."""
    out = []
    if isinstance(items, dict):
        items = items.get("results", [items])
    for entry in items or []:
        if not isinstance(entry, dict) or entry.get("skipped"):
            continue
        if "results" in entry:
            out += flatten_items(entry["results"])
        elif isinstance(entry.get("run"), dict) and "cells" in entry["run"]:
            out.append(entry["run"])
        elif "cells" in entry and "thinking" in entry:
            out.append(entry)
    return out


def summary_lines(cells):
    return ["thinking %s, %s tok x c=%d: per-stream %s tok/s, aggregate %s tok/s, TTFT %s s, "
            "acceptance %s" % (
                c["thinking"].upper(), format(c["prompt_tokens"], ","), c["concurrency"],
                "n/a" if c["per_stream_tok_s"] is None else "%.1f" % c["per_stream_tok_s"],
                "n/a" if c["aggregate_tok_s"] is None else "%.1f" % c["aggregate_tok_s"],
                "n/a" if c["ttft_s"] is None else "%.2f" % c["ttft_s"],
                "%.1f%%, %.2f/draft" % (100 * c["acceptance_rate"], c["mean_accepted_per_draft"])
                if c.get("acceptance") == "measured" else NOT_MEASURED + " (%s)" % c.get("why"))
            for c in cells]


def checks(module, p, prompt_lengths):
    """The refusal checks; exits failed with every problem found, or returns the server."""
    problems = plan_problems(prompt_lengths, p["concurrency"], p["output_tokens"], p["runs"])
    version = tool_version()
    if version is None:
        problems.append("%s is not installed in %s: pip install -r requirements.txt (it "
                        "pins %s==%s) in the controller venv" % (TOOL, sys.executable, TOOL,
                                                                 TOOL_VERSION))
    elif version != TOOL_VERSION:
        problems.append("%s %s is installed, the benchmark is written against %s (its JSON "
                        "output and options): pip install -r requirements.txt"
                        % (TOOL, version, TOOL_VERSION))
    server = None
    try:
        with BenchClient(p["api_url"], p["model"], api_key=p["api_key"],
                         timeout=p["timeout"]) as client:
            server = client.preflight()
    except BenchRefusal as exc:
        problems.insert(0, str(exc))
        module.fail_json(msg="; ".join(problems), problems=problems, refusal=exc.reason)
    except Exception as exc:  # bad URL and the like  # pylint: disable=broad-except
        problems.insert(0, "cannot talk to %s: %s" % (p["api_url"], exc))
    if server is not None and not problems:
        problems += plan_problems(prompt_lengths, p["concurrency"], p["output_tokens"],
                                  p["runs"], server.get("max_model_len"))
    if problems:
        module.fail_json(msg="; ".join(problems), problems=problems,
                         refusal="no_tool" if version is None else "bad_plan")
    return server, version


def main():
    module = AnsibleModule(
        argument_spec=dict(
            action=dict(type="str", choices=["preflight", "measure", "report"], default="measure"),
            api_url=dict(type="str"),
            api_key=dict(type="str", no_log=True, fallback=(env_fallback, ["SPARK_API_KEY"])),
            model=dict(type="str", default="deepseek-ai/DeepSeek-V4-Flash-DSpark"),
            prompt_lengths=dict(type="list", elements="int", default=[]),
            prompt_tokens=dict(type="int"),
            concurrency=dict(type="list", elements="int", default=[1, 2, 4, 6]),
            output_tokens=dict(type="int", default=128),
            runs=dict(type="int", default=2),
            thinking=dict(type="bool", default=False),
            exact_output=dict(type="bool", default=True),
            unique_prompts=dict(type="bool", default=True),
            tokenizer=dict(type="str"),
            corpus=dict(type="str", default=""),
            work_dir=dict(type="path"),
            tool_timeout=dict(type="float", default=7200),
            timeout=dict(type="float", default=60),
            items=dict(type="raw"),
            server=dict(type="dict", default={}),
            profile=dict(type="dict", default={}),
            settings=dict(type="dict", default={}),
            startup_journal=dict(type="str", default=""),
            startup_note=dict(type="str", default=""),
            report_dir=dict(type="path"),
            formats=dict(type="list", elements="str", choices=["json", "md", "png"],
                         default=["json", "md", "png"]),
            fail_on_errors=dict(type="bool", default=True),
        ),
        required_if=[
            ("action", "preflight", ("api_url",)),
            ("action", "measure", ("api_url", "prompt_tokens", "tokenizer")),
            ("action", "report", ("items", "report_dir")),
        ],
        supports_check_mode=True,
    )
    p = module.params
    if p["action"] == "report":
        report_action(module, p)
    for lib, err in (("httpx", HTTPX_ERR), ("prometheus_client", PROM_ERR)):
        if err:
            module.fail_json(msg=missing_required_lib(lib) + " (run the benchmark from the "
                             "controller venv: delegate_to localhost with "
                             "ansible_python_interpreter={{ ansible_playbook_python }})",
                             exception=err)
    lengths = p["prompt_lengths"] if p["action"] == "preflight" else [p["prompt_tokens"]]
    server, version = checks(module, p, lengths)
    result = dict(changed=False, server=server, tool="%s %s" % (TOOL, version))
    if p["action"] == "preflight" or module.check_mode:
        if module.check_mode and p["action"] != "preflight":
            result["msg"] = "check mode: the server passed the checks; nothing measured"
        module.exit_json(**result)
    work_dir = p["work_dir"] or tempfile.mkdtemp(prefix="spark-bench-")
    try:
        item = measure(work_dir, sys.executable, api_url=p["api_url"], model=p["model"],
                       api_key=p["api_key"], tokenizer=p["tokenizer"], corpus=p["corpus"],
                       prompt_tokens=p["prompt_tokens"], output_tokens=p["output_tokens"],
                       concurrency=p["concurrency"], runs=p["runs"], thinking=p["thinking"],
                       timeout=p["tool_timeout"], exact_output=p["exact_output"],
                       unique_prompts=p["unique_prompts"])
    except (OSError, ValueError, ImportError) as exc:
        module.fail_json(msg="cannot run %s: %s" % (TOOL, exc),
                         exception=traceback.format_exc(), **result)
    result.update(run=item, summary=summary_lines(item["cells"]))
    if not item["cells"] and p["fail_on_errors"]:
        module.fail_json(msg=item["error"] or "%s measured nothing" % TOOL, **result)
    module.exit_json(**result)


def report_action(module, p):
    items = flatten_items(p["items"])
    result = dict(changed=False)
    if not items:
        if module.check_mode:
            module.exit_json(msg="check mode: nothing was measured, no report written", **result)
        module.fail_json(msg="no measured items to report (were the measure tasks skipped?)")
    startup = time_to_serving(journal_entries(p["startup_journal"]))
    if not startup:
        startup = {"why": p["startup_note"] or "the runtime's journal had no entries for its last start"}
    server = dict(p["server"] or {})
    server["runtime"] = runtime_summary(server.get("runtime") or {}, [p["api_key"]])
    try:
        report = build_report(items, settings=p["settings"], server=server,
                              profile=p["profile"], startup=startup)
    except (KeyError, TypeError, ValueError) as exc:
        module.fail_json(msg="cannot build the bench report: %s" % exc,
                         exception=traceback.format_exc())
    result.update(report=report, summary=summary_lines(report["cells"]))
    if not module.check_mode:
        try:
            result["paths"] = write_report(report, p["report_dir"], formats=p["formats"])
        except (OSError, ImportError) as exc:
            module.fail_json(msg="cannot write the bench report: %s" % exc,
                             exception=traceback.format_exc())
        result["changed"] = True
    errors = [i["error"] for i in items if i.get("error")]
    if errors and p["fail_on_errors"]:
        module.fail_json(msg="%d of %d run(s) failed (report written): %s"
                         % (len(errors), len(items), errors[0]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
