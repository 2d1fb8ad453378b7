"""Serving: start-up phase of the runtime from its log, image-build progress, and the
smoke-test checks of the OpenAI-compatible API. Plain functions (stdlib only), used by
library/serving_wait.py, library/serving_smoke.py and library/runtime_image_wait.py.

Phase lines (vLLM, see the field notes), in start-up order::

    mq_connect_ip= / distributed_init_method=      rendezvous
    Loading safetensors checkpoint shards: ... i/N  loading (i/N)
    Model loading took                              loaded
    torch.compile takes                             compile
    FlashInfer autotune / DeepGEMM warmup: x/y /
      TileLang / sparse MLA autotune                autotune
    GPU KV cache size                               kv_cache
    Capturing CUDA graphs ... x/y                   cuda_graphs (x/y)
    init engine ... took                            engine_init
    Application startup complete.                   ready
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

REASONING_EFFORTS = ("none", "low", "medium", "high", "xhigh", "max")

# (phase, regex) in start-up order; the last matching line of the log wins.
PHASE_PATTERNS = (
    ("rendezvous", re.compile(r"mq_connect_ip=|distributed_init_method=|TCPStore|waiting for master")),
    ("loading", re.compile(r"Loading safetensors checkpoint shards")),
    ("loaded", re.compile(r"Model loading took")),
    ("compile", re.compile(r"torch\.compile takes|Compiling a graph|Dynamo bytecode transform")),
    ("autotune", re.compile(r"(?i)autotun|DeepGEMM warmup|TileLang|mHC (kernel )?warmup|JIT compil")),
    ("kv_cache", re.compile(r"GPU KV cache size")),
    ("cuda_graphs", re.compile(r"Capturing CUDA graphs?")),
    ("engine_init", re.compile(r"init engine .*took")),
    ("ready", re.compile(r"Application startup complete\.")),
)
PHASE_ORDER = ("starting",) + tuple(name for name, _ in PHASE_PATTERNS)
PHASE_LABELS = {
    "starting": "starting",
    "rendezvous": "rendezvous (waiting for all ranks)",
    "loading": "loading checkpoint shards",
    "loaded": "weights loaded",
    "compile": "torch.compile",
    "autotune": "autotune / JIT warmup",
    "kv_cache": "KV cache allocated",
    "cuda_graphs": "capturing CUDA graphs",
    "engine_init": "engine initialised",
    "ready": "API ready",
}
FRACTION_RE = re.compile(r"(\d+)\s*/\s*(\d+)")
ERROR_RE = re.compile(
    r"RuntimeError|DistStoreError|Traceback \(most recent call last\)|\bERROR\b|"
    r"CUDA out of memory|Unable to find address|exited with code|Killed"
)
WORKER_READY_DEFAULT = r"(?i)waiting for (the )?master|headless"
# docker compose prefixes each line with "<container>  | "; journald lines with a header
COMPOSE_PREFIX_RE = re.compile(r"^[\w.-]+\s+\|\s?")


def strip_prefix(line):
    return COMPOSE_PREFIX_RE.sub("", str(line).rstrip("\r\n"), count=1)


def _fraction(line, phase):
    if phase not in ("loading", "cuda_graphs", "autotune"):
        return None
    found = FRACTION_RE.findall(line)
    if not found:
        return None
    done, total = found[-1]
    done, total = int(done), int(total)
    if total <= 0 or done > total:
        return None
    return {"done": done, "total": total}


def parse_phase(lines):
    """The start-up phase a log shows: {phase, label, progress, line, detail, error}.

    ``phase`` is the latest phase reached (PHASE_ORDER), ``line`` the line that showed
    it, ``progress`` {done, total} for shard loading / graph capture / autotune steps
    when the line carries ``x/y``, ``error`` the last error-looking line after it.
    """
    phase, phase_line, progress, error = "starting", "", None, ""
    for raw in lines or []:
        line = strip_prefix(raw)
        if not line.strip():
            continue
        for name, pattern in PHASE_PATTERNS:
            if pattern.search(line):
                # forward only: the log of one run (docker logs --since its start)
                if PHASE_ORDER.index(name) >= PHASE_ORDER.index(phase):
                    phase, phase_line = name, line.strip()
                    progress = _fraction(line, name)
                    error = ""
                break
        else:
            if ERROR_RE.search(line):
                error = line.strip()
    return {
        "phase": phase,
        "label": PHASE_LABELS[phase],
        "progress": progress,
        "line": phase_line,
        "detail": describe_phase(phase, progress),
        "error": error,
    }


def describe_phase(phase, progress=None):
    """Human text: 'loading checkpoint shards 12/48'."""
    text = PHASE_LABELS.get(phase, phase)
    if progress:
        text += f" {progress['done']}/{progress['total']}"
    return text


def worker_waiting(lines, pattern=WORKER_READY_DEFAULT):
    """The last log line showing a headless worker is up and waiting for (or connected
    to) the master, or ''."""
    regex = re.compile(pattern) if pattern else None
    found = ""
    for raw in lines or []:
        line = strip_prefix(raw).strip()
        if regex is not None and regex.search(line):
            found = line
        elif re.search(r"connected to master|joined|Loading safetensors", line):
            found = line
    return found


# --------------------------------------------------------------------------- image build

BUILD_STEP_RES = (
    re.compile(r"^(Step \d+/\d+ ?:.*)$"),          # classic builder
    re.compile(r"^(#\d+ \[[^\]]*\d+/\d+\].*)$"),    # BuildKit
    re.compile(r"^(Step \d+/\d+.*)$"),              # scripts that echo "Step x/y"
    re.compile(r"^(={2,}>?\s*.+)$"),                # "==> building ..." banners
)


def build_progress(lines):
    """{step, last_line} of an image build log: the last build step seen and the last
    non-empty line."""
    step, last = "", ""
    for raw in lines or []:
        line = str(raw).rstrip("\r\n")
        if not line.strip():
            continue
        last = line.strip()
        for regex in BUILD_STEP_RES:
            match = regex.match(last)
            if match:
                step = match.group(1)
                break
    return {"step": step, "last_line": last}


# --------------------------------------------------------------------------- smoke test

def chat_request(model, thinking, effort, prompt, max_tokens=256, kwargs=None):
    """Body of a chat completion with thinking switched on/off explicitly: the chat
    template kwargs of a thinking level (``kwargs``, e.g. {"thinking": true,
    "reasoning_effort": "high"}) or just {"thinking": thinking}; a top-level
    ``reasoning_effort`` only when ``effort`` is given."""
    if effort is not None and effort not in REASONING_EFFORTS:
        raise ValueError(f"reasoning_effort {effort!r} is not one of {', '.join(REASONING_EFFORTS)}")
    template_kwargs = dict(kwargs) if kwargs else {"thinking": bool(thinking)}
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": int(max_tokens),
        "temperature": 0,
        "chat_template_kwargs": template_kwargs,
    }
    if effort is not None:
        body["reasoning_effort"] = effort
    return body


def check_models(status, payload, model):
    """Problems (list of str) of a GET /v1/models answer."""
    if status != 200:
        return [f"GET /v1/models answered HTTP {status}"]
    try:
        ids = [entry.get("id") for entry in payload.get("data", [])]
    except AttributeError:
        return [f"GET /v1/models returned no model list: {str(payload)[:200]}"]
    if model not in ids:
        return [f"GET /v1/models lists {ids}, not {model}"]
    return []


def check_chat(status, payload, thinking):
    """Verdict of one chat completion: {ok, problems, warnings, content, reasoning,
    null_content}. ``null_content`` is the DSpark thinking-off bug: content null and
    the answer in the reasoning field, which OpenAI clients show as an empty answer."""
    what = "thinking on" if thinking else "thinking off"
    out = {"ok": False, "problems": [], "warnings": [], "content": None, "reasoning": None,
           "null_content": False, "what": what}
    if status != 200:
        message = payload.get("message") if isinstance(payload, dict) else str(payload)[:200]
        out["problems"].append(f"chat completion ({what}) answered HTTP {status}: {message}")
        return out
    try:
        message = payload["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        out["problems"].append(f"chat completion ({what}) has no choices[0].message: {str(payload)[:200]}")
        return out
    content = message.get("content")
    reasoning = message.get("reasoning")
    if reasoning is None:
        reasoning = message.get("reasoning_content")
    out["content"], out["reasoning"] = content, reasoning
    if content in (None, "") and reasoning:
        out["null_content"] = True
        out["warnings"].append(
            f"chat completion ({what}): content is {content!r} and the answer came back in the "
            "reasoning field (the DSpark build's empty-response bug): OpenAI clients that read "
            "message.content show an empty answer"
        )
    elif content in (None, ""):
        out["problems"].append(f"chat completion ({what}) returned no content and no reasoning")
        return out
    if thinking and not reasoning:
        out["warnings"].append(f"chat completion ({what}) returned no reasoning text")
    out["ok"] = True
    return out


def smoke_summary(models_problems, checks):
    """(ok, message) over the checks of a smoke test."""
    problems = list(models_problems)
    warnings = []
    for check in checks:
        problems += check["problems"]
        warnings += check["warnings"]
    parts = [f"{c['what']}: {'ok' if c['ok'] else 'FAILED'}"
             + (" (content null, answer in reasoning)" if c["null_content"] else "") for c in checks]
    message = "; ".join(["models: " + ("ok" if not models_problems else "FAILED")] + parts)
    return not problems, message, problems, warnings


# --------------------------------------------------------------------------- HTTP

def http_json(url, body=None, api_key=None, timeout=30.0):
    """(status, parsed JSON or text) of a GET (body None) or POST (JSON body).
    status 0 means no answer (connection refused, timeout) and the payload is the error."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(getattr(exc, "reason", exc))
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text
