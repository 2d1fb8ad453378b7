"""Every module's documentation renders with ansible-doc and matches its argument spec."""

import ast
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (ROOT / "library").glob("*.py"))


def doc_strings(name):
    tree = ast.parse((ROOT / "library" / f"{name}.py").read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
                out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


@pytest.mark.parametrize("name", MODULES)
def test_ansible_doc_renders(name):
    env = dict(os.environ, ANSIBLE_MODULE_UTILS=str(ROOT / "module_utils"), ANSIBLE_NOCOLOR="1")
    doc = pathlib.Path(sys.executable).with_name("ansible-doc")
    run = subprocess.run([str(doc), "-M", str(ROOT / "library"), name], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert "OPTIONS" in run.stdout and "EXAMPLES" in run.stdout and "RETURN VALUES" in run.stdout


@pytest.mark.parametrize("name", MODULES)
def test_docs_are_yaml_and_module_supports_check_mode(name):
    docs = doc_strings(name)
    assert set(docs) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}
    documentation = yaml.safe_load(docs["DOCUMENTATION"])
    assert documentation["module"] == name
    yaml.safe_load(docs["EXAMPLES"])
    yaml.safe_load(docs["RETURN"])
    assert "supports_check_mode=True" in (ROOT / "library" / f"{name}.py").read_text()


def _options(name):
    """{option: spec} of a module, aliases included (from its DOCUMENTATION)."""
    options = yaml.safe_load(doc_strings(name)["DOCUMENTATION"]).get("options") or {}
    out = dict(options)
    for spec in options.values():
        for alias in (spec or {}).get("aliases") or []:
            out[alias] = spec
    return out


def _module_calls(node, where):
    """(module, arguments, where) for every task-shaped dict that calls a project module."""
    if isinstance(node, list):
        for item in node:
            yield from _module_calls(item, where)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in MODULES and isinstance(value, dict):
                yield key, value, f"{where}: {node.get('name', key)}"
            else:
                yield from _module_calls(value, where)


def _yaml_files():
    tops = [ROOT / d for d in ("roles", "playbooks", "lab", "molecule")]
    files = [p for top in tops for p in top.rglob("*.yml")] + list(ROOT.glob("*.yml"))
    return sorted(p for p in files if "templates" not in p.parts)


def test_every_call_of_a_project_module_passes_only_its_options():
    """A renamed or removed option fails here, not 20 minutes into a molecule converge
    (the verify call kept `action:` after hf_cache_snapshot lost it)."""
    problems, calls = [], 0
    for path in _yaml_files():
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue
        for module, args, where in _module_calls(data, path.relative_to(ROOT)):
            calls += 1
            options = _options(module)
            unknown = sorted(set(args) - set(options))
            missing = sorted(k for k, spec in options.items() if (spec or {}).get("required") and k not in args)
            if unknown or missing:
                problems.append(f"{where} ({module}): unknown {unknown}, missing required {missing}")
    for name in MODULES:
        for module, args, where in _module_calls(yaml.safe_load(doc_strings(name)["EXAMPLES"]), f"{name} EXAMPLES"):
            calls += 1
            unknown = sorted(set(args) - set(_options(module)))
            if unknown:
                problems.append(f"{where} ({module}): unknown {unknown}")
    assert calls > 40, f"only {calls} calls found: the walk is broken"
    assert not problems, "\n".join(problems)
