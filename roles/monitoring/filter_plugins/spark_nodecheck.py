"""The node check's output file, named by its owner, module_utils/spark_nodecheck.py
(which writes it, OUTPUT_NAME): roles/monitoring's unit comment and teardown ask here.

    {{ monitoring_textfile_dir | spark_node_check_output }}   ->  <dir>/spark.prom
"""

from __future__ import annotations

import ast
import os
import pathlib

from ansible.errors import AnsibleFilterError

# Controller side: the repository's module_utils file. Read, not imported: it imports
# its node-side neighbours (spark_files) the way it runs on the node.
_PATH = pathlib.Path(__file__).resolve().parents[3] / "module_utils" / "spark_nodecheck.py"


def _constant(path, name):
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AnsibleFilterError(f"{path} defines no {name}")


def spark_node_check_output(textfile_dir):
    return os.path.join(str(textfile_dir), _constant(_PATH, "OUTPUT_NAME"))


class FilterModule:
    def filters(self):
        return {"spark_node_check_output": spark_node_check_output}
