"""The serving benchmark's report: this cluster's matrix (llama-benchy's cells, each with
its /metrics acceptance) beside the recipe's published matrix, the field report's
table (the seed profile), the profile that ran and the time to serving of the last start.

Input: the items of ``bench_tool.measure`` (one per prompt length x thinking mode,
each with one cell per concurrency). Output: the report dict (JSON as is), its Markdown
and a PNG (per-stream and aggregate decode tok/s against concurrency, one line per
prompt length), written as ``bench-<UTC stamp>.*`` and ``bench-latest.*`` with the
pieces every report shares (``output``). Plain Python 3.11+; matplotlib lazily.
"""

from __future__ import annotations

import datetime
import shlex

from .bench_data import FIELD_REFERENCE, FORMULAS
from .bench_tool import NOT_MEASURED, TOOL
from .diagnosis import scrub
from .output import (
    bullet_section, figure, fmt as _f, generated_line, save_figure, table_head,
    write_report_files)

SCHEMA = "spark-bench-report"
SCHEMA_VERSION = 2

# The recipe's published matrix (read at the commit below; the same table is in the
# file at 8172aea2576811b5644b518bc39a3698f8862de7).
RECIPE = {
    "repo": "MiaAI-Lab/DeepSeek-v4-Flash-DSpark-2x-DGX-Spark",
    "path": "results/RESULTS-2026-08-14.md",
    "commit": "81657da1bf6e4b583ca17f2b9d06d5ede7c03ad8",
    "date": "2026-08-14",
    "stack": "Anemll ghcr.io/anemll/dspark-vllm-gx10:0.1.1, deepseek-ai/DeepSeek-V4-Flash-0731 "
             "@ 9e165c30, TP=2, max_model_len 1048576, max_num_seqs 6, nvfp4_ds_mla KV, MTP-5",
    "method": "unique cold prefixes, thinking=false, max_tokens=min_tokens=128, ignore_eos; "
              "cell = median per-stream decode tok/s after the first token",
    "concurrency": [1, 2, 4, 6],
    "per_stream": {
        "256": {"1": 82.6, "2": 56.9, "4": 54.3, "6": 35.9},
        "2048": {"1": 64.6, "2": 50.1, "4": 29.6, "6": 20.8},
        "8192": {"1": 65.9, "2": 44.2, "4": 16.0, "6": 10.2},
        "32768": {"1": 62.0, "2": 39.7, "4": 8.7, "6": 8.2},
        "131072": {"1": 74.9, "2": 36.0, "4": 8.4, "6": 8.6},
    },
    "aggregate": {"256": {"6": 162}, "2048": {"6": 78}, "8192": {"6": 29},
                  "32768": {"6": 8}, "131072": {"6": 2}},
    "ttft_median_s": {"131072": {"6": 282}},
}
MODES = ("off", "on")


def recipe_url(recipe=RECIPE):
    return "https://github.com/%s/blob/%s/%s" % (recipe["repo"], recipe["commit"], recipe["path"])


# ---------------------------------------------------------------------- the report

def runtime_summary(runtime, secrets=()):
    """The runtime as ``docker inspect`` read it, its entrypoint + command joined into
    one scrubbed launch command (secret values and secret-looking flags removed)."""
    out = {k: v for k, v in (runtime or {}).items() if k not in ("entrypoint", "cmd")}
    argv = list((runtime or {}).get("entrypoint") or []) + list((runtime or {}).get("cmd") or [])
    if argv:
        out["command"] = scrub(shlex.join(str(a) for a in argv), secrets)
    return out


def _cells(items):
    cells = []
    for item in items:
        cells += item.get("cells") or []
    return sorted(cells, key=lambda c: (MODES.index(c["thinking"]) if c["thinking"] in MODES
                                        else 9, c["prompt_tokens"], c["concurrency"]))


def _grid(cells, mode, key):
    """{prompt_tokens: {concurrency: value}} of one thinking mode."""
    grid = {}
    for cell in cells:
        if cell["thinking"] == mode:
            grid.setdefault(str(cell["prompt_tokens"]), {})[str(cell["concurrency"])] = cell.get(key)
    return grid


