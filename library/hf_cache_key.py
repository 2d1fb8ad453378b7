#!/usr/bin/python
"""Ansible module: the cache key of a node-local JIT directory (read, write, plan, clear)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hf_cache_key
short_description: Read, write, compare or clear the cache key of a node-local JIT directory
description:
  - The key file C(<jit_dir>/.spark-cache-key) records the runtime image that produced
    the JIT/autotune caches and a hash of the directory listing (path, size, mtime).
  - O(action=read) returns the stored image id and the live listing (read-only).
  - O(action=write) writes the key with O(image_id) and the live listing (changed when
    the file differs).
  - O(action=plan) compares this node with O(head) (the head's O(action=read) result)
    and returns what brings it in line, per O(policy). Read-only.
  - O(action=clear) empties the directory (the names in O(keep) stay, emptied) and
    writes a key with an empty listing.
  - An autotune cache that hits on one rank only deadlocks vLLM's engine launch, so
    caches must be identical on every node, or absent. The logic lives in
    C(module_utils/spark_cluster/cache/rules.py).
version_added: "1.0.0"
author:
  - spark-cluster project
options:
  jit_dir:
    description: Node-local JIT/autotune cache root.
    type: path
    required: true
  action:
    description: What to do.
    type: str
    default: read
    choices: [read, write, plan, clear]
  image_id:
    description: Runtime image ID the caches belong to (O(action=write) and O(action=clear)).
    type: str
    default: ""
  head:
    description: The head's state (its O(action=read) result), for O(action=plan).
    type: dict
  policy:
    description: What to do with a mismatching node (O(action=plan)).
    type: str
    default: copy
    choices: [copy, clear]
  runtime_image_id:
    description: Image the next start runs (O(action=plan), named in the message when the head's caches are older).
    type: str
    default: ""
  keep:
    description: Entries of O(jit_dir) kept (emptied) by O(action=clear).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Read the head's JIT cache key
  hf_cache_key:
    jit_dir: /var/cache/spark-jit
  register: head_key

- name: Plan a worker
  hf_cache_key:
    jit_dir: /var/cache/spark-jit
    action: plan
    head: "{{ head_key.state }}"
    policy: copy

- name: Record the key after a copy
  hf_cache_key:
    jit_dir: /var/cache/spark-jit
    action: write
    image_id: "{{ runtime_image_id }}"
"""

RETURN = r"""
state:
  description: The directory's state after the action.
  returned: success
  type: dict
  sample:
    image_id: "sha256:4f1c..."
    listing_sha256: 9f86d081...
    files: 120
    bytes: 53000000
    key_file: true
    in_sync_with_key_file: true
action:
  description: Planned action (O(action=plan)).
  returned: when action is plan
  type: str
  sample: copy
message:
  description: What was found and what is done, in one line.
  returned: success
  type: str
  sample: "JIT cache differs from the head's (...): copying the head's caches"
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.cache.rules import CacheError, clear_dir, compute_key, node_state, plan, read_key, write_key


def main():
    module = AnsibleModule(
        argument_spec=dict(
            jit_dir=dict(type="path", required=True),
            action=dict(type="str", default="read", choices=["read", "write", "plan", "clear"]),
            image_id=dict(type="str", default=""),
            head=dict(type="dict"),
            policy=dict(type="str", default="copy", choices=["copy", "clear"]),
            runtime_image_id=dict(type="str", default=""),
            keep=dict(type="list", elements="str", default=[]),
        ),
        required_if=[("action", "plan", ("head",))],
        supports_check_mode=True,
    )
    p = module.params
    jit_dir = p["jit_dir"]
    if not os.path.isdir(jit_dir):
        module.fail_json(msg=f"JIT directory {jit_dir} does not exist (run the hf_cache role first)")
    try:
        if p["action"] == "read":
            state = node_state(jit_dir)
            module.exit_json(changed=False, state=state, message=f"{state['files']} files, listing {state['listing_sha256'][:12]}")
        if p["action"] == "plan":
            state = node_state(jit_dir)
            planned = plan(state, p["head"], p["policy"], p["runtime_image_id"])
            module.exit_json(changed=False, state=state, action=planned["action"], message=planned["message"])
        if p["action"] == "write":
            key = compute_key(jit_dir, p["image_id"])
            if module.check_mode:
                changed = read_key(jit_dir) != key
            else:
                changed = write_key(jit_dir, key)
            module.exit_json(changed=changed, state=node_state(jit_dir), message=f"key of {key['files']} files, image {key['image_id'] or 'none'}")
        # clear
        state = node_state(jit_dir)
        if module.check_mode:
            module.exit_json(changed=state["files"] > 0, state=state, message=f"would clear {state['files']} files")
        changed = clear_dir(jit_dir, keep=set(p["keep"]) | {".spark-cache-key"})
        changed |= write_key(jit_dir, compute_key(jit_dir, p["image_id"]))
        module.exit_json(changed=changed, state=node_state(jit_dir), message=f"cleared {state['files']} files")
    except (CacheError, OSError) as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
