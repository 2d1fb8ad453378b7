"""One preflight that names every problem (module_utils/spark_cluster/runtime/preflight.py and its filters):
each check gathers its refusals with their usual messages, the preflight fails once with
all of them, by where they were found, before any change."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

from conftest import ROOT

from spark_cluster.runtime import preflight as pf

DIGEST_REF = "ghcr.io/anemll/dspark-vllm-gx10:0.1.1@sha256:" + "a" * 64
COMMIT = "489af9589684127ece879dd9e53395c5ff9157c8"
BASE = "ghcr.io/bjk110/vllm-spark:unholy-fusion-prod-ready"


def test_aggregate_lists_every_problem_once_by_where_it_was_found():
    count, message = pf.aggregate(
        ["ansible-core 2.18.0 found; 2.19 or newer expected. Run `make venv` to get the pinned version."],
        {"spark-2": ["spark-2: serving_api_key is empty: export SPARK_API_KEY", "disk: 80.8 GB free, 168.0 GB needed"],
         "spark-1": ["spark-1: runtime_image_pull_ref is empty", "spark-1: runtime_image_pull_ref is empty"]},
        dropped=["spark-3"])
    assert count == 5
    lines = message.splitlines()
    assert lines[0] == "preflight found 5 problem(s); nothing was changed on any host. Fix them all, then re-run:"
    assert lines[1].startswith("- controller: ansible-core 2.18.0 found")
    assert lines[2] == "- spark-1: runtime_image_pull_ref is empty"          # a node's lines keep their host prefix
    assert lines[4] == "- spark-2: disk: 80.8 GB free, 168.0 GB needed"       # and get one when they lack it
    assert lines[5].startswith("- spark-3: no result (unreachable")


def test_aggregate_of_nothing_refuses_nothing():
    assert pf.aggregate([], {"spark-1": [], "spark-2": []}, []) == (0, "preflight: no problem found")


def test_the_default_pull_needs_no_pin_from_the_user():
    """current profile + pull: the digest comes from the profile; nothing to research."""
    assert pf.runtime_image_problems("pull", DIGEST_REF, "recipe", COMMIT, "", BASE) == []


@pytest.mark.parametrize("args, message", [
    (("pull", "", "recipe", COMMIT, "", BASE), "runtime_image_pull_ref is empty"),
    (("pull", "ghcr.io/anemll/dspark-vllm-gx10:0.1.1", "recipe", COMMIT, "", BASE), "name the image by digest"),
    (("build", "", "recipe", "main", "x@sha256:" + "b" * 64, BASE), "runtime_image_recipe_version is 'main'"),
    (("build", "", "recipe", COMMIT, "", BASE), "docker buildx imagetools inspect " + BASE),
    (("fetch", "", "recipe", COMMIT, "", BASE), "runtime_image_source is 'fetch'"),
])
def test_runtime_image_pins_are_named(args, message):
    problems = pf.runtime_image_problems(*args)
    assert len(problems) == 1 and message in problems[0]


def test_a_build_lists_both_missing_pins_at_once():
    problems = pf.runtime_image_problems("build", "", "recipe", "", "", BASE, build_vars={"HF_TOKEN": "x"})
    assert len(problems) == 3
    assert pf.runtime_image_problems("build", "", "recipe", "main", "spark-lab-base:trixie", BASE, True) == []


def test_free_space_problem_keeps_the_builds_words():
    line = pf.free_space_problem("spark-1", "/var/lib/docker", 80.8e9, 168, "the pull of x")
    assert line.startswith("spark-1: Docker's data-root /var/lib/docker has 80.8 GB free; the pull of x needs 168.0 GB")
    assert pf.free_space_problem("spark-1", "/var/lib/docker", 200e9, 168, "x") is None


def serving(**change):
    args = dict(bind_address="127.0.0.1", bind_any=False, api_key_present=True, key_required=True,
                levels={"off": {}, "low": {}, "high": {}, "max": {}}, default_level="max",
                smoke_levels={"on": "high", "off": "off"}, kv_dtype="nvfp4_ds_mla",
                image_kv_dtypes=["nvfp4_ds_mla"], kv_fit_problems=[])
    args.update(change)
    return pf.serving_problems("spark-1", **args)


def test_serving_problems_are_all_named():
    assert serving() == []
    problems = serving(bind_address="0.0.0.0", api_key_present=False, default_level="non-think",
                       smoke_levels={"on": "high", "off": "none"}, kv_dtype="fp8",
                       kv_fit_problems=["serving_max_model_len 4194304 is more than the KV pool"])
    assert len(problems) == 6
    assert "serving_api_bind_address is '0.0.0.0'" in problems[0]
    assert "serving_api_key is empty: export SPARK_API_KEY" in problems[1]
    assert "serving_default_thinking is 'non-think': this image accepts the thinking levels off, low, high, max" in problems[2]
    assert "serving_smoke_thinking.off is 'none'" in problems[3]
    assert "serving_kv_cache_dtype is 'fp8'" in problems[4]
    assert problems[5] == "spark-1: serving_max_model_len 4194304 is more than the KV pool"
    assert serving(bind_address="0.0.0.0", bind_any=True, api_key_present=False, key_required=False) == []


def test_the_filters_give_lists_and_a_report():
    path = ROOT / "roles/spark_common/filter_plugins/spark_preflight.py"
    spec = importlib.util.spec_from_file_location("spark_preflight_filter", path)
    f = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(f)
    assert f.spark_free_space_problem("n", "/d", 1, 2, "x")[0].startswith("n: Docker's data-root /d")
    lines = f.spark_preflight_host_lines({"hf_cache_problems": ["n: a"], "runtime_image_problems": ["n: b"],
                                          "preflight_host_problems": ["n: c"]})
    assert lines == ["n: c", "n: a", "n: b"]
    assert f.spark_preflight_report(["x"], {"n": lines}, ["m"])["count"] == 5


def test_the_controller_preflight_fails_once_with_every_inventory_problem(tmp_path):
    """Two problems in one inventory (an address used twice, an MTU out of range): one run,
    one failure naming both - not one per run."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "spark:\n  children:\n    spark_head:\n      hosts:\n        spark-1:\n"
        "          spark_mtu: 20000\n"
        "          spark_rails: [{interface: enp1s0f1np1, address: 192.168.100.10/24}]\n"
        "    spark_workers:\n      hosts:\n        spark-2:\n"
        "          spark_rails: [{interface: enp1s0f1np1, address: 192.168.100.10/24}]\n")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_FACT_CACHING="memory")
    run = subprocess.run([str(pathlib.Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory),
                          str(ROOT / "playbooks/preflight-controller.yml"),
                          "-e", f"ansible_python_interpreter={sys.executable}"],
                         capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert "preflight found 2 problem(s); nothing was changed on any host" in out, out[-3000:]
    assert "spark_mtu" in out and "192.168.100.10" in out
    assert out.count("fatal: [localhost]") == 1


def test_renamed_and_removed_settings_fail_with_the_rest_of_the_preflight(tmp_path):
    """An old name on a node, in the group's vars and on the command line: each named with
    where it is set and its new name (or why it is gone), in the one failure that also
    lists the inventory's problems."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "spark:\n  vars:\n    hf_cache_jit_dir: /var/cache/jit\n  children:\n    spark_head:\n      hosts:\n"
        "        spark-1:\n          spark_mtu: 20000\n"
        "          spark_rails: [{interface: enp1s0f1np1, address: 192.168.100.10/24}]\n"
        "    spark_workers:\n      hosts:\n        spark-2:\n          serving_watchdog_join_timeout: 20\n"
        "          spark_rails: [{interface: enp1s0f1np1, address: 192.168.100.11/24}]\n")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_FACT_CACHING="memory")
    run = subprocess.run([str(pathlib.Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory),
                          str(ROOT / "playbooks/preflight-controller.yml"),
                          "-e", f"ansible_python_interpreter={sys.executable}", "-e", "runtime_image_fork_repo=x"],
                         capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert "preflight found 4 problem(s); nothing was changed on any host" in out, out[-3000:]
    assert "hf_cache_jit_dir is now jit_cache_dir (set for spark-1, spark-2)" in out
    assert "serving_watchdog_join_timeout is now serving_rendezvous_guard_join_timeout (set for spark-2)" in out
    assert "runtime_image_fork_repo is gone (set for localhost, spark-1, spark-2)" in out
    assert "spark_mtu" in out
    assert out.count("fatal: [localhost]") == 1