def build_report(items, settings=None, server=None, profile=None, startup=None,
                 generated_at=None):
    """The report dict (schema SCHEMA_VERSION)."""
    generated_at = generated_at or datetime.datetime.now(datetime.timezone.utc)
    cells = _cells(items)
    errors = [i["error"] for i in items if i.get("error")]
    warnings = list(errors)
    not_measured = [c for c in cells if c.get("acceptance") != "measured"]
    if not_measured:
        whys = sorted({c.get("why", "") for c in not_measured})
        warnings.append("acceptance not measured in %d of %d cell(s): %s"
                        % (len(not_measured), len(cells), "; ".join(whys)))
    if not cells:
        verdict = "failed"
    elif errors:
        verdict = "partial"
    else:
        verdict = "measured"
    tool = next((i["tool"] for i in items if i.get("tool")), None) or {}
    concurrency = sorted({c["concurrency"] for c in cells})
    matrix = {mode: {key: _grid(cells, mode, key)
                     for key in ("per_stream_tok_s", "aggregate_tok_s", "ttft_s",
                                 "acceptance_rate", "mean_accepted_per_draft")}
              for mode in MODES if any(c["thinking"] == mode for c in cells)}
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "generated_at": generated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "verdict": verdict,
        "tool": {"name": TOOL, "version": tool.get("version"),
                 "latency_mode": tool.get("latency_mode"), "latency_ms": tool.get("latency_ms"),
                 "commands": [i.get("command") for i in items],
                 "tokenizer": next((i.get("tokenizer") for i in items), None),
                 "corpus": next((i.get("corpus") for i in items), None)},
        "server": server or {},
        "profile": profile or {},
        "settings": settings or {},
        "concurrency": concurrency,
        "prompt_lengths": sorted({c["prompt_tokens"] for c in cells}),
        "cells": cells,
        "matrix": matrix,
        "recipe": RECIPE,
        "field_reference": FIELD_REFERENCE,
        "startup": startup or {},
        "formulas": {
            "per_stream_tok_s": "median over the cell's requests of llama-benchy's per-request "
                                "decode tok/s: tokens after the first / (last token - first token)",
            "aggregate_tok_s": "llama-benchy's batch total: tokens after each request's first, "
                               "summed / (last token of the batch - first token of the batch), "
                               "mean over the batches",
            "ttft_s": "median of llama-benchy's end-to-end TTFT (request sent to first content "
                      "or reasoning token)",
            **{k: v for k, v in FORMULAS.items() if k in (
                "acceptance_rate", "mean_accepted_per_draft", "per_position")},
            "window": "/metrics read after the cell's warm-up batch and after its last "
                      "batch (llama-benchy --post-run-cmd): only measured requests count",
        },
        "warnings": warnings,
        "items": [{k: v for k, v in i.items() if k != "cells"} for i in items],
    }


# ---------------------------------------------------------------------- Markdown

def _pct(value):
    return "n/a" if value is None else "%.1f%%" % (100.0 * value)


def measured_line(server):
    """Line 3 of the Markdown: the stand-in is said, read from the image's label."""
    runtime = (server or {}).get("runtime") or {}
    image = "%s %s" % (runtime.get("image", "?"), str(runtime.get("image_id", ""))[:19])
    if runtime.get("standin"):
        return ("**Measured against the lab's STAND-IN runtime** (image %s, label "
                "spark-cluster.standin=true): synthetic tok/s and acceptance, never a DGX "
                "Spark's; do not read them against the recipe's or the field report's "
                "figures." % image)
    if not runtime:
        return "Runtime image: unknown (not read from the node)."
    return "Measured against the runtime image %s (no stand-in label)." % image


def _cell_text(value, spec="%.1f"):
    return "-" if value is None else spec % value


