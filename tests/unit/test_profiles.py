"""Serving profiles as data (module_utils/spark_cluster/runtime/profiles.py, roles/spark_common/profiles):
every value with its source, the roles' defaults taken from them, docs/serving.md's table
rendered from them, thinking levels and the memory/layout numbers derived from them."""

from __future__ import annotations

import copy
import importlib.util
import re

import pytest
import yaml

from conftest import ROOT, spark_common_defaults

from spark_cluster.runtime import profiles as sp

PROFILES = ROOT / "roles/spark_common/profiles"
RECIPE = "MiaAI-Lab/DeepSeek-v4-Flash-DSpark-2x-DGX-Spark"
CURRENT_COMMIT = "489af9589684127ece879dd9e53395c5ff9157c8"


def raw(name):
    return yaml.safe_load((PROFILES / f"{name}.yml").read_text())


def test_the_two_profiles_load_and_every_value_names_repo_path_and_commit():
    assert sp.names() == ["current", "seed"]
    for name in sp.names():
        profile = sp.load(name)
        assert set(profile["settings"]) == set(sp.VARIABLES), name
        for key, source in profile["sources"].items():
            assert source["repo"] and source["path"] and re.match(r"^[0-9a-f]{7,40}$", source["commit"]), (name, key)


def test_current_is_the_recipes_default_at_489af95():
    s = sp.load("current")["settings"]
    assert s["image_ref"] == ("ghcr.io/anemll/dspark-vllm-gx10:0.1.1@sha256:"
                              "a83948492cf13df455170fb42885f5ef4db54fefe0feff0f841ecbff464ac9d8")
    assert (s["model"], s["revision"]) == ("deepseek-ai/DeepSeek-V4-Flash-0731", "9e165c30e2704aec5d9d593cce3eebd58bbef1cb")
    assert (s["kv_cache_dtype"], s["max_model_len"], s["max_num_seqs"]) == ("nvfp4_ds_mla", 1048576, 6)
    assert (s["long_prefill_token_threshold"], s["master_port"], s["runtime_source"]) == (1024, 25000, "pull")
    assert s["async_scheduling"] and s["enable_chunked_prefill"]
    assert list(s["thinking_levels"]) == ["off", "low", "high", "max"]
    assert s["head_only_switch"] == {"WORKER_BUILD": "0"} and s["recipe_commit"] == CURRENT_COMMIT
    sources = sp.load("current")["sources"]
    assert sources["image_ref"] == {"repo": RECIPE, "path": ".env.dspark.example", "commit": CURRENT_COMMIT}


def test_seed_is_the_field_reports_launch():
    s = sp.load("seed")["settings"]
    assert (s["model"], s["kv_cache_dtype"], s["max_model_len"], s["max_num_seqs"]) == (
        "deepseek-ai/DeepSeek-V4-Flash-DSpark", "fp8", 262144, 1)
    assert s["runtime_source"] == "build" and s["image_ref"] is None
    assert s["runtime_settings"]["VLLM_DSPARK_CONFIDENCE_SCHEDULER"] == "off"
    assert list(s["thinking_levels"]) == ["on", "off"]


def test_an_unknown_profile_is_refused_with_the_list():
    with pytest.raises(sp.ProfileError, match=r"'latest' is not a profile: choose one of current, seed"):
        sp.load("latest")


@pytest.mark.parametrize("change, message", [
    (lambda d: d["settings"]["model"].pop("source"), "settings.model needs value and source"),
    (lambda d: d["settings"]["model"].update(source="nowhere"), "names 'nowhere'"),
    (lambda d: d["sources"]["env"].update(commit="main"), "is not a commit"),
    (lambda d: d["sources"]["env"].pop("path"), "lacks path"),
    (lambda d: d["settings"].update(colour={"value": 1, "source": "env"}), "settings.colour is not a known setting"),
    (lambda d: d["settings"].pop("max_num_seqs"), "settings lack max_num_seqs"),
    (lambda d: d["settings"]["default_thinking"].update(value="non-think"), "'non-think' is not one of off, low"),
    (lambda d: d["settings"]["image_ref"].update(value="ghcr.io/anemll/dspark-vllm-gx10:0.1.1"), "by digest"),
    (lambda d: d.update(name="other"), "expected 'current'"),
])
def test_a_profile_that_breaks_the_rules_names_what(change, message):
    data = copy.deepcopy(raw("current"))
    change(data)
    assert any(message in p for p in sp.check(data, "current")), sp.check(data, "current")


