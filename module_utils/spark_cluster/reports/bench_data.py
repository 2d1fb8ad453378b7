"""The serving benchmark's pure part: decode speed and speculative-decoding acceptance,
thinking on/off, from recorded events (no network, no clock).

* request bodies and the reasoning_effort check;
* SSE line parsing, one streamed run's timings and token count from ``(timestamp,
  chunk)`` events;
* Prometheus counter snapshots and their deltas, rates, aggregation;
* the report dict, its Markdown table and PNG, and ``write_report``
  (``bench-<UTC stamp>.{json,md,png}`` and ``bench-latest.*``), rendered with the
  pieces the link report uses too (``reports.output``).

The HTTP side (server checks, one streamed run with ``/metrics`` around it) is
``bench_client.BenchClient``; ``library/spark_bench.py`` drives both.

Formulas (the field report's, see docs/bench.md):

* TTFT = t(first chunk carrying content or reasoning text) - t(request sent)
* decode tok/s = (output tokens - 1) / (t(last token chunk) - t(first token chunk)),
  i.e. 1 / TPOT as vLLM's own benchmark defines it: the tokens produced after the
  first one, over the time after the first one;
* acceptance rate = d(accepted_tokens) / d(draft_tokens);
  mean accepted tokens per draft = d(accepted_tokens) / d(drafts);
  per-position rate = d(accepted_tokens_per_pos{position}) / d(drafts).
  The ratios come from ``monitoring.metrics.RATIOS``, the table the Prometheus recording
  rules are generated from.

Plain Python 3.11+. prometheus_client (metrics parser) and matplotlib (PNG) are
imported lazily, so the module imports anywhere.
"""

from __future__ import annotations

import datetime
import json

from ..monitoring.metrics import (
    M_ACCEPTED, M_DRAFT_TOKENS, M_DRAFTS, M_GENERATION, M_PER_POS, PER_POSITION_DENOMINATOR,
    RATIOS, per_position_formula, ratio_formula)
from .output import (
    bullet_section, figure, fmt as _f, generated_line, label_bars, save_figure, table_head,
    write_report_files)

SCHEMA = "spark-bench-report"
SCHEMA_VERSION = 1

# The field report's prompts (seed/field-report-dspark-on-two-dgx-sparks.txt, chapter 6):
# medium ~200 characters, long ~500 characters, reasoning_code (42 tokens with template).
PROMPTS = {
    "medium": (
        "Why does the sky look blue during the day but red and orange at sunset? "
        "Please explain the physics in plain words, mention Rayleigh scattering, "
        "and say why clouds look white."
    ),
    "long": (
        "I am planning a two-week trip through Japan in late autumn with my partner, "
        "who does not eat meat, and we want to balance big cities with quieter places. "
        "We will land in Tokyo and leave from Osaka. Please suggest an itinerary that "
        "covers Tokyo, Kyoto and Osaka plus one or two smaller towns or onsen villages, "
        "explain how to move between them by rail and whether a rail pass is worth it, "
        "give vegetarian food tips for each stop, and point out which places get very "
        "crowded in that season and how to avoid the worst of the crowds."
    ),
    "reasoning_code": "Write Python code to solve a maze using BFS",
}
PROMPT_ORDER = ("medium", "long", "reasoning_code")
MODES = ("on", "off")
REASONING_EFFORTS = ("none", "low", "medium", "high", "xhigh", "max")

# The field report's numbers (decode tok/s, thinking ON / OFF; acceptance measured on
# reasoning_code, one sample per mode, /metrics difference before/after).
FIELD_REFERENCE = {
    "source": "field report (seed/field-report-dspark-on-two-dgx-sparks.txt): two DGX "
              "Sparks, TP=2, dspark num_speculative_tokens=5, 262K context, single user",
    "decode_tok_s": {
        "medium": {"on": 35.44, "off": 35.00},
        "long": {"on": 37.81, "off": 39.05},
        "reasoning_code": {"on": 41.90, "off": 55.17},
    },
    "acceptance_prompt": "reasoning_code",
    "acceptance_rate": {"on": 0.242, "off": 0.404},
    "mean_accepted_per_draft": {"on": 1.21, "off": 2.02},
    "drafts": {"on": 2124, "off": 1731},
}

