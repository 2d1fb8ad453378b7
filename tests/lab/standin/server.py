#!/usr/bin/env python3
"""The lab's stand-in for the vLLM DSpark runtime (stdlib only).

Installed in the stand-in image as ``/opt/env/bin/vllm`` (not on ``PATH``; the image's
``ENTRYPOINT`` is ``bash`` and its ``USER`` 1000, like the real runtime image), so the
serving role must run it exactly as the real runtime is run::

    /opt/env/bin/vllm serve <model> --served-model-name NAME --host ADDR --port 8888
         --tensor-parallel-size 2 --nnodes 2 --node-rank R --master-addr A
         --master-port P [--headless] ...

It keeps the real runtime's contract, so that the lab fails where real Sparks would:

- strict argument parsing: an unknown flag is an error (exit 2), like vLLM's CLI;
- ``--tensor-parallel-size`` x ``--pipeline-parallel-size`` must equal ``--nnodes`` x the
  node's GPUs (``STANDIN_GPUS_PER_NODE``, default 1), ``0 <= --node-rank < --nnodes``,
  rank 0 serves the API and ranks > 0 run ``--headless``;
- the JIT needs the ``/opt/env`` toolchain: ``nvcc`` must resolve to ``/opt/env/bin/nvcc``
  on ``PATH``, ``CUDA_HOME`` must be set and ``LD_LIBRARY_PATH`` must hold ``/opt/env/lib``
  (what DeepGEMM/TileLang need on a Spark);
- every JIT/autotune cache directory (the seven variables) must be writable by the
  process (uid 1000), the hub cache readable: otherwise ``PermissionError`` and exit 1;
- with ``HF_HUB_OFFLINE=1`` the model resolves only from the hub cache
  (``HF_HUB_CACHE``): ``--revision`` given, ``snapshots/<revision>`` (a commit) or
  ``refs/<revision>`` must exist; no ``--revision`` means ``main`` and needs
  ``refs/main`` (a pinned commit's cache has none: the offline start then fails);
- ``GLOO_SOCKET_IFNAME`` missing or without an IPv4 address:
  ``RuntimeError: ifa != nullptr. Unable to find address for: <if>``, exit 1 (gloo);
  ``NCCL_SOCKET_IFNAME`` must be ``=<gloo interface>`` and ``VLLM_HOST_IP`` an address of
  that interface;
- the rendezvous is torch's ``TCPStore``'s: rank 0 listens on ``[::]:MASTER_PORT``,
  dual-stack (torch's libuv daemon binds ``::`` first and falls back to ``0.0.0.0`` only
  when that fails), and a worker's client connects through an ``AF_INET6`` socket to the
  v4-mapped ``::ffff:MASTER_ADDR`` (torch tries IPv6 first with ``AI_V4MAPPED``), from the
  source address the route picks (no bind): both sides' rows are in ``/proc/net/tcp6``
  (docs/real-stack.md);
- rank 0 waits on its store for ``nnodes-1`` workers
  (``STANDIN_RENDEZVOUS_TIMEOUT_S``, like vLLM's store timeout), keeps every worker's
  connection open while it serves, and refuses a join once the rendezvous is complete;
  when a worker goes away it does NOT exit (the next collective would hang): it logs the
  loss and ``/health`` answers 503;
- a headless worker connects from ``VLLM_HOST_IP``, logs ``waiting for master`` while it
  retries, and when the master goes away it does NOT exit either (vLLM's headless node
  watches only its local workers): it keeps waiting in the "collective" and never joins a
  new master, so a head restarted alone cannot complete its rendezvous;
- logs vLLM's phase lines with small delays (``STANDIN_PHASE_DELAY_S``, default 0.05 s
  per step: a few seconds in total);
- the head serves GET /health, /v1/models, /metrics, /version and
  POST /v1/chat/completions (stream and non-stream);
- API key like vLLM's: only ``VLLM_API_KEY`` in the process environment (vLLM reads no
  file); with a key, ``/v1/*`` answers 401 without ``Authorization: Bearer <key>``,
  ``/health``, ``/metrics`` and ``/version`` stay open.

Deterministic generation: the answer to a request is a fixed function of its last user
message; every completion token takes ``STANDIN_TOKEN_DELAY_S`` (default 0.002 s).
Speculative decoding counters advance by known amounts (see ``spec_counts``): with
``num_speculative_tokens`` = K = 5, each decode step proposes K draft tokens and
accepts A of them (A = 1 with thinking on, 2 with thinking off), so a completion of N
tokens takes ceil(N / (A + 1)) drafts.

Fault switch (the stall watchdog's lab test): while the file ``STANDIN_HANG_FILE``
(default ``/var/cache/spark-jit/.standin-hang-generation``: the JIT cache mount, the
same path on the node, so a test flips it without ``docker exec``) exists, generation
hangs before its first token, as a TP pair does in an NCCL collective timeout, while
``/health`` keeps answering 200. ``vllm:num_requests_running`` counts the requests in
flight (hung ones included), like vLLM's gauge. A start removes the file: a restart
clears the hang, as it does a real one.

Which image it stands in for: ``SPARK_STANDIN_RUNTIME`` (set by each stand-in image's
Dockerfile, see ``IMAGES``) - ``dspark-overlay`` (the DSpark overlay on the bjk110 base: the
seed's own 5e60e52 image and the 489af95 build's intermediate), ``dspark-stage-c`` (what the
recipe's build at 489af95 produces; the default) or ``anemll-0.1.1`` (the prebuilt image the
current profile pulls). Each refuses what that image refuses: a KV cache dtype it lacks
(argparse: exit 2, like vLLM's choices), flags it rejects at start, and it wants its own
toolchain paths (``/opt/env`` or ``/usr/local/cuda``).

``STANDIN_NULL_CONTENT_BUG=1`` mimics the DSpark build's thinking-off bug: content is
null and the answer comes back in the reasoning field.

``STANDIN_NO_DRAFTS=1``: the speculative-decoding counters are exported but never move
(a server whose drafts are not counted): a benchmark must say "not measured", never 0 %.

Load generators (``bench.yml`` runs llama-benchy): ``min_tokens`` and ``ignore_eos`` are
honoured (the answer runs on with filler words to the asked length), ``usage`` counts
the prompt tokens of every message as whitespace words + 8 for the template (what the
benchmark's word-level tokenizer counts, so the prompt lengths it asks for are the
ones served), and non-streamed completions carry ``usage`` too.
"""

