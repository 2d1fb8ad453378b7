"""The record of a run's steps (module_utils/spark_cluster/reports/steps.py and
callback_plugins/spark_steps.py), the critical-path model
(module_utils/spark_cluster/reports/critical_path.py, its table in docs/performance.md),
and the wiring of the long steps: both started before either is waited for."""

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

from spark_cluster.reports import critical_path as cp
from spark_cluster.reports import steps

ROOT = pathlib.Path(__file__).resolve().parents[2]


# ---- the record

def test_step_name_is_the_play_name_up_to_the_first_dash():
    assert steps.step_name("Serving - workers, then the head") == "Serving"
    assert steps.step_name("Runtime image - build once - ship") == "Runtime image"
    assert steps.step_name("Preflight") == "Preflight"
    assert steps.step_name("") == "(unnamed play)"


def test_find_marks_reads_set_fact_values_and_top_level_keys_only():
    result = {"ansible_facts": {"hf_cache_step_download": {"spark_step": "download", "event": "launched"},
                                "other": {"x": 1}, "scalar": 3}}
    assert steps.find_marks(result) == [{"step": "download", "event": "launched"}]
    assert steps.find_marks({"spark_step": "image", "event": "finished"}) == [{"step": "image", "event": "finished"}]
    # an unknown event, an empty fact (no job started) and a non-dict are no marks
    assert steps.find_marks({"ansible_facts": {"a": {"spark_step": "x", "event": "begun"}, "b": {}}}) == []
    assert steps.find_marks(None) == []


def _run():
    rec = steps.StepRecorder()
    rec.play_start("Preflight - controller", 1000.0)
    rec.play_start("Preflight - nodes", 1010.0)
    rec.play_start("Long steps - start", 1030.0)
    rec.mark("head", {"step": "download", "event": "launched"}, 1032.0)
    rec.mark("head", {"step": "image", "event": "launched"}, 1035.0)
    rec.play_start("Hugging Face cache - download", 1040.0)
    rec.mark("head", {"step": "download", "event": "finished"}, 1300.0)
    rec.mark("head", {"step": "fan-out", "event": "launched"}, 1301.0)
    rec.mark("worker", {"step": "fan-out", "event": "launched"}, 1302.0)
    rec.mark("worker", {"step": "fan-out", "event": "finished"}, 1400.0)
    rec.mark("head", {"step": "fan-out", "event": "finished"}, 1303.0)
    rec.play_start("Runtime image - build once", 1401.0)
    rec.mark("head", {"step": "image", "event": "finished"}, 1500.0)
    return rec


def test_record_merges_plays_of_a_step_and_times_the_marked_steps():
    record = _run().finish(1600.0, ok=True)
    by = {s["step"]: s for s in record["steps"]}
    assert [s["step"] for s in record["steps"]] == ["Preflight", "Long steps", "Hugging Face cache",
                                                    "Runtime image", "download", "image", "fan-out"]
    assert by["Preflight"]["seconds"] == 30.0 and by["Preflight"]["offset_s"] == 0.0
    assert by["Runtime image"]["end"] == 1600.0  # the last play ends with the run
    assert by["download"] == {**by["download"], "start": 1032.0, "end": 1300.0, "seconds": 268.0,
                              "state": "finished", "hosts": ["head"], "offset_s": 32.0}
    # first launch on any host, last finish on any host
    assert by["fan-out"]["start"] == 1301.0 and by["fan-out"]["end"] == 1400.0
    assert by["fan-out"]["hosts"] == ["head", "worker"]
    assert record["overlaps"]["download/image"] == 265.0
    assert "download/fan-out" not in record["overlaps"]  # one after the other
    assert record["seconds"] == 600.0 and record["ok"] is True


def test_a_failed_run_records_what_it_reached():
    rec = steps.StepRecorder()
    rec.play_start("Long steps - start", 10.0)
    rec.mark("head", {"step": "download", "event": "launched"}, 11.0)
    rec.mark("head", {"step": "image", "event": "launched"}, 12.0)
    rec.mark("head", {"step": "image", "event": "failed"}, 50.0)
    record = rec.finish(60.0, ok=False)
    by = {s["step"]: s for s in record["steps"]}
    assert by["download"]["state"] == "unfinished" and by["download"]["seconds"] is None
    assert by["image"]["state"] == "failed" and by["image"]["seconds"] == 38.0
    # an unfinished step overlaps until the other's end
    assert record["overlaps"] == {"download/image": 38.0}
    text = steps.steps_markdown(record)
    assert "FAILED" in text and "| download | marked | 1.0 | - | - | unfinished on head |" in text


def test_markdown_lists_every_step_and_the_overlap():
    text = steps.steps_markdown(_run().finish(1600.0, ok=True))
    assert text.count("\n| ") == 1 + 7  # header, seven steps (the rule starts "|---")
    assert "| download | marked | 32.0 |" in text
    assert "download/image 265.0 s" in text


