#!/usr/bin/env python3
"""The lab's stand-in for the vLLM DSpark runtime (stdlib only).

Installed in the stand-in image as /usr/local/bin/vllm, so the serving role runs it
with exactly the command line of the real runtime::

    vllm serve <model> --served-model-name NAME --host ADDR --port 8888
         --tensor-parallel-size 2 --nnodes 2 --node-rank R --master-addr A
         --master-port P [--headless] ...

It honours the serving contract of docs/design.md:

- reads the runtime env (docker env_file); ``GLOO_SOCKET_IFNAME`` missing or without
  an IPv4 address: ``RuntimeError: ifa != nullptr. Unable to find address for: <if>``,
  exit 1 (what gloo does);
- binds only on ``VLLM_HOST_IP`` (rendezvous) and ``--host`` (API);
- rank 0 listens on ``MASTER_ADDR:MASTER_PORT`` and waits for ``nnodes-1`` workers
  (``STANDIN_RENDEZVOUS_TIMEOUT_S``, like vLLM's store timeout); a headless worker
  connects from ``VLLM_HOST_IP``, logs ``waiting for master`` while it retries, and
  exits 1 when the master goes away; the head exits 1 when a worker goes away;
- logs vLLM's phase lines with small delays (``STANDIN_PHASE_DELAY_S``, default 0.05 s
  per step: a few seconds in total);
- the head serves GET /health, /v1/models, /metrics, /version and
  POST /v1/chat/completions (stream and non-stream);
- API key like vLLM's ``--api-key`` / ``VLLM_API_KEY``: the key comes from the
  process environment (``VLLM_API_KEY``, set by the serving role's wrapper) or the file
  ``/run/secrets/api_key`` (``SPARK_API_KEY_FILE``); with a key, ``/v1/*`` answers 401
  without ``Authorization: Bearer <key>``, ``/health``, ``/metrics`` and ``/version``
  stay open.

Deterministic generation: the answer to a request is a fixed function of its last user
message; every completion token takes ``STANDIN_TOKEN_DELAY_S`` (default 0.002 s).
Speculative decoding counters advance by known amounts (see ``spec_counts``): with
``num_speculative_tokens`` = K = 5, each decode step proposes K draft tokens and
accepts A of them (A = 1 with thinking on, 2 with thinking off), so a completion of N
tokens takes ceil(N / (A + 1)) drafts.

Fault switch (the stall watchdog's lab test): while the file ``STANDIN_HANG_FILE``
(default ``/tmp/standin-hang-generation`` inside the container) exists, generation
hangs before its first token, as a TP pair does in an NCCL collective timeout, while
``/health`` keeps answering 200. ``vllm:num_requests_running`` counts the requests in
flight (hung ones included), like vLLM's gauge. A restart (new container) clears it.

``STANDIN_NULL_CONTENT_BUG=1`` mimics the DSpark build's thinking-off bug: content is
null and the answer comes back in the reasoning field.
"""

from __future__ import annotations

import argparse
import fcntl
import hmac
import json
import math
import os
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REASONING_EFFORTS = ("none", "low", "medium", "high", "xhigh", "max")
SPEC_TOKENS = 5
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


def completion(body, null_content_bug=False):
    """Reasoning tokens, answer tokens and the (content, reasoning) strings."""
    prompt = last_user_text(body.get("messages"))
    thinking = thinking_of(body)
    answer = answer_tokens(prompt, body.get("max_tokens"))
    reasoning = reasoning_tokens(prompt, body.get("reasoning_effort") or "medium") if thinking else []
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
        "prompt_tokens": len(words(prompt)) + 8,
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
    def __init__(self):
        self.lock = threading.Lock()
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
                self.values[key] += counts[key]
            self.values["prompt"] += prompt_tokens
            self.values["requests"] += 1
            for pos, value in enumerate(counts["per_pos"]):
                self.per_pos[pos] += value

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

    def __init__(self, model, null_content_bug=False, token_delay=0.002, max_model_len=262144, api_key=None):
        self.model = model
        self.api_key = api_key or None
        self.null_content_bug = null_content_bug
        self.token_delay = token_delay
        self.max_model_len = max_model_len
        self.metrics = Metrics()
        self.counter = 0
        self.lock = threading.Lock()
        self.hang_file = os.environ.get("STANDIN_HANG_FILE", "/tmp/standin-hang-generation")

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
    """The API key as vLLM gets it (VLLM_API_KEY), else the compose secret file; None: open."""
    env = os.environ if env is None else env
    if env.get("VLLM_API_KEY"):
        return env["VLLM_API_KEY"]
    path = env.get("SPARK_API_KEY_FILE", "/run/secrets/api_key")
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


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
                self.send(200)
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


