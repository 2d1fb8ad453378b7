#!/usr/bin/python
"""Ansible module: facts and input checks of a node's Hugging Face and JIT caches."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hf_cache_facts
short_description: Read a node's hub cache and JIT cache state and check the cache settings
description:
  - Reports whether the snapshot of O(repo) at O(revision) is complete in O(hub_dir)
    (config.json, every shard of the safetensors index, no C(*.incomplete) blob), the
    bytes of it already present, the free disk where the weights go, and the state of
    the node-local JIT directory O(jit_dir) (stored image id, listing hash).
  - Checks the settings before anything is copied; every problem names its variable.
    The JIT directory inside the hub cache or the NFS mount point, or on a network
    filesystem; a gated repository without a token (the token itself is never passed,
    only O(token_present)); less free disk than the model needs (on the head, and on
    the workers in rsync mode); an unknown mode.
  - Read-only. The logic lives in C(module_utils/spark_cluster/cache/rules.py).
version_added: "1.0.0"
author:
  - spark-cluster project
options:
  hub_dir:
    description: Hub cache directory of this node (C(HF_HUB_CACHE)).
    type: path
    required: true
  repo:
    description: Model repository, C(org/name).
    type: str
    required: true
  revision:
    description: Branch, tag or commit hash of the snapshot.
    type: str
    default: main
  expected_shards:
    description: Minimum number of C(*.safetensors) files of a complete snapshot (0 to rely on the index only).
    type: int
    default: 0
  jit_dir:
    description: Node-local JIT/autotune cache root.
    type: path
    required: true
  mode:
    description: How the hub cache reaches the workers.
    type: str
    required: true
    choices: [nfs, rsync]
  role:
    description: This node's role in the cluster.
    type: str
    required: true
    choices: [head, worker]
  nfs_mount_point:
    description: Where workers mount the head's hub cache in nfs mode.
    type: path
  download:
    description: Whether the head downloads the model from the hub.
    type: bool
    default: false
  token_required:
    description: Whether the repository is gated (a token is needed to download it).
    type: bool
    default: false
  token_present:
    description: Whether a non-empty token was given (never the token itself).
    type: bool
    default: false
  model_size_gb:
    description: Size of the model in GB (10^9 bytes); 0 skips the disk check.
    type: float
    default: 0
  fail_on_problems:
    description: Fail, listing every problem, when the checks find any.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Check the cache settings on every node before anything is copied
  hf_cache_facts:
    hub_dir: /var/lib/spark-hf/hub
    repo: deepseek-ai/DeepSeek-V4-Flash-DSpark
    revision: main
    expected_shards: 48
    jit_dir: /var/cache/spark-jit
    mode: rsync
    role: "{{ 'head' if inventory_hostname in groups['spark_head'] else 'worker' }}"
    download: true
    token_required: true
    token_present: "{{ hf_cache_token | length > 0 }}"
    model_size_gb: 168
  register: cache
"""

RETURN = r"""
snapshot:
  description: Completeness of the snapshot in the hub cache.
  returned: success
  type: dict
  sample:
    complete: false
    commit: 0123456789abcdef0123456789abcdef01234567
    snapshot_dir: /var/lib/spark-hf/hub/models--org--name/snapshots/0123456789abcdef0123456789abcdef01234567
    files: 50
    shards: 47
    missing: [model-00048-of-00048.safetensors]
    incomplete_blobs: []
    bytes_present: 164000000000
free_bytes:
  description: Free bytes on the filesystem that holds (or will hold) the hub cache.
  returned: success
  type: int
  sample: 1800000000000
jit:
  description: The JIT directory now (stored image id, live listing hash, files, bytes).
  returned: success
  type: dict
  sample:
    image_id: "sha256:4f1c..."
    listing_sha256: e3b0c442...
    files: 0
    bytes: 0
    key_file: false
    in_sync_with_key_file: false
nfs_mount_unit:
  description: systemd unit name of the NFS mount point (without suffix), empty when not set.
  returned: success
  type: str
  sample: var-lib-spark\x2dhf-hub
problems:
  description: Every problem found (empty when the settings are good).
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.cache.rules import (
    CacheError,
    free_bytes,
    node_state,
    snapshot_status,
    systemd_escape_path,
    validate,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            hub_dir=dict(type="path", required=True),
            repo=dict(type="str", required=True),
            revision=dict(type="str", default="main"),
            expected_shards=dict(type="int", default=0),
            jit_dir=dict(type="path", required=True),
            mode=dict(type="str", required=True, choices=["nfs", "rsync"]),
            role=dict(type="str", required=True, choices=["head", "worker"]),
            nfs_mount_point=dict(type="path"),
            download=dict(type="bool", default=False),
            token_required=dict(type="bool", default=False),
            token_present=dict(type="bool", default=False),
            model_size_gb=dict(type="float", default=0),
            fail_on_problems=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        snapshot = snapshot_status(p["hub_dir"], p["repo"], p["revision"], p["expected_shards"])
    except CacheError as exc:
        module.fail_json(msg=str(exc), problems=[str(exc)])
    try:
        with open("/proc/mounts", encoding="utf-8") as handle:
            mounts = handle.read()
    except OSError:
        mounts = ""
    free = free_bytes(p["hub_dir"])
    problems = validate(
        mode=p["mode"],
        role=p["role"],
        jit_dir=p["jit_dir"],
        hub_dir=p["hub_dir"],
        nfs_mount_point=p["nfs_mount_point"],
        download=p["download"],
        token_required=p["token_required"],
        token_present=p["token_present"],
        model_size_gb=p["model_size_gb"],
        bytes_present=snapshot["bytes_present"],
        free=free,
        mounts_text=mounts,
    )
    result = dict(
        changed=False,
        snapshot=snapshot,
        free_bytes=free,
        jit=node_state(p["jit_dir"]) if os.path.isdir(p["jit_dir"]) else None,
        nfs_mount_unit=systemd_escape_path(p["nfs_mount_point"]) if p["nfs_mount_point"] else "",
        problems=problems,
    )
    if problems and p["fail_on_problems"]:
        module.fail_json(msg="; ".join(problems), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