from __future__ import annotations

import argparse
import fcntl
import hmac
import json
import math
import os
import re
import shutil
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REASONING_EFFORTS = ("none", "low", "medium", "high", "xhigh", "max")
SPEC_TOKENS = 5
# What each runtime image takes, with its source (MiaAI-Lab/DeepSeek-v4-Flash-DSpark-2x-DGX-Spark
# at 489af9589684127ece879dd9e53395c5ff9157c8 unless said):
# - kv dtypes: vLLM's stock choices plus fp8_ds_mla; recipe/nvfp4/Dockerfile.stage-a adds
#   nvfp4_ds_mla to config/cache.py (so the overlay image lacks it); the Anemll image runs it
#   (docker-compose.dspark.yml passes --kv-cache-dtype nvfp4_ds_mla literally).
# - refused at start: .env.dspark.example - "--max-num-partial-prefills is NOT available on
#   dspark-vllm-gx10:0.1.1 - vLLM's _check_feature_supported() rejects Concurrent Partial Prefill".
# - toolchain: the overlay's /opt/env (docker-compose.dspark.yml at 5e60e52 exports it), the
#   Anemll image's /usr/local/cuda (the compose file at 489af95 exports it).
STOCK_KV = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_ds_mla")
OPT_ENV = {"nvcc": "/opt/env/bin/nvcc", "lib": "/opt/env/lib"}
IMAGES = {
    "dspark-overlay": {"kv": STOCK_KV, "toolchain": OPT_ENV, "no_partial_prefills": False},
    "dspark-stage-c": {"kv": STOCK_KV + ("nvfp4_ds_mla",), "toolchain": OPT_ENV, "no_partial_prefills": False},
    "anemll-0.1.1": {"kv": STOCK_KV + ("nvfp4_ds_mla",),
                     "toolchain": {"nvcc": "/usr/local/cuda/bin/nvcc", "lib": "/usr/local/cuda/lib64"},
                     "no_partial_prefills": True},
}
DEFAULT_IMAGE = "dspark-stage-c"


def image_of(env=None):
    """The image this stand-in plays (SPARK_STANDIN_RUNTIME), refused when unknown."""
    env = os.environ if env is None else env
    name = env.get("SPARK_STANDIN_RUNTIME") or DEFAULT_IMAGE
    if name not in IMAGES:
        raise SystemExit(f"stand-in: SPARK_STANDIN_RUNTIME {name!r} is not one of {', '.join(IMAGES)}")
    return name
VERSION = "0.0.0+spark-lab-standin"
SIOCGIFADDR = 0x8915


def log(msg):
    stamp = time.strftime("%m-%d %H:%M:%S")
    print(f"INFO {stamp} [standin] {msg}", flush=True)


def env_float(name, default):
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


# --------------------------------------------------------------------------- generation

def words(text):
    return [w for w in str(text or "").split() if w]


def last_user_text(messages):
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def answer_tokens(prompt, max_tokens=None):
    """The deterministic answer: 'The answer to <first 6 words> is 42.' as tokens."""
    head = " ".join(words(prompt)[:6]) or "nothing"
    tokens = f"The answer to {head} is 42.".split(" ")
    if max_tokens:
        tokens = tokens[: max(1, int(max_tokens))]
    return tokens


def reasoning_tokens(prompt, effort):
    steps = {"low": 1, "medium": 2, "high": 3, "xhigh": 4, "max": 5}.get(effort, 2)
    out = []
    for i in range(steps):
        out += f"Step {i + 1}: think about {' '.join(words(prompt)[:3]) or 'it'}.".split(" ")
    return out


def spec_counts(n_tokens, thinking):
    """Counter increments for one completion of n_tokens (documented above)."""
    accepted_per_draft = 1 if thinking else 2
    drafts = math.ceil(n_tokens / (accepted_per_draft + 1)) if n_tokens else 0
    return {
        "drafts": drafts,
        "draft_tokens": drafts * SPEC_TOKENS,
        "accepted": drafts * accepted_per_draft,
        "per_pos": [drafts if pos < accepted_per_draft else 0 for pos in range(SPEC_TOKENS)],
        "generation": n_tokens,
    }


def validate_chat(body, model_name):
    """(status, error message) or (200, None)."""
    if not isinstance(body, dict):
        return 400, "request body must be a JSON object"
    if body.get("model") not in (None, model_name):
        return 404, f"The model `{body.get('model')}` does not exist."
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return 400, "messages must be a non-empty list"
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        return 400, (f"Invalid reasoning_effort {effort!r}: expected one of "
                     f"{', '.join(REASONING_EFFORTS)}")
    kwargs = body.get("chat_template_kwargs")
    if kwargs is not None and not isinstance(kwargs, dict):
        return 400, "chat_template_kwargs must be an object"
    return 200, None


def thinking_of(body):
    kwargs = body.get("chat_template_kwargs") or {}
    if "thinking" in kwargs:
        return bool(kwargs["thinking"])
    return body.get("reasoning_effort") not in ("none",)


def prompt_token_count(messages):
    """Prompt tokens as the stand-in's tokenizer counts them: whitespace words of every
    message's content, plus 8 for the chat template (a load generator's word-level
    tokenizer then builds prompts of the lengths it asks for)."""
    total = 0
    for message in messages or []:
        if isinstance(message, dict):
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            total += len(words(content))
    return total + 8


