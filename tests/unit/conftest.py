"""Test setup: the repository root, library/ and module_utils/ on sys.path (so the package
imports as ``spark_cluster``, as the controller's filters and the node programs import it),
and every module of the package aliased as ``ansible.module_utils.spark_cluster.*`` (how
library/ modules import it): one module object under both names, so exception classes and
module state are shared."""

import importlib
import pathlib
import pkgutil
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
for path in (ROOT, ROOT / "library", ROOT / "module_utils", ROOT / "tests" / "unit", ROOT / "tests" / "lab"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import ansible.module_utils  # noqa: E402
import spark_cluster  # noqa: E402  (module_utils/spark_cluster, on the path set above)

sys.modules["ansible.module_utils.spark_cluster"] = spark_cluster
ansible.module_utils.spark_cluster = spark_cluster
for _info in pkgutil.walk_packages(spark_cluster.__path__, "spark_cluster."):
    sys.modules["ansible.module_utils." + _info.name] = importlib.import_module(_info.name)


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