def test_a_broken_profile_file_is_refused_on_load(tmp_path):
    data = raw("current")
    data["settings"]["model"]["source"] = "nowhere"
    (tmp_path / "current.yml").write_text(yaml.safe_dump(data))
    with pytest.raises(sp.ProfileError, match="names 'nowhere'"):
        sp.load("current", str(tmp_path))


def test_the_serving_doc_table_is_the_profiles():
    """Edit a profile without `scripts/profile_table.py --write` and this fails."""
    doc = (ROOT / "docs" / "serving.md").read_text()
    assert sp.block(doc) == sp.launch_table([sp.load("seed"), sp.load("current")])
    # and it would notice a changed value
    changed = sp.load("current")
    changed = {**changed, "settings": {**changed["settings"], "max_num_seqs": 8}}
    assert sp.block(doc) != sp.launch_table([sp.load("seed"), changed])


def test_role_defaults_take_each_setting_from_the_profile():
    """Every setting reaches its role variable through spark_profile_settings (one
    variable picks the profile; the role variable still overrides)."""
    defaults = {}
    for f in sorted([*ROOT.glob("roles/*/defaults/main.yml"), *ROOT.glob("roles/*/defaults/main/*.yml")]):
        defaults.update(yaml.safe_load(f.read_text()) or {})
    for key, variable in sp.VARIABLES.items():
        assert variable in defaults, variable
        assert f"spark_profile_settings.{key}" in str(defaults[variable]), (variable, defaults[variable])
    assert spark_common_defaults()["spark_profile"] == "current"


def test_capture_size_follows_the_sequences_and_the_draft_length():
    current = sp.load("current")["settings"]
    spec = current["speculative_config"]
    assert sp.capture_size(current["max_cudagraph_capture_size"], 6, spec) == 36   # the recipe's 6 x (5 + 1)
    assert sp.capture_size("seqs_x_draft", 4, spec) == 24                          # an override of the sequences
    assert sp.capture_size(None, 1, spec) == 0 and sp.capture_size(64, 6, spec) == 64


def test_kv_fit_uses_the_profiles_measurement():
    memory = sp.load("current")["settings"]["memory"]
    problems, notes = sp.kv_fit(memory, 0.835, 1048576, 6)
    assert problems == [] and "2.38 requests of 1048576 tokens" in notes[0] and "ceiling" in notes[0]
    problems, _ = sp.kv_fit(memory, 0.835, 4194304, 6)
    assert "serving_max_model_len 4194304 is more than the KV pool" in problems[0]
    problems, notes = sp.kv_fit(memory, 0.7, 4194304, 6)
    assert problems == [] and "not checked" in notes[0]
    assert sp.kv_fit(None, 0.82, 262144, 1)[0] == []


def test_thinking_levels_map_to_kwargs_and_others_are_refused():
    levels = sp.load("current")["settings"]["thinking_levels"]
    assert sp.thinking_kwargs(levels, "high") == {"thinking": True, "reasoning_effort": "high"}
    assert sp.thinking_kwargs(levels, "off") == {"thinking": False}
    with pytest.raises(sp.ProfileError, match="'none' is not accepted by this image: choose one of off, low, high, max"):
        sp.thinking_kwargs(levels, "none")
    seed = sp.load("seed")["settings"]
    assert sp.thinking_kwargs(seed["thinking_levels"], seed["smoke_thinking"]["on"]) == {"thinking": True}


def load_filter():
    path = ROOT / "roles/spark_common/filter_plugins/spark_profile.py"
    spec = importlib.util.spec_from_file_location("spark_profile_filter", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_filters_refuse_an_unknown_name_and_a_level_as_ansible_errors():
    from ansible.errors import AnsibleFilterError

    f = load_filter()
    assert f.spark_profile_settings("seed")["max_model_len"] == 262144
    assert f.spark_profile_names() == ["current", "seed"]
    with pytest.raises(AnsibleFilterError, match="choose one of current, seed"):
        f.spark_profile_settings("nope")
    with pytest.raises(AnsibleFilterError, match="choose one of on, off"):
        f.spark_thinking_kwargs({"on": {"thinking": True}, "off": {"thinking": False}}, "max")
    assert f.spark_kv_fit(None, 0.8, 1, 1)["problems"] == []
