"""Stall watchdog of the serving pair (node side, stdlib only, no Ansible needed).

systemd restarts a rank only when its container exits. A recurring NCCL collective
timeout instead hangs the tensor-parallel pair while the API keeps answering
``/health``; only a full stop and start of every node brings it back. This program
watches for that and does the full restart itself::

    python3 -m spark_cluster.node.watchdog check    --config /etc/spark-cluster/watchdog.json  # head, timer
    python3 -m spark_cluster.node.watchdog agent    --config /etc/spark-cluster/watchdog.json  # workers
    python3 -m spark_cluster.node.watchdog restart  --config ... --reason "..."   # head, by hand
    python3 -m spark_cluster.node.watchdog prepare  --config ...                  # head, ExecStartPre
    python3 -m spark_cluster.node.watchdog validate --config-json '{...}'         # the role, up front

(with PYTHONPATH=/usr/local/lib/spark-cluster, as the units set it)

**check** (head, ``spark-watchdog.timer`` every ``interval_s``): nothing while the runtime
unit is not active (starting, stopped by a person, failed: systemd's business). Else
``GET /health``; ``health_failures`` failures in a row are a stall. With /health 200,
the running-requests gauge (``vllm:num_requests_running`` on ``/metrics``) decides: with
requests in flight, ``vllm:generation_tokens_total`` must have moved since the previous
check (else: a stall, tokens stuck); with none, one tiny authenticated streamed
completion over loopback (``max_tokens`` 1) must yield a token within
``token_timeout_s`` (else: a stall). A stall leads to the coordinated restart, at most
``max_restarts_per_hour`` times an hour (then it logs that a person is needed and
exits 1, so the unit shows failed).

**Coordinated restart**, the order of ``site.yml`` (``roles/serving/tasks/start.yml``):
the head's unit stopped; each worker's unit restarted and seen waiting for the master;
the head's unit started, its ``/health`` awaited (``health_timeout_s``) and one probe
completion must yield a token (``/health`` answered during the hang too); the time to
serving again logged, or that the pair is still not serving (the next check decides). Nodes cannot SSH to each other, so the head asks each worker's
**agent**: a small service on the worker, bound to its rail-0 address
(``agent_port``, allowed by the cluster firewall from the rails only), that accepts
requests only from the head's rail addresses, signed with HMAC-SHA256 under a shared
secret (``secret_path``, 0600 root, the same on every node), at most 120 s old and never
replayed. It restarts its own unit and answers once the worker waits for the master.

**prepare** (head, an ``ExecStartPre`` of the head's runtime unit, so every start of the
head, whoever starts it: systemd after a crash, the rendezvous guard after a lost worker,
a person, this restart): asks each worker's agent to *prepare*. A worker whose runtime
joined an earlier head (it cannot join another: vLLM's headless node stays blocked), or
that is not running, is restarted and awaited; a fresh one waiting for the master is left
alone. The agent reads that from the worker's rendezvous guard (``spark_cluster.node.rendezvous
--state``: has this run of the unit joined?); without a record for the unit's current
run it restarts, to be sure. A restart by the agent is a manual start: systemd's
back-off for crash loops (``RestartSteps``) does not slow it. The head's start goes on
whatever the agents answer (it waits in the rendezvous for every worker).

Every action and its reason goes to stdout, i.e. the journal (``journalctl -u
spark-watchdog -u spark-watchdog-agent``).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from ..common.fileio import read_text, write_atomic
from .rendezvous import held_connections, read_tables
from .serving import http_json, parse_phase, worker_waiting

PROG = "spark-watchdog"
DEFAULT_CONFIG = "/etc/spark-cluster/watchdog.json"
MAX_SKEW_S = 120
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)

COMMON_KEYS = ("role", "name", "unit", "container", "secret_path", "agent_port")
HEAD_KEYS = ("api_base_url", "model", "interval_s", "token_timeout_s", "health_failures",
             "health_timeout_s", "worker_timeout_s", "max_restarts_per_hour", "state_path",
             "workers", "source_address")
WORKER_KEYS = ("bind_address", "allowed_peers", "worker_timeout_s")
RENDEZVOUS_WAIT_S = 8  # how long prepare waits for the guard's record of the unit's current run


class ConfigError(ValueError):
    """A watchdog setting that cannot work (the message says which and what to do)."""


def validate_config(cfg):
    """Raise ConfigError naming the variable; return cfg. The Ansible role runs this
    (``validate``) before it changes anything."""
    role = cfg.get("role")
    if role not in ("head", "worker"):
        raise ConfigError(f"role is {role!r}: expected head or worker")
    missing = [k for k in COMMON_KEYS + (HEAD_KEYS if role == "head" else WORKER_KEYS) if k not in cfg]
    if missing:
        raise ConfigError(f"the watchdog config lacks {', '.join(missing)}")
    port = cfg["agent_port"]
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"spark_watchdog_agent_port is {port!r}: expected a port 1-65535")
    if role == "worker":
        return cfg
    numbers = {k: cfg[k] for k in ("interval_s", "token_timeout_s", "health_failures",
                                   "health_timeout_s", "worker_timeout_s", "max_restarts_per_hour")}
    for key, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
            raise ConfigError(f"{key} is {value!r}: expected a number >= 1")
    interval, token, failures = cfg["interval_s"], cfg["token_timeout_s"], cfg["health_failures"]
    health_wait = cfg["health_timeout_s"]
    if interval < 10:
        raise ConfigError(f"watchdog_interval_sec is {interval}: expected >= 10 s between checks")
    if token >= interval:
        raise ConfigError(f"watchdog_token_timeout_sec ({token} s) must be shorter than "
                          f"watchdog_interval_sec ({interval} s)")
    if failures * interval < health_wait:
        raise ConfigError(
            f"the watchdog would declare a stall after watchdog_health_failures x "
            f"watchdog_interval_sec = {failures} x {interval} s = {failures * interval} s of failed "
            f"/health, shorter than the health wait of a start (serving_health_timeout "
            f"{health_wait} s): it would fire during a first start. Raise "
            f"watchdog_health_failures to at least {-(-health_wait // interval)} or the interval")
    if not isinstance(cfg["workers"], dict) or not cfg["workers"]:
        raise ConfigError("the watchdog config lists no workers ({name: rail-0 address})")
    return cfg


# --------------------------------------------------------------------------- metrics

def metric_value(text, name):
    """Sum of a Prometheus metric over its label sets, or None when absent."""
    total, found = 0.0, False
    pattern = re.compile(r"^" + re.escape(name) + r"(\{[^}]*\})?\s+([0-9.eE+-]+|NaN)\s*$")
    for line in str(text or "").splitlines():
        match = pattern.match(line.strip())
        if match:
            try:
                total += float(match.group(2))
                found = True
            except ValueError:
                continue
    return total if found else None


def sse_has_token(line):
    """True when an SSE line of a chat stream carries a generated token (or the end)."""
    line = line.strip()
    if not line.startswith("data:"):
        return False
    data = line[5:].strip()
    if data == "[DONE]":
        return True
    try:
        chunk = json.loads(data)
    except ValueError:
        return False
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if any(delta.get(k) for k in ("content", "reasoning", "reasoning_content")):
            return True
        if choice.get("finish_reason") or delta.get("tool_calls"):
            return True
    return False


# --------------------------------------------------------------------------- signing

def sign(secret, body):
    """The wire message: body (canonical JSON) and its HMAC-SHA256."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    mac = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"body": text, "mac": mac}) + "\n"


