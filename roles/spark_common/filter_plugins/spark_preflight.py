"""Filters over module_utils/spark_cluster/runtime/preflight.py: the preflight's problems gathered, then
refused once with the whole list.

    {{ source | spark_runtime_image_problems(pull_ref, repo, version, base, base_from, allow, build_vars) }}
    {{ host | spark_free_space_problem(data_root, free_bytes, need_gb, what) }}   -> [] or [line]
    {{ host | spark_serving_problems(settings) }}                                  -> [lines]
    {{ controller_lines | spark_preflight_report(node_lines, dropped) }}           -> {count, message}
    {{ hostvars[host] | spark_preflight_host_lines }}                              -> that node's gathered lines
"""

from __future__ import annotations

import pathlib
import sys

from ansible.errors import AnsibleFilterError

# Controller side: the repository's module_utils/ on sys.path once, so the package imports
# like any other code (Ansible's ansible.module_utils holds module_utils only for modules)
_MODULE_UTILS = str(pathlib.Path(__file__).resolve().parents[3] / "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.append(_MODULE_UTILS)

from spark_cluster.runtime import preflight as spark_preflight  # noqa: E402



def spark_runtime_image_problems(source, pull_ref, recipe_repo, recipe_version, base_image, base_from,
                                 allow_moving=False, build_vars=None):
    return spark_preflight.runtime_image_problems(source, pull_ref, recipe_repo, recipe_version, base_image,
                                                  base_from, bool(allow_moving), dict(build_vars or {}))


def spark_free_space_problem(host, data_root, free_bytes, need_gb, what):
    problem = spark_preflight.free_space_problem(host, data_root, free_bytes, need_gb, what)
    return [problem] if problem else []


def spark_serving_problems(host, settings):
    try:
        return spark_preflight.serving_problems(host, **dict(settings))
    except TypeError as exc:
        raise AnsibleFilterError(f"spark_serving_problems: {exc}") from exc


HOST_FACTS = ("preflight_host_problems", "hf_cache_problems", "serving_problems", "runtime_image_problems")


def spark_preflight_host_lines(hostvars_of_host):
    """Every problem one node gathered, in check order (a node's hostvars)."""
    lines = []
    for fact in HOST_FACTS:
        lines += list(hostvars_of_host.get(fact) or [])
    return lines


def spark_preflight_report(controller, nodes, dropped=()):
    count, message = spark_preflight.aggregate(list(controller or []), dict(nodes or {}), list(dropped or []))
    return {"count": count, "message": message}


class FilterModule:
    def filters(self):
        return {
            "spark_runtime_image_problems": spark_runtime_image_problems,
            "spark_free_space_problem": spark_free_space_problem,
            "spark_serving_problems": spark_serving_problems,
            "spark_preflight_report": spark_preflight_report,
            "spark_preflight_host_lines": spark_preflight_host_lines,
        }
