"""Test setup: the repository root on sys.path, and module_utils importable the way
Ansible modules import them (``ansible.module_utils.spark_*``)."""

import importlib
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
for path in (ROOT, ROOT / "library", ROOT / "module_utils", ROOT / "tests" / "unit"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import ansible.module_utils  # noqa: E402  (needs the path set above)
import module_utils  # noqa: E402  (namespace package: the repository's module_utils/)

# One module object per file, reachable under all three names the code uses:
# "spark_x" (node-side, standalone), "module_utils.spark_x" (tests) and
# "ansible.module_utils.spark_x" (modules). Imported standalone first, so the
# sibling-import fallbacks resolve to the same objects (exception classes included).
for mod_file in sorted((ROOT / "module_utils").glob("spark_*.py")):
    name = mod_file.stem
    module = importlib.import_module(name)
    for alias, package in ((f"module_utils.{name}", module_utils), (f"ansible.module_utils.{name}", ansible.module_utils)):
        sys.modules[alias] = module
        setattr(package, name, module)


@pytest.fixture
def spark_sysfs(tmp_path):
    """A factory for sysfs trees shaped like a real DGX Spark's (see sparkfs.py)."""
    from sparkfs import SparkSysfs

    def make(**kwargs):
        return SparkSysfs(tmp_path / "sys", **kwargs).build()

    return make
