"""Test setup: the repository root on sys.path, and module_utils importable the way
Ansible modules import them (``ansible.module_utils.spark_*``)."""

import importlib
import importlib.abc
import importlib.util
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
for path in (ROOT, ROOT / "library", ROOT / "module_utils", ROOT / "tests" / "unit", ROOT / "tests" / "lab"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import ansible.module_utils  # noqa: E402  (needs the path set above)
import module_utils  # noqa: E402  (namespace package: the repository's module_utils/)

# One module object per file, reachable under all three names the code uses:
# "spark_x" (node-side, standalone), "module_utils.spark_x" (tests) and
# "ansible.module_utils.spark_x" (modules), whatever order they are imported in, so
# exception classes and module state are shared.


class _SparkUtilsLoader(importlib.abc.Loader):
    def create_module(self, spec):
        return importlib.import_module(spec.name.rsplit(".", 1)[1])

    def exec_module(self, module):
        pass


class _SparkUtilsFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        prefix, _, name = fullname.rpartition(".")
        if prefix in ("ansible.module_utils", "module_utils") and name.startswith("spark_"):
            if (ROOT / "module_utils" / f"{name}.py").exists():
                return importlib.util.spec_from_loader(fullname, _SparkUtilsLoader())
        return None


sys.meta_path.insert(0, _SparkUtilsFinder())
for mod_file in sorted((ROOT / "module_utils").glob("spark_*.py")):
    name = mod_file.stem
    for package in (module_utils, ansible.module_utils):
        setattr(package, name, importlib.import_module(f"{package.__name__}.{name}"))


@pytest.fixture
def spark_sysfs(tmp_path):
    """A factory for sysfs trees shaped like a real DGX Spark's (see sparkfs.py)."""
    from sparkfs import SparkSysfs

    def make(**kwargs):
        return SparkSysfs(tmp_path / "sys", **kwargs).build()

    return make


@pytest.fixture
def run_main(capsys):
    """Run a library/ module's main() with ``args`` (Ansible's patch_module_args
    pattern): returns (exit code, parsed JSON result). ``check=True`` adds check mode."""
    from ansible.module_utils.testing import patch_module_args
    import json

    def run(module, args, check=False):
        args = dict(args, _ansible_check_mode=check)
        with patch_module_args(args), pytest.raises(SystemExit) as info:
            module.main()
        return info.value.code, json.loads(capsys.readouterr().out)

    return run


def spark_common_defaults() -> dict:
    """roles/spark_common's defaults as Ansible merges them: defaults/main/*.yml, by name."""
    import yaml

    merged = {}
    for path in sorted((ROOT / "roles/spark_common/defaults/main").glob("*.yml")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged
