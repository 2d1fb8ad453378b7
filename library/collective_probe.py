#!/usr/bin/python
"""Ansible module: check for and run the NCCL all-reduce probe on a node."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: collective_probe
short_description: Run the NCCL all-reduce probe in the runtime image on a Spark
description:
  - C(mode=check) says whether this node can take part now (read-only), checking in
    order an NVIDIA GPU (C(/dev/nvidiactl)), the runtime env file with the rendezvous
    (C(MASTER_ADDR), C(MASTER_PORT), C(NODE_RANK), C(NNODES)), docker, the runtime
    image, and on the head a free master port (the serving runtime holds it while it
    runs). The first thing missing is the C(reason); in the lab (no GPU) that is the GPU.
  - C(mode=run) starts C(spark_collective_probe.py) in the runtime image with the
    node's env file, host network and IPC (the rendezvous of the real start, on rail 0),
    all GPUs, C(/dev/infiniband) when present and C(NCCL_DEBUG=INFO), and returns what it
    printed. Start it on every node at once (C(async), C(poll=0)). It never fails
    because the probe failed; the link report parses the C(output) with
    C(module_utils/spark_cluster/link/collective.py) and decides.
  - In check mode, C(mode=run) runs nothing and returns C(measured=false).
version_added: "1.0.0"
author: spark-cluster project
options:
  mode:
    description: C(check) (is this node ready?) or C(run) (the benchmark).
    type: str
    choices: [check, run]
    default: check
  image:
    description: The runtime image (the one the serving unit runs).
    type: str
    required: true
  env_file:
    description: The node's runtime env file.
    type: path
    default: /etc/spark-cluster/runtime.env
  probe:
    description: Path of C(spark_collective_probe.py) on the node (C(mode=run)).
    type: path
  python:
    description: Python interpreter inside the image (the DSpark runtime's is C(/opt/env/bin/python)).
    type: str
    default: python3
  sizes:
    description: Message sizes, C(1M:1G) (powers of two) or a comma list.
    type: str
    default: "1M:1G"
  timeout:
    description: Seconds for the rendezvous and each collective; the whole run gets twice this.
    type: int
    default: 300
  gpu_device:
    description: The device node whose presence means an NVIDIA GPU (another path for tests).
    type: path
    default: /dev/nvidiactl
  extra_env:
    description: Variables added to those of the env file (NCCL_DEBUG and NCCL_DEBUG_SUBSYS by default).
    type: dict
    default:
      NCCL_DEBUG: INFO
      NCCL_DEBUG_SUBSYS: INIT,NET,BOOTSTRAP,ENV
      PYTHONUNBUFFERED: "1"
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Is this node ready for the all-reduce?
  collective_probe:
    mode: check
    image: vllm-dspark-runtime:clean
  register: ready

- name: Run the all-reduce on every node at once
  collective_probe:
    mode: run
    image: vllm-dspark-runtime:clean
    probe: /tmp/spark-linkprobe/spark_collective_probe.py
    python: /opt/env/bin/python
  async: 900
  poll: 0
  register: job
"""

RETURN = r"""
ready:
  description: (check) Whether this node can run the probe now.
  returned: mode=check
  type: bool
reason:
  description: Why not ready, or why not measured; null otherwise.
  returned: always
  type: str
node_rank:
  description: NODE_RANK of the env file (orders the report), null when unknown.
  returned: mode=check
  type: int
master:
  description: MASTER_ADDR:MASTER_PORT of the env file.
  returned: mode=check
  type: str
measured:
  description: (run) Whether the probe was started.
  returned: mode=run
  type: bool
rc:
  description: (run) Exit code of docker run (the probe's; 3 when it reported an error).
  returned: mode=run
  type: int
output:
  description: (run) Everything the probe and NCCL printed (stdout and stderr).
  returned: mode=run
  type: str
command:
  description: (run) The docker command line.
  returned: mode=run
  type: list
  elements: str
"""

import os
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.link.collective import (
    CONTAINER_NAME, probe_argv, readiness,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            mode=dict(type="str", choices=["check", "run"], default="check"),
            image=dict(type="str", required=True),
            env_file=dict(type="path", default="/etc/spark-cluster/runtime.env"),
            probe=dict(type="path"),
            python=dict(type="str", default="python3"),
            sizes=dict(type="str", default="1M:1G"),
            timeout=dict(type="int", default=300),
            gpu_device=dict(type="path", default="/dev/nvidiactl"),
            extra_env=dict(type="dict", default={"NCCL_DEBUG": "INFO",
                                                 "NCCL_DEBUG_SUBSYS": "INIT,NET,BOOTSTRAP,ENV",
                                                 "PYTHONUNBUFFERED": "1"}),
        ),
        required_if=[("mode", "run", ("probe",))],
        supports_check_mode=True,
    )
    p = module.params
    docker = module.get_bin_path("docker")

    def image_present(image):
        rc, _, _ = module.run_command([docker, "image", "inspect", image])
        return rc == 0

    if p["mode"] == "check":
        module.exit_json(changed=False, **readiness(p["env_file"], p["image"],
                                                    gpu_device=p["gpu_device"],
                                                    image_present=image_present,
                                                    docker=docker))
    if module.check_mode:
        module.exit_json(changed=False, measured=False, reason="check mode: not run")
    if not docker:
        module.exit_json(changed=False, measured=False, reason="docker not found")
    argv = probe_argv(p["image"], p["env_file"], p["probe"], python=p["python"],
                      sizes=p["sizes"], timeout=p["timeout"], extra_env=p["extra_env"],
                      infiniband=os.path.isdir("/dev/infiniband"), docker=docker)
    # a container left by an interrupted run would block the name
    module.run_command([docker, "rm", "-f", CONTAINER_NAME])
    try:
        run = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=2 * p["timeout"] + 60, check=False)
        rc, output, reason = run.returncode, run.stdout, None
    except subprocess.TimeoutExpired as exc:
        module.run_command([docker, "rm", "-f", CONTAINER_NAME])
        out = exc.stdout or ""
        rc = 124
        output = out.decode(errors="replace") if isinstance(out, bytes) else out
        reason = "timed out after %d s" % (2 * p["timeout"] + 60)
    module.exit_json(changed=False, measured=True, rc=rc, output=output, reason=reason,
                     command=argv)


if __name__ == "__main__":
    main()
