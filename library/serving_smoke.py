#!/usr/bin/python
"""Ansible module: smoke test of the OpenAI-compatible API on the head."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: serving_smoke
short_description: Smoke-test the serving API (models, one chat with thinking on, one off)
description:
  - C(GET /v1/models) must list C(model).
  - One chat completion with thinking on and one with thinking off, each sending the
    chat template kwargs of a thinking level the image accepts (O(thinking_on_kwargs) and
    O(thinking_off_kwargs) - the serving profile's levels, for instance
    C(thinking=true, reasoning_effort=high) and C(thinking=false)).
  - No top-level C(reasoning_effort) is sent unless O(thinking_on_effort) or
    O(thinking_off_effort) is given (the current image's encoder reads only the kwargs).
  - Reports the DSpark build's thinking-off bug (C(content) null and the answer in the
    C(reasoning) field, shown as an empty answer by OpenAI clients) as a warning, or as
    a failure with C(fail_on_null_content=true).
  - Read-only (two small generations). The checks live in
    C(module_utils/spark_cluster/runtime/serving.py).
version_added: "1.0.0"
author:
  - spark-cluster project
options:
  base_url:
    description: Base URL of the API, without C(/v1).
    type: str
    default: http://127.0.0.1:8888
  model:
    description: The served model name.
    type: str
    required: true
  api_key:
    description: Bearer token, if the API has one.
    type: str
    no_log: true
  prompt:
    description: The user message of both completions.
    type: str
    default: What is 6 times 7? Answer with the number only.
  max_tokens:
    description: C(max_tokens) of each completion.
    type: int
    default: 256
  thinking_on_kwargs:
    description: C(chat_template_kwargs) of the thinking-on request (must turn thinking on).
    type: dict
    default: {thinking: true}
  thinking_off_kwargs:
    description: C(chat_template_kwargs) of the thinking-off request (must turn thinking off).
    type: dict
    default: {thinking: false}
  thinking_on_effort:
    description: Top-level C(reasoning_effort) of the thinking-on request (not sent when unset).
    type: str
    choices: [none, low, medium, high, xhigh, max]
  thinking_off_effort:
    description: Top-level C(reasoning_effort) of the thinking-off request (not sent when unset).
    type: str
    choices: [none, low, medium, high, xhigh, max]
  timeout:
    description: Seconds per HTTP request.
    type: int
    default: 300
  fail_on_null_content:
    description: Fail (instead of warn) when an answer comes back with content null.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Smoke-test the API
  serving_smoke:
    base_url: http://127.0.0.1:8888
    model: deepseek-ai/DeepSeek-V4-Flash-DSpark
  register: smoke
"""

RETURN = r"""
models:
  description: Model IDs listed by /v1/models.
  returned: always
  type: list
  elements: str
  sample: [deepseek-ai/DeepSeek-V4-Flash-DSpark]
checks:
  description: One verdict per chat completion (what, ok, problems, warnings, content, reasoning, null_content, seconds).
  returned: always
  type: list
  elements: dict
null_content:
  description: Whether any answer came back with content null and the text in the reasoning field.
  returned: always
  type: bool
  sample: false
problems:
  description: What failed.
  returned: always
  type: list
  elements: str
warnings_found:
  description: What looks wrong without failing (the null-content bug by default).
  returned: always
  type: list
  elements: str
message:
  description: One-line summary.
  returned: always
  type: str
  sample: "models: ok; thinking on: ok; thinking off: ok"
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.runtime.serving import (
    REASONING_EFFORTS,
    chat_request,
    check_chat,
    check_models,
    http_json,
    smoke_summary,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            base_url=dict(type="str", default="http://127.0.0.1:8888"),
            model=dict(type="str", required=True),
            api_key=dict(type="str", no_log=True),
            prompt=dict(type="str", default="What is 6 times 7? Answer with the number only."),
            max_tokens=dict(type="int", default=256),
            thinking_on_kwargs=dict(type="dict", default={"thinking": True}),
            thinking_off_kwargs=dict(type="dict", default={"thinking": False}),
            thinking_on_effort=dict(type="str", choices=list(REASONING_EFFORTS)),
            thinking_off_effort=dict(type="str", choices=list(REASONING_EFFORTS)),
            timeout=dict(type="int", default=300),
            fail_on_null_content=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    base = p["base_url"].rstrip("/")
    status, payload = http_json(f"{base}/v1/models", api_key=p["api_key"], timeout=p["timeout"])
    models_problems = check_models(status, payload, p["model"])
    models = [m.get("id") for m in payload.get("data", [])] if isinstance(payload, dict) else []
    for thinking, kwargs in ((True, p["thinking_on_kwargs"]), (False, p["thinking_off_kwargs"])):
        if bool(kwargs.get("thinking", thinking)) != thinking:
            module.fail_json(msg=f"thinking_{'on' if thinking else 'off'}_kwargs {kwargs} does not turn thinking "
                                 f"{'on' if thinking else 'off'}")
    checks = []
    for thinking, effort, kwargs in ((True, p["thinking_on_effort"], p["thinking_on_kwargs"]),
                                     (False, p["thinking_off_effort"], p["thinking_off_kwargs"])):
        body = chat_request(p["model"], thinking, effort, p["prompt"], p["max_tokens"], kwargs=kwargs)
        t0 = time.monotonic()
        status, payload = http_json(f"{base}/v1/chat/completions", body, api_key=p["api_key"],
                                    timeout=p["timeout"])
        check = check_chat(status, payload, thinking)
        check["seconds"] = round(time.monotonic() - t0, 2)
        check["reasoning_effort"] = effort
        check["chat_template_kwargs"] = body["chat_template_kwargs"]
        checks.append(check)
    ok, message, problems, warnings = smoke_summary(models_problems, checks)
    null_content = any(c["null_content"] for c in checks)
    if null_content and p["fail_on_null_content"]:
        problems = problems + [w for w in warnings if "reasoning field" in w]
        ok = False
    for warning in warnings:
        module.warn(warning)
    result = dict(changed=False, models=models, checks=checks, null_content=null_content,
                  problems=problems, warnings_found=warnings, message=message)
    if not ok:
        module.fail_json(msg="smoke test failed: " + "; ".join(problems), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
