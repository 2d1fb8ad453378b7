"""The serving benchmark: module_utils/spark_cluster/reports/bench_data.py (pure), spark_benchclient.py (HTTP),
library/spark_bench.py, bench.yml.

Numbers are checked exactly: token timings come from an injected clock (binary-exact
steps of 0.25 s) and the fake server advances its Prometheus counters by known amounts
per request. The fake server (stdlib http.server, 127.0.0.1 only, in a thread) speaks
the OpenAI streaming API and serves /health, /v1/models and /metrics.
"""

import datetime
import http.server
import itertools
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading

import pytest

from ansible.module_utils.testing import patch_module_args
import spark_bench  # library/spark_bench.py, the module
from spark_cluster.reports import bench_client as sbc
from spark_cluster.reports import bench_data as sb

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = "deepseek-ai/DeepSeek-V4-Flash-DSpark"
WHEN = datetime.datetime(2026, 11, 29, 12, 0, 0, tzinfo=datetime.timezone.utc)

# Per request, the fake server's counters advance by these amounts.
STEP = {
    True: {"drafts": 10, "draft_tokens": 50, "accepted_tokens": 12, "per_pos": [6, 3, 2, 1, 0]},
    False: {"drafts": 8, "draft_tokens": 40, "accepted_tokens": 16, "per_pos": [7, 5, 3, 1, 0]},
}
USAGE_TOKENS = {True: 12, False: 9}


# ---------------------------------------------------------------------- fake server

