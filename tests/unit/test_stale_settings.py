"""spark_stale_settings: the one wording of a renamed or removed setting, for the
preflight (every host at once) and spark_common's facts (one host, no preflight)."""

import importlib.util
import pathlib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location(
    "spark_settings_filter", ROOT / "roles/spark_common/filter_plugins/spark_settings.py")
_MOD = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_MOD)
stale = _MOD.spark_stale_settings
TABLES = yaml.safe_load((ROOT / "roles/spark_common/vars/main.yml").read_text())


def test_nothing_set_nothing_said():
    hostvars = {"a": {"spark_mtu": 9000}, "b": {}}
    assert stale(["a", "b"], hostvars, TABLES["spark_renamed_settings"], TABLES["spark_removed_settings"]) == []


def test_each_old_name_once_with_every_host_that_sets_it():
    hostvars = {"localhost": {}, "h1": {"hf_cache_jit_mismatch": "clear", "runtime_image_fork_repo": "x"},
                "h2": {"hf_cache_jit_mismatch": "clear"}}
    lines = stale(["localhost", "h1", "h2"], hostvars, TABLES["spark_renamed_settings"],
                  TABLES["spark_removed_settings"])
    assert len(lines) == 2
    assert lines[0].startswith("hf_cache_jit_mismatch is now jit_cache_mismatch (set for h1, h2): set the new name")
    assert lines[1].startswith("runtime_image_fork_repo is gone (set for h1): ")
    assert lines[1].endswith("Remove it from the inventory or the command line")


def test_the_facts_guard_and_the_preflight_use_the_one_filter():
    facts = (ROOT / "roles/spark_common/tasks/facts.yml").read_text()
    preflight = (ROOT / "roles/preflight/tasks/main.yml").read_text()
    for text in (facts, preflight):
        assert "spark_stale_settings(hostvars, spark_renamed_settings, spark_removed_settings)" in text
    # the facts guard steps aside where the preflight gathers every problem (site.yml)
    assert "when: not (spark_preflight_gather | default(false) | bool)" in facts