# Prometheus counters (vLLM, only present when speculative decoding is on), and the
# ratios computed from them: one table with the recording rules (monitoring.metrics).
COUNTERS = {M_DRAFTS: "drafts", M_DRAFT_TOKENS: "draft_tokens",
            M_ACCEPTED: "accepted_tokens", M_GENERATION: "generation_tokens"}
SPEC_KEYS = ("drafts", "draft_tokens", "accepted_tokens")

TOKENS_USAGE = "usage"
TOKENS_DELTAS = "delta_count"

FORMULAS = {
    "ttft_s": "t(first chunk with content or reasoning text) - t(request sent)",
    "decode_tok_s": "(output_tokens - 1) / (t(last token chunk) - t(first token chunk))",
    "output_tokens": "usage.completion_tokens of the stream (stream_options.include_usage); "
                     "if the server sends no usage: the number of non-empty content/reasoning "
                     "deltas (a lower bound: one delta can carry several accepted tokens)",
    **{name: ratio_formula(name) for name in RATIOS},
    "per_position": per_position_formula(),
}


class BenchRefusal(Exception):
    """The benchmark will not measure: ``reason`` is a short code, str() the message."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


class BenchRunError(Exception):
    """A run failed after the checks passed (HTTP error, broken stream)."""


# ---------------------------------------------------------------------- requests

def request_body(model, prompt_text, thinking, effort, max_tokens, temperature=None,
                 include_usage=True):
    """The streamed chat request of one run."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt_text}],
        "stream": True,
        "max_tokens": int(max_tokens),
        "chat_template_kwargs": {"thinking": bool(thinking)},
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    if effort:
        body["reasoning_effort"] = effort
    if temperature is not None:
        body["temperature"] = float(temperature)
    return body


def check_efforts(effort_on, effort_off):
    """Refuse reasoning_effort values vLLM answers with HTTP 400 (e.g. ``non-think``)."""
    for mode, value in (("on", effort_on), ("off", effort_off)):
        if value and value not in REASONING_EFFORTS:
            raise BenchRefusal(
                "bad_effort",
                "reasoning_effort %r for thinking %s is not accepted by vLLM (HTTP 400); "
                "use one of %s (the model card's 'non-think' is 'none' through the API), "
                "or an empty value to send none" % (value, mode, "|".join(REASONING_EFFORTS)))


# ---------------------------------------------------------------------- SSE stream

def parse_sse_line(line):
    """One SSE line -> the JSON chunk (dict), ``"[DONE]"``, or None (blank, comment,
    other field). Raises BenchRunError on a data line that is not JSON."""
    if line is None:
        return None
    line = line.rstrip("\r\n")
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if not data:
        return None
    if data == "[DONE]":
        return "[DONE]"
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise BenchRunError("stream sent a data line that is not JSON: %r (%s)"
                            % (data[:200], exc)) from exc
    if isinstance(chunk, dict) and chunk.get("error"):
        err = chunk["error"]
        raise BenchRunError("stream reported an error: %s"
                            % (err.get("message") if isinstance(err, dict) else err))
    return chunk


def _delta_texts(delta):
    content = delta.get("content")
    reasoning = delta.get("reasoning")
    if reasoning is None:
        reasoning = delta.get("reasoning_content")
    return content, reasoning


def summarize_stream(events, t_sent, thinking=None):
    """One run from its stream.

    events: ``[(timestamp, chunk dict)]`` in arrival order (timestamps in seconds, any
    origin, the same clock as ``t_sent``). Returns the run's numbers (see FORMULAS).
    """
    t_first = t_last = None
    token_deltas = 0
    content_parts, reasoning_parts = [], []
    content_null_chunks = 0
    usage = None
    finish_reason = None
    model = None
    for stamp, chunk in events:
        if not isinstance(chunk, dict):
            continue
        model = model or chunk.get("model")
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("finish_reason"):
                finish_reason = choice["finish_reason"]
            delta = choice.get("delta") or {}
            content, reasoning = _delta_texts(delta)
            if "content" in delta and delta["content"] is None and reasoning:
                content_null_chunks += 1
            if content:
                content_parts.append(content)
            if reasoning:
                reasoning_parts.append(reasoning)
            if content or reasoning:
                token_deltas += 1
                if t_first is None:
                    t_first = stamp
                t_last = stamp
    completion = (usage or {}).get("completion_tokens")
    if isinstance(completion, int) and completion >= 0:
        output_tokens, source = completion, TOKENS_USAGE
    else:
        output_tokens, source = token_deltas, TOKENS_DELTAS
    ttft = (t_first - t_sent) if t_first is not None else None
    decode_s = (t_last - t_first) if t_first is not None else None
    decode = None
    if decode_s and decode_s > 0 and output_tokens > 1:
        decode = (output_tokens - 1) / decode_s
    content_text = "".join(content_parts)
    reasoning_text = "".join(reasoning_parts)
    # The DSpark quirk (field report): thinking off, but the answer arrives in the
    # reasoning field and content stays null/empty; OpenAI clients show nothing.
    content_null = bool(thinking is False and not content_text and reasoning_text)
    return {
        "ttft_s": ttft,
        "decode_s": decode_s,
        "decode_tok_s": decode,
        "output_tokens": output_tokens,
        "output_tokens_source": source,
        "token_deltas": token_deltas,
        "usage": usage,
        "finish_reason": finish_reason,
        "model": model,
        "content_chars": len(content_text),
        "reasoning_chars": len(reasoning_text),
        "content_null_chunks": content_null_chunks,
        "content_null": content_null,
        "content_preview": content_text[:120],
        "reasoning_preview": reasoning_text[:120],
    }


