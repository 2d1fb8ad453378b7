"""scripts/bench_perf.py: it rewrites docs/performance.md but keeps its hand-written history, and
reads the no-op site.yml's output (recap, every task, seconds per role) into the side-by-side
report of the current tree and a baseline commit."""
import importlib.util
import pathlib
import subprocess
import sys

import pytest

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


# --- the no-op site.yml: parsing its output, the medians, the side-by-side report ---
# (tests/unit/fixtures/bench_perf/README.md says what the captured log is)
NOOP_LOG = (ROOT / "tests" / "unit" / "fixtures" / "bench_perf" / "noop-site-2nodes.log").read_text()


def test_the_play_recap_gives_every_host_s_counts():
    hosts = bench_perf.parse_recap(NOOP_LOG)
    assert list(hosts) == ["localhost", "spark-head", "spark-worker"]
    assert hosts["spark-head"] == {"ok": 185, "changed": 0, "unreachable": 0, "failed": 0, "skipped": 152, "rescued": 0, "ignored": 0}
    assert hosts["spark-worker"]["ok"] == 158 and hosts["spark-worker"]["skipped"] == 146
    # the spark_steps line after the recap has a colon but no counts: not a host
    assert "steps" not in hosts


def test_a_changed_host_and_a_failed_one_are_read_from_the_recap_alone():
    text = ("TASK [x] ***\nok: [a] => {\"msg\": \"changed=7 in an earlier run\"}\n\n"
            "PLAY RECAP *****\nspark-head                 : ok=3    changed=2    unreachable=0    failed=1    skipped=0    rescued=0    ignored=0\n"
            "spark-worker               : ok=3    changed=1    unreachable=0    failed=0    skipped=4    rescued=0    ignored=0\n")
    run = bench_perf.parse_run(text)
    assert run["changed"] == 3  # the debug message's changed=7 is not a host's count
    assert run["hosts"]["spark-head"]["failed"] == 1 and run["tasks"] == 1
    assert run["task_entries"] == 0 and run["roles"] == {} and run["roles_total"] is None
    # no recap at all (the run died before it): changed is unknown, not 0
    assert bench_perf.parse_run("ERROR! the playbook could not be found\n")["changed"] is None


def test_tasks_recap_lists_every_entry_and_stops_at_the_next_section():
    tasks = bench_perf.parse_tasks(NOOP_LOG)
    assert len(tasks) == 40  # the fixture's 40 entries; ROLES RECAP's lines are not tasks
    assert tasks[0] == ("Gather the controller's Python facts", 0.90)
    # a name too long for its dashes keeps its own ' - ' and ends before the '--- 0.09s'
    assert tasks[1] == ("spark_common : Validating arguments against arg spec 'main' - The cluster's shared "
                        "settings and facts, for every other role", 0.09)
    assert all(not name.startswith(("serving", "total", "Monday", "=")) or name.startswith("serving :") for name, _ in tasks)
    assert ("qsfp_link : Find the renderer, netplan files and NetworkManager profiles touching the rails", 0.94) in tasks


def test_the_slowest_tasks_are_sorted_whatever_the_recap_s_order():
    slow = bench_perf.slowest(bench_perf.parse_tasks(NOOP_LOG), 3)
    assert [s for _, s in slow] == [0.94, 0.90, 0.67]
    assert slow[0][0].startswith("qsfp_link : Find the renderer")


def test_roles_recap_gives_seconds_per_role_and_the_total():
    roles, total = bench_perf.parse_roles(NOOP_LOG)
    assert total == 71.38
    assert roles["serving"] == 12.02 and roles["qsfp_link"] == 10.93 and roles["ansible.builtin.fail"] == 0.08
    assert len(roles) == 14 and "total" not in roles
    assert abs(sum(roles.values()) - total) < 0.05


