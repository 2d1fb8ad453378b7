"""roles/jit_cache and its logic in module_utils/spark_cluster/cache/rules.py: JIT cache keys, the
plan per worker (none, copy, clear), clearing, and the JIT table in one place
(jit_cache_subdirs in roles/spark_common)."""

import os
import pathlib

import jinja2
import pytest
import yaml
from ansible.plugins.filter.core import regex_replace

from conftest import spark_common_defaults
from spark_cluster.cache import rules as sc

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "jit_cache"
JIT_VARS = {
    "VLLM_CACHE_ROOT": "vllm",
    "DG_JIT_CACHE_DIR": "deep_gemm",
    "TILELANG_CACHE_DIR": "tilelang",
    "TORCHINDUCTOR_CACHE_DIR": "torchinductor",
    "TRITON_CACHE_DIR": "triton",
    "TORCH_EXTENSIONS_DIR": "torch_extensions",
    "FLASHINFER_WORKSPACE_BASE": "flashinfer",
}


def load(path):
    return yaml.safe_load((ROOT / path).read_text())


# ------------------------------------------------------------------ keys and plans


def fill(jit, files):
    for rel, data in files.items():
        path = jit / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (1_700_000_000, 1_700_000_000))


def test_key_ignores_the_key_file_and_follows_content(tmp_path):
    jit = tmp_path / "jit"
    fill(jit, {"triton/a.bin": b"123", "vllm/b": b"4"})
    key = sc.compute_key(str(jit), "sha256:img")
    assert key["files"] == 2 and key["bytes"] == 4
    assert sc.write_key(str(jit), key) is True
    assert sc.write_key(str(jit), key) is False
    assert sc.compute_key(str(jit), "sha256:img") == key
    assert sc.read_key(str(jit)) == key
    fill(jit, {"triton/c.bin": b"5"})
    assert sc.compute_key(str(jit), "sha256:img")["listing_sha256"] != key["listing_sha256"]
    assert sc.node_state(str(jit))["in_sync_with_key_file"] is False


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_key_file_belongs_to_the_jit_dirs_owner(tmp_path):
    """The runtime uid owns the JIT caches: the key file too, written or found root-owned."""
    jit = tmp_path / "jit"
    fill(jit, {"vllm/b": b"4"})
    os.chown(jit, 1000, 1000)
    key = sc.compute_key(str(jit), "sha256:img")
    assert sc.write_key(str(jit), key) is True
    st = (jit / sc.KEY_FILE).stat()
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert sc.write_key(str(jit), key) is False
    os.chown(jit / sc.KEY_FILE, 0, 0)
    assert sc.write_key(str(jit), key) is True
    assert (jit / sc.KEY_FILE).stat().st_uid == 1000


def state(files=0, listing="a" * 64, image="sha256:img"):
    return {"files": files, "listing_sha256": listing, "image_id": image, "bytes": files}


def test_plan_none_when_identical_or_both_empty():
    assert sc.plan(state(3), state(3))["action"] == "none"
    assert sc.plan(state(0, "x", ""), state(0, "y", "sha256:other"))["action"] == "none"


def test_plan_copy_or_clear_on_mismatch():
    head = state(5, "b" * 64)
    copy = sc.plan(state(3), head, "copy")
    assert copy["action"] == "copy" and "copying" in copy["message"]
    clear = sc.plan(state(3), head, "clear")
    assert clear["action"] == "clear" and "every node" in clear["message"]
    # one-rank hit: the worker empty, the head tuned
    assert sc.plan(state(0), head, "copy")["action"] == "copy"
    # same files, another image: not the same cache
    assert sc.plan(state(5, "b" * 64, "sha256:old"), head, "copy")["action"] == "copy"
    stale = sc.plan(state(1), state(5, "b" * 64, "sha256:old"), "copy", runtime_image_id="sha256:new")
    assert "came from image old" in stale["message"]
    with pytest.raises(sc.CacheError):
        sc.plan(state(1), head, "merge")


def test_clear_keeps_the_named_dirs_empty(tmp_path):
    jit = tmp_path / "jit"
    fill(jit, {"triton/a": b"1", "vllm/x/y": b"2", "stray": b"3"})
    assert sc.clear_dir(str(jit), keep={"triton", "vllm"}) is True
    assert sorted(os.listdir(jit)) == ["triton", "vllm"]
    assert os.listdir(jit / "triton") == [] and os.listdir(jit / "vllm") == []
    assert sc.clear_dir(str(jit), keep={"triton", "vllm"}) is False
    with pytest.raises(sc.CacheError, match="jit_cache_mismatch"):
        sc.plan(state(1), state(5, "b" * 64), "merge")