def padded(answer, reasoning, body):
    """vLLM's ``min_tokens`` / ``ignore_eos``: the answer runs on (filler words) until the
    completion has min_tokens tokens, or max_tokens with ignore_eos (what load generators
    send to get an exact output length); max_tokens caps the whole completion."""
    max_tokens = body.get("max_tokens")
    target = int(body.get("min_tokens") or 0)
    if body.get("ignore_eos") and max_tokens:
        target = int(max_tokens)
    if max_tokens:
        target = min(target, int(max_tokens))
    i = 0
    while len(reasoning) + len(answer) < target:
        answer.append(("and", "so", "on", "again")[i % 4])
        i += 1
    if max_tokens and target and len(reasoning) + len(answer) > int(max_tokens):
        keep = max(0, int(max_tokens) - len(reasoning))
        answer[:] = answer[:keep]
    return answer


def completion(body, null_content_bug=False):
    """Reasoning tokens, answer tokens and the (content, reasoning) strings."""
    prompt = last_user_text(body.get("messages"))
    thinking = thinking_of(body)
    answer = answer_tokens(prompt, body.get("max_tokens"))
    reasoning = reasoning_tokens(prompt, body.get("reasoning_effort") or "medium") if thinking else []
    answer = padded(answer, reasoning, body)
    content_text = " ".join(answer)
    reasoning_text = " ".join(reasoning) if reasoning else None
    if not thinking and null_content_bug:
        content_text, reasoning_text = None, " ".join(answer)
    return {
        "thinking": thinking,
        "reasoning_tokens": reasoning,
        "answer_tokens": answer,
        "content": content_text,
        "reasoning": reasoning_text,
        "prompt_tokens": prompt_token_count(body.get("messages")),
    }


# --------------------------------------------------------------------------- API

# vLLM's bucket bounds (vllm/v1/metrics/loggers.py)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0, 20.0, 40.0, 80.0)


class Histogram:
    def __init__(self, name, buckets):
        self.name, self.buckets = name, buckets
        self.counts = [0] * len(buckets)
        self.count, self.sum = 0, 0.0

    def observe(self, value):
        self.count += 1
        self.sum += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1

    def lines(self, label):
        out = [f"# TYPE {self.name} histogram"]
        out += [f'{self.name}_bucket{{{label},le="{bound}"}} {n}.0' for bound, n in zip(self.buckets, self.counts)]
        out += [f'{self.name}_bucket{{{label},le="+Inf"}} {self.count}.0',
                f"{self.name}_sum{{{label}}} {self.sum!r}",
                f"{self.name}_count{{{label}}} {self.count}.0"]
        return out


class Metrics:
    def __init__(self, no_drafts=False):
        self.lock = threading.Lock()
        self.no_drafts = no_drafts  # spec-decode counters exported but never moving
        self.values = {"drafts": 0, "draft_tokens": 0, "accepted": 0, "generation": 0,
                       "prompt": 0, "requests": 0}
        self.per_pos = [0] * SPEC_TOKENS
        self.running = 0
        self.ttft = Histogram("vllm:time_to_first_token_seconds", TTFT_BUCKETS)
        self.tpot = Histogram("vllm:request_time_per_output_token_seconds", TPOT_BUCKETS)

    def in_flight(self, delta):
        with self.lock:
            self.running += delta

    def observe(self, ttft, tpot):
        """A request ended: its TTFT and mean time per output token (vLLM's per-request TPOT)."""
        with self.lock:
            self.ttft.observe(ttft)
            self.tpot.observe(tpot)

    def add(self, counts, prompt_tokens):
        with self.lock:
            for key in ("drafts", "draft_tokens", "accepted", "generation"):
                if not (self.no_drafts and key != "generation"):
                    self.values[key] += counts[key]
            self.values["prompt"] += prompt_tokens
            self.values["requests"] += 1
            for pos, value in enumerate(counts["per_pos"]):
                self.per_pos[pos] += 0 if self.no_drafts else value

    def text(self, model):
        label = f'model_name="{model}"'
        with self.lock:
            v = dict(self.values)
            per_pos = list(self.per_pos)
            running = self.running
            ttft, tpot = self.ttft.lines(label), self.tpot.lines(label)
        lines = [
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{{{label}}} {running}.0",
            "# TYPE vllm:spec_decode_num_drafts_total counter",
            f"vllm:spec_decode_num_drafts_total{{{label}}} {v['drafts']}.0",
            "# TYPE vllm:spec_decode_num_draft_tokens_total counter",
            f"vllm:spec_decode_num_draft_tokens_total{{{label}}} {v['draft_tokens']}.0",
            "# TYPE vllm:spec_decode_num_accepted_tokens_total counter",
            f"vllm:spec_decode_num_accepted_tokens_total{{{label}}} {v['accepted']}.0",
            "# TYPE vllm:spec_decode_num_accepted_tokens_per_pos_total counter",
        ]
        lines += [
            f'vllm:spec_decode_num_accepted_tokens_per_pos_total{{{label},position="{pos}"}} {value}.0'
            for pos, value in enumerate(per_pos)
        ]
        lines += [
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{{{label}}} {v['generation']}.0",
            "# TYPE vllm:prompt_tokens_total counter",
            f"vllm:prompt_tokens_total{{{label}}} {v['prompt']}.0",
            "# TYPE vllm:request_success_total counter",
            f'vllm:request_success_total{{{label},finished_reason="stop"}} {v["requests"]}.0',
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{{{label}}} 0.0",
        ]
        lines += ttft + tpot
        return "\n".join(lines) + "\n"