def test_a_task_over_100_s_with_a_long_name_is_still_read():
    text = "TASKS RECAP ****\n" + "x" * 90 + " : wait - 60 - 123.45s\nshort ---------- 0.04s\n"
    assert bench_perf.parse_tasks(text) == [("x" * 90 + " : wait - 60", 123.45), ("short", 0.04)]


def test_parse_run_on_the_captured_log():
    run = bench_perf.parse_run(NOOP_LOG)
    assert run["changed"] == 0 and run["task_entries"] == 40 and run["tasks"] == 3 and run["roles_total"] == 71.38
    assert len(run["slowest"]) == 8 and run["slowest"][0][1] == 0.94


def test_median_and_the_target_by_node_count():
    assert bench_perf.median([3.0, 1.0, 2.0]) == 2.0
    assert bench_perf.median([100.0, 120.0]) == 110.0
    assert bench_perf.median([None, 5.0]) == 5.0 and bench_perf.median([]) is None
    assert bench_perf.noop_target(2) == 60 and bench_perf.noop_target(3) == 75 and bench_perf.noop_target(4) is None
    assert bench_perf.verdict(59.9, 60) == "met (60 s)" and bench_perf.verdict(75.5, 75) == "not met (76 s)"
    assert bench_perf.verdict(None, 60) == "no round ended with rc 0" and bench_perf.verdict(50, None) == "no target"


def test_the_spark_group_s_hosts_from_ansible_inventory_output():
    # `ansible-inventory -i inventory/lab-triangle --list`, _meta left out
    listing = {"all": {"children": ["ungrouped", "spark"]}, "spark": {"children": ["spark_head", "spark_workers"]},
               "spark_head": {"hosts": ["spark-head"]}, "spark_workers": {"hosts": ["spark-worker", "spark-worker2"]},
               "ungrouped": {"hosts": ["elsewhere"]}}
    assert bench_perf.group_hosts(listing) == ["spark-head", "spark-worker", "spark-worker2"]
    assert bench_perf.group_hosts({"spark": {"hosts": ["a"], "children": ["spark"]}}) == ["a"]  # a loop ends
    assert bench_perf.group_hosts({}) == []


def test_each_lab_inventory_names_its_target():
    if not pathlib.Path(sys.executable).with_name("ansible-inventory").exists():
        pytest.skip("ansible-inventory is not installed next to this Python")
    nodes = {inv: len(bench_perf.inventory_nodes(ROOT / "inventory" / inv)) for inv in ("lab", "lab3", "lab-triangle")}
    assert nodes == {"lab": 2, "lab3": 3, "lab-triangle": 3}
    assert [bench_perf.noop_target(n) for n in nodes.values()] == [60, 75, 75]


def _run(n, seconds, changed=0, entries=365, roles=None, rc=0, total=None):
    roles = roles if roles is not None else {"serving": 12.0, "qsfp_link": 10.0}
    return {"round": n, "seconds": seconds, "rc": rc, "changed": changed, "task_entries": entries, "tasks": 212,
            "hosts": {"spark-head": {"ok": 185, "skipped": 152}, "spark-worker": {"ok": 158, "skipped": 146}},
            "roles": roles, "roles_total": total if total is not None else sum(roles.values()),
            "load_before": "1.50", "load_after": "2.10", "slowest": [("qsfp_link : ping", 1.5)], "log": f".cache/x-{n}.log"}


def _noop(baseline_runs, current_runs, nodes=3, inventory="inventory/lab3"):
    return {"inventory": inventory, "nodes": nodes, "target_s": bench_perf.noop_target(nodes),
            "current": {"ref": "abc1234", "runs": current_runs},
            "baseline": {"ref": "b6a3cd0", "runs": baseline_runs} if baseline_runs is not None else None}


