#!/usr/bin/python
"""Ansible module: read a runtime image's contract (user, entrypoint, env, workdir, labels)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: runtime_image_contract
short_description: Read the runtime image's contract from docker image inspect
description:
  - Runs C(docker image inspect) on C(image) (and on C(base_image) when given) and
    returns what the serving role renders the compose file from - the user the image
    runs as (uid and gid, a user name resolved with C(id) inside the image), its
    entrypoint, environment, working directory and labels (a stand-in image says so
    in its C(spark-cluster.standin) label), and the exports the recipe sets for the
    runtime under C(runtime_prefix).
  - With C(base_image), checks that the image was built on it (its layers start with
    the base's); an overlay whose FROM resolved to another base fails with a message.
  - Read-only.
version_added: "1.0.0"
author:
  - spark-cluster project
options:
  image:
    description: The runtime image (name:tag or ID).
    type: str
    required: true
  base_image:
    description: The base image the runtime image must descend from (optional).
    type: str
  runtime_prefix:
    description: Where the runtime's toolchain lives in the image (used when O(runtime_paths) is not given).
    type: str
    default: /opt/env
  runtime_paths:
    description:
      - The exports the serving profile's recipe sets before it runs the binary - C(path) and
        C(ld_library_path) (directories put first), C(cuda_home) (when the image sets none).
      - Given, it replaces the exports derived from O(runtime_prefix).
    type: dict
  docker:
    description: The docker CLI.
    type: path
    default: /usr/bin/docker
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Read the runtime image's contract
  runtime_image_contract:
    image: vllm-dspark-runtime:clean
    base_image: ghcr.io/bjk110/vllm-spark@sha256:0123...
  register: contract
"""

RETURN = r"""
contract:
  description: id, user, uid, gid, entrypoint, cmd, env, workdir, labels, standin, layers, repo_digests, size (bytes).
  returned: always
  type: dict
exports:
  description: The recipe's exports for the runtime prefix over the image's env (PATH, CUDA_HOME, CUDA_PATH, CUDAToolkit_ROOT, LD_LIBRARY_PATH).
  returned: always
  type: dict
base:
  description: id and repo_digests of the base image (when base_image is given).
  returned: when base_image is given
  type: dict
message:
  description: One line for the operator.
  returned: always
  type: str
"""

import json

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.spark_cluster.runtime.image import ImageError, contract, descends_from, exports_for, runtime_exports


def inspect(module, ref):
    rc, out, err = module.run_command([module.params["docker"], "image", "inspect", ref])
    if rc != 0:
        module.fail_json(msg=f"docker image inspect {ref} failed: {err.strip() or out.strip()}")
    try:
        return contract(json.loads(out))
    except (ValueError, ImageError) as exc:
        module.fail_json(msg=f"cannot read docker image inspect {ref}: {exc}")


def resolve_user(module, image, found):
    """uid/gid of a named user, asked inside the image (id -u / id -g)."""
    ids = []
    for flag in ("-u", "-g"):
        rc, out, err = module.run_command([module.params["docker"], "run", "--rm", "--network", "none",
                                           "--entrypoint", "id", image, flag])
        if rc != 0 or not out.strip().isdigit():
            module.fail_json(msg=f"the image {image} runs as user {found['user']!r}; `id {flag}` in it "
                                 f"failed: {err.strip() or out.strip()}")
        ids.append(int(out.strip()))
    found["uid"], found["gid"] = ids
    return found


def run(module):
    params = module.params
    found = inspect(module, params["image"])
    if found["uid"] is None or found["gid"] is None:
        found = resolve_user(module, params["image"], found)
    exports = (exports_for(found["env"], params["runtime_paths"]) if params.get("runtime_paths")
               else runtime_exports(found["env"], params["runtime_prefix"]))
    result = {"changed": False, "contract": found, "exports": exports}
    if params.get("base_image"):
        base = inspect(module, params["base_image"])
        result["base"] = {"id": base["id"], "repo_digests": base["repo_digests"]}
        if not descends_from(found["layers"], base["layers"]):
            module.fail_json(
                msg=(f"{params['image']} ({found['id']}) was not built on {params['base_image']} ({base['id']}): "
                     "the overlay's FROM resolved to another image. Tag the pinned base as the "
                     "reference the Dockerfile names (runtime_image_base_from) and rebuild."),
                **result)
    entry = " ".join(found["entrypoint"]) or "(none)"
    result["message"] = (f"{params['image']} {found['id'][:19]}: user {found['user']} (uid {found['uid']}, "
                         f"gid {found['gid']}), entrypoint {entry}, workdir {found['workdir']}"
                         + (", STAND-IN (spark-cluster.standin label)" if found["standin"] else ""))
    return result


def main():
    module = AnsibleModule(
        argument_spec={
            "image": {"type": "str", "required": True},
            "base_image": {"type": "str"},
            "runtime_prefix": {"type": "str", "default": "/opt/env"},
            "runtime_paths": {"type": "dict"},
            "docker": {"type": "path", "default": "/usr/bin/docker"},
        },
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