class Api:
    """State shared by the HTTP handlers."""

    def __init__(self, model, null_content_bug=False, token_delay=0.002, max_model_len=262144, api_key=None,
                 no_drafts=False):
        self.model = model
        self.api_key = api_key or None
        self.null_content_bug = null_content_bug
        self.token_delay = token_delay
        self.max_model_len = max_model_len
        self.metrics = Metrics(no_drafts=no_drafts)
        self.counter = 0
        self.lock = threading.Lock()
        self.hang_file = os.environ.get("STANDIN_HANG_FILE", "/var/cache/spark-jit/.standin-hang-generation")
        self.engine_dead = None  # why the engine is dead (a peer went away), or None
        self.clear_hang_switch()

    def clear_hang_switch(self):
        """A hung collective is a property of the running processes: a restart clears it.
        The switch lives on a mount that outlives the container, so a new process removes it."""
        try:
            os.unlink(self.hang_file)
            log(f"fault switch {self.hang_file} cleared at start (a hang does not survive a restart)")
        except FileNotFoundError:
            pass
        except OSError as err:
            log(f"fault switch {self.hang_file}: cannot clear it at start ({err})")

    def hang_while_switched(self):
        """The fault switch: block while the hang file exists (see the module doc)."""
        if os.path.exists(self.hang_file):
            log(f"fault switch {self.hang_file}: generation hangs (health stays 200)")
            while os.path.exists(self.hang_file):
                time.sleep(0.5)

    def next_id(self):
        with self.lock:
            self.counter += 1
            return f"chatcmpl-standin-{self.counter}"


def read_api_key(env=None):
    """The API key as vLLM gets it: VLLM_API_KEY in the process environment; None: open.

    vLLM reads no key file: a deployment that stops exporting the variable serves an
    open API, and so does the stand-in."""
    env = os.environ if env is None else env
    return env.get("VLLM_API_KEY") or None


def authorized(api, path, header):
    """vLLM's rule: only /v1 routes need the key."""
    if not api.api_key or not path.startswith("/v1"):
        return True
    expected = f"Bearer {api.api_key}"
    return hmac.compare_digest((header or "").encode(), expected.encode())