def test_the_summary_takes_medians_of_the_no_op_rounds():
    runs = [_run(1, 100.0, roles={"serving": 10.0, "watchdog": 2.0}), _run(2, 80.0, roles={"serving": 14.0}),
            _run(3, 500.0, rc=2, entries=12)]
    s = bench_perf.summary(runs)
    assert s["rounds"] == 3 and s["good_rounds"] == 2
    assert s["seconds"] == 90.0 and s["task_entries"] == 365  # the failed round's 500 s and 12 entries left out
    assert s["roles"] == {"serving": 12.0, "watchdog": 1.0}  # absent in round 2: 0 s there
    assert s["hosts"]["spark-head"] == {"ok": 185, "skipped": 152}


def test_the_side_by_side_table_has_each_round_the_median_and_the_target():
    base = [_run(1, 130.0, roles={"serving": 14.0, "qsfp_link": 11.0}), _run(2, 126.0, roles={"serving": 13.0, "qsfp_link": 12.0})]
    cur = [_run(1, 72.0, entries=300, roles={"serving": 9.0, "qsfp_link": 11.5}),
           _run(2, 78.0, changed=1, entries=300, roles={"serving": 10.0, "qsfp_link": 11.5})]
    text = bench_perf.noop_markdown(_noop(base, cur))
    lines = text.splitlines()
    assert lines[0] == "#### No-op `site.yml`, 3 lab nodes (inventory `inventory/lab3`)"
    assert lines[2] == ("| round | baseline `b6a3cd0`: s | changed | task entries | current `abc1234`: s | changed | task entries |")
    assert "| 1 | 130.0 | 0 | 365 | 72.0 | 0 | 300 |" in lines
    assert "| 2 | 126.0 | 0 | 365 | 78.0 | 1 | 300 |" in lines
    # the current tree's round 2 changed something: no no-op, left out of its median
    assert "| median | **128.0** | 0 | 365 | **72.0** | 0 | 300 |" in lines
    assert ("| target: 75 s (3 nodes) | not met (128 s) |  |  | met (72 s); 1 of 2 rounds failed or changed "
            "something |  |  |") in lines
    # per role: medians, current - baseline, largest first, then the total
    roles = lines[lines.index(next(l for l in lines if l.startswith("| role |"))):]
    assert roles[0] == "| role | baseline `b6a3cd0` s | current `abc1234` s | current - baseline s |"
    assert roles[2] == "| serving | 13.50 | 9.00 | -4.50 |"
    assert roles[3] == "| qsfp_link | 11.50 | 11.50 | +0.00 |"
    assert roles[4] == "| **total** | 25.00 | 20.50 | -4.50 |"
    assert "baseline 1: 1.50 / 2.10; current 1: 1.50 / 2.10; baseline 2:" in text
    assert "spark-head 185/152" in text


def test_two_nodes_name_the_60_s_target_and_a_failed_round_shows_its_rc():
    text = bench_perf.noop_markdown(_noop([_run(1, 70.0), _run(2, 65.0, rc=4)], [_run(1, 58.0), _run(2, 59.0)],
                                          nodes=2, inventory="inventory/lab"))
    assert "2 lab nodes (inventory `inventory/lab`)" in text
    assert "| 2 | 65.0 (rc 4) | 0 | 365 | 59.0 | 0 | 365 |" in text
    assert ("| target: 60 s (2 nodes) | not met (70 s); 1 of 2 rounds failed or changed something |  |  "
            "| met (58 s) |  |  |") in text


def test_a_role_that_ran_on_one_side_only_counts_its_full_seconds_as_the_difference():
    base = [_run(1, 100.0, roles={"serving": 10.0, "old_role": 4.0})]
    cur = [_run(1, 90.0, roles={"serving": 10.0, "new_role": 2.5})]
    lines = bench_perf.noop_markdown(_noop(base, cur)).splitlines()
    assert "| old_role | 4.00 | - | -4.00 |" in lines and "| new_role | - | 2.50 | +2.50 |" in lines