# ---------------------------------------------------------------------- /metrics

def parse_metrics(text):
    """Prometheus text -> ``{drafts, draft_tokens, accepted_tokens, generation_tokens,
    per_pos: {position: value}, spec_decode: bool}`` (summed over label sets, None when
    absent). Parsed with prometheus_client's parser, never by hand."""
    from prometheus_client.parser import text_string_to_metric_families

    snap = {key: None for key in COUNTERS.values()}
    per_pos = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if name.endswith("_created"):
                continue
            base = name[:-len("_total")] if name.endswith("_total") else name
            if base == M_PER_POS:
                pos = sample.labels.get("position")
                if pos is not None:
                    per_pos[str(pos)] = per_pos.get(str(pos), 0.0) + float(sample.value)
            elif base in COUNTERS:
                key = COUNTERS[base]
                snap[key] = (snap[key] or 0.0) + float(sample.value)
    snap["per_pos"] = dict(sorted(per_pos.items(), key=lambda kv: _pos_key(kv[0])))
    snap["spec_decode"] = all(snap[k] is not None for k in SPEC_KEYS)
    return snap


def _pos_key(pos):
    try:
        return (0, int(pos))
    except ValueError:
        return (1, pos)


def metric_deltas(before, after):
    """Counter differences between two snapshots (None where either side lacks it)."""
    out = {}
    for key in COUNTERS.values():
        b, a = before.get(key), after.get(key)
        out[key] = (a - b) if (a is not None and b is not None) else None
    bpp, app = before.get("per_pos") or {}, after.get("per_pos") or {}
    out["per_pos"] = {pos: app[pos] - bpp.get(pos, 0.0)
                      for pos in sorted(app, key=_pos_key)}
    return out


def _ratio(num, den):
    if num is None or den is None or den <= 0:
        return None
    return num / den


def spec_rates(delta):
    """Rates over one window (see FORMULAS); None where the denominator did not move."""
    rates = {name: _ratio(delta.get(COUNTERS[num]), delta.get(COUNTERS[den]))
             for name, (num, den) in RATIOS.items()}
    drafts = delta.get(COUNTERS[PER_POSITION_DENOMINATOR])
    rates["per_position"] = {pos: _ratio(v, drafts)
                             for pos, v in (delta.get("per_pos") or {}).items()}
    return rates


def sum_deltas(deltas):
    """Add counter deltas of several windows (None stays None only if all are None)."""
    out = {key: None for key in COUNTERS.values()}
    per_pos = {}
    for d in deltas:
        for key in COUNTERS.values():
            if d.get(key) is not None:
                out[key] = (out[key] or 0.0) + d[key]
        for pos, v in (d.get("per_pos") or {}).items():
            per_pos[pos] = per_pos.get(pos, 0.0) + v
    out["per_pos"] = dict(sorted(per_pos.items(), key=lambda kv: _pos_key(kv[0])))
    return out


# ---------------------------------------------------------------------- aggregation