def make_handler(api):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "standin"

        def log_message(self, fmt, *args):  # one vLLM-like access line
            log(f"{self.client_address[0]} - \"{self.requestline}\" {args[1] if len(args) > 1 else ''}")

        def send(self, status, body=b"", ctype="application/json"):
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
            elif isinstance(body, str):
                body = body.encode()
            self.send_response(status)
            if body:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def error(self, status, message):
            self.send(status, {"object": "error", "message": message, "type": "BadRequestError"
                               if status == 400 else "NotFoundError", "code": status})

        def unauthorized(self):
            if not authorized(api, self.path, self.headers.get("Authorization")):
                self.close_connection = True  # a POST body stays unread
                self.send(401, {"error": "Unauthorized"})
                return True
            return False

        def do_GET(self):  # noqa: N802 (http.server API)
            if self.unauthorized():
                return
            if self.path == "/health":
                self.send(503 if api.engine_dead else 200)
            elif self.path == "/v1/models":
                self.send(200, {"object": "list", "data": [{
                    "id": api.model, "object": "model", "created": 0, "owned_by": "vllm",
                    "root": api.model, "max_model_len": api.max_model_len}]})
            elif self.path == "/metrics":
                self.send(200, api.metrics.text(api.model), "text/plain; version=0.0.4")
            elif self.path == "/version":
                self.send(200, {"version": VERSION})
            else:
                self.error(404, f"no route {self.path}")

        def do_POST(self):  # noqa: N802
            if self.unauthorized():
                return
            if self.path != "/v1/chat/completions":
                self.error(404, f"no route {self.path}")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
            except (ValueError, json.JSONDecodeError):
                self.error(400, "invalid JSON body")
                return
            if api.engine_dead:
                self.send(503, {"object": "error", "message": f"EngineDeadError: {api.engine_dead}",
                                "type": "EngineDeadError", "code": 503})
                return
            status, message = validate_chat(body, api.model)
            if status != 200:
                self.error(status, message)
                return
            api.metrics.in_flight(1)
            try:
                self.generate(body)
            finally:
                api.metrics.in_flight(-1)

        def generate(self, body):
            result = completion(body, api.null_content_bug)
            tokens = len(result["reasoning_tokens"]) + len(result["answer_tokens"])
            counts = spec_counts(tokens, result["thinking"])
            api.metrics.add(counts, result["prompt_tokens"])
            usage = {"prompt_tokens": result["prompt_tokens"], "completion_tokens": tokens,
                     "total_tokens": result["prompt_tokens"] + tokens}
            cid = api.next_id()
            # every token takes token_delay: TTFT and the mean time per output token too
            try:
                self.answer(cid, body, result, usage, tokens)
            finally:
                api.metrics.observe(api.token_delay, api.token_delay)

        def answer(self, cid, body, result, usage, tokens):
            if body.get("stream"):
                self.stream(cid, result, usage)
                return
            api.hang_while_switched()
            time.sleep(api.token_delay * tokens)
            self.send(200, {
                "id": cid, "object": "chat.completion", "created": 0, "model": api.model,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": result["content"],
                    "reasoning": result["reasoning"], "tool_calls": []}}],
                "usage": usage,
            })

        def chunk(self, cid, delta, finish=None, usage=None):
            data = {"id": cid, "object": "chat.completion.chunk", "created": 0, "model": api.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if usage is not None:
                data["usage"] = usage
            payload = f"data: {json.dumps(data)}\n\n".encode()
            self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
            self.wfile.flush()

        def stream(self, cid, result, usage):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.chunk(cid, {"role": "assistant", "content": ""})
            api.hang_while_switched()
            in_reasoning = result["content"] is None
            for i, tok in enumerate(result["reasoning_tokens"]):
                time.sleep(api.token_delay)
                self.chunk(cid, {"reasoning": (" " if i else "") + tok})
            for i, tok in enumerate(result["answer_tokens"]):
                time.sleep(api.token_delay)
                key = "reasoning" if in_reasoning else "content"
                self.chunk(cid, {key: (" " if i else "") + tok})
            self.chunk(cid, {}, finish="stop", usage=usage)
            payload = b"data: [DONE]\n\n"
            self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n0\r\n\r\n")
            self.wfile.flush()

    return Handler


def make_http_server(host, port, api):
    return ThreadingHTTPServer((host, port), make_handler(api))


# --------------------------------------------------------------------------- rendezvous

def interface_ipv4(ifname):
    """IPv4 address of a netdev (SIOCGIFADDR), or None."""
    if not ifname:
        return None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            packed = fcntl.ioctl(sock.fileno(), SIOCGIFADDR,
                                 struct.pack("256s", ifname[:15].encode()))
        return socket.inet_ntoa(packed[20:24])
    except OSError:
        return None


def phases(delay, shards, rank):
    for i in range(1, shards + 1):
        pct = int(100 * i / shards)
        log(f"Loading safetensors checkpoint shards: {pct:3d}% Completed | {i}/{shards}")
        time.sleep(delay)
    log(f"Model loading took 78.12 GiB and {shards * delay:.2f} seconds (rank {rank})")
    log(f"torch.compile takes {delay * 4:.2f} s in total")
    for i in range(1, 4):
        log(f"FlashInfer autotune: running autotuning {i}/3")
        time.sleep(delay)
    for i in range(1, 4):
        log(f"DeepGEMM warmup: {i}/3")
        time.sleep(delay)
    log("GPU KV cache size: 1,048,576 tokens")
    for i in range(1, 5):
        log(f"Capturing CUDA graphs (mixed prefill-decode, PIECEWISE): {i * 25}%| {i}/4")
        time.sleep(delay)


GONE = set()  # connections whose peer closed: kept, never written to again


def hold_peer(conn, what, on_loss):
    """Watch a peer's connection; when it closes, call on_loss (never exit: the real
    runtime's ranks do not notice a remote peer's death until a collective times out).
    The socket is kept and no longer written to (CLOSE_WAIT, as a rank blocked in a
    collective keeps its idle store socket: a write would draw a reset and close it)."""
    def run():
        try:
            while True:
                data = conn.recv(64)
                if not data:
                    break
        except OSError:
            pass
        GONE.add(conn)
        on_loss(what)
    threading.Thread(target=run, daemon=True).start()


def heartbeat(conns):
    def run():
        while True:
            time.sleep(1)
            for conn in [c for c in conns if c not in GONE]:
                try:
                    conn.sendall(b".")
                except OSError:
                    pass
    threading.Thread(target=run, daemon=True).start()


def read_hello(conn):
    """The join message of a worker ({"rank": R}), or None (a probe: connect and close)."""
    try:
        conn.settimeout(5)
        raw = conn.recv(256).decode().strip()
        conn.settimeout(None)
        return json.loads(raw) if raw else None
    except (OSError, ValueError):
        return None


def refuse_late_joins(srv):
    """After the rendezvous: the store keeps listening; probes are closed, a late join
    (a worker of another generation) is refused."""
    def run():
        while True:
            try:
                conn, peer = srv.accept()
            except OSError:
                return
            hello = read_hello(conn)
            if hello is not None:
                log(f"ERROR refusing rank {hello.get('rank')} from {peer[0]}: the rendezvous of this "
                    "master is complete (world already formed)")
                try:
                    conn.sendall(b"no\n")
                except OSError:
                    pass
            conn.close()
    threading.Thread(target=run, daemon=True).start()


def store_listen(port):
    """The store's listening socket as torch's libuv daemon opens it: ``::`` dual-stack
    (IPV6_V6ONLY off), ``0.0.0.0`` only when IPv6 is unavailable."""
    try:
        srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        where = f"[::]:{port}"
        addr = ("::", port)
    except OSError:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        where, addr = f"0.0.0.0:{port}", ("0.0.0.0", port)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        srv.bind(addr)
        srv.listen(16)
    except OSError:
        srv.close()
        raise
    return srv, where


def store_connect(addr, port, timeout):
    """A store client's connection as torch's opens it: IPv6 first, the IPv4 master as
    its v4-mapped address (getaddrinfo with AI_V4MAPPED), IPv4 only when that fails; no
    bind (the route picks the source)."""
    last = None
    for family, flags in ((socket.AF_INET6, socket.AI_V4MAPPED | socket.AI_ALL), (socket.AF_INET, 0)):
        try:
            infos = socket.getaddrinfo(addr, port, family, socket.SOCK_STREAM, 0, flags | socket.AI_NUMERICSERV)
        except socket.gaierror as exc:
            last = exc
            continue
        for fam, kind, proto, _, sockaddr in infos:
            sock = socket.socket(fam, kind, proto)
            sock.settimeout(timeout)
            try:
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                last = exc
    raise last or OSError(f"no address for {addr}")


def run_head(args, env, delay, shards):
    host_ip = env["VLLM_HOST_IP"]
    nnodes = args.nnodes
    log(f"mq_connect_ip={host_ip} (VLLM_HOST_IP)")
    log(f"distributed_init_method=tcp://{args.master_addr}:{args.master_port} "
        f"world_size={args.tensor_parallel_size * args.pipeline_parallel_size} rank=0 backend=gloo")
    if args.master_addr != host_ip:
        log(f"ERROR master_addr {args.master_addr} is not this node's VLLM_HOST_IP {host_ip}")
        return 1
    try:
        srv, where = store_listen(args.master_port)
    except OSError as exc:
        log(f"ERROR cannot listen on the store port {args.master_port}: {exc}")
        return 1
    timeout = env_float("STANDIN_RENDEZVOUS_TIMEOUT_S", 600)
    t0 = time.monotonic()
    log(f"TCPStore listening on {where} (tcp://{args.master_addr}:{args.master_port}), "
        f"waiting for {nnodes - 1} worker node(s)")
    conn_by_rank = {}
    while len(conn_by_rank) < nnodes - 1:
        srv.settimeout(max(0.1, timeout - (time.monotonic() - t0)))
        try:
            conn, peer = srv.accept()
        except socket.timeout:
            log(f"ERROR DistStoreError: timed out after {timeout:.0f} s waiting for "
                f"{nnodes - 1 - len(conn_by_rank)} worker(s)")
            return 1
        hello = read_hello(conn)
        if hello is None:
            conn.close()
            continue
        rank = hello.get("rank")
        if not isinstance(rank, int) or not 0 < rank < nnodes or rank in conn_by_rank:
            log(f"ERROR refusing a join from {peer[0]}: rank {rank!r} (expected 1..{nnodes - 1}, once each)")
            conn.close()
            continue
        log(f"worker rank {rank} joined from {peer[0]}")
        conn_by_rank[rank] = conn
    srv.settimeout(None)
    api = Api(args.served_model_name or args.model,
              null_content_bug=os.environ.get("STANDIN_NULL_CONTENT_BUG") == "1",
              token_delay=env_float("STANDIN_TOKEN_DELAY_S", 0.002),
              max_model_len=args.max_model_len,
              api_key=read_api_key(),
              no_drafts=os.environ.get("STANDIN_NO_DRAFTS") == "1")

    def worker_lost(what):
        api.engine_dead = f"{what} went away"
        log(f"ERROR {what} went away: the next collective blocks until the NCCL timeout; "
            "/health answers 503 (the engine is dead); this process keeps running")

    for rank, conn in conn_by_rank.items():
        conn.sendall(b"go\n")
        hold_peer(conn, f"worker rank {rank}", worker_lost)
    heartbeat(list(conn_by_rank.values()))
    refuse_late_joins(srv)
    log(f"all {nnodes} node(s) joined: world_size={args.tensor_parallel_size * args.pipeline_parallel_size}"
        f" (TP={args.tensor_parallel_size} x PP={args.pipeline_parallel_size})")
    phases(delay, shards, 0)
    log(f"API key: {'required on /v1 routes' if api.api_key else 'none (open API)'}")
    try:
        httpd = make_http_server(args.host, args.port, api)
    except OSError as exc:
        log(f"ERROR cannot bind the API on {args.host}:{args.port}: {exc}")
        return 1
    log(f"init engine (profile, create kv cache, warmup model) took {delay * 20:.2f} seconds")
    log(f"Starting vLLM API server on http://{args.host}:{args.port}")
    log("Application startup complete.")
    httpd.serve_forever()
    return 0


def join_master(args, host_ip, timeout):
    """Connect to the master's store and join; retried until it accepts (a master whose
    rendezvous is complete refuses: retried too, like a store client waiting on it).
    Returns the joined socket, or None after the timeout."""
    t0 = time.monotonic()
    attempt = 0
    while time.monotonic() - t0 <= timeout:
        attempt += 1
        sock = None
        try:
            sock = store_connect(args.master_addr, args.master_port, 2)
            sock.sendall((json.dumps({"rank": args.node_rank}) + "\n").encode())
            sock.settimeout(None)
            if attempt == 1 or attempt % 10 == 0:
                log(f"connected to master {args.master_addr}:{args.master_port} from {sock.getsockname()[0]}")
            answer = sock.recv(3)
        except OSError as exc:
            if sock is not None:
                sock.close()
            if attempt == 1 or attempt % 10 == 0:
                log(f"waiting for master at {args.master_addr}:{args.master_port} "
                    f"(attempt {attempt}: {exc.strerror or exc})")
            time.sleep(1)
            continue
        if answer.startswith(b"go"):
            return sock
        sock.close()
        if attempt == 1 or attempt % 10 == 0:
            log(f"waiting for master at {args.master_addr}:{args.master_port} (attempt {attempt}: "
                f"{'refused: its rendezvous is complete' if answer else 'closed during the rendezvous'})")
        time.sleep(1)
    return None


def run_worker(args, env, delay, shards):
    host_ip = env["VLLM_HOST_IP"]
    log(f"headless worker rank {args.node_rank}: mq_connect_ip={host_ip}")
    timeout = env_float("STANDIN_RENDEZVOUS_TIMEOUT_S", 600)
    sock = join_master(args, host_ip, timeout)
    if sock is None:
        log(f"ERROR DistStoreError: master {args.master_addr}:{args.master_port} "
            f"did not admit rank {args.node_rank} in {timeout:.0f} s")
        return 1
    log(f"rank {args.node_rank} joined master {args.master_addr}:{args.master_port}")

    def master_lost(what):
        log(f"ERROR {what} went away: this headless node watches only its local workers; "
            "the executor stays blocked in the next collective (no exit, no new rendezvous)")

    hold_peer(sock, "master (rank 0)", master_lost)
    heartbeat([sock])
    phases(delay, shards, args.node_rank)
    log(f"worker rank {args.node_rank} ready: executor running (headless)")
    threading.Event().wait()
    return 0


# --------------------------------------------------------------------------- contract checks

JIT_VARS = ("VLLM_CACHE_ROOT", "DG_JIT_CACHE_DIR", "TILELANG_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR",
            "TRITON_CACHE_DIR", "TORCH_EXTENSIONS_DIR", "FLASHINFER_WORKSPACE_BASE")
REVISION_RE = re.compile(r"^[0-9a-f]{40}$")


def check_toolchain(env, which=shutil.which, image=None):
    """Problems of the image's toolchain the JIT needs (nvcc, CUDA_HOME, libraries): /opt/env
    on the DSpark images, /usr/local/cuda on the Anemll one."""
    tool = IMAGES[image or DEFAULT_IMAGE]["toolchain"]
    problems = []
    nvcc = which("nvcc", path=env.get("PATH", ""))
    if nvcc != tool["nvcc"]:
        problems.append(f"DeepGEMM JIT: nvcc not found on PATH ({env.get('PATH', '')!r}); "
                        f"export PATH={os.path.dirname(tool['nvcc'])}:... before starting vllm")
    if not env.get("CUDA_HOME"):
        problems.append(f"TileLang JIT: CUDA_HOME is not set (expected {os.path.dirname(os.path.dirname(tool['nvcc']))})")
    if tool["lib"] not in env.get("LD_LIBRARY_PATH", "").split(":"):
        problems.append(f"LD_LIBRARY_PATH lacks {tool['lib']} (libcudart of the runtime)")
    return problems


def check_cache_access(env, access=os.access):
    """PermissionError lines for caches this process cannot use (JIT: write, hub: read)."""
    problems = []
    for var in JIT_VARS:
        path = env.get(var)
        if not path:
            continue
        if not (os.path.isdir(path) and access(path, os.W_OK | os.X_OK)):
            problems.append(f"PermissionError: [Errno 13] Permission denied: {path!r} "
                            f"({var}, uid {os.getuid()} cannot write it)")
    hub = env.get("HF_HUB_CACHE")
    if hub and not (os.path.isdir(hub) and access(hub, os.R_OK | os.X_OK)):
        problems.append(f"PermissionError: [Errno 13] Permission denied: {hub!r} "
                        f"(HF_HUB_CACHE, uid {os.getuid()} cannot read it)")
    return problems


def resolve_offline(hub_dir, repo, revision):
    """(snapshot dir, None) or (None, error) the way huggingface_hub resolves offline."""
    if os.path.isdir(repo):
        return repo, None
    base = os.path.join(hub_dir, "models--" + repo.replace("/", "--"))
    rev = revision or "main"
    if REVISION_RE.match(rev):
        commit = rev
    else:
        try:
            with open(os.path.join(base, "refs", rev), encoding="utf-8") as handle:
                commit = handle.read().strip()
        except OSError:
            return None, (f"OSError: We couldn't connect to 'https://huggingface.co' to load the files, and "
                          f"couldn't find them in the cached files (HF_HUB_CACHE={hub_dir}): no "
                          f"refs/{rev} for {repo}. Check your internet connection or see "
                          "https://huggingface.co/docs/huggingface_hub/guides/manage-cache")
    snapshot = os.path.join(base, "snapshots", commit)
    if not os.path.isfile(os.path.join(snapshot, "config.json")):
        return None, (f"OSError: {repo} at revision {commit} is not in the cache "
                      f"(HF_HUB_CACHE={hub_dir}: no {snapshot}/config.json) and HF_HUB_OFFLINE=1")
    return snapshot, None


def count_shards(snapshot):
    return len([n for n in os.listdir(snapshot) if n.endswith(".safetensors")])


def check_topology(args, gpus_per_node):
    """vLLM's checks of the parallel layout: world size, ranks, headless."""
    world = args.tensor_parallel_size * args.pipeline_parallel_size
    if world != args.nnodes * gpus_per_node:
        return (f"ValueError: tensor_parallel_size ({args.tensor_parallel_size}) x pipeline_parallel_size "
                f"({args.pipeline_parallel_size}) = {world} != nnodes ({args.nnodes}) x "
                f"{gpus_per_node} GPU(s) per node")
    if not 0 <= args.node_rank < args.nnodes:
        return f"ValueError: node_rank {args.node_rank} is not in [0, {args.nnodes})"
    if (args.node_rank == 0) == args.headless:
        return "ValueError: rank 0 serves the API; ranks > 0 run --headless"
    return None


def check_pinning(env, ifaddr=interface_ipv4):
    """(problem, is_gloo_error): the socket pinning gloo, NCCL and vLLM read."""
    ifname = env.get("GLOO_SOCKET_IFNAME", "")
    address = ifaddr(ifname)
    if not ifname or address is None:
        return f"RuntimeError: ifa != nullptr. Unable to find address for: {ifname}", True
    if env.get("NCCL_SOCKET_IFNAME") != "=" + ifname:
        return (f"NCCL_SOCKET_IFNAME is {env.get('NCCL_SOCKET_IFNAME')!r}, expected '={ifname}' "
                "(an exact match of the gloo interface; a prefix can pick another netdev)"), False
    if not env.get("VLLM_HOST_IP"):
        return "VLLM_HOST_IP is not set (vLLM would advertise the default-route address)", False
    if env["VLLM_HOST_IP"] != address:
        return (f"VLLM_HOST_IP {env['VLLM_HOST_IP']} is not the address of {ifname} ({address}): "
                "the ranks would advertise one interface and talk over another"), False
    return None, False


class StrictParser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"vllm: error: {message}", file=sys.stderr, flush=True)
        sys.exit(2)


