#!/usr/bin/python
"""Ansible module: verify a hub-cache snapshot against its blob names."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hf_cache_snapshot
short_description: Verify a Hugging Face hub-cache snapshot
description:
  - Checks every file of the snapshot of O(repo) at O(revision)
    against the hash its blob is named by (sha256 for LFS files such as the
    safetensors shards, the git blob sha1 for small files), so a copy is verified
    without a second source. Fails, listing the bad files, on any mismatch or when the
    snapshot is incomplete. Read-only.
  - The logic lives in C(module_utils/spark_cluster/cache/rules.py).
version_added: "1.0.0"
author:
  - spark-cluster project
options:
  hub_dir:
    description: Hub cache directory (C(HF_HUB_CACHE)).
    type: path
    required: true
  repo:
    description: Model repository, C(org/name).
    type: str
    required: true
  revision:
    description: Branch, tag or commit hash.
    type: str
    default: main
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Verify the copy on a worker
  hf_cache_snapshot:
    hub_dir: /var/lib/spark-hf/hub
    repo: deepseek-ai/DeepSeek-V4-Flash-DSpark
    revision: main
"""

RETURN = r"""
commit:
  description: Commit hash of the snapshot.
  returned: success
  type: str
  sample: 0123456789abcdef0123456789abcdef01234567
verified:
  description: Files whose content matched their blob name.
  returned: success
  type: int
  sample: 50
bytes:
  description: Bytes verified.
  returned: success
  type: int
  sample: 167570000000
unverifiable:
  description: Files whose blob name is not a hash (not checked).
  returned: success
  type: list
  elements: str
bad:
  description: Files that failed the check.
  returned: failure
  type: list
  elements: str
bad_paths:
  description: The blob files behind O(bad) (remove them and pull again to re-fetch them).
  returned: failure
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.cache.rules import CacheError, snapshot_status, verify_snapshot


def main():
    module = AnsibleModule(
        argument_spec=dict(
            hub_dir=dict(type="path", required=True),
            repo=dict(type="str", required=True),
            revision=dict(type="str", default="main"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        status = snapshot_status(p["hub_dir"], p["repo"], p["revision"])
    except (CacheError, OSError) as exc:
        module.fail_json(msg=str(exc))
    if not status["complete"]:
        module.fail_json(msg=f"snapshot of {p['repo']}@{p['revision']} in {p['hub_dir']} is incomplete: missing {status['missing'] + status['incomplete_blobs']}")
    result = verify_snapshot(status["snapshot_dir"])
    if result["bad"]:
        module.fail_json(msg=f"{len(result['bad'])} file(s) of {status['snapshot_dir']} do not match their hash: {result['bad']}", commit=status["commit"], **result)
    module.exit_json(changed=False, commit=status["commit"], **result)


if __name__ == "__main__":
    main()