def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _cell(prompt, mode, runs):
    ok = [r for r in runs if not r.get("error")]
    delta = sum_deltas([r["metrics_delta"] for r in ok if r.get("metrics_delta")])
    decode = [r["decode_tok_s"] for r in ok if r.get("decode_tok_s") is not None]
    sources = sorted({r["output_tokens_source"] for r in ok if r.get("output_tokens_source")})
    return {
        "prompt": prompt,
        "thinking": mode,
        "runs": len(runs),
        "ok_runs": len(ok),
        "errors": [r["error"] for r in runs if r.get("error")],
        "decode_tok_s": _mean(decode),
        "decode_tok_s_min": min(decode) if decode else None,
        "decode_tok_s_max": max(decode) if decode else None,
        "ttft_s": _mean([r.get("ttft_s") for r in ok]),
        "output_tokens": _mean([r.get("output_tokens") for r in ok]),
        "output_tokens_source": ",".join(sources) or None,
        "content_null_runs": sum(1 for r in ok if r.get("content_null")),
        "metrics_delta": delta,
        **spec_rates(delta),
    }


def aggregate(runs):
    """Cells per prompt x mode, and per mode over all prompts (ratios of summed deltas)."""
    prompts = [p for p in PROMPT_ORDER if any(r["prompt"] == p for r in runs)]
    prompts += sorted({r["prompt"] for r in runs} - set(prompts))
    cells = []
    for prompt in prompts:
        for mode in MODES:
            sel = [r for r in runs if r["prompt"] == prompt and r["thinking"] == mode]
            if sel:
                cells.append(_cell(prompt, mode, sel))
    modes = {}
    for mode in MODES:
        sel = [r for r in runs if r["thinking"] == mode]
        if sel:
            modes[mode] = _cell("all", mode, sel)
    return cells, modes


def speedup(on, off):
    """thinking OFF over thinking ON (the field report's speed-up column)."""
    return (off / on) if (on and off is not None) else None


def build_report(runs, settings=None, server=None, generated_at=None):
    """The report dict (schema SCHEMA_VERSION) from the runs of ``BenchClient.run``."""
    generated_at = generated_at or datetime.datetime.now(datetime.timezone.utc)
    cells, modes = aggregate(runs)
    warnings = []
    off_runs = [r for r in runs if r["thinking"] == "off" and not r.get("error")]
    null_runs = [r for r in off_runs if r.get("content_null")]
    quirk = {
        "content_null_runs": len(null_runs),
        "thinking_off_runs": len(off_runs),
        "detected": bool(null_runs),
        "message": (
            "%d of %d thinking-OFF runs returned content: null with the answer in the "
            "reasoning field (the DSpark quirk of the field report): OpenAI clients that "
            "read message.content show an empty answer. Speeds still count those tokens."
            % (len(null_runs), len(off_runs))) if null_runs else
        "No thinking-OFF run returned content: null (the DSpark quirk was not seen).",
    }
    if null_runs:
        warnings.append(quirk["message"])
    sources = sorted({r["output_tokens_source"] for r in runs if r.get("output_tokens_source")})
    if TOKENS_DELTAS in sources:
        warnings.append("the server sent no usage in the stream (stream_options.include_usage "
                        "not honoured) for some runs: their output tokens are counted deltas, "
                        "a lower bound with speculative decoding (one delta can carry "
                        "several tokens), so their tok/s is too")
    errors = [r for r in runs if r.get("error")]
    if errors:
        warnings.append("%d run(s) failed: %s" % (len(errors), "; ".join(
            "%s/%s #%s: %s" % (r["prompt"], r["thinking"], r.get("repetition"), r["error"])
            for r in errors[:5])))
    for mode, cell in modes.items():
        if cell["ok_runs"] and not cell["metrics_delta"].get("drafts"):
            warnings.append("thinking %s: the spec-decode counters did not advance during the "
                            "runs: acceptance cannot be computed" % mode.upper())
    table = []
    for prompt in [c["prompt"] for c in cells if c["thinking"] == "on"] + [
            c["prompt"] for c in cells if c["thinking"] == "off"]:
        if any(row["prompt"] == prompt for row in table):
            continue
        on = next((c for c in cells if c["prompt"] == prompt and c["thinking"] == "on"), {})
        off = next((c for c in cells if c["prompt"] == prompt and c["thinking"] == "off"), {})
        ref = FIELD_REFERENCE["decode_tok_s"].get(prompt)
        table.append({
            "prompt": prompt,
            "on": on.get("decode_tok_s"), "off": off.get("decode_tok_s"),
            "speedup": speedup(on.get("decode_tok_s"), off.get("decode_tok_s")),
            "field_on": ref["on"] if ref else None, "field_off": ref["off"] if ref else None,
            "field_speedup": speedup(ref["on"], ref["off"]) if ref else None,
        })
    ok = [r for r in runs if not r.get("error")]
    if not ok:
        verdict = "failed"
    elif errors:
        verdict = "partial"
    else:
        verdict = "measured"
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "generated_at": generated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "verdict": verdict,
        "server": server or {},
        "settings": settings or {},
        "formulas": FORMULAS,
        "output_tokens_source": ",".join(sources) or None,
        "table": table,
        "cells": cells,
        "modes": modes,
        "field_reference": FIELD_REFERENCE,
        "content_null": quirk,
        "warnings": warnings,
        "runs": runs,
    }


