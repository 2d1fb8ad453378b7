"""The serving benchmark's own measurements, pure: what llama-benchy (the load
generator, ``bench_tool``) cannot measure.

* Prometheus counter snapshots of ``/metrics`` (parsed with prometheus_client), their
  deltas and the speculative-decoding rates over a window:
  acceptance rate = d(accepted_tokens) / d(draft_tokens);
  mean accepted tokens per draft = d(accepted_tokens) / d(drafts);
  per-position rate = d(accepted_tokens_per_pos{position}) / d(drafts).
  The ratios come from ``monitoring.metrics.RATIOS``, the table the Prometheus recording
  rules are generated from.
* The refusal (``BenchRefusal``) the checks of ``bench_client`` raise.
* The field report's numbers (the seed profile's run, June), for the report.

Plain Python 3.11+; prometheus_client is imported lazily.
"""

from __future__ import annotations

from ..monitoring.metrics import (
    M_ACCEPTED, M_DRAFT_TOKENS, M_DRAFTS, M_GENERATION, M_PER_POS, PER_POSITION_DENOMINATOR,
    RATIOS, per_position_formula, ratio_formula)

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

FORMULAS = {
    **{name: ratio_formula(name) for name in RATIOS},
    "per_position": per_position_formula(),
}


class BenchRefusal(Exception):
    """The benchmark will not measure: ``reason`` is a short code, str() the message."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


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