def test_without_a_baseline_only_the_current_tree_is_shown():
    text = bench_perf.noop_markdown(_noop(None, [_run(1, 110.0), _run(2, 106.0)], nodes=2, inventory="inventory/lab"))
    assert "baseline" not in text.split("Load average")[0]
    assert "| round | current `abc1234`: s | changed | task entries |" in text
    assert "| median | **108.0** | 0 | 365 |" in text
    assert "| serving | 12.00 |" in text and "current - baseline" not in text


def test_a_node_count_without_a_target_says_so():
    text = bench_perf.noop_markdown(_noop(None, [_run(1, 110.0)], nodes=4))
    assert "| target: none for 4 nodes | no target |" in text


def test_a_noop_only_run_renders_without_the_two_node_figures():
    noop = _noop([_run(1, 130.0)], [_run(1, 72.0)])
    r = {"when": "2026-12-08 10:00 UTC", "cores": 2, "load": ["1.0", "2.0"], "options": "--noop-only --baseline b6a3cd0",
         "skipped": "--noop-only", "noop": noop, "noop_site": bench_perf.noop_compat(noop)}
    text = bench_perf.render(r)
    assert text.startswith("### 2026-12-08 10:00 UTC: no-op site.yml on 3 lab nodes, baseline `b6a3cd0` vs current")
    assert "(scripts/bench_perf.py --noop-only --baseline b6a3cd0)" in text and "skipped: --noop-only" in text
    assert "| 1 | 130.0 | 0 | 365 | 72.0 | 0 | 365 |" in text and "| qsfp_link : ping | 1.5 |" in text
    assert "iperf3 head -> worker" not in text


def test_the_full_bench_keeps_its_sections_and_adds_the_side_by_side():
    noop = _noop([_run(1, 130.0)], [_run(1, 106.0), _run(2, 110.0)], nodes=2, inventory="inventory/lab")
    r = {"when": "2026-11-30 10:46 UTC", "cores": 2, "load": ["3.6", "2.0", "3.1"],
         "iperf_rail0": 28.9, "iperf_rail0_after": 27.0, "iperf_both": 22.1, "model_bytes": 2_000_000_000,
         "fanout_1": [4.7, 2_000_000_000, 2_003_000_000], "fanout_4": [5.6, 2_000_000_000, 2_004_000_000],
         "fanout_4_both": [5.4, 2_000_000_000, 2_004_000_000],
         "image": {"image": "i", "image_bytes": 1, "tar_bytes": 620_000_000, "save_s": 3.0, "ship_s": 10.0,
                   "gzip_bytes": 200_000_000, "gzip_s": 20.0, "load_s": 5.0},
         "noop": noop, "noop_site": bench_perf.noop_compat(noop)}
    text = bench_perf.render(r)
    assert "| no-op `site.yml`, two lab nodes | 108 s, rc 0, changed=0 |" in text  # the current tree's median
    assert "1 stream **0.12x**" in text and "#### Where the no-op site.yml spends its time" in text
    assert "| median | **130.0** | 0 | 365 | **108.0** | 0 | 365 |" in text


def test_noop_compat_reports_the_worst_round():
    runs = [_run(1, 100.0), _run(2, 104.0), _run(3, 106.0, changed=2), _run(4, 300.0, rc=2)]
    n = bench_perf.noop_compat(_noop(None, runs))
    assert n["seconds"] == 102.0 and n["rc"] == 2 and n["changed"] == 2


def test_options_report_every_problem_at_once():
    args = bench_perf.arguments(["--rounds", "0", "--inventory", "inventory/nowhere", "--baseline", "no-such-ref-xyz", "--no-site"])
    problems = bench_perf.option_problems(args)
    text = "\n".join(problems)
    assert "--rounds 0" in text and "inventory/nowhere" in text and "no-such-ref-xyz: not a commit" in text
    assert "--no-site skips the no-op site.yml" in text
    assert len(problems) == 5  # and --no-site with an inventory other than inventory/lab leaves nothing to measure