# ---------------------------------------------------------------------- rendering

def _pct(value):
    return "n/a" if value is None else "%.1f%%" % (100.0 * value)


def _x(value):
    return "n/a" if value is None else "%.2fx" % value


def render_table(report):
    """The field report's table: prompt | thinking ON | thinking OFF | speed-up, our row
    then the field's reference row per prompt, then the acceptance rows."""
    ref = report["field_reference"]
    modes = report["modes"]
    lines = table_head("prompt", "thinking ON", "thinking OFF", "speed-up")
    for row in report["table"]:
        lines.append("| %s | %s | %s | %s |" % (row["prompt"], _f(row["on"]), _f(row["off"]),
                                                 _x(row["speedup"])))
        if row["field_on"] is not None:
            lines.append("| _%s (field report)_ | _%s_ | _%s_ | _%s_ |" % (
                row["prompt"], _f(row["field_on"]), _f(row["field_off"]),
                _x(row["field_speedup"])))

    aprompt = ref["acceptance_prompt"]
    acc_cells = {c["thinking"]: c for c in report["cells"] if c["prompt"] == aprompt}
    for key, label, cell in (("acceptance_rate", "acceptance rate", _pct),
                             ("mean_accepted_per_draft", "mean accepted tokens / draft", _f)):
        lines += [
            "| %s, all prompts | %s | %s | |" % (
                label, cell((modes.get("on") or {}).get(key)),
                cell((modes.get("off") or {}).get(key))),
            "| %s, %s | %s | %s | |" % (
                label, aprompt, cell((acc_cells.get("on") or {}).get(key)),
                cell((acc_cells.get("off") or {}).get(key))),
            "| _%s, %s (field report)_ | _%s_ | _%s_ | |" % (
                label, aprompt, cell(ref[key]["on"]), cell(ref[key]["off"])),
        ]
    return "\n".join(lines)


def measured_line(server):
    """What was measured, from the runtime image's labels (server["runtime"])."""
    runtime = (server or {}).get("runtime") or {}
    image = "%s %s" % (runtime.get("image", "?"), str(runtime.get("image_id", ""))[:19])
    if runtime.get("standin"):
        return ("**Measured against the lab's STAND-IN runtime** (image %s, label "
                "spark-cluster.standin=true): synthetic tok/s and acceptance, never a "
                "DGX Spark's; do not read them next to the field report's figures." % image)
    if not runtime:
        return "Runtime image: unknown (not read from the node)."
    return "Measured against the runtime image %s (no stand-in label)." % image