def watch_peer(conn, what):
    """Exit non-zero when the peer goes away (what gloo/NCCL do: the rank dies)."""
    def run():
        try:
            while True:
                data = conn.recv(64)
                if not data:
                    break
        except OSError:
            pass
        log(f"ERROR {what} went away: connection closed; this rank exits")
        os._exit(1)
    threading.Thread(target=run, daemon=True).start()


def heartbeat(conns):
    def run():
        while True:
            time.sleep(1)
            for conn in list(conns):
                try:
                    conn.sendall(b".")
                except OSError:
                    pass
    threading.Thread(target=run, daemon=True).start()


def run_head(args, env, delay):
    host_ip = env["VLLM_HOST_IP"]
    nnodes = args.nnodes
    log(f"mq_connect_ip={host_ip} (VLLM_HOST_IP)")
    log(f"distributed_init_method=tcp://{args.master_addr}:{args.master_port} "
        f"world_size={args.tensor_parallel_size * args.pipeline_parallel_size} rank=0 backend=gloo")
    if args.master_addr != host_ip:
        log(f"ERROR master_addr {args.master_addr} is not this node's VLLM_HOST_IP {host_ip}")
        return 1
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        srv.bind((args.master_addr, args.master_port))
    except OSError as exc:
        log(f"ERROR cannot listen on {args.master_addr}:{args.master_port}: {exc}")
        return 1
    srv.listen(16)
    timeout = env_float("STANDIN_RENDEZVOUS_TIMEOUT_S", 600)
    srv.settimeout(timeout)
    log(f"TCPStore listening on {args.master_addr}:{args.master_port}, "
        f"waiting for {nnodes - 1} worker node(s)")
    conns = []
    joined = set()
    while len(joined) < nnodes - 1:
        try:
            conn, peer = srv.accept()
        except socket.timeout:
            log(f"ERROR DistStoreError: timed out after {timeout:.0f} s waiting for "
                f"{nnodes - 1 - len(joined)} worker(s)")
            return 1
        try:
            conn.settimeout(5)
            hello = json.loads(conn.recv(256).decode().strip() or "{}")
            conn.settimeout(None)
        except (OSError, ValueError):
            conn.close()
            continue
        rank = hello.get("rank")
        log(f"worker rank {rank} joined from {peer[0]}")
        joined.add(rank)
        conns.append(conn)
    conn_by_rank = dict(zip(sorted(joined), conns))
    for rank, conn in conn_by_rank.items():
        conn.sendall(b"go\n")
        watch_peer(conn, f"worker rank {rank}")
    heartbeat(conns)
    log(f"all {nnodes} node(s) joined: world_size={args.tensor_parallel_size * args.pipeline_parallel_size}"
        f" (TP={args.tensor_parallel_size} x PP={args.pipeline_parallel_size})")
    phases(delay, args.standin_shards, 0)
    api = Api(args.served_model_name or args.model,
              null_content_bug=os.environ.get("STANDIN_NULL_CONTENT_BUG") == "1",
              token_delay=env_float("STANDIN_TOKEN_DELAY_S", 0.002),
              max_model_len=args.max_model_len,
              api_key=read_api_key())
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