class FakeVllm:
    """A tiny vLLM look-alike. Attributes steer its behaviour per test."""

    def __init__(self):
        self.model = MODEL
        self.health = 200
        self.spec = True
        self.usage = True           # honour stream_options.include_usage
        self.null_content_off = False  # the DSpark quirk
        self.api_key = None
        self.requests = []
        self.counters = {"drafts": 1000.0, "draft_tokens": 5000.0, "accepted_tokens": 1500.0,
                         "generation": 7000.0, "per_pos": [700.0, 400.0, 250.0, 100.0, 50.0]}
        self.lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body=b"", ctype="application/json"):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorized(self):
                if fake.api_key and self.headers.get("Authorization") != "Bearer " + fake.api_key:
                    self._send(401, b'{"error": "unauthorized"}')
                    return False
                return True

            def do_GET(self):
                fake.requests.append(("GET", self.path))
                if self.path == "/health":
                    self._send(fake.health)
                elif self.path == "/v1/models":
                    if self._authorized():
                        self._send(200, json.dumps({"object": "list", "data": [
                            {"id": fake.model, "object": "model"}]}).encode())
                elif self.path == "/metrics":
                    self._send(200, fake.metrics_text().encode(), "text/plain; version=0.0.4")
                else:
                    self._send(404)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(("POST", self.path, body))
                if self.path != "/v1/chat/completions":
                    return self._send(404)
                if not self._authorized():
                    return None
                if body.get("reasoning_effort") not in (None,) + sb.REASONING_EFFORTS:
                    return self._send(400, b'{"error": {"message": "bad reasoning_effort"}}')
                thinking = bool((body.get("chat_template_kwargs") or {}).get("thinking"))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for chunk in fake.chunks(thinking, body):
                    self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                fake.advance(thinking)
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def posts(self):
        return [r for r in self.requests if r[0] == "POST"]

    def advance(self, thinking):
        with self.lock:
            step = STEP[thinking]
            for key in ("drafts", "draft_tokens", "accepted_tokens"):
                self.counters[key] += step[key]
            self.counters["generation"] += USAGE_TOKENS[thinking]
            self.counters["per_pos"] = [a + b for a, b in zip(self.counters["per_pos"],
                                                               step["per_pos"])]

    def metrics_text(self):
        c = self.counters
        lbl = 'engine="0",model_name="%s"' % self.model
        lines = ["# HELP vllm:generation_tokens_total Number of generation tokens processed.",
                 "# TYPE vllm:generation_tokens_total counter",
                 "vllm:generation_tokens_total{%s} %s" % (lbl, c["generation"])]
        if self.spec:
            for name, key in (("drafts", "drafts"), ("draft_tokens", "draft_tokens"),
                              ("accepted_tokens", "accepted_tokens")):
                lines += ["# TYPE vllm:spec_decode_num_%s_total counter" % name,
                          "vllm:spec_decode_num_%s_total{%s} %s" % (name, lbl, c[key])]
            lines.append("# TYPE vllm:spec_decode_num_accepted_tokens_per_pos_total counter")
            for pos, value in enumerate(c["per_pos"]):
                lines.append('vllm:spec_decode_num_accepted_tokens_per_pos_total{%s,position="%d"} %s'
                             % (lbl, pos, value))
        return "\n".join(lines) + "\n"

    def chunks(self, thinking, body):
        def chunk(delta=None, finish=None):
            return {"id": "c1", "object": "chat.completion.chunk", "model": self.model,
                    "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}

        out = [chunk({"role": "assistant", "content": ""})]
        if thinking:
            out += [chunk({"reasoning": "Let me think. "}), chunk({"reasoning": "BFS it is."})]
            out += [chunk({"content": t}) for t in ("from ", "collections ", "import ", "deque")]
        elif self.null_content_off:
            out += [chunk({"content": None, "reasoning": t})
                    for t in ("def ", "bfs", "(maze)", ":", " ...")]
        else:
            out += [chunk({"content": t}) for t in ("def ", "bfs", "(maze)", ":", " ...")]
        out.append(chunk(finish="stop"))
        if self.usage and (body.get("stream_options") or {}).get("include_usage"):
            n = USAGE_TOKENS[thinking]
            out.append({"id": "c1", "object": "chat.completion.chunk", "model": self.model,
                        "choices": [], "usage": {"prompt_tokens": 42, "completion_tokens": n,
                                                 "total_tokens": 42 + n}})
        return out


@pytest.fixture
def fake():
    server = FakeVllm()
    yield server
    server.close()


def quarter_clock():
    """0.0, 0.25, 0.5, ... : binary-exact timestamps, one per clock() call."""
    counter = itertools.count()
    return lambda: next(counter) * 0.25


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------- pure functions

def test_parse_sse_line():
    assert sb.parse_sse_line("") is None
    assert sb.parse_sse_line(": keep-alive") is None
    assert sb.parse_sse_line("event: message") is None
    assert sb.parse_sse_line("data: [DONE]") == "[DONE]"
    assert sb.parse_sse_line('data: {"a": 1}\r\n') == {"a": 1}
    assert sb.parse_sse_line('data:{"a": 2}') == {"a": 2}
    with pytest.raises(sb.BenchRunError, match="not JSON"):
        sb.parse_sse_line("data: {broken")
    with pytest.raises(sb.BenchRunError, match="boom"):
        sb.parse_sse_line('data: {"error": {"message": "boom"}}')


def delta(stamp, **d):
    return (stamp, {"choices": [{"index": 0, "delta": d, "finish_reason": None}]})


def test_summarize_stream_usage_exact():
    events = [
        delta(10.25, role="assistant", content=""),    # no token
        delta(10.5, reasoning="a"),                     # first token: TTFT 0.5
        delta(11.0, content="b"),
        delta(12.5, content="c"),                       # last token: decode window 2.0 s
        (12.75, {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        (12.75, {"choices": [], "usage": {"completion_tokens": 21}}),
    ]
    r = sb.summarize_stream(events, t_sent=10.0, thinking=True)
    assert r["ttft_s"] == 0.5
    assert r["decode_s"] == 2.0
    assert r["output_tokens"] == 21 and r["output_tokens_source"] == "usage"
    assert r["decode_tok_s"] == 10.0                  # (21 - 1) / 2.0
    assert r["token_deltas"] == 3
    assert r["finish_reason"] == "stop"
    assert r["content_null"] is False


def test_summarize_stream_counts_deltas_without_usage():
    events = [delta(1.0, content="x"), delta(1.5, content="y"), delta(2.0, content="z"),
              delta(3.0, content="w"), delta(3.0, content="")]
    r = sb.summarize_stream(events, t_sent=0.5)
    assert r["output_tokens"] == 4 and r["output_tokens_source"] == "delta_count"
    assert r["ttft_s"] == 0.5 and r["decode_tok_s"] == 1.5   # (4 - 1) / 2.0


def test_summarize_stream_detects_null_content_only_with_thinking_off():
    events = [delta(1.0, content=None, reasoning="def "), delta(2.0, content=None, reasoning="f")]
    off = sb.summarize_stream(events, 0.0, thinking=False)
    assert off["content_null"] is True and off["content_null_chunks"] == 2
    assert off["output_tokens"] == 2 and off["decode_tok_s"] == 1.0
    assert sb.summarize_stream(events, 0.0, thinking=True)["content_null"] is False


def test_summarize_stream_no_tokens():
    r = sb.summarize_stream([], 0.0, thinking=False)
    assert r["ttft_s"] is None and r["decode_tok_s"] is None and r["output_tokens"] == 0
    assert r["content_null"] is False


def test_parse_metrics_with_prometheus_parser(fake):
    snap = sb.parse_metrics(fake.metrics_text())
    assert snap == {"drafts": 1000.0, "draft_tokens": 5000.0, "accepted_tokens": 1500.0,
                    "generation_tokens": 7000.0, "spec_decode": True,
                    "per_pos": {"0": 700.0, "1": 400.0, "2": 250.0, "3": 100.0, "4": 50.0}}
    fake.spec = False
    off = sb.parse_metrics(fake.metrics_text())
    assert off["spec_decode"] is False and off["drafts"] is None and off["per_pos"] == {}


def test_parse_metrics_sums_label_sets():
    text = ('vllm:spec_decode_num_drafts_total{engine="0"} 3\n'
            'vllm:spec_decode_num_drafts_total{engine="1"} 4\n'
            'vllm:spec_decode_num_draft_tokens_total{engine="0"} 35\n'
            'vllm:spec_decode_num_accepted_tokens_total{engine="0"} 9\n'
            'vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",position="10"} 1\n'
            'vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",position="2"} 2\n'
            'vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="1",position="2"} 3\n')
    snap = sb.parse_metrics(text)
    assert snap["drafts"] == 7.0 and snap["spec_decode"] is True
    assert list(snap["per_pos"].items()) == [("2", 5.0), ("10", 1.0)]


def test_deltas_and_rates_exact():
    before = {"drafts": 100.0, "draft_tokens": 500.0, "accepted_tokens": 150.0,
              "generation_tokens": None, "per_pos": {"0": 70.0, "1": 40.0}}
    after = {"drafts": 2224.0, "draft_tokens": 11120.0, "accepted_tokens": 2720.0,
             "generation_tokens": 5.0, "per_pos": {"0": 1170.0, "1": 690.0, "2": 8.0}}
    d = sb.metric_deltas(before, after)
    assert d == {"drafts": 2124.0, "draft_tokens": 10620.0, "accepted_tokens": 2570.0,
                 "generation_tokens": None, "per_pos": {"0": 1100.0, "1": 650.0, "2": 8.0}}
    rates = sb.spec_rates(d)
    assert rates["acceptance_rate"] == 2570.0 / 10620.0
    assert rates["mean_accepted_per_draft"] == 2570.0 / 2124.0
    assert rates["per_position"] == {"0": 1100.0 / 2124.0, "1": 650.0 / 2124.0, "2": 8.0 / 2124.0}
    assert sb.spec_rates({"drafts": 0.0, "draft_tokens": 0.0, "accepted_tokens": 0.0}) == {
        "acceptance_rate": None, "mean_accepted_per_draft": None, "per_position": {}}


def run(prompt, mode, decode, drafts, draft_tokens, accepted, per_pos=None, **extra):
    d = {"drafts": drafts, "draft_tokens": draft_tokens, "accepted_tokens": accepted,
         "generation_tokens": None, "per_pos": per_pos or {}}
    r = {"prompt": prompt, "thinking": mode, "repetition": 1, "error": None,
         "decode_tok_s": decode, "ttft_s": 0.5, "output_tokens": 100,
         "output_tokens_source": "usage", "content_null": False, "metrics_delta": d}
    r.update(sb.spec_rates(d))
    r.update(extra)
    return r


def synthetic_runs():
    return [
        run("medium", "on", 35.0, 10, 50, 10), run("medium", "on", 36.0, 30, 150, 30),
        run("medium", "off", 35.0, 10, 50, 20),
        run("reasoning_code", "on", 40.0, 100, 500, 121, {"0": 60, "1": 40}),
        run("reasoning_code", "off", 56.0, 100, 500, 202, {"0": 80, "1": 60}, content_null=True),
    ]


def test_aggregate_uses_ratio_of_summed_deltas():
    cells, modes = sb.aggregate(synthetic_runs())
    med_on = cells[0]
    assert (med_on["prompt"], med_on["thinking"], med_on["runs"]) == ("medium", "on", 2)
    assert med_on["decode_tok_s"] == 35.5
    assert (med_on["decode_tok_s_min"], med_on["decode_tok_s_max"]) == (35.0, 36.0)
    assert med_on["acceptance_rate"] == 40 / 200 and med_on["mean_accepted_per_draft"] == 1.0
    rc_on = cells[2]
    assert rc_on["acceptance_rate"] == 121 / 500 and rc_on["mean_accepted_per_draft"] == 1.21
    assert rc_on["per_position"] == {"0": 0.6, "1": 0.4}
    assert modes["on"]["acceptance_rate"] == (10 + 30 + 121) / (50 + 150 + 500)
    assert modes["off"]["mean_accepted_per_draft"] == (20 + 202) / (10 + 100)
    assert modes["off"]["content_null_runs"] == 1


def test_report_table_and_reference_rows():
    report = sb.build_report(synthetic_runs(), settings={"repetitions": 2}, generated_at=WHEN,
                             server={"api_url": "http://x:8888", "model": MODEL})
    assert report["generated_at"] == "2026-11-29T12:00:00Z"
    assert report["verdict"] == "measured"
    assert [r["prompt"] for r in report["table"]] == ["medium", "reasoning_code"]
    rc = report["table"][1]
    assert rc["speedup"] == 56.0 / 40.0 and rc["field_speedup"] == 55.17 / 41.90
    table = sb.render_table(report).splitlines()
    assert table[:6] == [
        "| prompt | thinking ON | thinking OFF | speed-up |",
        "|---|---|---|---|",
        "| medium | 35.50 | 35.00 | 0.99x |",
        "| _medium (field report)_ | _35.44_ | _35.00_ | _0.99x_ |",
        "| reasoning_code | 40.00 | 56.00 | 1.40x |",
        "| _reasoning_code (field report)_ | _41.90_ | _55.17_ | _1.32x_ |",
    ]
    assert "| acceptance rate, reasoning_code | 24.2% | 40.4% | |" in table
    assert "| _acceptance rate, reasoning_code (field report)_ | _24.2%_ | _40.4%_ | |" in table
    assert "| mean accepted tokens / draft, reasoning_code | 1.21 | 2.02 | |" in table
    assert "| _mean accepted tokens / draft, reasoning_code (field report)_ | _1.21_ | _2.02_ | |" in table
    assert report["content_null"]["detected"] is True
    assert report["content_null"]["content_null_runs"] == 1
    assert report["content_null"]["thinking_off_runs"] == 2
    md = sb.render_markdown(report)
    assert "1 of 2 thinking-OFF runs returned content: null" in md
    assert "0: 60.0%" not in md and "0:60.0%" in md


def test_report_says_when_it_measured_the_stand_in():
    """Synthetic tok/s of the lab's stand-in must never read as a Spark's."""
    runtime = {"image": "vllm-dspark-runtime:clean", "image_id": "sha256:" + "a" * 64}
    standin = sb.build_report(synthetic_runs(), generated_at=WHEN,
                              server={"model": MODEL, "runtime": dict(runtime, standin=True)})
    md = sb.render_markdown(standin)
    assert md.splitlines()[2].startswith("**Measured against the lab's STAND-IN runtime**")
    assert standin["server"]["runtime"]["standin"] is True
    real = sb.render_markdown(sb.build_report(synthetic_runs(), generated_at=WHEN,
                                              server={"model": MODEL, "runtime": dict(runtime, standin=False)}))
    assert "STAND-IN" not in real and "no stand-in label" in real


def test_report_flags_delta_counted_tokens_and_failed_runs():
    runs = synthetic_runs()
    runs[0]["output_tokens_source"] = "delta_count"
    runs.append({"prompt": "long", "thinking": "on", "repetition": 1, "error": "HTTP 500"})
    report = sb.build_report(runs, generated_at=WHEN)
    assert report["verdict"] == "partial"
    assert any("include_usage" in w for w in report["warnings"])
    assert any("HTTP 500" in w for w in report["warnings"])
    long_on = [c for c in report["cells"] if c["prompt"] == "long"][0]
    assert long_on["ok_runs"] == 0 and long_on["decode_tok_s"] is None
    assert "| long | n/a | n/a | n/a |" in sb.render_table(report)


def test_write_report_files_and_latest_links(tmp_path):
    report = sb.build_report(synthetic_runs(), generated_at=WHEN)
    paths = sb.write_report(report, str(tmp_path))
    for ext in ("json", "md", "png"):
        assert paths[ext] == str(tmp_path / ("bench-20261129T120000Z.%s" % ext))
        latest = tmp_path / ("bench-latest.%s" % ext)
        assert latest.is_symlink() and os.readlink(latest) == "bench-20261129T120000Z.%s" % ext
    assert json.loads((tmp_path / "bench-latest.json").read_text())["schema"] == "spark-bench-report"
    assert (tmp_path / "bench-latest.md").read_text().startswith("# Serving benchmark")
    assert (tmp_path / "bench-latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_request_body_and_effort_check():
    body = sb.request_body(MODEL, "hi", False, "none", 64, temperature=0.0)
    assert body == {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                    "stream": True, "max_tokens": 64,
                    "chat_template_kwargs": {"thinking": False},
                    "stream_options": {"include_usage": True},
                    "reasoning_effort": "none", "temperature": 0.0}
    assert "reasoning_effort" not in sb.request_body(MODEL, "hi", True, "", 64)
    sb.check_efforts("high", "none")
    sb.check_efforts("", "")
    with pytest.raises(sb.BenchRefusal, match="non-think") as info:
        sb.check_efforts("high", "non-think")
    assert info.value.reason == "bad_effort"


def test_prompts_match_the_field_report():
    assert 150 <= len(sb.PROMPTS["medium"]) <= 250
    assert 450 <= len(sb.PROMPTS["long"]) <= 550
    assert sb.PROMPTS["reasoning_code"] == "Write Python code to solve a maze using BFS"


# ---------------------------------------------------------------------- runner vs fake

def test_run_once_exact_numbers_with_usage(fake):
    with sbc.BenchClient(fake.url, MODEL, clock=quarter_clock()) as client:
        client.preflight()
        r_off = client.run_once("reasoning_code", False, "none", 256)
        r_on = client.run_once("reasoning_code", True, "high", 256)
    # clock: sent 0.0, role chunk 0.25, tokens 0.5 .. 1.5 (5 deltas), finish, usage, DONE
    assert r_off["error"] is None
    assert r_off["ttft_s"] == 0.5 and r_off["decode_s"] == 1.0
    assert r_off["output_tokens"] == 9 and r_off["output_tokens_source"] == "usage"
    assert r_off["decode_tok_s"] == 8.0                  # (9 - 1) / 1.0
    assert r_off["metrics_delta"] == {"drafts": 8.0, "draft_tokens": 40.0,
                                      "accepted_tokens": 16.0, "generation_tokens": 9.0,
                                      "per_pos": {"0": 7.0, "1": 5.0, "2": 3.0, "3": 1.0,
                                                  "4": 0.0}}
    assert r_off["acceptance_rate"] == 0.4 and r_off["mean_accepted_per_draft"] == 2.0
    assert r_off["per_position"] == {"0": 7 / 8, "1": 5 / 8, "2": 3 / 8, "3": 1 / 8, "4": 0.0}
    # second run: sent at 2.25, role 2.5, 6 token deltas 2.75 .. 4.0
    assert r_on["ttft_s"] == 0.5 and r_on["decode_s"] == 1.25
    assert r_on["output_tokens"] == 12 and r_on["decode_tok_s"] == 11 / 1.25
    assert r_on["acceptance_rate"] == 12 / 50 and r_on["mean_accepted_per_draft"] == 1.2
    body = fake.posts()[0][2]
    assert body["chat_template_kwargs"] == {"thinking": False}
    assert body["reasoning_effort"] == "none" and body["stream"] is True
    assert fake.posts()[1][2]["reasoning_effort"] == "high"


def test_run_once_counts_deltas_when_usage_is_ignored(fake):
    fake.usage = False
    with sbc.BenchClient(fake.url, MODEL, clock=quarter_clock()) as client:
        r = client.run_once("medium", False, "none", 256)
    assert r["output_tokens_source"] == "delta_count" and r["output_tokens"] == 5
    assert r["decode_tok_s"] == 4.0                      # (5 - 1) / 1.0


def test_run_once_detects_null_content(fake):
    fake.null_content_off = True
    with sbc.BenchClient(fake.url, MODEL, clock=quarter_clock()) as client:
        r = client.run_once("reasoning_code", False, "none", 256)
    assert r["content_null"] is True and r["content_chars"] == 0
    assert r["reasoning_preview"] == "def bfs(maze): ..."


def test_run_once_reports_http_errors(fake):
    with sbc.BenchClient(fake.url, MODEL) as client:
        r = client.run_once("medium", False, "non-think", 64)
    assert "HTTP 400" in r["error"] and "bad reasoning_effort" in r["error"]


# ---------------------------------------------------------------------- refusals

def test_refuses_when_server_is_down():
    url = "http://127.0.0.1:%d" % free_port()
    with sbc.BenchClient(url, MODEL, connect_timeout=2) as client:
        with pytest.raises(sb.BenchRefusal) as info:
            client.preflight()
    assert info.value.reason == "server_down"
    assert url in str(info.value) and "not up" in str(info.value)
    assert "Application startup complete." in str(info.value)
    assert "loopback" in str(info.value)


def test_refuses_when_not_healthy(fake):
    fake.health = 503
    with sbc.BenchClient(fake.url, MODEL) as client, pytest.raises(sb.BenchRefusal) as info:
        client.preflight()
    assert info.value.reason == "not_healthy" and "HTTP 503" in str(info.value)
    assert fake.url + "/health" in str(info.value)


def test_refuses_wrong_model(fake):
    fake.model = "some/other-model"
    with sbc.BenchClient(fake.url, MODEL) as client, pytest.raises(sb.BenchRefusal) as info:
        client.preflight()
    assert info.value.reason == "wrong_model"
    assert "some/other-model" in str(info.value) and MODEL in str(info.value)
    assert fake.posts() == []


def test_refuses_without_spec_decode_counters(fake):
    fake.spec = False
    with sbc.BenchClient(fake.url, MODEL) as client, pytest.raises(sb.BenchRefusal) as info:
        client.preflight()
    assert info.value.reason == "no_spec_decode"
    assert "vllm:spec_decode_num_drafts_total" in str(info.value)
    assert "--speculative-config" in str(info.value)
    assert fake.posts() == []


def test_api_key_is_sent_and_missing_key_refused(fake):
    fake.api_key = "s3cret"
    with sbc.BenchClient(fake.url, MODEL) as client, pytest.raises(sb.BenchRefusal) as info:
        client.preflight()
    assert info.value.reason == "unauthorized" and "SPARK_API_KEY" in str(info.value)
    with sbc.BenchClient(fake.url, MODEL, api_key="s3cret") as client:
        assert client.preflight()["models"] == [MODEL]


# ---------------------------------------------------------------------- the module

def run_module(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as info:
        spark_bench.main()
    return info.value.code, json.loads(capsys.readouterr().out)


def test_module_all_end_to_end(fake, tmp_path, capsys):
    code, result = run_module(capsys, {
        "action": "all", "api_url": fake.url, "repetitions": 2, "max_tokens": 64,
        "report_dir": str(tmp_path), "api_key": "k3y"})
    assert code == 0, result
    assert result["changed"] is True
    assert len(fake.posts()) == 2 * 3 * 2
    assert len(result["runs"]) == 12
    report = result["report"]
    assert report["verdict"] == "measured" and report["output_tokens_source"] == "usage"
    assert report["modes"]["on"]["acceptance_rate"] == (3 * 2 * 12) / (3 * 2 * 50)
    assert report["modes"]["off"]["acceptance_rate"] == 0.4
    assert report["modes"]["off"]["mean_accepted_per_draft"] == 2.0
    assert report["modes"]["off"]["metrics_delta"]["drafts"] == 48.0
    assert report["content_null"]["detected"] is False
    assert report["settings"]["repetitions"] == 2
    for ext in ("json", "md", "png"):
        assert (tmp_path / ("bench-latest.%s" % ext)).exists()
    md = (tmp_path / "bench-latest.md").read_text()
    assert "| _reasoning_code (field report)_ | _41.90_ | _55.17_ | _1.32x_ |" in md
    assert "k3y" not in json.dumps(result)
    assert "reasoning_code thinking OFF: 2/2 ok" in result["summary"][5]


def test_module_measure_then_report_from_registered_results(fake, tmp_path, capsys):
    registered = []
    for prompt, thinking in (("reasoning_code", True), ("reasoning_code", False)):
        code, result = run_module(capsys, {"action": "measure", "api_url": fake.url,
                                           "prompt": prompt, "thinking": thinking,
                                           "repetitions": 1})
        assert code == 0, result
        registered.append(dict(result, item=[prompt, thinking]))
    code, result = run_module(capsys, {"action": "report", "runs": {"results": registered},
                                       "report_dir": str(tmp_path), "repetitions": 1})
    assert code == 0, result
    cells = {(c["prompt"], c["thinking"]): c for c in result["report"]["cells"]}
    assert cells[("reasoning_code", "on")]["mean_accepted_per_draft"] == 1.2
    assert cells[("reasoning_code", "off")]["acceptance_rate"] == 0.4
    assert pathlib.Path(result["paths"]["latest_png"]).exists()


def test_module_flags_null_content(fake, tmp_path, capsys):
    fake.null_content_off = True
    code, result = run_module(capsys, {"action": "all", "api_url": fake.url,
                                       "prompts": ["reasoning_code"], "repetitions": 2,
                                       "report_dir": str(tmp_path)})
    assert code == 0, result
    quirk = result["report"]["content_null"]
    assert quirk == dict(quirk, detected=True, content_null_runs=2, thinking_off_runs=2)
    assert "content null in 2 run(s)" in result["summary"][1]
    assert "2 of 2 thinking-OFF runs returned content: null" in (
        tmp_path / "bench-latest.md").read_text()


@pytest.mark.parametrize("setup,reason", [
    (lambda f: setattr(f, "spec", False), "no_spec_decode"),
    (lambda f: setattr(f, "model", "other/model"), "wrong_model"),
    (lambda f: setattr(f, "health", 503), "not_healthy"),
])
def test_module_refuses_before_measuring(fake, tmp_path, capsys, setup, reason):
    setup(fake)
    code, result = run_module(capsys, {"action": "all", "api_url": fake.url,
                                       "report_dir": str(tmp_path)})
    assert code == 1 and result["failed"] is True
    assert result["refusal"] == reason
    assert fake.posts() == [] and list(tmp_path.iterdir()) == []


def test_module_refuses_when_server_down(tmp_path, capsys):
    url = "http://127.0.0.1:%d" % free_port()
    code, result = run_module(capsys, {"action": "preflight", "api_url": url})
    assert code == 1 and result["refusal"] == "server_down" and url in result["msg"]


def test_module_refuses_bad_effort_without_any_request(fake, capsys):
    code, result = run_module(capsys, {"action": "measure", "api_url": fake.url,
                                       "prompt": "medium", "thinking": False,
                                       "reasoning_effort_off": "non-think"})
    assert code == 1 and result["refusal"] == "bad_effort"
    assert fake.requests == []


def test_module_check_mode_only_checks(fake, tmp_path, capsys):
    code, result = run_module(capsys, {"action": "all", "api_url": fake.url,
                                       "report_dir": str(tmp_path),
                                       "_ansible_check_mode": True})
    assert code == 0, result
    assert result["changed"] is False and result["server"]["models"] == [MODEL]
    assert fake.posts() == [] and list(tmp_path.iterdir()) == []
    code, result = run_module(capsys, {"action": "report", "runs": {"results": []},
                                       "report_dir": str(tmp_path),
                                       "_ansible_check_mode": True})
    assert code == 0 and "check mode" in result["msg"]


# ---------------------------------------------------------------------- the playbook

def playbook(tmp_path, url, *extra):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "spark:\n  children:\n    spark_head:\n      hosts:\n        bench-head:\n"
        "          ansible_connection: local\n"
        "          ansible_python_interpreter: %s\n"
        "          spark_rails: [{interface: lo, address: 127.0.0.1/8}]\n"
        # bench.yml runs the controller preflight (a cluster has workers); the play
        # itself runs on the head only, so the worker is never contacted
        "    spark_workers:\n      hosts:\n        bench-worker:\n"
        "          ansible_host: 127.0.0.2\n"
        "          spark_rails: [{interface: lo, address: 127.0.0.2/8}]\n" % sys.executable)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_FACT_CACHING="memory")
    cmd = [str(pathlib.Path(sys.executable).with_name("ansible-playbook")), "-i",
           str(inventory), str(ROOT / "bench.yml"), "-e", "bench_api_url=" + url,
           "-e", "bench_report_dir=" + str(tmp_path / "reports"),
           # the fake serves the seed profile's model name (the default profile serves deepseek-v4-flash-0731)
           "-e", "spark_profile=seed", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT),
                          timeout=300)


def test_playbook_end_to_end(fake, tmp_path):
    run_ = playbook(tmp_path, fake.url, "-e", "bench_repetitions=1")
    assert run_.returncode == 0, run_.stdout + run_.stderr
    assert "reasoning_code, thinking OFF, 1 run(s)" in run_.stdout
    report = json.loads((tmp_path / "reports" / "bench-latest.json").read_text())
    assert report["modes"]["off"]["acceptance_rate"] == 0.4
    assert len(report["runs"]) == 6
    # warm-up (1) + 6 measured
    assert len(fake.posts()) == 7


def test_playbook_refuses_with_a_clear_message(tmp_path):
    url = "http://127.0.0.1:%d" % free_port()
    run_ = playbook(tmp_path, url)
    assert run_.returncode != 0
    assert "is not up" in run_.stdout and url in run_.stdout
    assert not (tmp_path / "reports").exists()


def test_playbook_check_mode_puts_no_load(fake, tmp_path):
    run_ = playbook(tmp_path, fake.url, "--check")
    assert run_.returncode == 0, run_.stdout + run_.stderr
    assert "check mode: not written" in run_.stdout
    assert fake.posts() == [] and not (tmp_path / "reports").exists()
