"""The spark_cluster package (module_utils/spark_cluster) as one unit: imported one way only
(relative imports inside, no ``except ImportError`` fall-back to flat names), installed
whole on a node by roles/spark_common/tasks/node_package.yml (the spark_node_package filter,
then spark_node_files), its programs run as ``python3 -m spark_cluster.node.<name>`` with
only the package on PYTHONPATH (no Ansible there), and every unit and command of the roles
naming one that exists, with the package on its path."""

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from spark_cluster.common.node_files import apply

PACKAGE = ROOT / "module_utils" / "spark_cluster"
PROGRAMS = sorted(path.stem for path in (PACKAGE / "node").glob("*.py") if path.stem != "__init__")
FILTER = ROOT / "roles" / "spark_common" / "filter_plugins" / "spark_node_package.py"


def _sources():
    return sorted(path for path in (ROOT / "module_utils").rglob("*.py") if "__pycache__" not in path.parts)


def _catches_import_error(handler):
    if handler.type is None:
        return True
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(t, ast.Name) and t.id in ("ImportError", "ModuleNotFoundError", "Exception") for t in types)


def fallback_imports(source):
    """Line numbers of ``try: <import> except ImportError: ...`` blocks."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Try) and any(isinstance(n, (ast.Import, ast.ImportFrom))
                                             for stmt in node.body for n in ast.walk(stmt)):
            if any(_catches_import_error(handler) for handler in node.handlers):
                found.append(node.lineno)
    return found


def test_the_fallback_detector_finds_the_old_double_import():
    old = ("try:\n    from ansible.module_utils.spark_files import read_text\n"
           "except ImportError:  # standalone\n    from spark_files import read_text\n")
    assert fallback_imports(old) == [1]
    # a missing optional library at run time is not an import fall-back
    assert fallback_imports("try:\n    run()\nexcept ImportError as exc:\n    print(exc)\n") == []


def test_no_module_falls_back_to_flat_imports():
    found = [f"{path.relative_to(ROOT)}:{line}" for path in _sources()
             for line in fallback_imports(path.read_text(encoding="utf-8"))]
    assert found == [], "try/except ImportError around an import: " + ", ".join(found)


def test_the_package_imports_itself_relatively_and_its_inits_import_nothing():
    absolute, busy_inits = [], []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
                     else [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            if any(name.startswith(("ansible", "spark_")) for name in names):
                absolute.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        if path.name == "__init__.py" and any(isinstance(node, (ast.Import, ast.ImportFrom)) for node in ast.walk(tree)):
            busy_inits.append(str(path.relative_to(ROOT)))
    assert absolute == [], "use a relative import inside the package: " + ", ".join(absolute)
    assert busy_inits == []


# ------------------------------------------------------------------ installed as one unit

def _filter():
    spec = importlib.util.spec_from_file_location("spark_common_filter_spark_node_package", FILTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()["spark_node_package"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """spark_lib_dir after the role's install step (owner/group left out: not root here)."""
    lib = tmp_path_factory.mktemp("node") / "usr/local/lib/spark-cluster"
    package = _filter()(str(ROOT / "module_utils"), str(lib))

    def plain(entries):
        return [{k: v for k, v in entry.items() if k not in ("owner", "group")} for entry in entries]
    assert apply(plain(package["directories"]), plain(package["files"]))
    assert apply(plain(package["directories"]), plain(package["files"])) == []  # a re-run changes nothing
    return lib


def test_the_node_gets_every_file_of_the_package_and_nothing_else(installed):
    expected = {path.relative_to(PACKAGE.parent).as_posix(): path.read_bytes()
                for path in _sources() if PACKAGE in path.parents}
    got = {path.relative_to(installed).as_posix(): path.read_bytes()
           for path in installed.rglob("*") if path.is_file()}
    assert got == expected
    assert "spark_cluster/node/watchdog.py" in got and "spark_cluster/__init__.py" in got


def test_the_filter_refuses_a_directory_without_the_package(tmp_path):
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match="not the spark_cluster package"):
        _filter()(str(tmp_path), "/usr/local/lib/spark-cluster")