def test_a_baseline_without_the_inventory_is_refused_before_anything_runs():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    first = bench_perf.git("rev-list", "--max-parents=0", "HEAD").splitlines()[-1]
    if bench_perf.git("cat-file", "-e", f"{first}:inventory/lab3", check=False) is not None:
        pytest.skip("the first commit already has inventory/lab3")
    problems = bench_perf.option_problems(bench_perf.arguments(["--baseline", first, "--inventory", "inventory/lab3"]))
    assert problems == [f"--baseline {first}: has no inventory/lab3"]
    assert bench_perf.option_problems(bench_perf.arguments(["--baseline", "HEAD", "--inventory", "inventory/lab3"])) == []


def test_the_two_node_parts_are_skipped_off_the_two_node_lab():
    assert bench_perf.two_node_skip(bench_perf.arguments([])) is None
    assert bench_perf.two_node_skip(bench_perf.arguments(["--noop-only"])) == "--noop-only"
    assert "inventory/lab only" in bench_perf.two_node_skip(bench_perf.arguments(["--inventory", "inventory/lab3"]))


def test_the_baseline_tree_finds_the_inventory_at_the_same_path(tmp_path):
    assert bench_perf.inventory_path(tmp_path, "inventory/lab3") == tmp_path / "inventory" / "lab3"
    assert bench_perf.inventory_path(tmp_path, str(ROOT / "inventory" / "lab")) == tmp_path / "inventory" / "lab"
    assert bench_perf.inventory_path(tmp_path, "/elsewhere/hosts.yml") == pathlib.Path("/elsewhere/hosts.yml")


def test_the_baseline_gets_the_lab_cache_files(tmp_path, monkeypatch):
    root, tree = tmp_path / "root", tmp_path / "tree"
    (root / ".cache" / "facts").mkdir(parents=True)
    (root / ".cache" / "lab-api-key").write_text("k")
    (root / ".cache" / "lab-runtime-image.ref").write_text("sha256:1")
    (root / ".cache" / "facts" / "spark-head").write_text("{}")
    (root / ".cache" / "bench-noop-current-1.log").write_text("not copied")
    tree.mkdir()
    monkeypatch.setattr(bench_perf, "ROOT", root)
    bench_perf.seed_baseline_cache(tree)
    assert sorted(p.name for p in (tree / ".cache").iterdir()) == ["facts", "lab-api-key", "lab-runtime-image.ref"]
    assert (tree / ".cache" / "lab-api-key").read_text() == "k" and (tree / ".cache" / "facts" / "spark-head").exists()


def test_a_section_starts_at_its_banner_only():
    text = ("TASK [Say where timings are] ***\nok: [a] => msg: see the TASKS RECAP below ---- 9.99s\n\n"
            "TASKS RECAP ****\n==== \nreal task ---- 0.50s\n\nROLES RECAP ****\nrole ---- 0.50s\n")
    assert bench_perf.section(text, "TASKS RECAP") == ["====", "real task ---- 0.50s", ""]
    assert bench_perf.parse_tasks(text) == [("real task", 0.5)]
    assert bench_perf.section(text, "PLAY RECAP") == []


def _repo(tmp_path):
    """A small git repository shaped like this one: site.yml, ansible.cfg, inventory/lab3."""
    root = tmp_path / "repo"
    (root / "inventory" / "lab3").mkdir(parents=True)
    (root / "site.yml").write_text("---\n")
    (root / "ansible.cfg").write_text("[defaults]\n")
    (root / "inventory" / "lab3" / "hosts.yml").write_text("spark: {}\n")
    (root / ".gitignore").write_text(".cache/\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "one"]):
        subprocess.run(git + args, cwd=root, check=True)
    return root, git


def test_the_baseline_worktree_is_made_once_and_reused_only_as_committed(tmp_path, monkeypatch):
    root, git = _repo(tmp_path)
    monkeypatch.setattr(bench_perf, "ROOT", root)
    sha, short, tree = bench_perf.baseline_tree("HEAD")
    assert tree == root / ".cache" / "bench-baseline" / short and (tree / "site.yml").exists()
    assert subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree, capture_output=True, text=True).stdout.strip() == sha
    assert bench_perf.baseline_tree("HEAD") == (sha, short, tree)  # reused
    (tree / "site.yml").write_text("changed\n")
    with pytest.raises(SystemExit, match="has changes"):
        bench_perf.baseline_tree("HEAD")
    subprocess.run(git + ["worktree", "remove", "--force", str(tree)], cwd=root, check=True)
    tree.mkdir(parents=True)  # a plain folder there: git would answer for the outer repository
    with pytest.raises(SystemExit, match="not a worktree"):
        bench_perf.baseline_tree("HEAD")