def matrix_table(grid, concurrency, aggregate=None, agg_c=None, ttft=None):
    """Rows per prompt length, a column per concurrency, the aggregate at agg_c and TTFT."""
    cols = ["prompt tokens"] + ["c=%d" % c for c in concurrency]
    if aggregate is not None:
        cols.append("c=%d aggregate" % agg_c)
    if ttft is not None:
        cols += ["TTFT c=%d (s)" % concurrency[0], "TTFT c=%d (s)" % agg_c]
    lines = table_head(*cols)
    for pp in sorted(grid, key=int):
        row = [format(int(pp), ",")] + [_cell_text(grid[pp].get(str(c))) for c in concurrency]
        if aggregate is not None:
            row.append(_cell_text((aggregate.get(pp) or {}).get(str(agg_c)), "%.0f"))
        if ttft is not None:
            row += [_cell_text((ttft.get(pp) or {}).get(str(c)), "%.2f")
                    for c in (concurrency[0], agg_c)]
        lines.append("| %s |" % " | ".join(row))
    return lines


def side_by_side(report, mode="off"):
    """Ours (recipe) per cell, thinking OFF: the recipe's conditions."""
    ours = report["matrix"].get(mode, {}).get("per_stream_tok_s", {})
    recipe = report["recipe"]["per_stream"]
    conc = report["concurrency"] or report["recipe"]["concurrency"]
    lines = table_head("prompt tokens", *["c=%d ours (recipe)" % c for c in conc])
    for pp in sorted(set(ours) | set(recipe), key=int):
        lines.append("| %s | %s |" % (format(int(pp), ","), " | ".join(
            "%s (%s)" % (_cell_text((ours.get(pp) or {}).get(str(c))),
                         _cell_text((recipe.get(pp) or {}).get(str(c))))
            for c in conc)))
    return lines


def acceptance_table(report, mode):
    conc = report["concurrency"]
    lines = table_head("prompt tokens", *["c=%d" % c for c in conc])
    by = {(c["prompt_tokens"], c["concurrency"]): c for c in report["cells"] if c["thinking"] == mode}
    for pp in report["prompt_lengths"]:
        row = []
        for c in conc:
            cell = by.get((pp, c))
            if cell is None:
                row.append("-")
            elif cell.get("acceptance") != "measured":
                row.append(NOT_MEASURED)
            else:
                row.append("%s, %s/draft" % (_pct(cell["acceptance_rate"]),
                                              _f(cell["mean_accepted_per_draft"])))
        lines.append("| %s | %s |" % (format(pp, ","), " | ".join(row)))
    return lines


def field_table(ref=FIELD_REFERENCE):
    lines = table_head("prompt", "thinking ON", "thinking OFF", "speed-up")
    for prompt, row in ref["decode_tok_s"].items():
        lines.append("| %s | %.2f | %.2f | %.2fx |" % (prompt, row["on"], row["off"],
                                                         row["off"] / row["on"]))
    lines.append("| acceptance, %s | %s (%.2f/draft) | %s (%.2f/draft) | |" % (
        ref["acceptance_prompt"], _pct(ref["acceptance_rate"]["on"]),
        ref["mean_accepted_per_draft"]["on"], _pct(ref["acceptance_rate"]["off"]),
        ref["mean_accepted_per_draft"]["off"]))
    return lines


def profile_lines(profile, server):
    runtime = (server or {}).get("runtime") or {}
    rows = [("profile", profile.get("name")), ("model", profile.get("model")),
            ("revision", profile.get("revision")), ("served as", profile.get("served_model_name")),
            ("image (profile)", profile.get("image_ref") or profile.get("image")),
            ("image running", runtime.get("image")), ("image ID", runtime.get("image_id")),
            ("repo digests", ", ".join(runtime.get("repo_digests") or []) or None)]
    rows += [(k, v) for k, v in sorted((profile.get("settings") or {}).items())]
    lines = table_head("what", "value")
    lines += ["| %s | `%s` |" % (k, v) for k, v in rows if v not in (None, "")]
    if runtime.get("command"):
        lines += ["", "Launch command of the running container (secrets scrubbed):", "",
                  "```", runtime["command"], "```"]
    return lines