def run_worker(args, env, delay):
    host_ip = env["VLLM_HOST_IP"]
    log(f"headless worker rank {args.node_rank}: mq_connect_ip={host_ip}")
    timeout = env_float("STANDIN_RENDEZVOUS_TIMEOUT_S", 600)
    t0 = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((host_ip, 0))
        except OSError as exc:
            log(f"ERROR cannot bind to VLLM_HOST_IP {host_ip}: {exc}")
            return 1
        sock.settimeout(2)
        try:
            sock.connect((args.master_addr, args.master_port))
            sock.sendall((json.dumps({"rank": args.node_rank}) + "\n").encode())
            sock.settimeout(None)
            break
        except OSError as exc:
            sock.close()
            if attempt == 1 or attempt % 10 == 0:
                log(f"waiting for master at {args.master_addr}:{args.master_port} "
                    f"(attempt {attempt}: {exc.strerror or exc})")
            if time.monotonic() - t0 > timeout:
                log(f"ERROR DistStoreError: master {args.master_addr}:{args.master_port} "
                    f"did not answer in {timeout:.0f} s")
                return 1
            time.sleep(1)
    log(f"connected to master {args.master_addr}:{args.master_port} from {host_ip}")
    try:
        go = sock.recv(3)
    except OSError:
        go = b""
    if not go.startswith(b"go"):
        log("ERROR master went away during the rendezvous")
        return 1
    watch_peer(sock, "master (rank 0)")
    heartbeat([sock])
    phases(delay, args.standin_shards, args.node_rank)
    log(f"worker rank {args.node_rank} ready: executor running (headless)")
    threading.Event().wait()
    return 0


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="vllm (spark-lab stand-in)")
    parser.add_argument("subcommand", choices=["serve"])
    parser.add_argument("model")
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--pipeline-parallel-size", type=int, default=1)
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--node-rank", type=int, default=0)
    parser.add_argument("--master-addr", default="127.0.0.1")
    parser.add_argument("--master-port", type=int, default=29501)
    parser.add_argument("--headless", action="store_true")
    parser.add_argument("--max-model-len", type=int, default=262144)
    parser.add_argument("--speculative-config", default=None)
    parser.add_argument("--standin-shards", type=int,
                        default=int(os.environ.get("STANDIN_SHARDS", "48")))
    args, rest = parser.parse_known_args(argv)
    return args, rest


def main(argv=None):
    args, rest = parse_args(sys.argv[1:] if argv is None else argv)
    log(f"vLLM API server version {VERSION}")
    log(f"non-default args: model={args.model!r} nnodes={args.nnodes} node_rank={args.node_rank} "
        f"headless={args.headless} tensor_parallel_size={args.tensor_parallel_size} "
        f"pipeline_parallel_size={args.pipeline_parallel_size} other={' '.join(rest)}")
    problem = layout_problem(args)
    if problem:
        log(f"ERROR ValueError: {problem}")
        return 1
    if args.speculative_config:
        try:
            spec = json.loads(args.speculative_config)
        except ValueError:
            log("ERROR --speculative-config is not JSON")
            return 2
        if spec.get("method") != "dspark" or int(spec.get("num_speculative_tokens", 0)) < 5:
            log(f"ERROR speculative config {spec} rejected (dspark, >= 5 tokens)")
            return 2
    env = os.environ
    ifname = env.get("GLOO_SOCKET_IFNAME", "")
    if not ifname or interface_ipv4(ifname) is None:
        print(f"RuntimeError: ifa != nullptr. Unable to find address for: {ifname}", flush=True)
        return 1
    if not env.get("VLLM_HOST_IP"):
        log("ERROR VLLM_HOST_IP is not set")
        return 1
    if (args.node_rank == 0) == args.headless:
        log("ERROR rank 0 serves the API; ranks > 0 run --headless")
        return 2
    delay = env_float("STANDIN_PHASE_DELAY_S", 0.05)
    signal_exit()
    if args.node_rank == 0:
        return run_head(args, env, delay)
    return run_worker(args, env, delay)


def layout_problem(args, hub=None):
    """vLLM's own checks of the parallel layout (one GPU per lab node): world size =
    nodes, and the model's attention heads divisible by TP (from the cached config.json)."""
    hub = hub or os.environ.get("HF_HUB_CACHE") or "/root/.cache/huggingface/hub"
    world = args.tensor_parallel_size * args.pipeline_parallel_size
    if world != args.nnodes:
        return (f"world size {world} (TP {args.tensor_parallel_size} x PP "
                f"{args.pipeline_parallel_size}) != {args.nnodes} node(s) x 1 GPU")
    rdir = os.path.join(hub, "models--" + args.model.replace("/", "--"))
    try:
        with open(os.path.join(rdir, "refs", "main"), encoding="utf-8") as ref:
            commit = ref.read().strip()
        with open(os.path.join(rdir, "snapshots", commit, "config.json"), encoding="utf-8") as fh:
            heads = int(json.load(fh).get("num_attention_heads") or 0)
    except (OSError, ValueError):
        return None  # no readable config: vLLM would fail later, on loading
    if heads and heads % args.tensor_parallel_size:
        return (f"Total number of attention heads ({heads}) must be divisible by tensor "
                f"parallel size ({args.tensor_parallel_size}).")
    return None


def signal_exit():
    import signal

    def stop(signum, _frame):
        log(f"received signal {signum}: shutting down")
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


if __name__ == "__main__":
    sys.exit(main())