def test_noop_site_runs_the_trees_in_turns_with_every_timing_on(tmp_path, monkeypatch):
    """The orchestration with stand-ins for ansible-playbook and ansible-inventory: each
    round runs the baseline then the current tree, each from its own folder with its own
    ansible.cfg and inventory, profile_roles on and every task listed; logs kept apart."""
    root, _ = _repo(tmp_path)
    (root / ".cache").mkdir()
    (root / ".cache" / "lab-api-key").write_text("key")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fixture = ROOT / "tests" / "unit" / "fixtures" / "bench_perf" / "noop-site-2nodes.log"
    (bin_dir / "ansible-playbook").write_text(
        "#!/bin/sh\n"
        f"echo \"$PWD|$ANSIBLE_CONFIG|$ANSIBLE_CALLBACKS_ENABLED|$PROFILE_TASKS_TASK_OUTPUT_LIMIT|$2|$(cat .cache/lab-api-key)\" >> {calls}\n"
        f"cat {fixture}\n")
    (bin_dir / "ansible-inventory").write_text(
        "#!/bin/sh\necho '{\"spark\": {\"children\": [\"h\", \"w\"]}, \"h\": {\"hosts\": [\"a\"]}, \"w\": {\"hosts\": [\"b\", \"c\"]}}'\n")
    for name in ("ansible-playbook", "ansible-inventory"):
        (bin_dir / name).chmod(0o755)
    monkeypatch.setattr(bench_perf, "ROOT", root)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    noop = bench_perf.noop_site("inventory/lab3", baseline="HEAD", rounds=2)
    tree = root / noop["baseline"]["tree"]
    assert noop["nodes"] == 3 and noop["target_s"] == 75 and noop["hosts"] == ["a", "b", "c"]
    seen = [line.split("|") for line in calls.read_text().splitlines()]
    # each tree's rounds together, each after one settling run (not counted): the two trees may
    # configure the lab differently, so only a tree's second run on the lab is a no-op
    assert [pathlib.Path(s[0]) for s in seen] == [tree] * 3 + [root] * 3
    assert [pathlib.Path(s[1]) for s in seen] == [tree / "ansible.cfg"] * 3 + [root / "ansible.cfg"] * 3
    assert [pathlib.Path(s[4]) for s in seen] == [tree / "inventory" / "lab3"] * 3 + [root / "inventory" / "lab3"] * 3
    assert noop["baseline"]["settle"]["round"] == 0 and noop["current"]["settle"]["round"] == 0
    assert all("ansible.posix.profile_roles" in s[2] and s[3] == "all" and s[5] == "key" for s in seen)
    assert [r["round"] for r in noop["baseline"]["runs"]] == [1, 2] and len(noop["current"]["runs"]) == 2
    run = noop["current"]["runs"][1]
    assert run["rc"] == 0 and run["changed"] == 0 and run["task_entries"] == 40 and run["roles"]["serving"] == 12.02
    assert run["log"] == ".cache/bench-noop-current-2.log" and (root / run["log"]).read_text() == fixture.read_text()
    assert (root / ".cache" / "bench-noop-baseline-1.log").exists()
    assert noop["current"]["ref"] == noop["baseline"]["ref"]  # HEAD, nothing uncommitted
