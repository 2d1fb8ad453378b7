"""The node check's output file, named by its owner, module_utils/spark_cluster/monitoring/node_check.py
(which writes it, OUTPUT_NAME): roles/monitoring's unit comment and teardown ask here.

    {{ monitoring_textfile_dir | spark_node_check_output }}   ->  <dir>/spark.prom
"""

from __future__ import annotations

import os
import pathlib
import sys

# Controller side: the repository's module_utils/ on sys.path once, so the package imports
# like any other code (Ansible's ansible.module_utils holds module_utils only for modules)
_MODULE_UTILS = str(pathlib.Path(__file__).resolve().parents[3] / "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.append(_MODULE_UTILS)

from spark_cluster.monitoring.node_check import OUTPUT_NAME  # noqa: E402


def spark_node_check_output(textfile_dir):
    return os.path.join(str(textfile_dir), OUTPUT_NAME)


class FilterModule:
    def filters(self):
        return {"spark_node_check_output": spark_node_check_output}