def parse_args(argv, image=None):
    """Exactly the flags the real launches use (both profiles); anything else is an error
    (exit 2), and so is a KV cache dtype the image lacks."""
    parser = StrictParser(prog="vllm", allow_abbrev=False)
    parser.add_argument("subcommand", choices=["serve"])
    parser.add_argument("model")
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--revision", default=None)
    parser.add_argument("--tokenizer-revision", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--pipeline-parallel-size", type=int, default=1)
    parser.add_argument("--distributed-executor-backend", choices=["mp", "ray"], default="mp")
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--node-rank", type=int, default=0)
    parser.add_argument("--master-addr", default="127.0.0.1")
    parser.add_argument("--master-port", type=int, default=29501)
    parser.add_argument("--headless", action="store_true")
    parser.add_argument("--max-model-len", type=int, default=262144)
    parser.add_argument("--max-num-seqs", type=int, default=None)
    parser.add_argument("--max-num-batched-tokens", type=int, default=None)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    parser.add_argument("--kv-cache-dtype", choices=list(IMAGES[image or DEFAULT_IMAGE]["kv"]), default="auto")
    parser.add_argument("--long-prefill-token-threshold", type=int, default=0)
    parser.add_argument("--max-cudagraph-capture-size", type=int, default=None)
    parser.add_argument("--max-num-partial-prefills", type=int, default=1)
    parser.add_argument("--enable-prompt-tokens-details", action="store_true")
    parser.add_argument("--async-scheduling", action="store_true")
    parser.add_argument("--enable-chunked-prefill", action="store_true")
    parser.add_argument("--moe-backend", default=None)
    parser.add_argument("--generation-config", default=None)
    parser.add_argument("--block-size", type=int, default=None)
    parser.add_argument("--enable-prefix-caching", action="store_true")
    parser.add_argument("--no-enable-prefix-caching", dest="enable_prefix_caching", action="store_false")
    parser.add_argument("--speculative-config", default=None)
    parser.add_argument("--tokenizer-mode", default="auto")
    parser.add_argument("--reasoning-parser", default=None)
    parser.add_argument("--reasoning-config", default=None)
    parser.add_argument("--tool-call-parser", default=None)
    parser.add_argument("--enable-auto-tool-choice", action="store_true")
    parser.add_argument("--default-chat-template-kwargs", default=None)
    parser.add_argument("--enable-flashinfer-autotune", action="store_true")
    parser.add_argument("--enforce-eager", action="store_true")
    return parser.parse_args(argv)


def heads_problem(args, snapshot):
    """vLLM's check of the model against TP: the attention heads (config.json of the
    resolved snapshot) divisible by the tensor parallel size."""
    try:
        with open(os.path.join(snapshot, "config.json"), encoding="utf-8") as handle:
            heads = int(json.load(handle).get("num_attention_heads") or 0)
    except (OSError, ValueError):
        return None  # no readable config: vLLM would fail later, on loading
    if heads and heads % args.tensor_parallel_size:
        return (f"ValueError: Total number of attention heads ({heads}) must be divisible by tensor "
                f"parallel size ({args.tensor_parallel_size}).")
    return None


def check_json_flags(args):
    for flag in ("speculative_config", "reasoning_config", "default_chat_template_kwargs"):
        value = getattr(args, flag)
        if value is None:
            continue
        try:
            parsed = json.loads(value)
        except ValueError:
            return f"--{flag.replace('_', '-')} is not JSON: {value!r}"
        if not isinstance(parsed, dict):
            return f"--{flag.replace('_', '-')} must be a JSON object"
    if args.speculative_config:
        spec = json.loads(args.speculative_config)
        if spec.get("method") != "dspark" or int(spec.get("num_speculative_tokens", 0)) < 5:
            return f"speculative config {spec} rejected (dspark, >= 5 tokens)"
        if spec.get("draft_sample_method", "probabilistic") not in ("probabilistic", "greedy"):
            return f"speculative config {spec} rejected (draft_sample_method probabilistic or greedy)"
    return None


def check_image_features(args, image=None):
    """What the image refuses at start although its CLI parses it."""
    if IMAGES[image or DEFAULT_IMAGE]["no_partial_prefills"] and args.max_num_partial_prefills > 1:
        return ("NotImplementedError: Concurrent Partial Prefill is not supported on this image "
                "(_check_feature_supported); use DSPARK_MAX_INFLIGHT_PREFILLS instead")
    return None


def main(argv=None):
    env = os.environ
    image = image_of(env)
    args = parse_args(sys.argv[1:] if argv is None else argv, image)
    log(f"vLLM API server version {VERSION} (stand-in for the {image} image)")
    log(f"non-default args: model={args.model!r} revision={args.revision!r} nnodes={args.nnodes} "
        f"node_rank={args.node_rank} headless={args.headless} "
        f"tensor_parallel_size={args.tensor_parallel_size} max_num_seqs={args.max_num_seqs} "
        f"kv_cache_dtype={args.kv_cache_dtype} enable_prefix_caching={args.enable_prefix_caching}")
    problem = (check_json_flags(args) or check_image_features(args, image)
               or check_topology(args, int(env.get("STANDIN_GPUS_PER_NODE", "1"))))
    if problem:
        log(f"ERROR {problem}")
        return 2
    problems = check_toolchain(env, image=image) + check_cache_access(env)
    if problems:
        for line in problems:
            print(line, flush=True)
        return 1
    hub = env.get("HF_HUB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub")
    snapshot = None
    if env.get("HF_HUB_OFFLINE") == "1":
        snapshot, error = resolve_offline(hub, args.model, args.revision)
        if error:
            print(error, flush=True)
            return 1
        log(f"model {args.model} resolved offline: {snapshot}")
    else:
        snapshot, _ = resolve_offline(hub, args.model, args.revision)  # online: vLLM would download
    problem = heads_problem(args, snapshot) if snapshot else None
    if problem:
        log(f"ERROR {problem}")
        return 1
    problem, gloo = check_pinning(env)
    if problem:
        if gloo:
            print(problem, flush=True)
        else:
            log(f"ERROR {problem}")
        return 1
    shards = int(env.get("STANDIN_SHARDS") or (count_shards(snapshot) if snapshot else 48) or 48)
    delay = env_float("STANDIN_PHASE_DELAY_S", 0.05)
    signal_exit()
    if args.node_rank == 0:
        return run_head(args, env, delay, shards)
    return run_worker(args, env, delay, shards)


def signal_exit():
    import signal

    def stop(signum, _frame):
        log(f"received signal {signum}: shutting down")
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


if __name__ == "__main__":
    sys.exit(main())
