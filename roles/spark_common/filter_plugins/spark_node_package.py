"""The node-side package as spark_node_files arguments: every file of
module_utils/spark_cluster on the controller, installed as one unit under
<lib_dir>/spark_cluster (root, directories 0755, files 0644).

    {{ spark_module_utils_dir | spark_node_package(spark_lib_dir) }}  -> {directories, files}
"""

from __future__ import annotations

import pathlib

from ansible.errors import AnsibleFilterError

PACKAGE = "spark_cluster"


def spark_node_package(module_utils_dir, lib_dir):
    root = pathlib.Path(str(module_utils_dir)) / PACKAGE
    if not (root / "__init__.py").is_file():
        raise AnsibleFilterError(f"spark_node_package: {root} is not the {PACKAGE} package (no __init__.py)")
    lib_dir = str(lib_dir).rstrip("/")
    owner = {"owner": "root", "group": "root"}
    packages = sorted(path.parent.relative_to(root.parent) for path in root.rglob("__init__.py")
                      if "__pycache__" not in path.parts)
    directories = [dict(path=lib_dir, mode="0755", **owner)]
    directories += [dict(path=f"{lib_dir}/{package.as_posix()}", mode="0755", **owner) for package in packages]
    files = [dict(dest=f"{lib_dir}/{path.relative_to(root.parent).as_posix()}", mode="0644",
                  content=path.read_text(encoding="utf-8"), **owner)
             for path in sorted(root.rglob("*.py")) if "__pycache__" not in path.parts]
    return {"directories": directories, "files": files}


class FilterModule:
    def filters(self):
        return {"spark_node_package": spark_node_package}