# ------------------------------------------------------------------ one JIT table


def test_the_jit_table_lives_in_spark_common_only():
    common = spark_common_defaults()
    assert common["jit_cache_subdirs"] == JIT_VARS
    assert common["jit_cache_container_dir"] == common["jit_cache_dir"] == "/var/cache/spark-jit"
    assert not hasattr(sc, "JIT_SUBDIRS")
    for f in sorted((ROOT / "roles").rglob("*")):
        if f.is_file() and f.suffix in (".yml", ".j2") and "spark_common" not in f.parts:
            text = f.read_text()
            for var in JIT_VARS:
                assert var not in text, f"{f.relative_to(ROOT)} spells {var}: use jit_cache_subdirs"


def test_runtime_env_points_the_seven_variables_below_the_container_dir():
    """runtime_env's expression gives the env file the same seven lines as the literals did
    (the settings are sorted before rendering, so the order of the merge does not matter)."""
    common = spark_common_defaults()
    tasks = load("roles/runtime_env/tasks/main.yml")
    task = next(t for t in tasks if "__runtime_env_jit_settings" in t.get("vars", {}))
    env = jinja2.Environment()
    env.filters["zip"] = lambda a, *b: zip(a, *b)
    env.filters["regex_replace"] = regex_replace
    expr = task["vars"]["__runtime_env_jit_settings"]
    settings = env.from_string(expr).render(jit_cache_subdirs=common["jit_cache_subdirs"],
                                            jit_cache_container_dir=common["jit_cache_container_dir"])
    assert yaml.safe_load(settings) == {var: f"/var/cache/spark-jit/{sub}" for var, sub in JIT_VARS.items()}
    user = load("roles/runtime_env/defaults/main.yml")["runtime_env_settings"]
    assert not set(user) & set(JIT_VARS)  # the user's settings win in the merge, none collide by default


# ------------------------------------------------------------------ the role


def test_serving_play_runs_align_before_and_publish_after_the_runtime():
    plays = load("playbooks/serving.yml")
    serving = next(p for p in plays if "serving" in p.get("tags", []))
    pre = [t["ansible.builtin.include_role"] for t in serving["pre_tasks"] if "ansible.builtin.include_role" in t]
    post = [t["ansible.builtin.include_role"] for t in serving["post_tasks"]]
    assert {"name": "jit_cache", "tasks_from": "align"} in pre
    assert post == [{"name": "jit_cache", "tasks_from": "publish"}]
    assert all(r["name"] != "hf_cache" for r in pre + post)


def test_hf_cache_has_no_jit_entry_points_left():
    assert not list((ROOT / "roles/hf_cache/tasks").glob("jit_*.yml"))
    assert set(load("roles/hf_cache/meta/argument_specs.yml")["argument_specs"]) == {"main", "validate"}
    specs = load("roles/jit_cache/meta/argument_specs.yml")["argument_specs"]
    assert set(specs) == {"main", "align", "publish", "validate"}
    assert specs["align"]["options"]["jit_cache_mismatch"]["choices"] == list(sc.MISMATCH_POLICIES)


def test_old_jit_names_are_refused_with_the_new_ones():
    renamed = load("roles/spark_common/vars/main.yml")["spark_renamed_settings"]
    assert renamed["hf_cache_jit_mismatch"] == "jit_cache_mismatch"
    assert renamed["hf_cache_image_id"] == "jit_cache_image_id"
    for old, new in (("hf_cache_jit_dir", "jit_cache_dir"), ("hf_cache_rsync_jit_module", "jit_cache_rsync_module"),
                     ("spark_jit_subdirs", "jit_cache_subdirs"), ("spark_jit_container_dir", "jit_cache_container_dir")):
        assert renamed[old] == new
    defaults = load("roles/jit_cache/defaults/main.yml")
    assert defaults["jit_cache_mismatch"] == "copy"
    assert defaults["jit_cache_image_id"] == "{{ runtime_image_id | default('') }}"


def test_computed_names_of_the_role_are_internal():
    """What the role registers or sets is __jit_cache_*: nothing a user would set."""
    for f in sorted((ROLE / "tasks").glob("*.yml")):
        for task in _tasks(load(f.relative_to(ROOT))):
            if "register" in task:
                assert task["register"].startswith("__jit_cache_"), (f.name, task["name"])
            for name in task.get("ansible.builtin.set_fact", {}):
                assert name.startswith("__jit_cache_"), (f.name, name)


def _tasks(tasks):
    for task in tasks or []:
        yield task
        yield from _tasks(task.get("block"))
