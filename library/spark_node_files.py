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
  - The logic lives in C(module_utils/spark_cluster/common/node_files.py).
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
      recurse:
        description: Also give O(directories[].owner) and O(directories[].group) (not the
          mode) to everything below the directory, as M(ansible.builtin.file)'s C(recurse)
          does; a symlink gets them itself, never what it points to.
        type: bool
        default: false
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
      validate:
        description:
          - A command that checks the new content before it replaces O(files[].dest), with
            V(%s) where the temporary file's path goes (e.g. V(nft -c -f %s)), as
            M(ansible.builtin.copy)'s O(ansible.builtin.copy#module:validate).
          - Runs only when the content differs, and not in check mode. A refusal fails the
            module with the command's output and leaves the file as it was; the files
            before it in O(files) are already written, the ones after it are not.
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
- name: The node-side package (roles/spark_common/tasks/node_package.yml does this for every file), in one call
  spark_node_files:
    directories:
      - path: /usr/local/lib/spark-cluster/spark_cluster
        owner: root
        group: root
    files:
      - dest: /usr/local/lib/spark-cluster/spark_cluster/__init__.py
        content: "{{ lookup('ansible.builtin.file', 'module_utils/spark_cluster/__init__.py', rstrip=false) }}"
        owner: root
        group: root
    absent:
      - /etc/exports.d/spark-hf.exports

- name: A ruleset checked with nft -c before it replaces the old one, and its unit
  spark_node_files:
    files:
      - dest: /etc/spark-cluster/nftables.conf
        content: "{{ ruleset }}"
        mode: "0600"
        validate: nft -c -f %s
      - dest: /etc/systemd/system/spark-firewall.service
        content: "{{ lookup('ansible.builtin.template', 'spark-firewall.service.j2') }}"
  register: files

- name: Restart the unit when one of its files changed
  ansible.builtin.systemd_service:
    name: spark-firewall.service
    state: "{{ 'restarted' if files.changed_paths | length > 0 else 'started' }}"
"""

RETURN = r"""
changed_paths:
  description: The paths created, rewritten, re-moded or removed (or that would be, in check mode).
  returned: success
  type: list
  elements: str
  sample: [/usr/local/lib/spark-cluster/spark_cluster/__init__.py]
"""

import shlex

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.common.node_files import FilesError, apply

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
                options=dict(path=dict(type="path", required=True), recurse=dict(type="bool", default=False),
                             **dict(_ATTRS, mode=dict(type="str", default="0755"))),
            ),
            files=dict(
                type="list", elements="dict", default=[],
                options=dict(dest=dict(type="path", required=True), content=dict(type="str", required=True, no_log=False),
                             validate=dict(type="str"), **dict(_ATTRS, mode=dict(type="str", default="0644"))),
            ),
            absent=dict(type="list", elements="path", default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params

    def validator(command, tmp):
        if "%s" not in command:
            raise FilesError(f"validate {command!r} has no %s where the file to check goes: write it like 'nft -c -f %s'")
        rc, out, err = module.run_command(shlex.split(command.replace("%s", shlex.quote(tmp))))
        if rc != 0:
            raise FilesError(f"{command!r} refused the new content (rc {rc}): {(err or out).strip()}; the file was left as it was")

    try:
        changed = apply(p["directories"], p["files"], p["absent"], check=module.check_mode, validator=validator)
    except (FilesError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=bool(changed), changed_paths=changed)


if __name__ == "__main__":
    main()
