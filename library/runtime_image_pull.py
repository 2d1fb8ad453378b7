#!/usr/bin/python
"""Ansible module: a prebuilt runtime image by digest - ask the registry, or pull and tag it."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: runtime_image_pull
short_description: Probe or pull the runtime image named by digest, and tag it with its local name
description:
  - C(action=probe) (preflight, before any change) - when the node does not hold O(ref)
    already, asks its registry for the manifest (Docker Registry HTTP API v2, anonymous
    token when the registry asks for one) and reports one of C(ok), C(registry_down),
    C(wrong_digest) (the tag names another digest), C(missing) or C(denied). Read-only.
  - C(action=pull) - pulls O(ref) when the node does not hold it (C(docker pull
    NAME@sha256:...)), checks that the pulled image carries that digest, and tags it as
    O(name) (the name every node runs). A failed pull is classified (image missing,
    registry down, no space, platform) and nothing is tagged.
  - In check mode a pull is reported as a change and not done.
  - The logic lives in C(module_utils/spark_cluster/runtime/image.py).
version_added: "1.0.0"
author:
  - spark-cluster project
options:
  ref:
    description: The image by digest, C([registry/]repository[:tag]@sha256:<64 hex>).
    type: str
    required: true
  name:
    description: The local name to tag the image with (action=pull).
    type: str
  action:
    description: C(probe) the registry or C(pull) the image.
    type: str
    choices: [probe, pull]
    default: pull
  insecure_registries:
    description: Registries spoken to over plain HTTP besides loopback ones (as Docker's insecure-registries).
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds for one registry request (probe), or for the whole pull (run under C(timeout)).
    type: int
    default: 30
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
- name: Ask the registry for the pinned image (preflight)
  runtime_image_pull:
    ref: ghcr.io/anemll/dspark-vllm-gx10:0.1.1@sha256:a83948492cf13df455170fb42885f5ef4db54fefe0feff0f841ecbff464ac9d8
    action: probe
  register: probe

- name: Pull it and tag it
  runtime_image_pull:
    ref: ghcr.io/anemll/dspark-vllm-gx10:0.1.1@sha256:a83948492cf13df455170fb42885f5ef4db54fefe0feff0f841ecbff464ac9d8
    name: ghcr.io/anemll/dspark-vllm-gx10:0.1.1
"""

RETURN = r"""
present:
  description: Whether the node held the image by digest before this call.
  returned: always
  type: bool
kind:
  description: The verdict (ok, registry_down, wrong_digest, missing, denied, no_space, platform, failed).
  returned: always
  type: str
id:
  description: The image ID (empty when not pulled, in check mode or after a probe of an absent image).
  returned: always
  type: str
digest:
  description: The pinned digest.
  returned: always
  type: str
message:
  description: One line for the operator.
  returned: always
  type: str
"""

import json
import urllib.error
import urllib.request

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.spark_cluster.runtime.image import (
    ImageError,
    classify_pull_error,
    digest_matches,
    parse_ref,
    probe_manifest,
)


class _NoRedirectErrors(urllib.request.HTTPErrorProcessor):
    """Hand every status back (401 and 404 are answers here, not exceptions)."""

    def http_response(self, request, response):
        return response

    https_response = http_response


def http_request(timeout):
    opener = urllib.request.build_opener(_NoRedirectErrors)

    def request(method, url, headers):
        req = urllib.request.Request(url, method=method, headers=headers)
        try:
            with opener.open(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.URLError as exc:
            raise OSError(str(exc.reason)) from exc
    return request


def inspect(module, ref):
    rc, out, _ = module.run_command([module.params["docker"], "image", "inspect", ref])
    if rc != 0:
        return None
    try:
        return json.loads(out)[0]
    except (ValueError, IndexError):
        return None


def run(module, request=None):
    p = module.params
    try:
        parts = parse_ref(p["ref"])
    except ImageError as exc:
        module.fail_json(msg=str(exc), kind="failed")
    found = inspect(module, p["ref"])
    result = {"changed": False, "present": found is not None, "digest": parts["digest"],
              "id": (found or {}).get("Id", ""), "kind": "ok"}
    if p["action"] == "probe":
        if found is not None:
            result["message"] = f"{p['ref']} is on this node already ({result['id'][:19]})"
            return result
        verdict = probe_manifest(p["ref"], request or http_request(p["timeout"]), p["insecure_registries"])
        result.update(kind=verdict["kind"], message=verdict["message"])
        if not verdict["ok"]:
            module.fail_json(msg=verdict["message"], **result)
        return result
    if not p.get("name"):
        module.fail_json(msg="name is required with action=pull", **result)
    if found is None:
        result["changed"] = True
        if module.check_mode:
            result["message"] = f"would pull {p['ref']} (check mode)"
            return result
        rc, out, err = module.run_command(["timeout", str(p["timeout"]), p["docker"], "pull", p["ref"]])
        if rc == 124:
            module.fail_json(msg=f"docker pull {p['ref']} did not finish in {p['timeout']} s "
                                 "(runtime_image_pull_timeout); nothing was tagged", **dict(result, kind="failed"))
        if rc != 0:
            kind, message = classify_pull_error(err or out, p["ref"])
            result.update(kind=kind)
            module.fail_json(msg=message, **result)
        found = inspect(module, p["ref"])
        if found is None:
            module.fail_json(msg=f"docker pull {p['ref']} reported success but the image cannot be inspected",
                             **dict(result, kind="failed"))
    if not digest_matches(found.get("RepoDigests"), p["ref"]):
        module.fail_json(msg=f"{p['ref']}: the image found carries {found.get('RepoDigests')}, not the pinned "
                             f"digest: remove it (docker image rm) and re-run", **dict(result, kind="wrong_digest"))
    result["id"] = found["Id"]
    tagged = inspect(module, p["name"])
    if (tagged or {}).get("Id") != found["Id"]:
        result["changed"] = True
        if not module.check_mode:
            rc, out, err = module.run_command([p["docker"], "tag", p["ref"], p["name"]])
            if rc != 0:
                module.fail_json(msg=f"docker tag {p['ref']} {p['name']} failed: {err or out}", **result)
    action = "pulled" if not result["present"] else "present"
    result["message"] = f"{p['ref']} {action} as {p['name']} ({found['Id'][:19]})"
    return result


def main():
    module = AnsibleModule(
        argument_spec={
            "ref": {"type": "str", "required": True},
            "name": {"type": "str"},
            "action": {"type": "str", "choices": ["probe", "pull"], "default": "pull"},
            "insecure_registries": {"type": "list", "elements": "str", "default": []},
            "timeout": {"type": "int", "default": 30},
            "docker": {"type": "path", "default": "/usr/bin/docker"},
        },
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