def _bare_env(lib):
    """What a node has: the package on PYTHONPATH, no Ansible, no site-packages (-S)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(lib)}


def test_ansible_cannot_be_imported_where_the_programs_run(installed):
    run = subprocess.run([sys.executable, "-S", "-c", "import ansible"], env=_bare_env(installed), cwd="/",
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "No module named 'ansible'" in run.stderr


@pytest.mark.parametrize("name", PROGRAMS)
def test_every_node_program_runs_with_only_the_package(installed, name):
    run = subprocess.run([sys.executable, "-S", "-m", f"spark_cluster.node.{name}", "--help"],
                         env=_bare_env(installed), cwd="/", capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "usage" in run.stdout.lower() and "Traceback" not in run.stderr
    # what it imports is the standard library and the package (pyroute2 only when it reads netlink)
    probe = ("import sys; before = set(sys.modules); import spark_cluster.node.%s; "
             "print('\\n'.join(sorted(set(sys.modules) - before)))" % name)
    run = subprocess.run([sys.executable, "-S", "-c", probe], env=_bare_env(installed), cwd="/",
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    foreign = {mod.split(".")[0] for mod in run.stdout.split()} - set(sys.stdlib_module_names) - {"spark_cluster"}
    assert foreign == set()


def test_there_are_the_seven_programs():
    assert PROGRAMS == ["cache", "fanout", "image_stream", "node_check", "prestart", "rendezvous", "watchdog"]


# ------------------------------------------------------------------ what the roles run

def _tasks(items):
    for item in items or []:
        if isinstance(item, dict):
            yield item
            for key in ("block", "rescue", "always"):
                yield from _tasks(item.get(key))


def test_the_roles_run_programs_that_exist_with_the_package_on_their_path():
    named, units, commands = set(), [], []
    program_vars = set()
    old_files = "|".join(re.escape(name) for name in _flat_lib_files() if name.endswith(".py"))
    for path in sorted((ROOT / "roles").glob("*/*/main.yml")):
        if path.parent.name in ("vars", "defaults"):
            for key, value in (yaml.safe_load(path.read_text()) or {}).items():
                if "spark_cluster.node." in json.dumps(value, default=str):
                    program_vars.add(key)
    assert {"__serving_prestart", "__serving_rendezvous_guard", "__hf_cache_pull_argv"} <= program_vars
    for path in sorted((ROOT / "roles").rglob("*")):
        if not path.is_file() or path.suffix not in (".yml", ".j2"):
            continue
        text = path.read_text()
        named |= set(re.findall(r"spark_cluster\.node\.(\w+)", text))
        assert not re.search(rf"spark_lib_dir\s*(?:\}}\}}|~\s*')\s*/?(?:{old_files})", text), f"{path}: a flat program path"
        assert not re.search(r"\b(?:(?:runtime_env|hf_cache|monitoring|watchdog)_lib_files|spark_node_lib_entries|spark_node_lib_names)\b",
                             text), path
        if path.suffix == ".j2" and "{{ spark_python }} -m" in text:
            units.append(path.name)
            assert "Environment=PYTHONPATH={{ spark_lib_dir }}" in text, f"{path}: runs a program without the package"
        if path.parent.name == "tasks":
            for task in _tasks(yaml.safe_load(text)):
                body = json.dumps({k: v for k, v in task.items() if k not in ("name", "block", "rescue", "always")},
                                  default=str)
                if "spark_cluster.node." in body or any(re.search(rf"\b{v}\b", body) for v in program_vars):
                    commands.append(f"{path.relative_to(ROOT)}: {task.get('name')}")
                    assert "PYTHONPATH" in (task.get("environment") or {}), f"{commands[-1]}: no PYTHONPATH"
    assert named and named <= set(PROGRAMS), sorted(named - set(PROGRAMS))
    assert len(units) >= 5 and len(commands) >= 6, (units, commands)


def _flat_lib_files():
    return yaml.safe_load((ROOT / "roles/spark_common/vars/main.yml").read_text())["__spark_common_flat_lib_files"]


def test_the_old_layouts_removal_spares_what_else_lives_in_spark_lib_dir():
    flat = _flat_lib_files()
    others = set()
    for path in sorted((ROOT / "roles").rglob("*.yml")):
        others |= set(re.findall(r"spark_lib_dir\s*\}\}/([\w.-]+)", path.read_text()))
    # every program is in the package now: nothing else a role puts in spark_lib_dir is removed
    assert set(flat) & (others | {"spark_cluster"}) == set()
    # the image stream helper of the earlier layout (its own file, copied by runtime_image)
    assert "spark_image_stream.py" in flat and "image_stream" in PROGRAMS
    assert all(re.fullmatch(r"spark_\w+\.py|__pycache__", name) for name in flat)
