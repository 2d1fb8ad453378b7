"""bench.yml ran against the stand-in (molecule side effect, inventory/lab: prompt
lengths 256 and 2,048 x concurrency 1, 2, 4, 32 tokens out, one measured batch, the
word-level tokenizer and the generated corpus, with the lab's API key): the report
comes from llama-benchy's own output, and every acceptance figure equals what the
stand-in's counters were built to produce over the cell's measured requests only
(tests/lab/standin/server.py: 5 draft tokens per draft, 1 accepted with thinking on,
2 with thinking off)."""

import json
import math
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
REPORTS = ROOT / "reports"
LAB_KEY = ROOT / ".cache" / "lab-api-key"


def report():
    return json.loads((REPORTS / "bench-latest.json").read_text())


def test_bench_outputs_exist():
    for ext in ("json", "md", "png"):
        path = REPORTS / f"bench-latest.{ext}"
        assert path.exists() and path.stat().st_size > 0, path


def test_the_matrix_comes_from_llama_benchy():
    rep = report()
    assert rep["tool"]["name"] == "llama-benchy" and rep["tool"]["version"] == "0.4.0"
    assert {(c["thinking"], c["prompt_tokens"], c["concurrency"]) for c in rep["cells"]} == {
        (t, p, c) for t in ("off", "on") for p in (256, 2048) for c in (1, 2, 4)}
    for cell in rep["cells"]:
        assert cell["requests"] == cell["concurrency"]          # one measured batch
        assert cell["per_stream_tok_s"] > 0 and cell["aggregate_tok_s"] > 0 and cell["ttft_s"] > 0
    raw = sorted((REPORTS / "bench-work").glob("pp*-thinking-*.json"))
    assert len(raw) == 4, raw


def test_acceptance_comes_from_the_metrics_deltas_of_each_cell():
    for cell in report()["cells"]:
        accepted = 1 if cell["thinking"] == "on" else 2
        delta = cell["metrics_delta"]
        assert cell["acceptance"] == "measured"
        assert cell["acceptance_rate"] == accepted / 5
        assert cell["mean_accepted_per_draft"] == accepted
        # only the cell's measured requests: 32 tokens each, ceil(32 / (A + 1)) drafts each
        assert delta["generation_tokens"] == 32 * cell["requests"]
        assert delta["drafts"] == math.ceil(32 / (accepted + 1)) * cell["requests"]


def test_bench_report_says_it_measured_the_stand_in():
    """Read from the running image's labels (spark-cluster.standin), not assumed."""
    rep = report()
    assert rep["server"]["runtime"]["standin"] is True
    assert rep["server"]["runtime"]["image_id"].startswith("sha256:")
    md = (REPORTS / "bench-latest.md").read_text()
    assert "STAND-IN" in md.splitlines()[2]
    assert "## The recipe's published matrix (2026-08-14)" in md
    assert "vllm serve" in rep["server"]["runtime"]["command"]


def test_time_to_serving_was_read_from_the_journal_of_the_last_start():
    startup = report()["startup"]
    assert startup.get("ready_s") is not None, startup
    phases = [p["phase"] for p in startup["phases"]]
    assert phases.index("loading") < phases.index("ready")
    assert startup["first_completion_s"] >= startup["ready_s"]


def test_the_api_key_is_in_no_report_and_no_command():
    key = LAB_KEY.read_text().strip()
    assert len(key) >= 20
    for ext in ("json", "md"):
        assert key not in (REPORTS / f"bench-latest.{ext}").read_text()
    for path in (REPORTS / "bench-work").iterdir():
        if path.suffix in (".json", ".jsonl", ".py"):
            assert key not in path.read_text(errors="replace"), path
