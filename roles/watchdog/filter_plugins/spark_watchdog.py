"""The watchdog's settings checked on the controller by the watchdog's own rules
(module_utils/spark_cluster/runtime/watchdog.py, validate_config: what the node program's
``validate`` runs), before the role changes anything:

    {{ __watchdog_config | spark_watchdog_problem }}   ->  '' when it can work, else the reason
"""

from __future__ import annotations

import pathlib
import sys

# Controller side: the repository's module_utils/ on sys.path once, so the package imports
# like any other code (Ansible's ansible.module_utils holds module_utils only for modules)
_MODULE_UTILS = str(pathlib.Path(__file__).resolve().parents[3] / "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.append(_MODULE_UTILS)

from spark_cluster.runtime.watchdog import validate_config  # noqa: E402


def spark_watchdog_problem(config):
    try:
        validate_config(dict(config))
    except ValueError as exc:
        return str(exc)
    return ""


class FilterModule:
    def filters(self):
        return {"spark_watchdog_problem": spark_watchdog_problem}