def startup_lines(startup):
    if not startup or not startup.get("phases"):
        return [(startup or {}).get("why") or "No start of the runtime found in its journal."]
    lines = ["Last start: %s; API ready after %s s, first completion answered after %s s."
             % (startup["started_at"], _f(startup.get("ready_s"), "%.1f"),
                _f(startup.get("first_completion_s"), "%.1f")), ""]
    lines += table_head("where the time went", "seconds")
    lines += ["| %s | %s |" % (g["name"], _f(g["duration_s"], "%.1f")) for g in startup["groups"]]
    lines += [""] + table_head("phase (first line seen)", "at s", "lasted s")
    lines += ["| %s | %.1f | %s |" % (p["label"], p["at_s"], _f(p["duration_s"], "%.1f"))
              for p in startup["phases"]]
    return lines


def render_markdown(report):
    s = report["settings"]
    srv = report["server"]
    tool = report["tool"]
    recipe = report["recipe"]
    conc = report["concurrency"] or recipe["concurrency"]
    agg_c = max(conc)
    lines = [
        "# Serving benchmark: decode tok/s against concurrency and prompt length", "",
        measured_line(srv), "",
        generated_line(report, " Verdict: **%s**." % report["verdict"]), "",
        "Load generator: %s %s (%s tokens out per request%s, %s measured batch(es) per cell "
        "after one warm-up batch, %s). Server %s, model `%s`. Tokenizer: %s. Corpus: %s." % (
            tool["name"], tool.get("version") or "?", s.get("output_tokens", "?"),
            ", exact (min_tokens + ignore_eos)" if s.get("exact_output") else "",
            s.get("runs", "?"), "unique prompts" if s.get("unique_prompts") else "shared prompts",
            srv.get("api_url", "?"), srv.get("model", "?"), tool.get("tokenizer") or "?",
            tool.get("corpus") or "?"), "",
    ]
    for mode in MODES:
        if mode not in report["matrix"]:
            continue
        m = report["matrix"][mode]
        lines += ["## This cluster, thinking %s: per-stream decode tok/s (median)" % mode.upper(), ""]
        lines += matrix_table(m["per_stream_tok_s"], conc, m["aggregate_tok_s"], agg_c,
                              m["ttft_s"]) + [""]
    lines += ["## The recipe's published matrix (%s)" % recipe["date"], "",
              "[%s](%s) at `%s`: %s. Stack: %s." % (recipe["path"], recipe_url(recipe),
                                                   recipe["commit"][:12], recipe["method"],
                                                   recipe["stack"]), ""]
    lines += matrix_table(recipe["per_stream"], recipe["concurrency"], recipe["aggregate"], 6)
    lines += ["", "128K x c=6 median TTFT: %s s." % recipe["ttft_median_s"]["131072"]["6"], ""]
    if "off" in report["matrix"]:
        lines += ["## Side by side, thinking OFF (the recipe's condition): ours (recipe)", ""]
        lines += side_by_side(report) + [""]
    for mode in MODES:
        if mode in report["matrix"]:
            lines += ["## Draft acceptance from /metrics, thinking %s" % mode.upper(), "",
                      "Acceptance rate and mean accepted tokens per draft over the cell's "
                      "measured batches; `%s` where the counters did not move or could not "
                      "be read (never 0 %%)." % NOT_MEASURED, ""]
            lines += acceptance_table(report, mode) + [""]
    lines += ["## The field report (seed profile, one user, June)", "",
              "Decode tok/s, c=1, short natural-language and code prompts, thinking on/off: "
              "%s." % report["field_reference"]["source"], ""]
    lines += field_table(report["field_reference"]) + [""]
    lines += ["## The profile that ran", ""] + profile_lines(report["profile"], srv) + [""]
    lines += ["## Time to serving (last start, from the journal)", ""]
    lines += startup_lines(report["startup"]) + [""]
    lines += ["## Every cell", ""]
    lines += table_head("thinking", "prompt", "c", "requests", "per-stream tok/s (min-max)",
                        "aggregate tok/s", "TTFT s (max)", "prefill tok/s", "drafts",
                        "acceptance", "accepted/draft")
    for c in report["cells"]:
        d = c.get("metrics_delta") or {}
        lines.append("| %s | %s | %d | %d | %s (%s-%s) | %s | %s (%s) | %s | %s | %s | %s |" % (
            c["thinking"].upper(), format(c["prompt_tokens"], ","), c["concurrency"],
            c["requests"], _f(c["per_stream_tok_s"], "%.1f"), _f(c["per_stream_tok_s_min"], "%.1f"),
            _f(c["per_stream_tok_s_max"], "%.1f"), _f(c["aggregate_tok_s"], "%.1f"),
            _f(c["ttft_s"], "%.2f"), _f(c["ttft_s_max"], "%.2f"), _f(c["prefill_tok_s"], "%.0f"),
            _f(d.get("drafts"), "%g"),
            _pct(c["acceptance_rate"]) if c.get("acceptance") == "measured" else NOT_MEASURED,
            _f(c["mean_accepted_per_draft"]) if c.get("acceptance") == "measured" else NOT_MEASURED))
    lines += [""]
    lines += bullet_section("Warnings", report["warnings"])
    lines += ["## How the numbers are computed", ""]
    lines += ["- %s = %s" % (k, v) for k, v in report["formulas"].items()]
    lines += ["", "Commands (the API key is passed on stdin, never in argv):", ""]
    lines += ["- `%s`" % cmd for cmd in tool["commands"] if cmd]
    lines += [""]
    return "\n".join(lines)


