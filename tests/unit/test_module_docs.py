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
