#!/usr/bin/python
"""Ansible module: collect a node's diagnostic bundle, secrets scrubbed, as a tarball."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: spark_diagnose
short_description: Collect a node's diagnostic bundle with every secret scrubbed
description:
  - Collects unit journals since boot, the runtime's log tail, the env, compose and
    netplan files, NetworkManager and networkd state of the rails, C(ip -d addr) and
    routes, the GID tables, C(ethtool) of the rails, C(docker inspect) of the runtime and
    C(nvidia-smi -q) where it exists, into one C(tar.gz) on the node.
  - Every file is scrubbed (C(module_utils/spark_cluster/reports/diagnosis.py)) of the known secrets
    (C(secrets), plus the node's key files) and of secret-looking values; key files
    themselves are never collected.
  - Fetch the tarball with C(ansible.builtin.fetch) and remove it.
version_added: "1.0.0"
author:
  - spark-cluster project
options:
  dest:
    description: Path of the tarball on the node.
    type: path
    required: true
  rails:
    description: The node's rails (C(spark_rails)).
    type: list
    elements: dict
    required: true
  unit:
    description: The serving unit.
    type: str
    default: spark-runtime.service
  container:
    description: The runtime container.
    type: str
    default: spark-runtime
  config_dir:
    description: The cluster's configuration directory.
    type: path
    default: /etc/spark-cluster
  extra_paths:
    description: More files or directories to copy in (state files, logs).
    type: list
    elements: path
    default: []
  secret_files:
    description: Files whose content is a secret to scrub everywhere (never collected).
    type: list
    elements: path
    default: []
  secrets:
    description: Secret values to scrub everywhere (the API key, the HF token).
    type: list
    elements: str
    default: []
    no_log: true
  timeout:
    description: Seconds per command.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    details: In check mode nothing is collected or written.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Collect the bundle
  spark_diagnose:
    dest: /tmp/spark-diagnose.tar.gz
    rails: "{{ spark_rails }}"
    secrets: ["{{ serving_api_key }}"]
  no_log: true
"""

RETURN = r"""
dest:
  description: The tarball on the node.
  returned: success
  type: str
files:
  description: Names of the files in the bundle.
  returned: success
  type: list
  elements: str
"""

import io
import os
import shutil
import tarfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.reports.diagnosis import collected_files, commands, gid_tables, scrub


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            rails=dict(type="list", elements="dict", required=True),
            unit=dict(type="str", default="spark-runtime.service"),
            container=dict(type="str", default="spark-runtime"),
            config_dir=dict(type="path", default="/etc/spark-cluster"),
            extra_paths=dict(type="list", elements="path", default=[]),
            secret_files=dict(type="list", elements="path", default=[]),
            secrets=dict(type="list", elements="str", default=[], no_log=True),
            timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if module.check_mode:
        module.exit_json(changed=True, dest=p["dest"], files=[])
    secrets = list(p["secrets"])
    for path in p["secret_files"]:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                secrets.append(handle.read().strip())
        except OSError:
            pass
    entries = {}
    for name, argv in commands(p["unit"], p["container"], p["rails"], p["config_dir"],
                               ["spark-watchdog.service", "spark-watchdog-agent.service"]):
        if shutil.which(argv[0]) is None:
            entries[name] = f"{argv[0]}: not on this node\n"
            continue
        rc, out, err = module.run_command(["timeout", str(p["timeout"]), *argv])
        entries[name] = f"$ {' '.join(argv)}\n(rc {rc})\n{out}{err}"
    entries["gid-tables.txt"] = gid_tables()
    secret_paths = {os.path.realpath(x) for x in p["secret_files"]}
    for path in collected_files(p["config_dir"], p["extra_paths"]):
        if os.path.realpath(path) in secret_paths:
            continue
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                entries["files" + path] = handle.read()
        except OSError as exc:
            entries["files" + path] = f"unreadable: {exc}\n"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    top = f"spark-diagnose-{os.uname().nodename}-{stamp}"
    os.makedirs(os.path.dirname(p["dest"]) or ".", exist_ok=True)
    fd = os.open(p["dest"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name in sorted(entries):
            data = scrub(entries[name], secrets).encode("utf-8", "replace")
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
            tar.addfile(info, io.BytesIO(data))
    module.exit_json(changed=True, dest=p["dest"], files=sorted(entries))


if __name__ == "__main__":
    main()
