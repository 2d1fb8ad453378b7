"""bench.yml ran against the stand-in (molecule side effect): its three outputs exist,
and the acceptance figures equal what the stand-in's counters were built to produce
(tests/lab/standin/server.py: 5 draft tokens per draft, 1 accepted with thinking on,
2 with thinking off)."""

import json
import math
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
REPORTS = ROOT / "reports"


def test_bench_outputs_exist():
    for ext in ("json", "md", "png"):
        path = REPORTS / f"bench-latest.{ext}"
        assert path.exists() and path.stat().st_size > 0, path


def test_bench_acceptance_matches_the_stand_in_counters():
    report = json.loads((REPORTS / "bench-latest.json").read_text())
    cells = report["cells"]
    assert {(c["prompt"], c["thinking"]) for c in cells} == {
        (p, t) for p in ("medium", "long", "reasoning_code") for t in ("on", "off")
    }
    for cell in cells:
        accepted = 1 if cell["thinking"] == "on" else 2
        delta = cell["metrics_delta"]
        assert cell["acceptance_rate"] == accepted / 5
        assert cell["mean_accepted_per_draft"] == accepted
        assert delta["drafts"] == math.ceil(delta["generation_tokens"] / (accepted + 1)) * cell["runs"]
        assert [cell["per_position"][str(p)] for p in range(5)] == [1.0 if p < accepted else 0.0 for p in range(5)]
        assert cell["output_tokens_source"] == "usage"
        assert cell["decode_tok_s"] > 0 and cell["ttft_s"] > 0


def test_bench_report_says_it_measured_the_stand_in():
    """Read from the running image's labels (spark-cluster.standin), not assumed."""
    report = json.loads((REPORTS / "bench-latest.json").read_text())
    assert report["server"]["runtime"]["standin"] is True
    assert report["server"]["runtime"]["image_id"].startswith("sha256:")
    assert "STAND-IN" in (REPORTS / "bench-latest.md").read_text().splitlines()[2]
