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


def test_a_new_run_keeps_the_head_and_moves_the_previous_run_down_into_the_log():
    text = ("# Log\n\n## What is true now\n\n- summary\n\n" + bench_perf.LATEST + "\n\n### day 2: run B\n\nB figures\n\n"
            + bench_perf.HISTORY + "\n\n### day 1: run A\n\nA figures\n")
    new = bench_perf.document("### day 3: run C\n\nC figures\n", text)
    assert new.startswith("# Log\n\n## What is true now\n\n- summary\n\n" + bench_perf.LATEST + "\n\n### day 3: run C")
    log = new[new.index(bench_perf.HISTORY):]
    assert log.index("### day 2: run B") < log.index("### day 1: run A")  # newest first
    assert new.count("B figures") == 1 and new.count(bench_perf.LATEST) == 1 and new.count(bench_perf.HISTORY) == 1
    # a first run on an empty document gets the title and both headings
    first = bench_perf.document("### day 1: run A\n", "")
    assert first.startswith(bench_perf.TITLE) and bench_perf.HISTORY in first


def test_the_document_has_the_headings_in_order():
    text = (ROOT / "docs" / "performance.md").read_text()
    assert text.index("## What is true now") < text.index(bench_perf.LATEST) < text.index(bench_perf.HISTORY)


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