def verify(secret, line, peer, allowed, name, now, seen):
    """(body, '') for an authentic, fresh, first-seen request for ``name`` from an
    allowed peer; (None, why) otherwise. ``seen`` is a dict nonce -> time (pruned here)."""
    if peer not in allowed:
        return None, f"refused: {peer} is not a head rail address ({', '.join(allowed)})"
    try:
        message = json.loads(line)
        text, mac = message["body"], message["mac"]
        body = json.loads(text)
    except (ValueError, KeyError, TypeError):
        return None, f"refused: malformed request from {peer}"
    expected = hmac.new(secret.encode(), str(text).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, str(mac)):
        return None, f"refused: bad signature from {peer} (secret differs?)"
    if abs(now - float(body.get("ts", 0))) > MAX_SKEW_S:
        return None, f"refused: request from {peer} is {now - float(body.get('ts', 0)):.0f} s old"
    for nonce, t in list(seen.items()):
        if now - t > 2 * MAX_SKEW_S:
            del seen[nonce]
    if body.get("nonce") in seen:
        return None, f"refused: replayed request from {peer}"
    if body.get("to") != name:
        return None, f"refused: request for {body.get('to')!r}, this is {name!r}"
    seen[body.get("nonce")] = now
    return body, ""


def read_secret(path):
    with open(path, encoding="utf-8") as handle:
        secret = handle.read().strip()
    if len(secret) < 32:
        raise ConfigError(f"{path} holds no usable secret (re-run the playbook)")
    return secret