def render_markdown(report):
    s = report["settings"]
    srv = report["server"]
    lines = [
        "# Serving benchmark: decode speed and speculative-decoding acceptance", "",
        measured_line(srv), "",
        generated_line(report, " Verdict: **%s**." % report["verdict"]), "",
        "Server %s, model `%s`, %s run(s) per prompt and mode, max_tokens %s, "
        "reasoning_effort ON=`%s` OFF=`%s`. Output tokens from: %s." % (
            srv.get("api_url", "?"), srv.get("model", "?"), s.get("repetitions", "?"),
            s.get("max_tokens", "?"), s.get("reasoning_effort_on") or "(not sent)",
            s.get("reasoning_effort_off") or "(not sent)",
            report["output_tokens_source"] or "n/a"), "",
        "## Decode tok/s, thinking ON vs OFF", "",
        "Italic rows: the field report's numbers (real Sparks), for reference. "
        "Speed-up = OFF / ON.", "",
        render_table(report), "",
        "## Per prompt and mode", "",
    ] + table_head("prompt", "thinking", "runs", "TTFT s", "decode tok/s (min-max)",
                   "output tokens", "drafts", "draft tokens", "accepted", "acceptance",
                   "accepted/draft", "per position", "content null")
    for c in report["cells"]:
        d = c["metrics_delta"]
        per_pos = " ".join("%s:%s" % (p, _pct(v)) for p, v in c["per_position"].items()) or "n/a"
        lines.append("| %s | %s | %d/%d | %s | %s (%s-%s) | %s | %s | %s | %s | %s | %s | %s | %d |" % (
            c["prompt"], c["thinking"].upper(), c["ok_runs"], c["runs"], _f(c["ttft_s"], "%.3f"),
            _f(c["decode_tok_s"]), _f(c["decode_tok_s_min"]), _f(c["decode_tok_s_max"]),
            _f(c["output_tokens"], "%.1f"), _f(d.get("drafts"), "%g"),
            _f(d.get("draft_tokens"), "%g"), _f(d.get("accepted_tokens"), "%g"),
            _pct(c["acceptance_rate"]), _f(c["mean_accepted_per_draft"]), per_pos,
            c["content_null_runs"]))
    lines += ["", "## Thinking OFF and `content: null`", "", report["content_null"]["message"], ""]
    warnings = [w for w in report["warnings"] if w != report["content_null"]["message"]]
    lines += bullet_section("Warnings", warnings)
    lines += ["## How the numbers are computed", ""]
    lines += ["- %s = %s" % (k, v) for k, v in report["formulas"].items()]
    lines += ["", "Counter deltas are taken from /metrics right before and right after each "
              "run and summed per prompt and mode; rates are ratios of those sums. Other "
              "traffic on the server during the run would be counted too.", "",
              "Reference: %s." % report["field_reference"]["source"], ""]
    return "\n".join(lines)


def render_png(report, path):
    """Grouped bars: decode tok/s per prompt (ours vs field, ON/OFF), acceptance per mode."""
    rows = report["table"]
    fig, (ax, ax2) = figure([3, 1.3], (11, 4.5))
    series = (("ours ON", "on", "#1f77b4", None), ("ours OFF", "off", "#ff7f0e", None),
              ("field ON", "field_on", "#aec7e8", "//"), ("field OFF", "field_off", "#ffbb78", "//"))
    width = 0.2
    for i, (label, key, color, hatch) in enumerate(series):
        xs = [g + (i - 1.5) * width for g in range(len(rows))]
        vals = [row[key] or 0.0 for row in rows]
        bars = ax.bar(xs, vals, width, label=label, color=color, hatch=hatch)
        label_bars(ax, bars, [_f(row[key], "%.1f") for row in rows])
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([row["prompt"] for row in rows])
    ax.set_ylabel("decode tok/s")
    ax.set_title("Decode speed, thinking ON/OFF")
    ax.legend(fontsize=8)
    ref = report["field_reference"]
    labels, ours, field = [], [], []
    for mode in MODES:
        labels.append("thinking %s" % mode.upper())
        ours.append((report["modes"].get(mode) or {}).get("acceptance_rate"))
        field.append(ref["acceptance_rate"][mode])
    xs = range(len(labels))
    b1 = ax2.bar([x - 0.2 for x in xs], [100 * (v or 0) for v in ours], 0.4, label="ours",
                 color="#2ca02c")
    b2 = ax2.bar([x + 0.2 for x in xs], [100 * v for v in field], 0.4, label="field",
                 color="#98df8a", hatch="//")
    for bars, vals in ((b1, ours), (b2, field)):
        label_bars(ax2, bars, [_pct(v) for v in vals])
    ax2.set_xticks(list(xs))
    ax2.set_xticklabels(labels)
    ax2.set_ylabel("acceptance rate %")
    ax2.set_title("Draft acceptance")
    ax2.legend(fontsize=8)
    fig.suptitle("Serving benchmark %s%s (%s)" % (
        report["generated_at"],
        " - STAND-IN runtime, synthetic" if (report["server"].get("runtime") or {}).get("standin") else "",
        report["server"].get("model", "?")), fontsize=9)
    return save_figure(fig, path)


def write_report(report, report_dir, formats=("json", "md", "png"), prefix="bench"):
    """Write bench-<stamp>.<ext> per format and bench-latest.<ext>; returns the paths."""
    return write_report_files(report, report_dir, formats, prefix, render_markdown, render_png)
