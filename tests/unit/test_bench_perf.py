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


def test_render_states_ratios_and_the_cpu_ceiling():
    r = {"when": "2026-11-30 10:46 UTC", "cores": 2, "load": ["3.6", "2.0", "3.1"],
         "iperf_rail0": 28.9, "iperf_rail0_after": 27.0, "iperf_both": 22.1, "model_bytes": 2_000_000_000,
         "fanout_1": [4.7, 2_000_000_000, 2_003_000_000], "fanout_4": [5.6, 2_000_000_000, 2_004_000_000],
         "fanout_4_both": [5.4, 2_000_000_000, 2_004_000_000],
         "cpu": {"bytes": 2_000_000_000, "rsync_local_s": 4.0, "sha256_s": 2.0},
         "image": {"image": "vllm-dspark-runtime:clean", "image_bytes": 600_000_000, "tar_bytes": 620_000_000,
                   "save_s": 3.0, "ship_s": 10.0, "gzip_bytes": 200_000_000, "gzip_s": 20.0, "load_s": 5.0},
         "noop_site": {"seconds": 106.0, "rc": 0, "changed": 0, "tasks": 223, "slowest": [("qsfp_link : ping", 2.1)]}}
    text = bench_perf.render(r)
    assert "1 stream **0.12x**" in text  # 2e9 B * 8 / 4.7 s = 3.40 Gb/s over a mean of 27.95 Gb/s
    assert "rsync with no network at all / parallel iperf3 on rail 0: **0.14x**" in text
    assert "`docker save` of vllm-dspark-runtime:clean (620 MB tar)" in text
    assert "| no-op `site.yml`, two lab nodes | 106 s, rc 0, changed=0 |" in text
