"""The stall watchdog (module_utils/spark_cluster/runtime/watchdog.py): config validation, the check's
verdicts, the coordinated restart order, the agent's authentication, and the real
probe against the lab stand-in with its hang switch."""

import importlib.util
import io
import json
import pathlib
import socket
import threading
import time

import pytest

from spark_cluster.runtime import watchdog as wd

ROOT = pathlib.Path(__file__).resolve().parents[2]
SECRET = "s" * 64


def head_cfg(tmp_path, **over):
    (tmp_path / "key").write_text(SECRET)
    cfg = {"role": "head", "name": "spark-head", "unit": "spark-runtime.service", "container": "spark-runtime",
           "secret_path": str(tmp_path / "key"), "agent_port": 29620, "api_base_url": "http://127.0.0.1:8888",
           "api_key_path": None, "model": "m", "interval_s": 300, "token_timeout_s": 60,
           "health_failures": 8, "health_timeout_s": 2400, "worker_timeout_s": 600,
           "max_restarts_per_hour": 2, "state_path": str(tmp_path / "state.json"),
           "workers": {"w1": "192.168.100.11", "w2": "192.168.100.12"},
           "source_address": "192.168.100.10", "poll_s": 0}
    cfg.update(over)
    return cfg


class FakeSystem:
    def __init__(self, unit="active", health=(200,), metrics="", probe=(0.1, "token"), worker_ok=True):
        self.t = 1000.0
        self.unit = unit
        self.health = list(health)
        self.metrics = metrics
        self.probe_result = probe
        self.probe_after_start = (0.2, "token")
        self.worker_ok = worker_ok
        self.calls = []
        self.lines = []

    def log(self, message):
        self.lines.append(message)

    def now(self):
        return self.t

    def sleep(self, s):
        self.t += s or 1

    def run(self, *argv):
        self.calls.append(("run",) + argv)
        if argv[:2] == ("systemctl", "start"):
            self.health = [200]
            self.probe_result = self.probe_after_start
        return 0, ""

    def unit_state(self, unit):
        return self.unit, "running"

    def unit_props(self, unit):
        return {"ActiveState": self.unit, "SubState": "running", "ExecMainExitTimestamp": "@1000"}

    def http_get(self, url, timeout=10):
        if url.endswith("/metrics"):
            return 200, self.metrics
        status = self.health.pop(0) if len(self.health) > 1 else self.health[0]
        return status, None

    def probe(self, url, key, model, timeout):
        self.calls.append(("probe", url))
        return self.probe_result

    def container_log(self, container, since):
        return []

    def ask(self, address, port, source, message, timeout):
        self.calls.append(("ask", address, json.loads(json.loads(message)["body"])["action"]))
        return {"ok": self.worker_ok, "message": "restarted" if self.worker_ok else "no"}


# ------------------------------------------------------------------ validation

def test_valid_config(tmp_path):
    assert wd.validate_config(head_cfg(tmp_path))