# --------------------------------------------------------------------------- the system

class System:
    """Side effects (systemd, HTTP, docker, clock, journal). Tests pass a fake."""

    def __init__(self, out=None):
        self.out = out or sys.stdout

    def log(self, message):
        print(f"{PROG}: {message}", file=self.out, flush=True)

    def now(self):
        return time.time()

    def sleep(self, seconds):
        time.sleep(seconds)

    def run(self, *argv):
        proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
        return proc.returncode, (proc.stdout + proc.stderr).strip()

    def unit_state(self, unit):
        props = self.unit_props(unit)
        return props.get("ActiveState", "unknown"), props.get("SubState", "")

    def unit_props(self, unit):
        _, out = self.run("systemctl", "show", unit, "--timestamp=unix",
                          "--property=ActiveState,SubState,InvocationID,ExecMainStartTimestamp,"
                          "ExecMainExitTimestamp")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def held(self, master_addr, master_port):
        return held_connections(read_tables(), master_addr, master_port)

    def read_json(self, path):
        try:
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def http_get(self, url, timeout=10):
        return http_json(url, timeout=timeout)

    def probe(self, url, api_key, model, timeout):
        """(seconds to the first token, or None; detail) of one streamed completion."""
        body = {"model": model, "messages": [{"role": "user", "content": "ping"}],
                "max_tokens": 1, "stream": True, "chat_template_kwargs": {"thinking": False}}
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
        request.add_header("Content-Type", "application/json")
        if api_key:
            request.add_header("Authorization", f"Bearer {api_key}")
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                while time.monotonic() - t0 < timeout:
                    raw = resp.readline()
                    if not raw:
                        return None, "the stream ended without a token"
                    if sse_has_token(raw.decode("utf-8", "replace")):
                        return time.monotonic() - t0, "token"
        except urllib.error.HTTPError as exc:
            return None, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return None, f"no token within {timeout:g} s ({reason})"
        return None, f"no token within {timeout:g} s"

    def container_log(self, container, since):
        _, out = self.run("docker", "logs", "--since", str(int(since)), container)
        return out.splitlines()

    def ask(self, address, port, source, message, timeout):
        """Send one signed request to a worker's agent; its reply (dict)."""
        with socket.create_connection((address, port), timeout=timeout,
                                      source_address=(source, 0) if source else None) as conn:
            conn.sendall(message.encode())
            conn.settimeout(timeout)
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
        return json.loads(data.decode() or "{}")


# --------------------------------------------------------------------------- state

def load_state(path):
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def save_state(path, state):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_atomic(path, json.dumps(state, indent=2, sort_keys=True), default_mode=0o644)


def read_key(path):
    return (read_text(path) or None) if path else None


# --------------------------------------------------------------------------- head

