"""One owner for each shared fact: roles/spark_common (paths, ports, rail addresses)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"
COMMON = ROLES / "spark_common"


def role_files(*, include_common: bool = False, kinds=("defaults", "vars", "tasks", "templates", "handlers")):
    for role in sorted(p for p in ROLES.iterdir() if p.is_dir()):
        if role == COMMON and not include_common:
            continue
        for kind in kinds:
            for f in sorted((role / kind).rglob("*")) if (role / kind).is_dir() else []:
                if f.is_file():
                    yield f


def common_defaults() -> dict:
    return yaml.safe_load((COMMON / "defaults/main.yml").read_text())


# discover runs on an inventory without rails (it writes the one with rails), so it cannot
# depend on spark_common, whose facts are computed from spark_rails
BEFORE_RAILS = {"discover"}


def test_every_role_depends_on_spark_common():
    for role in sorted(p for p in ROLES.iterdir() if p.is_dir() and p != COMMON and p.name not in BEFORE_RAILS):
        deps = yaml.safe_load((role / "meta/main.yml").read_text())["dependencies"]
        assert {"role": "spark_common"} in deps, role.name


def test_shared_paths_and_ports_are_spelled_once():
    d = common_defaults()
    assert d["spark_config_dir"] == "/etc/spark-cluster"
    assert d["spark_env_path"] == "{{ spark_config_dir }}/runtime.env"
    assert d["spark_params_path"] == "{{ spark_config_dir }}/runtime-env.json"
    assert d["spark_lib_dir"] == "/usr/local/lib/spark-cluster"
    ports = {"spark_api_port": 8888, "spark_master_port": 29501, "spark_image_stream_port": 29610,
             "spark_rsync_port": 873, "spark_iperf3_port": 5201, "spark_rdma_port": 18515}
    for var, port in ports.items():
        assert d[var] == port, var
    literals = [*(re.escape(p) for p in ("/etc/spark-cluster", "/usr/local/lib/spark-cluster", "runtime.env",
                                          "runtime-env.json")),
                *(rf"\b{p}\b" for p in ports.values())]
    for f in role_files():
        text = f.read_text()
        for lit in literals:
            assert not re.search(lit, text), f"{f.relative_to(ROOT)} spells {lit}: use roles/spark_common's name"


def test_rail_addresses_and_head_come_from_the_shared_facts():
    for f in role_files():
        text = f.read_text()
        for expr in ("split('/')", "split(\"/\")", "groups['spark_head'][0]", "| default(8888)", "| default(9000)"):
            assert expr not in text, f"{f.relative_to(ROOT)}: {expr} (use spark_rail0_address, spark_head_host ...)"
    tasks = (COMMON / "tasks/main.yml").read_text() + (COMMON / "vars/main.yml").read_text()
    assert tasks.count("'split', '/'") == 1
    for fact in ("spark_rank", "spark_head_host", "spark_rail0_address", "spark_head_rail0_address", "spark_rail_peers"):
        assert f"        {fact}:" in tasks, fact
    assert "cacheable: true" in tasks


def test_spark_rails_is_declared_in_one_argument_spec():
    declaring = [p.parent.parent.name for p in ROLES.glob("*/meta/argument_specs.yml")
                 if re.search(r"^\s+spark_rails:\s*$", p.read_text(), re.M)]
    assert declaring == ["spark_common"]


def test_renamed_settings_are_defined_nowhere_else():
    renamed = yaml.safe_load((COMMON / "vars/main.yml").read_text())["__spark_common_renamed"]
    d = common_defaults()
    # a shared setting (roles/spark_common), or the setting of a role split out (jit_cache_*)
    split_out = yaml.safe_load((ROLES / "jit_cache/defaults/main.yml").read_text())
    for old, new in renamed.items():
        assert new in d or new in split_out, (old, new)
    for f in role_files(kinds=("defaults", "vars")):
        for key in yaml.safe_load(f.read_text()) or {}:
            assert key not in renamed, f"{f.relative_to(ROOT)} defines {key}, replaced by {renamed[key]}"
    for inv in (ROOT / "inventory").rglob("*.yml"):
        text = inv.read_text()
        for old in renamed:
            assert not re.search(rf"^\s*{old}:", text, re.M), f"{inv.relative_to(ROOT)} sets {old}"


# Roles whose computed names follow the convention (docs/design.md, "Internal names"), and
# the names they compute for other roles (facts) or that the node-side file lists share
MARKED_ROLES = ("hf_cache", "jit_cache", "runtime_env", "runtime_image", "qsfp_link", "link_validation",
                "preflight", "spark_common")
PUBLIC_COMPUTED = {"runtime_image_id", "runtime_image_contract", "runtime_image_exports", "cacheable"}


def _set_facts(tasks):
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        yield from (task.get("ansible.builtin.set_fact") or {})
        for key in ("block", "rescue", "always"):
            yield from _set_facts(task.get(key))


def test_internal_names_are_marked_internal():
    for name in MARKED_ROLES:
        role = ROLES / name
        computed = [k for k in yaml.safe_load((role / "vars/main.yml").read_text()) or {}] if (role / "vars/main.yml").is_file() else []
        for f in sorted((role / "tasks").glob("*.yml")):
            computed += list(_set_facts(yaml.safe_load(f.read_text())))
        for var in computed:
            if var in PUBLIC_COMPUTED or var.endswith("_lib_files") or (name == "spark_common" and var.startswith("spark_")):
                continue
            assert var.startswith(f"__{name}_"), f"roles/{name}: {var} is computed by the role: name it __{name}_..."
