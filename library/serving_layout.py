#!/usr/bin/python
"""Ansible module: choose or check the tensor x pipeline layout against the model."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: serving_layout
short_description: Choose or check TP x PP from the model's config.json before a start
description:
  - Reads the model's C(config.json) from the Hugging Face hub cache
    (C(models--<org>--<name>/refs/<revision>) then C(snapshots/<commit>/config.json)),
    takes the attention heads, key/value heads and layers, and checks that tensor
    parallel size (TP) x pipeline parallel size (PP) = nodes x GPUs per node, TP divides
    the attention heads (vLLM refuses otherwise, after a long start) and PP does not
    exceed the layers.
  - With both sizes 0 it chooses the largest TP the model accepts and makes the rest
    pipeline stages (three Sparks with a model of 64 heads get TP=1 x PP=3).
  - Fails, changing nothing, with the numbers and the layouts that would work.
  - Read-only. The logic lives in C(module_utils/spark_cluster/runtime/layout.py).
version_added: "1.0.0"
author: spark-cluster project
options:
  hub_dir:
    description: The hub cache directory (the one mounted into the runtime).
    type: path
    required: true
  repo:
    description: The model repository id (C(org/name)); a path starting with C(/) is a model directory.
    type: str
    required: true
  revision:
    description: Branch, tag or commit of the repository in the cache.
    type: str
    default: main
  nodes:
    description: Number of nodes (head and workers).
    type: int
    required: true
  gpus_per_node:
    description: GPUs per node (a DGX Spark has one).
    type: int
    default: 1
  tensor_parallel_size:
    description: Requested TP; 0 chooses.
    type: int
    default: 0
  pipeline_parallel_size:
    description: Requested PP; 0 chooses (or follows from TP).
    type: int
    default: 0
  allow_pipeline:
    description: Whether a layout with PP > 1 may be chosen or accepted.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Choose TP x PP for three Sparks
  serving_layout:
    hub_dir: /var/lib/spark-hf/hub
    repo: deepseek-ai/DeepSeek-V4-Flash-DSpark
    nodes: 3
  register: layout
"""

RETURN = r"""
tp:
  description: Tensor parallel size (C(--tensor-parallel-size)).
  returned: success
  type: int
pp:
  description: Pipeline parallel size (C(--pipeline-parallel-size)).
  returned: success
  type: int
world:
  description: Nodes x GPUs per node.
  returned: success
  type: int
chosen:
  description: Whether the layout was chosen (sizes 0) rather than checked.
  returned: success
  type: bool
reason:
  description: Why this layout, in words.
  returned: success
  type: str
options:
  description: Every [tp, pp] the model accepts on this cluster, largest TP first.
  returned: success
  type: list
  elements: list
model:
  description: The model's numbers (heads, key/value heads, layers).
  returned: success
  type: str
config_path:
  description: The config.json read.
  returned: always
  type: str
fields:
  description: The config.json fields used and their values.
  returned: success
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.runtime.layout import LayoutError, choose_layout, model_dims, read_config


def main():
    module = AnsibleModule(
        argument_spec=dict(
            hub_dir=dict(type="path", required=True),
            repo=dict(type="str", required=True),
            revision=dict(type="str", default="main"),
            nodes=dict(type="int", required=True),
            gpus_per_node=dict(type="int", default=1),
            tensor_parallel_size=dict(type="int", default=0),
            pipeline_parallel_size=dict(type="int", default=0),
            allow_pipeline=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    config_path = os.path.join(p["repo"], "config.json") if p["repo"].startswith("/") else None
    try:
        config, config_path = read_config(p["hub_dir"], p["repo"], p["revision"], config_path)
        dims = model_dims(config)
        layout = choose_layout(p["nodes"], p["gpus_per_node"], dims,
                               tp=p["tensor_parallel_size"], pp=p["pipeline_parallel_size"],
                               allow_pipeline=p["allow_pipeline"])
    except LayoutError as exc:
        module.fail_json(msg="%s: %s" % (p["repo"], exc), config_path=config_path)
    module.exit_json(changed=False, config_path=config_path, fields=dims["fields"], **layout)


if __name__ == "__main__":
    main()