def probe_token(cfg, system):
    """One tiny streamed completion over loopback. Returns (seconds to the first token or
    None, detail, refused): refused is an HTTP 4xx (the key), which says nothing of a hang."""
    seconds, detail = system.probe(cfg["api_base_url"].rstrip("/") + "/v1/chat/completions",
                                   read_key(cfg.get("api_key_path")), cfg["model"], cfg["token_timeout_s"])
    return seconds, detail, seconds is None and detail.startswith("HTTP 4")


def check(cfg, state, system):
    """One check. Returns (verdict, reason); verdict is idle, ok, busy, unhealthy or
    stall. Updates ``state`` (failures in a row, tokens seen while busy)."""
    unit = cfg["unit"]
    active, sub = system.unit_state(unit)
    if active != "active":
        state.update(health_failures=0, busy=None)
        return "idle", f"{unit} is {active}/{sub}: not watching (systemd or a person is on it)"
    base = cfg["api_base_url"].rstrip("/")
    status, _ = system.http_get(base + "/health", timeout=10)
    if status != 200:
        state["health_failures"] = int(state.get("health_failures") or 0) + 1
        state["busy"] = None
        n, k = state["health_failures"], cfg["health_failures"]
        why = f"/health answered {status or 'nothing'} ({n} of {k} in a row)"
        return ("stall" if n >= k else "unhealthy"), why
    state["health_failures"] = 0
    status, metrics = system.http_get(base + "/metrics", timeout=10)
    text = metrics if isinstance(metrics, str) else ""
    running = metric_value(text, "vllm:num_requests_running") if status == 200 else None
    tokens = metric_value(text, "vllm:generation_tokens_total") if status == 200 else None
    now = system.now()
    if running:
        busy = state.get("busy") or {}
        if busy.get("tokens") is not None and tokens is not None and tokens <= busy["tokens"]:
            stuck = now - float(busy.get("since", now))
            if stuck >= cfg["token_timeout_s"]:
                return "stall", (f"{running:g} request(s) in flight and no token generated for "
                                 f"{stuck:.0f} s (vllm:generation_tokens_total stuck at {tokens:g})")
            return "busy", f"{running:g} request(s) in flight, no new token for {stuck:.0f} s yet"
        state["busy"] = {"tokens": tokens, "since": now}
        return "busy", f"{running:g} request(s) in flight, tokens flowing: no probe"
    state["busy"] = None
    seconds, detail, refused = probe_token(cfg, system)
    if seconds is None:
        if refused:
            return "ok", f"probe refused ({detail}): check the key file {cfg.get('api_key_path')}"
        return "stall", f"/health 200 but the probe completion got {detail}"
    return "ok", f"/health 200, probe token after {seconds:.2f} s"


def request(cfg, secret, name, action, reason, system, **extra):
    """Ask the agent of worker ``name`` (at its rail-0 address) to do ``action``."""
    address = cfg["workers"][name]
    body = {"action": action, "reason": reason, "to": name, "ts": system.now(),
            "nonce": secrets.token_hex(16), **extra}
    try:
        return system.ask(address, cfg["agent_port"], cfg.get("source_address"),
                          sign(secret, body), cfg["worker_timeout_s"] + 30)
    except (OSError, ValueError) as exc:
        return {"ok": False, "message": f"agent {address}:{cfg['agent_port']} unreachable: {exc}"}


def wait_health(cfg, system, since):
    """Seconds until /health answers 200 (None: health_timeout_s passed)."""
    base = cfg["api_base_url"].rstrip("/")
    t0 = system.now()
    last_note = t0
    while system.now() - t0 < cfg["health_timeout_s"]:
        status, _ = system.http_get(base + "/health", timeout=5)
        if status == 200:
            return system.now() - t0
        if system.now() - last_note >= 30:
            phase = parse_phase(system.container_log(cfg["container"], since))
            system.log(f"waiting for the head: {phase['detail']} after {system.now() - t0:.0f} s")
            last_note = system.now()
        system.sleep(cfg.get("poll_s", 3))
    return None