@pytest.mark.parametrize("over, words", [
    ({"health_failures": 2}, "2 x 300 s = 600 s"),
    ({"interval_s": 60, "token_timeout_s": 30, "health_failures": 39}, "at least 40"),
    ({"token_timeout_s": 300}, "shorter than watchdog_interval_sec"),
    ({"interval_s": 5, "token_timeout_s": 1}, ">= 10 s"),
    ({"agent_port": 70000}, "watchdog_agent_port"),
    ({"workers": {}}, "no workers"),
    ({"health_failures": True}, "health_failures"),
])
def test_config_refused(tmp_path, over, words):
    with pytest.raises(wd.ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        wd.validate_config(head_cfg(tmp_path, **over))


def test_validate_command_refuses_short_thresholds(tmp_path, capsys):
    code = wd.main(["validate", "--config-json", json.dumps(head_cfg(tmp_path, health_failures=1))])
    assert code == 2
    assert "would fire during a first start" in capsys.readouterr().err


def _watchdog_filter():
    path = ROOT / "roles/watchdog/filter_plugins/spark_watchdog.py"
    spec = importlib.util.spec_from_file_location("spark_watchdog_filter", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()["spark_watchdog_problem"]


def test_the_roles_filter_applies_the_programs_rules(tmp_path):
    """roles/watchdog refuses on the controller what `validate` refuses on a node: the same
    function, no copy (an empty string when the settings can work)."""
    problem = _watchdog_filter()
    assert problem(head_cfg(tmp_path)) == ""
    assert "would fire during a first start" in problem(head_cfg(tmp_path, health_failures=1))
    assert "spark_watchdog_agent_port is 0" in problem(head_cfg(tmp_path, agent_port=0))
    tasks = (ROOT / "roles/watchdog/tasks/main.yml").read_text()
    assert "spark_watchdog_problem" in tasks and "spark_cluster.node.watchdog\n      - validate" not in tasks


# ------------------------------------------------------------------ metrics / SSE

def test_metric_value_sums_label_sets():
    text = ('# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name="a"} 2.0\n'
            'vllm:num_requests_running{model_name="b"} 1.0\nvllm:num_requests_running_x 9\n')
    assert wd.metric_value(text, "vllm:num_requests_running") == 3.0
    assert wd.metric_value(text, "vllm:generation_tokens_total") is None


def test_sse_token_detection():
    role = 'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}'
    tok = 'data: {"choices":[{"delta":{"reasoning":"x"}}]}'
    assert not wd.sse_has_token(role) and wd.sse_has_token(tok)
    assert wd.sse_has_token("data: [DONE]") and not wd.sse_has_token(": keep-alive")


# ------------------------------------------------------------------ check verdicts

def test_idle_when_unit_not_active(tmp_path):
    system = FakeSystem(unit="activating")
    verdict, reason = wd.check(head_cfg(tmp_path), {"health_failures": 3}, system)
    assert verdict == "idle" and "activating" in reason


def test_ok_probes_when_no_request_runs(tmp_path):
    system = FakeSystem(metrics="vllm:num_requests_running 0.0\n")
    verdict, reason = wd.check(head_cfg(tmp_path), {}, system)
    assert verdict == "ok" and ("probe", "http://127.0.0.1:8888/v1/chat/completions") in system.calls


def test_no_probe_while_requests_run_and_tokens_move(tmp_path):
    cfg, state = head_cfg(tmp_path), {}
    system = FakeSystem(metrics="vllm:num_requests_running 1\nvllm:generation_tokens_total 10\n")
    assert wd.check(cfg, state, system)[0] == "busy"
    system.t += 300
    system.metrics = "vllm:num_requests_running 1\nvllm:generation_tokens_total 50\n"
    assert wd.check(cfg, state, system)[0] == "busy"
    assert not [c for c in system.calls if c[0] == "probe"]
    system.t += 300  # tokens stuck at 50 for 300 s with a request in flight
    verdict, reason = wd.check(cfg, state, system)
    assert verdict == "stall" and "no token generated for 300 s" in reason


def test_stall_when_probe_gets_no_token(tmp_path):
    system = FakeSystem(probe=(None, "no token within 60 s (timed out)"))
    verdict, reason = wd.check(head_cfg(tmp_path), {}, system)
    assert verdict == "stall" and "no token within 60 s" in reason


def test_probe_refused_is_not_a_stall(tmp_path):
    system = FakeSystem(probe=(None, "HTTP 401"))
    assert wd.check(head_cfg(tmp_path), {}, system)[0] == "ok"


def test_health_failures_count_to_k(tmp_path):
    cfg, state = head_cfg(tmp_path, health_failures=8), {}
    system = FakeSystem(health=[0])
    verdicts = [wd.check(cfg, state, system)[0] for _ in range(8)]
    assert verdicts == ["unhealthy"] * 7 + ["stall"]


# ------------------------------------------------------------------ coordinated restart

def test_stall_restarts_workers_first_then_head(tmp_path):
    cfg = head_cfg(tmp_path)
    system = FakeSystem(probe=(None, "no token within 60 s"))
    assert wd.run_check(cfg, system) == 0
    order = [c for c in system.calls if c[0] in ("run", "ask") and c[1:3] != ("reset-failed",)]
    steps = [(c[1], c[2]) if c[0] == "run" else ("ask", c[1]) for c in order]
    steps = [s for s in steps if s[1] != "reset-failed"]
    assert steps == [("systemctl", "stop"), ("ask", "192.168.100.11"), ("ask", "192.168.100.12"),
                     ("systemctl", "start")]
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["last_restart"]["ok"] and len(state["restarts"]) == 1
    assert any("serving again" in line for line in system.lines)


def test_restart_without_a_token_is_not_serving_again(tmp_path):
    """/health 200 after the restart is not enough: the hang answered /health too."""
    system = FakeSystem(probe=(None, "no token within 60 s"))
    system.probe_after_start = (None, "no token within 60 s")
    assert wd.run_check(head_cfg(tmp_path), system) == 1
    assert len([c for c in system.calls if c[0] == "probe"]) == 2  # the check's, then the restart's
    assert not any("serving again" in line for line in system.lines)
    assert any("/health 200 but the probe completion got no token" in line and "not serving" in line
               for line in system.lines)
    state = json.loads((tmp_path / "state.json").read_text())
    assert not state["last_restart"]["ok"]


def test_head_stays_stopped_when_a_worker_fails(tmp_path):
    system = FakeSystem(probe=(None, "no token"), worker_ok=False)
    assert wd.run_check(head_cfg(tmp_path), system) == 1
    assert ("run", "systemctl", "start", "spark-runtime.service") not in system.calls
    assert any("head stays stopped" in line for line in system.lines)


def test_restart_budget_per_hour(tmp_path):
    cfg = head_cfg(tmp_path, max_restarts_per_hour=1)
    system = FakeSystem(probe=(None, "no token"))
    assert wd.run_check(cfg, system) == 0
    system.health, system.probe_result = [200], (None, "no token")  # hangs again
    system.t += 600
    assert wd.run_check(cfg, system) == 1
    assert "leaving it to a person" in system.lines[-1]
    system.t += 3600
    assert wd.run_check(cfg, system) == 0


# ------------------------------------------------------------------ agent authentication

def body(**over):
    b = {"action": "restart", "reason": "r", "to": "w1", "ts": 1000.0, "nonce": "n1"}
    b.update(over)
    return b


def test_verify_accepts_signed_fresh_request():
    got, why = wd.verify(SECRET, wd.sign(SECRET, body()), "10.0.0.1", ["10.0.0.1"], "w1", 1010.0, {})
    assert got["action"] == "restart" and why == ""


@pytest.mark.parametrize("line, peer, now, words", [
    (wd.sign("x" * 64, body()), "10.0.0.1", 1000.0, "bad signature"),
    (wd.sign(SECRET, body()), "10.0.0.9", 1000.0, "not a head rail address"),
    (wd.sign(SECRET, body()), "10.0.0.1", 1500.0, "500 s old"),
    (wd.sign(SECRET, body(to="w2")), "10.0.0.1", 1000.0, "request for 'w2'"),
    ("garbage\n", "10.0.0.1", 1000.0, "malformed"),
])
def test_verify_refuses(line, peer, now, words):
    got, why = wd.verify(SECRET, line, peer, ["10.0.0.1"], "w1", now, {})
    assert got is None and words in why


def test_verify_refuses_replay():
    seen = {}
    line = wd.sign(SECRET, body())
    assert wd.verify(SECRET, line, "10.0.0.1", ["10.0.0.1"], "w1", 1000.0, seen)[0]
    assert "replayed" in wd.verify(SECRET, line, "10.0.0.1", ["10.0.0.1"], "w1", 1001.0, seen)[1]


def test_agent_over_a_real_socket(tmp_path):
    """The agent restarts its unit on an authentic request from the head's address only."""
    (tmp_path / "key").write_text(SECRET)
    with socket.socket() as probe_sock:
        probe_sock.bind(("127.0.0.1", 0))
        port = probe_sock.getsockname()[1]
    cfg = {"role": "worker", "name": "w1", "unit": "u", "container": "c", "secret_path": str(tmp_path / "key"),
           "agent_port": port, "bind_address": "127.0.0.1", "allowed_peers": ["127.0.0.1"], "worker_timeout_s": 5}

    class AgentSystem(wd.System):
        def __init__(self):
            super().__init__(out=io.StringIO())
            self.ran = []

        def run(self, *argv):
            self.ran.append(argv)
            return 0, ""

        def container_log(self, container, since):
            return ["INFO waiting for master at 1.2.3.4:29501"]

    system, stop = AgentSystem(), threading.Event()
    thread = threading.Thread(target=wd.serve_agent, args=(cfg, system, stop.is_set), daemon=True)
    thread.start()
    time.sleep(0.3)
    head = wd.System(out=io.StringIO())
    reply = head.ask("127.0.0.1", port, "127.0.0.1", wd.sign(SECRET, body(ts=time.time(), nonce="a")), 10)
    assert reply["ok"] and "waiting for the master" in reply["message"]
    assert ("systemctl", "restart", "u") in system.ran
    reply = head.ask("127.0.0.1", port, None, wd.sign("y" * 64, body(ts=time.time(), nonce="b")), 10)
    assert not reply["ok"] and "bad signature" in reply["message"]
    stop.set()
    thread.join(5)


# ------------------------------------------------------------------ probe vs the stand-in

@pytest.fixture
def standin(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("standin_server", ROOT / "tests/lab/standin/server.py")
    server = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(server)
    monkeypatch.setenv("STANDIN_HANG_FILE", str(tmp_path / "hang"))
    api = server.Api("m", token_delay=0.0, api_key="k" * 40)
    httpd = server.make_http_server("127.0.0.1", 0, api)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", tmp_path / "hang"
    (tmp_path / "hang").unlink(missing_ok=True)
    httpd.shutdown()


def test_probe_and_hang_switch_against_the_standin(standin, tmp_path):
    url, hang = standin
    (tmp_path / "k").write_text("k" * 40)
    cfg = head_cfg(tmp_path, api_base_url=url, api_key_path=str(tmp_path / "k"), token_timeout_s=2)
    system = wd.System(out=io.StringIO())
    system.unit_state = lambda unit: ("active", "running")
    assert wd.check(cfg, {}, system)[0] == "ok"
    hang.write_text("")
    t0 = time.monotonic()
    verdict, reason = wd.check(cfg, {}, system)
    assert verdict == "stall" and "no token within 2 s" in reason
    assert time.monotonic() - t0 < 5
    status, _ = system.http_get(url + "/health")
    assert status == 200  # the API keeps answering /health while generation hangs
    _, metrics = system.http_get(url + "/metrics")
    assert wd.metric_value(metrics, "vllm:num_requests_running") == 1.0
    # a request in flight: the next check does not probe, it watches the token counter
    state = {}
    assert wd.check(cfg, state, system)[0] == "busy"


def test_worker_ready_by_log_line_or_after_settling():
    cfg = {"container": "c", "unit": "u", "worker_timeout_s": 60, "settle_s": 20}
    system = FakeSystem()
    system.container_log = lambda container, since: ["INFO loading config"]
    waited = wd.worker_ready(cfg, system, 0)
    assert waited is not None and 20 <= waited <= 24
    system.container_log = lambda container, since: ["waiting for master at 1.2.3.4:29501"]
    assert wd.worker_ready(cfg, system, 0) == 0
    system.unit = "activating"
    system.container_log = lambda container, since: []
    assert wd.worker_ready(cfg, system, 0) is None


def test_standin_still_completes_with_the_gauge(standin):
    """The switch off: stream and non-stream completions as before, the gauge back at 0."""
    url, _ = standin
    body = {"messages": [{"role": "user", "content": "What is 6 times 7?"}], "max_tokens": 8,
            "chat_template_kwargs": {"thinking": False}}
    status, answer = wd.http_json(url + "/v1/chat/completions", body=body, api_key="k" * 40, timeout=10)
    assert status == 200 and answer["choices"][0]["message"]["content"].startswith("The answer to")
    system = wd.System(out=io.StringIO())
    seconds, detail = system.probe(url + "/v1/chat/completions", "k" * 40, "m", 5)
    assert seconds is not None and detail == "token"
    # The probe hangs up after its first token; the server's handler still finishes the
    # stream (into a closed socket) and only then leaves the gauge: wait for it, bounded
    deadline = time.monotonic() + 5
    while True:
        _, metrics = system.http_get(url + "/metrics")
        if wd.metric_value(metrics, "vllm:num_requests_running") == 0.0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert wd.metric_value(metrics, "vllm:num_requests_running") == 0.0
    assert wd.metric_value(metrics, "vllm:generation_tokens_total") > 0


# ------------------------------------------------------------------ prepare (every head start)

@pytest.mark.parametrize("record, props, action", [
    # a fresh worker started by site.yml, waiting for the master: left alone
    ({"invocation": "i2", "joined": False}, {"ActiveState": "active", "SubState": "running", "InvocationID": "i2"},
     "keep"),
    # it joined the head that died: a headless node never joins another
    ({"invocation": "i1", "joined": True}, {"ActiveState": "active", "SubState": "running", "InvocationID": "i1"},
     "restart"),
    # killed, systemd's back-off pending: started now
    ({"invocation": "i1", "joined": True}, {"ActiveState": "activating", "SubState": "auto-restart",
                                            "InvocationID": ""}, "restart"),
    ({"invocation": "i1", "joined": False}, {"ActiveState": "failed", "SubState": "failed", "InvocationID": "i1"},
     "restart"),
    # the guard has not written this run's record yet (or is not running)
    ({"invocation": "i1", "joined": False}, {"ActiveState": "active", "SubState": "running", "InvocationID": "i2"},
     "unknown"),
    (None, {"ActiveState": "active", "SubState": "running", "InvocationID": "i2"}, "unknown"),
])
def test_prepare_decision(record, props, action):
    assert wd.prepare_decision(record, props)[0] == action


class AgentFake(FakeSystem):
    def __init__(self, record, props, held=()):
        super().__init__()
        self.record, self.props, self.held_now = record, props, list(held)

    def held(self, master_addr, master_port):
        return self.held_now

    def read_json(self, path):
        return self.record

    def unit_props(self, unit):
        return self.props

    def unit_state(self, unit):
        return self.props["ActiveState"], self.props["SubState"]

    def container_log(self, container, since):
        return ["waiting for master at 198.18.100.10:29501"]


def worker_cfg(**over):
    cfg = {"role": "worker", "name": "w1", "unit": "spark-runtime.service", "container": "spark-runtime",
           "worker_timeout_s": 60, "rendezvous_state_path": "/run/spark-cluster/rendezvous.json"}
    cfg.update(over)
    return cfg


def test_prepare_keeps_a_fresh_worker_and_restarts_a_stale_one():
    fresh = AgentFake({"invocation": "i2", "joined": False},
                      {"ActiveState": "active", "SubState": "running", "InvocationID": "i2"})
    reply = wd.handle(worker_cfg(), {"action": "prepare", "reason": "start"}, fresh)
    assert reply["ok"] and reply["message"].startswith("kept")
    assert not [c for c in fresh.calls if c[:2] == ("run", "systemctl")]
    stale = AgentFake({"invocation": "i1", "joined": True},
                      {"ActiveState": "active", "SubState": "running", "InvocationID": "i1"})
    reply = wd.handle(worker_cfg(), {"action": "prepare", "reason": "start"}, stale)
    assert reply["ok"] and "joined an earlier head" in reply["message"]
    # reset-failed then restart: a manual start, which systemd's crash back-off does not delay
    assert [c[1:] for c in stale.calls if c[0] == "run"] == [
        ("systemctl", "reset-failed", "spark-runtime.service"), ("systemctl", "restart", "spark-runtime.service")]


def test_prepare_without_a_record_waits_for_the_guard_then_restarts_to_be_sure():
    agent = AgentFake(None, {"ActiveState": "active", "SubState": "running", "InvocationID": "i2"})
    t0 = agent.t
    reply = wd.handle(worker_cfg(rendezvous_wait_s=5), {"action": "prepare", "reason": "start"}, agent)
    assert reply["ok"] and "no record" in reply["message"]
    assert agent.t - t0 >= 5
    assert ("run", "systemctl", "restart", "spark-runtime.service") in agent.calls


def test_head_prepares_every_worker_and_never_blocks_its_own_start(tmp_path):
    system = FakeSystem(worker_ok=False)
    replies = wd.prepare_workers(head_cfg(tmp_path), system)
    assert [c for c in system.calls if c[0] == "ask"] == [("ask", "192.168.100.11", "prepare"),
                                                            ("ask", "192.168.100.12", "prepare")]
    assert set(replies) == {"w1", "w2"}
    assert any("starts anyway" in line for line in system.lines)
    # the command exits 0 whatever the agents said: the unit's start goes on
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(head_cfg(tmp_path)))
    assert wd.main(["prepare", "--config", str(cfg_path)], system=FakeSystem(worker_ok=False)) == 0


def test_prepare_restarts_a_worker_holding_a_connection_to_an_earlier_store_even_unrecorded():
    """Found in the lab (five rounds of kills): the worker joined a head that was killed
    two seconds later, between two probes of its guard, whose record still said "waiting
    for the first join". The socket it still holds (CLOSE_WAIT) says it joined."""
    props = {"ActiveState": "active", "SubState": "running", "InvocationID": "i2"}
    record = {"invocation": "i2", "joined": False}
    assert wd.prepare_decision(record, props)[0] == "keep"
    assert wd.prepare_decision(record, props, [(40000, 29501)])[0] == "restart"
    agent = AgentFake(record, props, held=[(40000, 29501)])
    reply = wd.handle(worker_cfg(master_addr="198.18.100.10", master_port=29501),
                      {"action": "prepare", "reason": "start"}, agent)
    assert reply["ok"] and "holds 1 connection" in reply["message"]
    assert ("run", "systemctl", "restart", "spark-runtime.service") in agent.calls


def test_prepare_restarts_a_worker_whose_run_began_before_the_heads_last_run_ended():
    """No sampling can miss this one: a worker started (by systemd, after it was killed)
    while the old head still ran may have joined that head; the head's previous run ended
    at 1000, so a run that began at 990 is stale and one that began at 1010 is fresh."""
    record = {"invocation": "i2", "joined": False}
    stale = {"ActiveState": "active", "SubState": "running", "InvocationID": "i2", "ExecMainStartTimestamp": "@990"}
    fresh = dict(stale, ExecMainStartTimestamp="@1010")
    assert wd.prepare_decision(record, stale, (), 1000.0)[0] == "restart"
    assert wd.prepare_decision(record, fresh, (), 1000.0)[0] == "keep"
    assert wd.prepare_decision(record, stale, (), 0.0)[0] == "keep"  # first start since boot: no boundary


def test_the_boundary_is_the_previous_runs_end_while_starting_and_the_current_start_while_waiting():
    assert wd.fresh_after({"ActiveState": "activating", "ExecMainExitTimestamp": "@1000",
                           "ExecMainStartTimestamp": "@900"}) == 1000.0
    assert wd.fresh_after({"ActiveState": "active", "ExecMainExitTimestamp": "",
                           "ExecMainStartTimestamp": "@1200"}) == 1200.0
    assert wd.fresh_after({"ActiveState": "activating", "ExecMainExitTimestamp": ""}) == 0.0
    assert wd.unix_time("n/a") == 0.0 and wd.unix_time("@12.5") == 12.5


def test_the_head_sends_its_boundary_with_the_request(tmp_path):
    sent = []

    class Head(FakeSystem):
        def ask(self, address, port, source, message, timeout):
            sent.append(json.loads(json.loads(message)["body"]))
            return {"ok": True, "message": "kept"}
    wd.prepare_workers(head_cfg(tmp_path), Head(unit="activating"))
    assert [b["fresh_after"] for b in sent] == [1000.0, 1000.0]
