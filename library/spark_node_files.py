#!/usr/bin/python
"""Ansible module: directories, small files and removals on a node, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: spark_node_files
short_description: Directories, small files and removals on a node in one module call
description:
  - Makes every path in O(directories) a directory, writes every file in O(files) with
    the given content (atomically, only when it differs), and removes every path in
    O(absent), in that order, in a single module call.
  - A loop of M(ansible.builtin.file) or M(ansible.builtin.copy) pays one round trip per
    item, on every re-run; this pays one for the whole list (see docs/performance.md).
  - Owner and group apply only when given; modes are octal strings.
  - The logic lives in C(module_utils/spark_filestate.py).
version_added: "1.0.0"
author:
  - spark-cluster project
options:
  directories:
    description: Directories to create (with their parents) or fix.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      mode:
        description: Octal mode.
        type: str
        default: "0755"
      owner:
        description: Owner name (left as is when omitted).
        type: str
      group:
        description: Group name (left as is when omitted).
        type: str
  files:
    description: Small files and their content (text).
    type: list
    elements: dict
    default: []
    suboptions:
      dest:
        description: Absolute path; its directory must exist (or be listed in O(directories)).
        type: path
        required: true
      content:
        description: The file's content.
        type: str
        required: true
      mode:
        description: Octal mode.
        type: str
        default: "0644"
      owner:
        description: Owner name (left as is when omitted).
        type: str
      group:
        description: Group name (left as is when omitted).
        type: str
  absent:
    description: Paths to remove (files, links or directory trees).
    type: list
    elements: path
    default: []
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: The pre-start check and its module_utils, in one call
  spark_node_files:
    directories:
      - path: /usr/local/lib/spark-cluster
        owner: root
        group: root
    files:
      - dest: /usr/local/lib/spark-cluster/spark_env.py
        content: "{{ lookup('ansible.builtin.file', 'module_utils/spark_env.py', rstrip=false) }}"
        owner: root
        group: root
    absent:
      - /etc/exports.d/spark-hf.exports
"""

RETURN = r"""
changed_paths:
  description: The paths created, rewritten, re-moded or removed (or that would be, in check mode).
  returned: success
  type: list
  elements: str
  sample: [/usr/local/lib/spark-cluster/spark_env.py]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_filestate import FilesError, apply

_ATTRS = dict(
    mode=dict(type="str"),
    owner=dict(type="str"),
    group=dict(type="str"),
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directories=dict(
                type="list", elements="dict", default=[],
                options=dict(path=dict(type="path", required=True), **dict(_ATTRS, mode=dict(type="str", default="0755"))),
            ),
            files=dict(
                type="list", elements="dict", default=[],
                options=dict(dest=dict(type="path", required=True), content=dict(type="str", required=True, no_log=False),
                             **dict(_ATTRS, mode=dict(type="str", default="0644"))),
            ),
            absent=dict(type="list", elements="path", default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        changed = apply(p["directories"], p["files"], p["absent"], check=module.check_mode)
    except (FilesError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=bool(changed), changed_paths=changed)


if __name__ == "__main__":
    main()