def restart_pair(cfg, system, reason):
    """The coordinated restart. Returns (ok, seconds to serving again)."""
    t0 = system.now()
    unit = cfg["unit"]
    system.log(f"restarting the pair (workers first, then the head): {reason}")
    secret = read_secret(cfg["secret_path"])
    rc, out = system.run("systemctl", "stop", unit)
    system.log(f"head: stopped {unit}" + ("" if rc == 0 else f" (rc {rc}: {out})"))
    for name in cfg["workers"]:
        reply = request(cfg, secret, name, "restart", reason, system)
        system.log(f"worker {name}: {reply.get('message')}")
        if not reply.get("ok"):
            system.log(f"restart incomplete: worker {name} did not come back; the head stays "
                       f"stopped (start it with start.yml once the worker is fixed)")
            return False, system.now() - t0
    system.run("systemctl", "reset-failed", unit)
    started = system.now()
    rc, out = system.run("systemctl", "start", unit)
    if rc != 0:
        system.log(f"head: cannot start {unit} (rc {rc}): {out}")
        return False, system.now() - t0
    system.log(f"head: started {unit}, waiting for /health (up to {cfg['health_timeout_s']} s)")
    waited = wait_health(cfg, system, started)
    total = system.now() - t0
    if waited is None:
        system.log(f"head: /health not 200 after {cfg['health_timeout_s']} s: see journalctl -u {unit}")
        return False, total
    # /health answered before the hang too: serving again means a token, as the check asks
    seconds, detail, refused = probe_token(cfg, system)
    total = system.now() - t0
    if seconds is None and not refused:
        system.log(f"head: /health 200 but the probe completion got {detail} after the restart: "
                   f"not serving; the next check decides again (journalctl -u {unit} on every node)")
        return False, total
    system.log(f"serving again {total:.1f} s after the stall was declared ({reason})")
    return True, total


def unix_time(value):
    """systemctl show --timestamp=unix's ``@1796664177`` (or empty: never) -> seconds."""
    value = (value or "").strip().lstrip("@")
    try:
        return float(value) if value and value != "n/a" else 0.0
    except ValueError:
        return 0.0


def fresh_after(props):
    """The moment after which a worker's run cannot have joined an earlier head of this
    one: while the head's unit is starting (ExecStartPre), its previous run's end (the
    main process' exit); while it runs and waits in its rendezvous, its current run's
    start (a worker started before that and still not joined is stuck: restart it)."""
    if props.get("ActiveState") == "active":
        return unix_time(props.get("ExecMainStartTimestamp"))
    return unix_time(props.get("ExecMainExitTimestamp"))


def prepare_workers(cfg, system, reason="the head's runtime is starting"):
    """Every worker fresh before the head's store opens (the head's ExecStartPre). Never
    fails the head's start: a worker that cannot be prepared is named in the journal, and
    the head waits for it in the rendezvous as it would anyway. Returns the replies."""
    try:
        secret = read_secret(cfg["secret_path"])
    except (OSError, ValueError) as exc:
        system.log(f"prepare: cannot read the shared secret ({exc}): workers not prepared")
        return {}
    t0 = system.now()
    boundary = fresh_after(system.unit_props(cfg["unit"]))
    replies = {}
    for name in cfg["workers"]:
        reply = request(cfg, secret, name, "prepare", reason, system, fresh_after=boundary)
        replies[name] = reply
        system.log(f"prepare: worker {name}: {reply.get('message')}"
                   + ("" if reply.get("ok") else " (the head starts anyway and waits for it in the rendezvous)"))
    system.log(f"prepare: {len(replies)} worker(s) in {system.now() - t0:.1f} s")
    return replies


def run_check(cfg, system):
    state = load_state(cfg["state_path"])
    verdict, reason = check(cfg, state, system)
    code = 0
    if verdict == "stall":
        now = system.now()
        recent = [t for t in state.get("restarts") or [] if now - t < 3600]
        if len(recent) >= cfg["max_restarts_per_hour"]:
            system.log(f"stall: {reason}; {len(recent)} restart(s) in the last hour already "
                       f"(watchdog_max_restarts_per_hour): leaving it to a person")
            code = 1
        else:
            system.log(f"stall: {reason}")
            state["restarts"] = recent + [now]
            save_state(cfg["state_path"], state)
            ok, seconds = restart_pair(cfg, system, reason)
            state = load_state(cfg["state_path"]) or state
            state.update(health_failures=0, busy=None,
                         last_restart={"at": now, "reason": reason, "ok": ok, "seconds": round(seconds, 1)})
            code = 0 if ok else 1
    else:
        system.log(f"{verdict}: {reason}")
    state["last_check"] = {"at": system.now(), "verdict": verdict, "reason": reason}
    save_state(cfg["state_path"], state)
    return code