def _callback_module():
    spec = importlib.util.spec_from_file_location("spark_steps_cb", ROOT / "callback_plugins" / "spark_steps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_callback_writes_the_stamped_and_latest_files(tmp_path):
    module = _callback_module()
    record = _run().finish(1600.0, ok=True)
    paths = module.write_record(record, tmp_path / "reports", 1600.0)
    assert [p.name for p in paths] == ["steps-19700101T002640Z.json", "steps-latest.json", "steps-latest.md"]
    assert json.loads(paths[1].read_text()) == json.loads(json.dumps(record))
    assert paths[2].read_text() == steps.steps_markdown(record)
    assert not list((tmp_path / "reports").glob("*.tmp"))


def test_only_the_newest_stamped_records_stay(tmp_path):
    module = _callback_module()
    reports = tmp_path / "reports"
    reports.mkdir()
    for n in range(5):
        (reports / f"steps-2026120{n}T000000Z.json").write_text("{}")
    (reports / "link-latest.json").write_text("{}")
    record = _run().finish(1600.0, ok=True)
    module.write_record(record, reports, 1600.0, keep=3)
    names = sorted(p.name for p in reports.iterdir())
    # the new record's 1970 stamp sorts first: the oldest by name goes, whatever was written last
    assert names == ["link-latest.json", "steps-20261202T000000Z.json", "steps-20261203T000000Z.json",
                     "steps-20261204T000000Z.json", "steps-latest.json", "steps-latest.md"]
    assert steps.stale_records(["steps-latest.json", "steps-a.json", "steps-b.json"], keep=1) == ["steps-a.json"]
    assert steps.stale_records(["steps-a.json"], keep=5) == []


PLAYBOOK = """
- name: Long steps - start
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Launch
      ansible.builtin.set_fact:
        x_step: {spark_step: download, event: launched}
- name: Cache - wait
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Finished
      ansible.builtin.set_fact:
        x_step: {spark_step: download, event: finished}
    - name: Fail the run
      ansible.builtin.fail:
        msg: planned
      when: fail_it | bool
"""


@pytest.mark.parametrize("fail_it", [False, True])
def test_callback_in_a_real_run_writes_the_record_also_when_the_run_fails(tmp_path, fail_it):
    playbook = shutil.which("ansible-playbook", path=os.path.dirname(sys.executable)) or shutil.which("ansible-playbook")
    if playbook is None:
        pytest.skip("ansible-playbook is not installed")
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    # the project's ansible.cfg enables the callback (run from elsewhere: its paths are the cfg's)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), SPARK_STEPS_DIR=str(tmp_path / "reports"),
               ANSIBLE_FACT_CACHING="memory", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))
    proc = subprocess.run([playbook, "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml"),
                           "-e", f"fail_it={fail_it}"], env=env, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert (proc.returncode != 0) == fail_it, proc.stdout + proc.stderr
    record = json.loads((tmp_path / "reports" / "steps-latest.json").read_text())
    assert record["ok"] is not fail_it
    by = {s["step"]: s for s in record["steps"]}
    assert set(by) == {"Long steps", "Cache", "download"}
    assert by["download"]["state"] == "finished" and by["download"]["hosts"] == ["localhost"]
    assert by["download"]["start"] <= by["download"]["end"]
    assert len(list((tmp_path / "reports").glob("steps-2*.json"))) == 1


# ---- the model

def test_model_phases_from_the_field_figures():
    m = cp.critical_path(1.0, "build")
    assert m["download_s"] == pytest.approx(167.57 * 8)
    assert m["fanout_s"] == pytest.approx(167.57 * 8 / 16.4)
    assert m["ship_s"] == pytest.approx(22.7 * 8 / 16.4)
    assert m["sequential_s"] == pytest.approx(167.57 * 8 + 32 * 60 + (167.57 + 22.7) * 8 / 16.4 + 19 * 60)
    # the build (32 min) outlasts the download plus fan-out (about 24 min): the build is the path
    assert m["overlapped_s"] == pytest.approx(32 * 60 + 22.7 * 8 / 16.4 + 19 * 60)


def test_model_overlap_saves_the_shorter_of_download_and_build():
    slow = cp.critical_path(0.5, "build")   # download 45 min > build 32 min
    assert slow["saved_s"] == pytest.approx(32 * 60)
    fast = cp.critical_path(2.5, "build")   # download 9 min < build
    assert fast["saved_s"] == pytest.approx(fast["download_s"] + fast["fanout_s"])


def test_model_pull_over_the_same_link_saves_nothing_and_own_limit_saves_the_pull():
    shared = cp.critical_path(1.0, "pull, shared link")
    assert shared["saved_s"] == pytest.approx(0)
    assert shared["download_end_s"] == pytest.approx((167.57 + 22.7) * 8)
    assert shared["image_end_s"] == pytest.approx(22.7 * 8 * 2)
    own = cp.critical_path(1.0, "pull, own limit")
    assert own["saved_s"] == pytest.approx(own["image_s"])