# ---------------------------------------------------------------------- PNG

def render_png(report, path):
    """Per-stream (left) and aggregate (right) decode tok/s against concurrency, a colour
    per prompt length: ours thinking OFF solid, ON dotted, the recipe dashed."""
    fig, (ax, ax2) = figure([1, 1], (12, 4.8))
    colors = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
    recipe = report["recipe"]
    lengths = sorted(set(report["prompt_lengths"]) | {int(p) for p in recipe["per_stream"]})
    for i, pp in enumerate(lengths):
        color = colors[i % len(colors)]
        key = str(pp)
        for mode, style, marker in (("off", "-", "o"), ("on", ":", "x")):
            m = report["matrix"].get(mode) or {}
            for axis, metric in ((ax, "per_stream_tok_s"), (ax2, "aggregate_tok_s")):
                row = (m.get(metric) or {}).get(key) or {}
                xs = sorted(int(c) for c, v in row.items() if v is not None)
                if xs:
                    axis.plot(xs, [row[str(c)] for c in xs], style, marker=marker, color=color,
                              label="%s tok, thinking %s" % (format(pp, ","), mode.upper()))
        rrow = recipe["per_stream"].get(key) or {}
        if rrow:
            xs = sorted(int(c) for c in rrow)
            ax.plot(xs, [rrow[str(c)] for c in xs], "--", marker="s", color=color, alpha=0.5,
                    label="%s tok, recipe" % format(pp, ","))
        ragg = recipe["aggregate"].get(key) or {}
        for c, v in ragg.items():
            ax2.plot([int(c)], [v], "s", color=color, alpha=0.5)
    for axis, title in ((ax, "Per-stream decode tok/s (median)"),
                        (ax2, "Aggregate decode tok/s (squares: recipe at c=6)")):
        axis.set_xlabel("concurrent streams")
        axis.set_ylabel("tok/s")
        axis.set_title(title, fontsize=9)
        axis.set_xticks(sorted(set(report["concurrency"]) | set(recipe["concurrency"])))
        axis.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    standin = (report["server"].get("runtime") or {}).get("standin")
    fig.suptitle("Serving benchmark %s%s - %s; recipe %s @%s dashed" % (
        report["generated_at"], " - STAND-IN runtime, synthetic" if standin else "",
        report["server"].get("model", "?"), recipe["date"], recipe["commit"][:7]), fontsize=9)
    return save_figure(fig, path)


def write_report(report, report_dir, formats=("json", "md", "png"), prefix="bench"):
    return write_report_files(report, report_dir, formats, prefix, render_markdown, render_png)
