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
    """The shared defaults as Ansible merges them (defaults/main/*.yml; a single main.yml would shadow them)."""
    assert not (COMMON / "defaults/main.yml").exists()
    merged = {}
    for f in sorted((COMMON / "defaults/main").glob("*.yml")):
        keys = yaml.safe_load(f.read_text()) or {}
        assert not set(keys) & set(merged), f"{f.name} defines again {sorted(set(keys) & set(merged))}"
        merged.update(keys)
    return merged


def all_defaults() -> dict:
    """Every role's defaults: {name: role}"""
    names = {}
    for f in sorted([*ROLES.glob("*/defaults/main.yml"), *ROLES.glob("*/defaults/main/*.yml")]):
        for key in yaml.safe_load(f.read_text()) or {}:
            names[key] = f.relative_to(ROLES).parts[0]
    return names


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
    # the rendezvous port is the serving profile's (current 25000, seed 29501: tests/unit/test_profiles.py)
    assert d["spark_master_port"] == "{{ spark_profile_settings.master_port }}"
    ports = {"spark_api_port": 8888, "spark_image_stream_port": 29610,
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
        for expr in ("split('/')", "split(\"/\")", "groups['spark_head'][0]", "| default(8888)", "| default(9000)",
                     "spark_rails[0]", "spark_rails | first"):
            assert expr not in text, f"{f.relative_to(ROOT)}: {expr} (use spark_rail0_interface, spark_rail0_address, spark_head_host ...)"
    facts = (COMMON / "tasks/facts.yml").read_text() + (COMMON / "vars/main.yml").read_text()
    assert facts.count("'split', '/'") == 1
    for fact in ("spark_rank", "spark_head_host", "spark_rail0_interface", "spark_rail0_address",
                 "spark_head_rail0_address", "spark_rail_peers"):
        assert f"        {fact}:" in facts, fact
    assert "cacheable: true" in facts
    # rail 0's interface is read from spark_rails once, in the facts
    assert sum(f.read_text().count("spark_rails[0]") for f in role_files(include_common=True)) == 1


def test_node_identity_is_never_read_back_from_the_node():
    """runtime-env.json is the node's copy of the facts (the pre-start check renders from it);
    the roles render from the facts, they do not slurp it back and compare."""
    for f in role_files():
        text = f.read_text()
        if "spark_params_path" in text and "slurp" in text:
            raise AssertionError(f"{f.relative_to(ROOT)} reads the node's runtime-env.json back")
    serving = "".join(f.read_text() for f in (ROLES / "serving").rglob("*") if f.is_file())
    assert not re.search(r"__serving_node\b|__serving_node\.", serving)
    for fact in ("spark_rank", "spark_head_rail0_address", "spark_rail0_address"):
        assert fact in serving, fact


def test_day_two_plays_read_the_serving_settings_from_spark_common():
    d = common_defaults()
    for name in ("serving_unit", "serving_container_name", "serving_image", "serving_api_key", "serving_api_key_path",
                 "serving_api_bind_address"):
        assert name in d, name
    assert "serving_api_base_url" in yaml.safe_load((COMMON / "vars/main.yml").read_text())
    for play in ("status", "diagnose", "teardown"):
        text = (ROOT / f"playbooks/{play}.yml").read_text()
        assert "public: true" not in text and "name: serving" not in text, play
    assert not (ROLES / "serving/tasks/settings.yml").exists()


def test_the_probe_layout_has_its_own_tasks_file():
    once = yaml.safe_load((COMMON / "tasks/once.yml").read_text())
    assert [t.get("ansible.builtin.import_tasks") for t in once] == [None, "facts.yml", "probe_layout.yml", "topology.yml", None]
    assert "spark_probe_directions" not in (COMMON / "tasks/facts.yml").read_text()
    assert "spark_probe_directions:" in (COMMON / "tasks/probe_layout.yml").read_text()


def test_the_shared_facts_are_one_skipped_include_after_the_first_play():
    """Computed once per node and run: main.yml is one include guarded by a fact that
    once.yml sets last (a skipped include per later play, not a skipped task per fact)."""
    main = yaml.safe_load((COMMON / "tasks/main.yml").read_text())
    assert len(main) == 1 and main[0]["ansible.builtin.include_tasks"] == "once.yml"
    assert "__spark_common_set is not defined" in main[0]["when"]
    once = yaml.safe_load((COMMON / "tasks/once.yml").read_text())
    assert once[-1]["ansible.builtin.set_fact"] == {"__spark_common_set": True}
    # the shared settings' spec is checked there, once, not by Ansible at every role's run
    # (an entry point "main" would be: spark_common is every role's dependency)
    assert "argument_specs.settings.options" in once[0]["ansible.builtin.validate_argument_spec"]["argument_spec"]
    assert set(yaml.safe_load((COMMON / "meta/argument_specs.yml").read_text())["argument_specs"]) == {"settings"}
    for name in ("facts.yml", "probe_layout.yml", "topology.yml"):
        assert "__spark_common_set" not in (COMMON / "tasks" / name).read_text(), name


def test_spark_rails_is_declared_in_one_argument_spec():
    declaring = [p.parent.parent.name for p in ROLES.glob("*/meta/argument_specs.yml")
                 if re.search(r"^\s+spark_rails:\s*$", p.read_text(), re.M)]
    assert declaring == ["spark_common"]


def test_renamed_settings_are_defined_nowhere_else():
    preflight = yaml.safe_load((ROLES / "spark_common/vars/main.yml").read_text())
    renamed, removed = preflight["spark_renamed_settings"], preflight["spark_removed_settings"]
    defined = all_defaults()
    for old, new in renamed.items():
        assert new in defined, (old, new)
    for f in role_files(kinds=("defaults", "vars")):
        for key in yaml.safe_load(f.read_text()) or {}:
            assert key not in renamed, f"{f.relative_to(ROOT)} defines {key}, replaced by {renamed[key]}"
            assert key not in removed, f"{f.relative_to(ROOT)} defines {key}, which is gone"
    for inv in (ROOT / "inventory").rglob("*.yml"):
        text = inv.read_text()
        for old in [*renamed, *removed]:
            assert not re.search(rf"^\s*{old}:", text, re.M), f"{inv.relative_to(ROOT)} sets {old}"


def test_the_rendezvous_guard_is_named_apart_from_the_stall_watchdog():
    preflight = yaml.safe_load((ROLES / "spark_common/vars/main.yml").read_text())["spark_renamed_settings"]
    serving = yaml.safe_load((ROLES / "serving/defaults/main.yml").read_text())
    for old in ("serving_watchdog", "serving_watchdog_unit", "serving_watchdog_interval", "serving_watchdog_misses",
                "serving_watchdog_join_timeout"):
        new = old.replace("serving_watchdog", "serving_rendezvous_guard")
        assert preflight[old] == new and new in serving and old not in serving
    assert serving["serving_rendezvous_guard_unit"] == "spark-rendezvous-guard.service"
    for f in (ROLES / "serving").rglob("*"):
        if f.is_file():
            assert "watchdog.yml" not in f.read_text() and "serving_watchdog" not in f.read_text(), f
    assert (ROLES / "serving/templates/spark-rendezvous-guard.service.j2").is_file()
    # the unit's earlier name is taken down on upgrade and by teardown
    guard = (ROLES / "serving/tasks/rendezvous_guard.yml").read_text()
    assert "__serving_rendezvous_guard_legacy_unit" in guard and "state: stopped" in guard and "absent:" in guard
    assert "spark-runtime-watchdog.service" in yaml.safe_load((ROLES / "teardown/defaults/main.yml").read_text())[
        "teardown_unit_patterns"]


# Every role's computed names follow the convention (docs/design.md, "Internal names"), except
# the names it computes for other roles (facts, or a list another role reads) and the node-side
# file lists
PUBLIC_COMPUTED = {"runtime_image_id", "runtime_image_contract", "runtime_image_exports", "cacheable",
                   "serving_api_base_url",  # roles/status reads it
                   "monitoring_teardown_dirs",  # roles/teardown reads it
                   # each validate entry point's refusals, gathered by the preflight (playbooks/preflight.yml)
                   "runtime_image_problems", "serving_problems", "hf_cache_problems",
                   "preflight_controller_problems", "preflight_host_problems"}
# Internal names read outside their role (a known exception, not a pattern to follow)
CROSS_READS = {("playbooks/cache.yml", "__hf_cache_validated")}
RUN_FILES = ("*.yml", "playbooks/*.yml")


def all_roles():
    return sorted(p for p in ROLES.iterdir() if p.is_dir())


def _tasks(tasks):
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        yield task
        for key in ("block", "rescue", "always"):
            yield from _tasks(task.get(key))


def _set_facts(tasks):
    for task in _tasks(tasks):
        yield from (task.get("ansible.builtin.set_fact") or {})


def _task_files(role):
    for kind in ("tasks", "handlers"):
        for f in sorted((role / kind).glob("*.yml")) if (role / kind).is_dir() else []:
            yield f, yaml.safe_load(f.read_text())


def _computed(role):
    computed = [k for k in yaml.safe_load((role / "vars/main.yml").read_text()) or {}] if (role / "vars/main.yml").is_file() else []
    for _, tasks in _task_files(role):
        computed += list(_set_facts(tasks))
    return computed


def _defined(role):
    """Every name the role defines for itself: vars/main.yml, set_fact, register, task vars, loop vars"""
    defined = set(_computed(role))
    for _, tasks in _task_files(role):
        for task in _tasks(tasks):
            defined.update(task.get("vars") or {})
            if isinstance(task.get("register"), str):
                defined.add(task["register"])
            defined.add((task.get("loop_control") or {}).get("loop_var", "item"))
            for include in ("ansible.builtin.include_tasks", "ansible.builtin.import_tasks",
                            "ansible.builtin.include_role", "ansible.builtin.import_role"):
                if isinstance(task.get(include), dict):
                    defined.update(task[include].get("vars") or {})
    return defined


def _role_text_files(role):
    for kind in ("defaults", "vars", "tasks", "templates", "handlers", "meta"):
        for f in sorted((role / kind).rglob("*")) if (role / kind).is_dir() else []:
            if f.is_file():
                yield f


def test_internal_names_are_marked_internal():
    for role in all_roles():
        name = role.name
        for var in _computed(role):
            if var in PUBLIC_COMPUTED or var.endswith("_lib_files") or (name == "spark_common" and var.startswith("spark_")):
                continue
            assert var.startswith(f"__{name}_"), f"roles/{name}: {var} is computed by the role: name it __{name}_..."


def test_internal_names_used_in_a_role_are_defined_in_it():
    # a rename that missed one use shows only at run time (undefined variable): catch it here
    roles = all_roles()
    for role in roles:
        defined = _defined(role)
        for f in _role_text_files(role):
            for var in set(re.findall(rf"\b__{role.name}_\w+", f.read_text())):
                owner = max((r.name for r in roles if var.startswith(f"__{r.name}_")), key=len)
                if owner == role.name:
                    assert var in defined, f"{f.relative_to(ROOT)} uses {var}, which roles/{role.name} does not define"


def test_internal_names_stay_in_their_role():
    roles = all_roles()
    files = [f for r in roles for f in _role_text_files(r)] + [f for g in RUN_FILES for f in sorted(ROOT.glob(g))]
    for f in files:
        rel = str(f.relative_to(ROOT))
        for var in set(re.findall(r"\b__[a-z0-9_]+", f.read_text())):
            owners = [r.name for r in roles if var.startswith(f"__{r.name}_")]
            if not owners or (rel, var) in CROSS_READS:
                continue
            owner = max(owners, key=len)
            assert rel.startswith(f"roles/{owner}/"), f"{rel} reads {var}, internal to roles/{owner}: make it a fact of that role"


def test_argument_spec_defaults_are_the_roles_defaults():
    """A default an argument spec states (ansible-doc and the role's docs show it) is the
    value the role's defaults give; templated defaults are left out."""
    drift = []
    for spec in sorted(ROLES.glob("*/meta/argument_specs.yml")):
        role = spec.parent.parent
        defaults = {}
        for f in sorted((role / "defaults").glob("*.yml")) + sorted((role / "defaults").glob("main/*.yml")):
            defaults.update(yaml.safe_load(f.read_text()) or {})
        for entry, body in yaml.safe_load(spec.read_text())["argument_specs"].items():
            for name, option in (body.get("options") or {}).items():
                value = defaults.get(name)
                if "default" not in option or name not in defaults or (isinstance(value, str) and "{{" in value):
                    continue
                if option["default"] != value:
                    drift.append(f"roles/{role.name} {entry} {name}: spec {option['default']!r}, defaults {value!r}")
    assert drift == []
