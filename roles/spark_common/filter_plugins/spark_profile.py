"""Filters over module_utils/spark_cluster/runtime/profiles.py: the serving profile, loaded once per name.

    {{ spark_profile | spark_profile }}                  -> {name, summary, settings, sources, notes}
    {{ spark_profile | spark_profile_settings }}         -> {setting: value}
    {{ levels | spark_thinking_kwargs(level) }}          -> chat template kwargs of a thinking level
    {{ value | spark_capture_size(seqs, spec_config) }}  -> --max-cudagraph-capture-size (0: not passed)
    {{ memory | spark_kv_fit(util, max_model_len, max_num_seqs) }} -> {problems, notes}
    {{ 'x' | spark_profile_names }}                      -> the profiles there

An unknown profile name is refused with the list of known ones.
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

from spark_cluster.runtime import profiles as spark_profiles  # noqa: E402



def _wrap(function, *args):
    try:
        return function(*args)
    except (spark_profiles.ProfileError, ValueError, TypeError, KeyError) as exc:
        raise AnsibleFilterError(str(exc)) from exc


def spark_profile(name):
    return _wrap(spark_profiles.cached, str(name))


def spark_profile_settings(name):
    return dict(spark_profile(name)["settings"])


def spark_profile_names(_ignored=None):
    return spark_profiles.names()


def spark_thinking_kwargs(levels, level):
    return _wrap(spark_profiles.thinking_kwargs, levels, str(level))


def spark_capture_size(value, max_num_seqs, speculative_config):
    return _wrap(spark_profiles.capture_size, value, max_num_seqs, speculative_config)


def spark_kv_fit(memory, utilization, max_model_len, max_num_seqs):
    problems, notes = _wrap(spark_profiles.kv_fit, memory, utilization, max_model_len, max_num_seqs)
    return {"problems": problems, "notes": notes}


class FilterModule:
    def filters(self):
        return {
            "spark_profile": spark_profile,
            "spark_profile_settings": spark_profile_settings,
            "spark_profile_names": spark_profile_names,
            "spark_thinking_kwargs": spark_thinking_kwargs,
            "spark_capture_size": spark_capture_size,
            "spark_kv_fit": spark_kv_fit,
        }
