"""scripts/bench_perf.py rewrites docs/performance.md but keeps its hand-written history."""
import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("bench_perf", ROOT / "scripts" / "bench_perf.py")
bench_perf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_perf)


def test_history_is_kept_from_its_heading_on():
    text = "# old figures\n\nstale\n\n" + bench_perf.HISTORY + "\n\n### run 1\n\n184 s\n"
    kept = bench_perf.kept_history(text)
    assert kept.startswith("\n" + bench_perf.HISTORY) and "184 s" in kept and "stale" not in kept


def test_no_history_heading_keeps_nothing():
    assert bench_perf.kept_history("# figures only\n") == ""


def test_the_document_has_the_heading():
    assert bench_perf.HISTORY in (ROOT / "docs" / "performance.md").read_text()