# --------------------------------------------------------------------------- worker agent

def worker_ready(cfg, system, since):
    """Seconds until the worker's log shows it waits for (or joined) the master, or its
    unit has run ``settle_s`` without such a line (as serving_wait does); None: timed out."""
    t0 = system.now()
    pattern = cfg.get("worker_ready_pattern") or r"(?i)waiting for (the )?master|headless"
    settle = cfg.get("settle_s", 20)
    active_since = None
    while system.now() - t0 < cfg["worker_timeout_s"]:
        if worker_waiting(system.container_log(cfg["container"], since), pattern):
            return system.now() - t0
        active, sub = system.unit_state(cfg["unit"])
        if (active, sub) == ("active", "running"):
            active_since = active_since if active_since is not None else system.now()
            if system.now() - active_since >= settle:
                return system.now() - t0
        else:
            active_since = None
        system.sleep(2)
    return None


def prepare_decision(record, props, held=(), boundary=0.0):
    """Does this worker need a restart before its head starts? (action, why): action is
    restart, keep or unknown (no record of the guard for the unit's current run yet).
    ``record``: the rendezvous guard's (spark_cluster.node.rendezvous --state); ``props``: the
    unit's ActiveState, SubState and InvocationID; ``held``: the connections to the
    master's store this node holds now (the head's new store is not open yet: any is an
    earlier head's, and the guard's probes, seconds apart, can miss a short join);
    ``boundary``: the head's ``fresh_after`` (a run started before it may have joined)."""
    active, sub = props.get("ActiveState", "unknown"), props.get("SubState", "")
    if active != "active":
        return "restart", f"its runtime is {active}/{sub}"
    started = unix_time(props.get("ExecMainStartTimestamp"))
    if boundary and started and started < boundary:
        return "restart", (f"its runtime started {boundary - started:.0f} s before the head's last run ended "
                           "(or its current one began): it may have joined that head")
    if held:
        return "restart", (f"its runtime holds {len(held)} connection(s) to a master's store "
                           "(it joined an earlier head; a headless node never joins another)")
    if not record or not props.get("InvocationID") or record.get("invocation") != props.get("InvocationID"):
        return "unknown", "no record of the rendezvous guard for the runtime's current run"
    if record.get("joined"):
        return "restart", "its runtime joined an earlier head (a headless node never joins another)"
    return "keep", "fresh: its runtime waits for the master"


def prepare(cfg, system, boundary=0.0):
    """The agent's side of prepare: restart the runtime unless it is fresh."""
    unit = cfg["unit"]
    path = cfg.get("rendezvous_state_path")
    t0 = system.now()
    while True:
        held = system.held(cfg["master_addr"], cfg["master_port"]) if cfg.get("master_addr") else ()
        action, why = prepare_decision(system.read_json(path) if path else None, system.unit_props(unit), held,
                                       boundary)
        if action != "unknown" or system.now() - t0 >= cfg.get("rendezvous_wait_s", RENDEZVOUS_WAIT_S):
            break
        system.sleep(1)
    if action == "keep":
        system.log(f"prepare: {why}: nothing to do")
        return {"ok": True, "message": f"kept {unit}: {why}"}
    system.log(f"prepare: {why}: restarting {unit}")
    reply = restart_unit(cfg, system)
    reply["message"] = f"{why}: {reply['message']}"
    return reply


