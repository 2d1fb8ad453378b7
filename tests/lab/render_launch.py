"""The serving launch as roles/serving renders it, off the lab: compose.yml.j2 templated by
Ansible's own templar from the real role defaults (spark_common, runtime_image, serving) for
a serving profile and runtime source, with the per-node facts a run would have set.

    command(profile, source=None, **overrides) -> the runtime's argv (binary first)
"""

from __future__ import annotations

import pathlib

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import filter_loader
from ansible.template import Templar, trust_as_template

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULTS = (*sorted(str(p.relative_to(ROOT)) for p in (ROOT / "roles/spark_common/defaults/main").glob("*.yml")),
            "roles/runtime_image/defaults/main.yml", "roles/serving/defaults/main.yml", "roles/serving/vars/main.yml")
FACTS = {
    "ansible_managed": "managed", "inventory_hostname": "spark-head", "spark_is_head": True,
    "__serving_tp": 2, "__serving_pp": 1, "__serving_role": "head", "serving_api_key": "k3y",
    "spark_rank": 0, "spark_nodes": ["spark-head", "spark-worker"], "spark_head_rail0_address": "198.18.100.10",
    "runtime_image_contract": {"workdir": "/home/vllm", "id": "sha256:" + "1" * 64, "user": "1000",
                               "entrypoint": ["bash"], "uid": 1000, "gid": 1000},
    "runtime_image_exports": {}, "runtime_image_id": "sha256:" + "1" * 64, "serving_infiniband": {},
    "spark_state_dir": "/var/lib/spark-cluster", "spark_log_dir": "/var/log/spark-cluster",
}


def variables(profile, source=None, **overrides):
    filter_loader.add_directory(str(ROOT / "roles/spark_common/filter_plugins"))
    loader = DataLoader()
    values = {}
    for path in DEFAULTS:
        values.update(loader.load_from_file(str(ROOT / path)))
    values.update(FACTS, spark_profile=profile, role_path=str(ROOT / "roles/serving"))
    if source:
        values["runtime_image_source"] = source
    values.update(overrides)
    for _ in range(8):  # defaults refer to defaults: resolve to a fixed point
        templar = Templar(loader=loader, variables=values)
        for key, value in list(values.items()):
            if key in overrides or not (isinstance(value, str) and "{{" in value):
                continue
            try:
                values[key] = templar.template(trust_as_template(value))
            except Exception:  # noqa: BLE001  (a value whose inputs are not resolved yet)
                pass
    return values, loader


def command(profile, source=None, **overrides):
    values, loader = variables(profile, source, **overrides)
    text = (ROOT / "roles/serving/templates/compose.yml.j2").read_text()
    rendered = Templar(loader=loader, variables=values).template(trust_as_template(text))
    return [str(a) for a in yaml.safe_load(rendered)["services"]["runtime"]["command"]]