def test_model_refuses_bad_input():
    with pytest.raises(ValueError, match="source must be one of"):
        cp.critical_path(1.0, "copy")
    with pytest.raises(ValueError, match="must be positive"):
        cp.critical_path(0, "build")


def test_docs_table_is_the_generated_one():
    text = (ROOT / "docs" / "performance.md").read_text()
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import critical_path as script
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    assert script.replace_table(text, cp.critical_path_markdown()) == text, \
        "docs/performance.md's table is stale: run scripts/critical_path.py --write"
    with pytest.raises(ValueError, match="markers"):
        script.replace_table("no markers", "x")


# ---- the wiring

def _load(path):
    return yaml.safe_load((ROOT / path).read_text())


def _names(tasks):
    """Every task's include target (include_role tasks_from, include_tasks/import_tasks file), in order."""
    out = []
    for task in tasks or []:
        for key in ("ansible.builtin.include_role", "ansible.builtin.import_role"):
            if key in task:
                out.append(f"{task[key]['name']}:{task[key].get('tasks_from', 'main')}")
        for key in ("ansible.builtin.include_tasks", "ansible.builtin.import_tasks"):
            if key in task:
                out.append(task[key])
        out += _names(task.get("block"))
    return out


def test_site_starts_both_long_steps_before_either_wait():
    plays = _load("playbooks/site.yml")
    order = [p.get("ansible.builtin.import_playbook") or p["name"] for p in plays]
    start = next(i for i, p in enumerate(plays) if p["name"].startswith("Long steps - start"))
    assert order.index("firewall.yml") < start < order.index("cache.yml") < order.index("serving.yml")
    assert _names(plays[start]["tasks"]) == ["hf_cache:download_start", "runtime_image:acquire_start"]
    for task in plays[start]["tasks"]:  # selected by either role's tag, and their tasks too
        role = task["ansible.builtin.include_role"]["name"]
        assert task["tags"] == [role] and task["ansible.builtin.include_role"]["apply"]["tags"] == [role]


def test_each_wait_starts_its_step_first_so_the_entry_points_work_alone():
    assert _names(_load("roles/hf_cache/tasks/download.yml"))[:2] == ["download_start.yml", "download_wait.yml"]
    main = _names(_load("roles/runtime_image/tasks/main.yml"))
    assert main.index("acquire_start.yml") == main.index("acquire_wait.yml") - 1
    # the download waits in the cache play before the fan-out; the image waits in serving.yml
    hf_main = _names(_load("roles/hf_cache/tasks/main.yml"))
    assert hf_main.index("hub.yml") < hf_main.index("{{ hf_cache_mode }}.yml")


def _block_when(path):
    return _load(path)[0]["when"]


def test_start_tasks_run_once_and_only_when_something_is_missing():
    download = _block_when("roles/hf_cache/tasks/download_start.yml")
    assert "not __hf_cache_download_started | default(false)" in download
    assert "not hf_cache_state.snapshot.complete" in download and "spark_is_head | bool" in download
    acquire = _block_when("roles/runtime_image/tasks/acquire_start.yml")
    assert acquire == "not __runtime_image_acquire_started | default(false)"
    pull = _load("roles/runtime_image/tasks/pull.yml")
    background = pull[1]
    assert background["when"] == "__runtime_image_pull_inspect.rc != 0"
    started = background["block"][-1]
    assert started["poll"] == 0 and "runtime_image_pull" in started
    assert started["register"] == "runtime_image_acquire_job"
    build = _load("roles/runtime_image/tasks/build.yml")
    start = [t for t in build if "block" in t][0]
    assert start["when"] == "__runtime_image_needs_build | bool"
    assert start["block"][-1]["poll"] == 0 and start["block"][-1]["register"] == "runtime_image_acquire_job"
    # the waits collect that job (pull) or read the build's log, and mark the end
    wait = (ROOT / "roles/runtime_image/tasks/pull_wait.yml").read_text()
    assert "ansible.builtin.async_status" in wait and "runtime_image_acquire_job.ansible_job_id" in wait


def test_the_download_wait_prints_the_image_step_beside_it():
    tasks = _load("roles/hf_cache/tasks/download_wait.yml")
    peek = next(t for t in tasks if "ansible.builtin.async_status" in t)
    assert peek["ansible.builtin.async_status"]["jid"] == "{{ runtime_image_acquire_job.ansible_job_id }}"
    show = next(t for t in tasks if t["name"] == "Show the download's progress")
    assert "hf_cache_image_peek" in show["ansible.builtin.debug"]["msg"]


def test_the_callback_is_enabled():
    cfg = (ROOT / "ansible.cfg").read_text()
    assert "callback_plugins = callback_plugins" in cfg
    enabled = next(line for line in cfg.splitlines() if line.startswith("callbacks_enabled"))
    assert "spark_steps" in enabled and "ansible.posix.profile_tasks" in enabled