def handle(cfg, body, system):
    """Carry out one authentic request; the reply."""
    unit, action = cfg["unit"], body.get("action")
    system.log(f"request {action} from the head: {body.get('reason')}")
    if action == "ping":
        active, sub = system.unit_state(unit)
        return {"ok": True, "message": f"{unit} {active}/{sub}"}
    if action == "prepare":
        return prepare(cfg, system, unix_time(str(body.get("fresh_after") or "")))
    if action != "restart":
        return {"ok": False, "message": f"unknown action {action!r}"}
    return restart_unit(cfg, system)


def restart_unit(cfg, system):
    """Restart the worker's runtime now (a manual start: no crash-loop back-off) and wait
    until it waits for the master."""
    unit = cfg["unit"]
    system.run("systemctl", "reset-failed", unit)
    since = system.now() - 1
    rc, out = system.run("systemctl", "restart", unit)
    if rc != 0:
        system.log(f"cannot restart {unit} (rc {rc}): {out}")
        return {"ok": False, "message": f"cannot restart {unit}: {out}"}
    waited = worker_ready(cfg, system, since)
    if waited is None:
        message = f"restarted {unit} but it does not wait for the master after {cfg['worker_timeout_s']} s"
        system.log(message)
        return {"ok": False, "message": message}
    message = f"restarted {unit}, waiting for the master after {waited:.1f} s"
    system.log(message)
    return {"ok": True, "message": message}


def serve_agent(cfg, system, stop=None):
    secret = read_secret(cfg["secret_path"])
    allowed = list(cfg["allowed_peers"])
    seen = {}
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)  # bind before the rail is up
    srv.bind((cfg["bind_address"], cfg["agent_port"]))
    srv.listen(4)
    srv.settimeout(1.0)
    system.log(f"agent of {cfg['name']} listening on {cfg['bind_address']}:{cfg['agent_port']} "
               f"(requests from {', '.join(allowed)} only)")
    while not (stop and stop()):
        try:
            conn, peer = srv.accept()
        except socket.timeout:
            continue
        with conn:
            try:
                conn.settimeout(10)
                data = b""
                while not data.endswith(b"\n") and len(data) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                body, why = verify(secret, data.decode("utf-8", "replace"), peer[0], allowed,
                                   cfg["name"], system.now(), seen)
                if body is None:
                    system.log(why)
                    reply = {"ok": False, "message": why}
                else:
                    reply = handle(cfg, body, system)
                conn.settimeout(30)
                conn.sendall((json.dumps(reply) + "\n").encode())
            except OSError as exc:
                system.log(f"connection from {peer[0]}: {exc}")
    srv.close()
    return 0


# --------------------------------------------------------------------------- main

def parse_args(argv):
    parser = argparse.ArgumentParser(prog=PROG, description="Stall watchdog of the serving pair.")
    parser.add_argument("command", choices=["check", "agent", "restart", "prepare", "validate"])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--config-json", default=None, help="validate: the config as JSON text")
    parser.add_argument("--reason", default="requested by hand")
    return parser.parse_args(argv)


def main(argv=None, system=None):
    args = parse_args(argv)
    system = system or System()
    try:
        if args.config_json is not None:
            cfg = json.loads(args.config_json)
        else:
            with open(args.config, encoding="utf-8") as handle:
                cfg = json.load(handle)
        validate_config(cfg)
    except (OSError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if args.command == "validate":
        print(f"{PROG}: config ok ({cfg['role']})")
        return 0
    if args.command == "agent":
        if cfg["role"] != "worker":
            print(f"{PROG}: agent runs on workers (this config is the {cfg['role']}'s)", file=sys.stderr)
            return 2
        return serve_agent(cfg, system)
    if cfg["role"] != "head":
        print(f"{PROG}: {args.command} runs on the head", file=sys.stderr)
        return 2
    try:
        if args.command == "restart":
            ok, _ = restart_pair(cfg, system, args.reason)
            return 0 if ok else 1
        if args.command == "prepare":
            prepare_workers(cfg, system)
            return 0
        return run_check(cfg, system)
    except ConfigError as exc:
        system.log(str(exc))
        return 2
