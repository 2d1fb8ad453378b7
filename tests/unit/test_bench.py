"""The serving benchmark: llama-benchy driven by module_utils/spark_cluster/reports/bench_tool.py, the
/metrics deltas (bench_data.py) and refusal checks (bench_client.py) only this
project measures, the matrix report (bench_matrix.py), the time to serving
(bench_startup.py), library/spark_bench.py and bench.yml.

Fixtures (tests/unit/fixtures/llama-benchy/): llama-benchy 0.4.0's own JSON output and
the launcher's /metrics snapshots, captured against the lab's stand-in
(tests/lab/standin/server.py) on 127.0.0.1 with ``capture_fixtures`` below: 256-token
prompts, 32 tokens out, c=1 and 2, two measured batches, thinking off and on, and a
stand-in whose draft counters never move. The stand-in accepts 1 of 5 drafted tokens
with thinking on and 2 with it off; its counters also count the tool's warm-up
requests, which the per-cell window must leave out.

Tests that run llama-benchy itself skip where it is not installed (pip install -r
requirements.txt installs it).
"""

import datetime
import http.server
import importlib.util
import json
import math
import os
import pathlib
import shlex
import socket
import subprocess
import sys
import threading

import pytest

from ansible.module_utils.testing import patch_module_args
import spark_bench  # library/spark_bench.py, the module
from spark_cluster.reports import bench_client as sbc
from spark_cluster.reports import bench_data as sb
from spark_cluster.reports import bench_matrix as bm
from spark_cluster.reports import bench_startup as bs
from spark_cluster.reports import bench_tool as bt

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIX = pathlib.Path(__file__).parent / "fixtures" / "llama-benchy"
MODEL = "deepseek-ai/DeepSeek-V4-Flash-DSpark"
STANDIN_MODEL = "deepseek-v4-flash"
WHEN = datetime.datetime(2026, 12, 7, 12, 0, 0, tzinfo=datetime.timezone.utc)
KEY = "s3cret-key-123"
HAS_TOOL = importlib.util.find_spec("llama_benchy") is not None
needs_tool = pytest.mark.skipif(not HAS_TOOL, reason="llama-benchy is not installed")


def fixture_item(name, thinking, concurrency=(1, 2), runs=2):
    """A measure() item rebuilt from the captured tool output and snapshots."""
    item = {"thinking": thinking, "prompt_tokens": 256, "output_tokens": 32,
            "concurrency": list(concurrency), "runs": runs, "rc": 0, "timed_out": False,
            "command": "llama-benchy --pp 256", "output_tail": "", "error": None,
            "tokenizer": "word-level", "corpus": "generated", "tool": None, "cells": []}
    raw = json.loads((FIX / (name + ".json")).read_text())
    snaps = bt.parse_snapshots((FIX / (name + ".metrics.jsonl")).read_text())
    return bt.combine(item, raw, snaps)


# ---------------------------------------------------------------------- the stand-in

def load_standin():
    spec = importlib.util.spec_from_file_location(
        "standin_server", ROOT / "tests" / "lab" / "standin" / "server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Standin:
    """The lab's stand-in API on 127.0.0.1 (a free port), in a thread."""

    def __init__(self, tmp_path, **kwargs):
        os.environ["STANDIN_HANG_FILE"] = str(tmp_path / "hang")
        srv = load_standin()
        srv.log = lambda msg: None
        self.api = srv.Api(STANDIN_MODEL, token_delay=0.001, **kwargs)
        self.httpd = srv.make_http_server("127.0.0.1", 0, self.api)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def capture_fixtures(out_dir, python=sys.executable):
    """Re-capture the fixtures: ``python tests/unit/test_bench.py capture DIR``."""
    import tempfile
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp())
    for name, kwargs, thinking in (("standin-off", {}, False), ("standin-on", {}, True),
                                   ("nodrafts-off", {"no_drafts": True}, False)):
        server = Standin(tmp, api_key=KEY, **kwargs)
        try:
            item = bt.measure(str(tmp / name), python, api_url=server.url, model=STANDIN_MODEL,
                              api_key=KEY, tokenizer=bt.WORD_LEVEL, corpus="generated",
                              prompt_tokens=256, output_tokens=32, concurrency=[1, 2], runs=2,
                              thinking=thinking, timeout=300, home=str(tmp / "home"))
        finally:
            server.close()
        assert item["error"] is None, item
        tag = "pp256-thinking-%s" % ("on" if thinking else "off")
        (out / (name + ".json")).write_text((tmp / name / (tag + ".json")).read_text())
        (out / (name + ".metrics.jsonl")).write_text(
            (tmp / name / (tag + ".metrics.jsonl")).read_text())


# ---------------------------------------------------------------------- fake vLLM (refusals)

class FakeVllm:
    """A tiny vLLM look-alike. Attributes steer its behaviour per test."""

    def __init__(self):
        self.model = MODEL
        self.health = 200
        self.spec = True
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
                            {"id": fake.model, "object": "model", "max_model_len": 262144}]}).encode())
                elif self.path == "/metrics":
                    self._send(200, fake.metrics_text().encode(), "text/plain; version=0.0.4")
                else:
                    self._send(404)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                fake.requests.append(("POST", self.path, self.rfile.read(length)))
                self._send(404)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def posts(self):
        return [r for r in self.requests if r[0] == "POST"]

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



@pytest.fixture
def fake():
    server = FakeVllm()
    yield server
    server.close()



def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]



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




def test_preflight_reports_the_served_max_model_len(fake):
    with sbc.BenchClient(fake.url, MODEL) as client:
        assert client.preflight()["max_model_len"] == 262144


# ---------------------------------------------------------------------- the tool's output

def test_the_tools_json_gives_per_stream_median_aggregate_and_ttft():
    raw = json.loads((FIX / "standin-off.json").read_text())
    meta, cells = bt.parse_tool_result(raw)
    assert meta["version"] == bt.TOOL_VERSION
    assert [(c["prompt_tokens"], c["concurrency"], c["requests"]) for c in cells] == [
        (256, 1, 2), (256, 2, 4)]
    two = next(b for b in raw["benchmarks"] if b["concurrency"] == 2)
    values = sorted(two["tg_req_throughput"]["values"])
    assert cells[1]["per_stream_tok_s"] == (values[1] + values[2]) / 2   # median of 4
    assert cells[1]["aggregate_tok_s"] == two["tg_throughput"]["mean"]
    ttft = sorted(v / 1000 for v in two["e2e_ttft"]["values"])
    assert cells[1]["ttft_s"] == pytest.approx((ttft[1] + ttft[2]) / 2)
    assert cells[1]["ttft_s_max"] == pytest.approx(ttft[-1])
    with pytest.raises(ValueError, match="benchmarks"):
        bt.parse_tool_result({"model": "x"})


@pytest.mark.parametrize("name,mode,accepted", [("standin-off", "off", 2), ("standin-on", "on", 1)])
def test_acceptance_comes_from_the_metrics_deltas_of_the_cells_batches(name, mode, accepted):
    """The stand-in accepts `accepted` of 5 drafted tokens: exactly that ratio, from the
    counter deltas between the snapshot after the cell's warm-up and after its last batch
    (the warm-up's drafts are in the counters before the window and stay out)."""
    item = fixture_item(name, mode)
    snaps = [sb.parse_metrics(s["text"]) for s in
             bt.parse_snapshots((FIX / (name + ".metrics.jsonl")).read_text())]
    assert len(snaps) == 2 * (2 + 1)
    assert snaps[0]["drafts"] > 0          # the tool's warm-ups were counted before the window
    for cell, (first, last) in zip(item["cells"], [(0, 2), (3, 5)]):
        delta = cell["metrics_delta"]
        assert delta["drafts"] == snaps[last]["drafts"] - snaps[first]["drafts"]
        # every measured request made 32 tokens: ceil(32 / (accepted + 1)) drafts each
        assert delta["generation_tokens"] == 32 * cell["requests"]
        assert delta["drafts"] == math.ceil(32 / (accepted + 1)) * cell["requests"]
        assert cell["acceptance"] == "measured"
        assert cell["acceptance_rate"] == accepted / 5
        assert cell["mean_accepted_per_draft"] == accepted
        assert [cell["per_position"][str(p)] for p in range(5)] == [
            1.0 if p < accepted else 0.0 for p in range(5)]


def test_a_server_that_counts_no_drafts_is_not_measured_never_zero(tmp_path):
    item = fixture_item("nodrafts-off", "off")
    for cell in item["cells"]:
        assert cell["per_stream_tok_s"] > 0          # the tool measured speed
        assert cell["metrics_delta"]["drafts"] == 0  # the counters stood still
        assert cell["acceptance"] == bt.NOT_MEASURED and cell["acceptance_rate"] is None
        assert "did not move" in cell["why"]
    report = bm.build_report([item], generated_at=WHEN)
    md = bm.render_markdown(report)
    acceptance = md[md.index("## Draft acceptance"):md.index("## The field report")]
    assert "not measured" in acceptance and "%" not in acceptance.split("\n\n", 2)[2]
    every = md[md.index("## Every cell"):md.index("## Warnings")]
    assert "0.0%" not in every and every.count("not measured") == 4
    assert any("acceptance not measured in 2 of 2" in w for w in report["warnings"])


def test_missing_or_failed_snapshots_leave_the_cell_not_measured():
    snaps = bt.parse_snapshots((FIX / "standin-off.metrics.jsonl").read_text())
    cut = bt.acceptance(snaps[:4], [1, 2], 2)
    assert cut[1]["acceptance"] == "measured"
    assert cut[2]["acceptance"] == bt.NOT_MEASURED and "4 of 6" in cut[2]["why"]
    broken = snaps[:3] + [{"t": 1, "error": "URLError: refused"}] + snaps[4:]
    assert "refused" in bt.acceptance(broken, [1, 2], 2)[2]["why"]
    absent = [{"t": 1, "text": "vllm:generation_tokens_total 5\n"}] * 6
    assert "no vllm:spec_decode" in bt.acceptance(absent, [1, 2], 2)[1]["why"]


# ---------------------------------------------------------------------- command line, key, offline

def test_the_command_line_has_the_matrix_thinking_and_no_key():
    argv = bt.tool_argv("/py", "/w/l.py", api_url="http://h:8888/", model="m", tokenizer="/t.json",
                        prompt_tokens=2048, output_tokens=128, concurrency=[1, 2, 4, 6], runs=2,
                        thinking=False, result_path="/w/r.json", snapshots_path="/w/s.jsonl",
                        book_url="spark-cluster:generated-corpus/v1")
    assert argv[:3] == ["/py", "/w/l.py", "run"]
    assert argv[argv.index("--base-url") + 1] == "http://h:8888/v1"
    assert argv[argv.index("--concurrency") + 1:argv.index("--runs")] == ["1", "2", "4", "6"]
    assert argv[argv.index("--extra-body") + 1] == 'chat_template_kwargs={"thinking":false}'
    assert {"--exact-tg", "--no-cache", "--skip-coherence"} <= set(argv)
    assert "--api-key" not in argv
    assert shlex.split(argv[argv.index("--post-run-cmd") + 1]) == [
        "/py", "/w/l.py", "snapshot", "http://h:8888/metrics", "/w/s.jsonl"]
    assert bt.shown_argv(argv).startswith("llama-benchy --base-url http://h:8888/v1")


def test_the_key_goes_to_stdin_and_never_into_the_tools_cmdline(tmp_path):
    """The launcher with a stand-in llama_benchy package that records what it got."""
    fake_pkg = tmp_path / "pkg" / "llama_benchy"
    fake_pkg.mkdir(parents=True)
    (fake_pkg / "__init__.py").write_text("")
    (fake_pkg / "__main__.py").write_text(
        "import json, sys\n"
        "def main():\n"
        "    cmdline = open('/proc/self/cmdline', 'rb').read().split(b'\\0')\n"
        "    json.dump({'argv': sys.argv, 'cmdline': [c.decode() for c in cmdline]},\n"
        "              open(%r, 'w'))\n" % str(tmp_path / "seen.json"))
    launcher = tmp_path / "launcher.py"
    launcher.write_text(bt.LAUNCHER)
    argv = [sys.executable, str(launcher), "run", "--base-url", "http://x/v1"]
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "pkg"))

    def run(cmd, **kwargs):
        kwargs["env"] = env
        return subprocess.run(cmd, **kwargs)

    rc, tail, timed_out = bt.run_tool(argv, api_key=KEY, timeout=60, run=run)
    assert rc == 0 and not timed_out, tail
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["argv"] == ["llama-benchy", "--base-url", "http://x/v1", "--api-key", KEY]
    assert not any(KEY in part for part in seen["cmdline"])


def test_the_launcher_snapshot_keeps_the_counters(tmp_path, fake):
    launcher = tmp_path / "launcher.py"
    launcher.write_text(bt.LAUNCHER)
    out = tmp_path / "s.jsonl"
    for _ in range(2):
        subprocess.run(bt.snapshot_argv(sys.executable, str(launcher), fake.url, str(out)),
                       check=True, timeout=60)
    subprocess.run(bt.snapshot_argv(sys.executable, str(launcher),
                                    "http://127.0.0.1:%d" % free_port(), str(out)),
                   check=True, timeout=60)
    snaps = bt.parse_snapshots(out.read_text())
    assert len(snaps) == 3 and "error" in snaps[2]
    assert sb.parse_metrics(snaps[0]["text"]) == sb.parse_metrics(fake.metrics_text())
    assert "# HELP" not in snaps[0]["text"]


def test_offline_inputs_word_level_tokenizer_and_seeded_corpus(tmp_path):
    pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer
    text = bt.generated_corpus(2000)
    assert text == bt.generated_corpus(2000) and len(text.split()) == 2000
    tok = Tokenizer.from_str(json.dumps(bt.word_level_tokenizer(text)))
    ids = tok.encode(" ".join(text.split()[:300])).ids
    assert len(ids) == 300 and 0 not in ids          # one token per word, none unknown
    assert tok.decode(ids[:5]) == " ".join(text.split()[:5])
    prep = bt.prepare(str(tmp_path / "w"), bt.WORD_LEVEL, "generated", home=str(tmp_path))
    cache = bt.tool_cache_file(prep["book_url"], str(tmp_path))
    assert pathlib.Path(cache).read_text() == bt.generated_corpus()
    corpus = tmp_path / "book.txt"
    corpus.write_text("one two three\n")
    url, seeded, _ = bt.corpus_plan(str(corpus))
    assert url.startswith("file://") and seeded == "one two three\n"
    corpus.write_text("changed\n")
    assert bt.corpus_plan(str(corpus))[0] != url
    assert bt.corpus_plan("")[:2] == (None, None)


def test_the_plan_is_refused_with_every_problem_at_once():
    assert bt.plan_problems([256, 2048], [1, 2, 4, 6], 128, 2, 262144) == []
    problems = bt.plan_problems([0, 256], [], 1, 0)
    assert len(problems) == 4
    assert any("bench_prompt_lengths" in p for p in problems)
    assert any("bench_concurrency is empty" in p for p in problems)
    too_long = bt.plan_problems([256, 131072, 262144], [1], 128, 1, 262144)
    assert too_long == ["prompt length(s) [262144] + 128 output tokens exceed the server's "
                        "max_model_len 262144"]


# ---------------------------------------------------------------------- time to serving

def journal(lines):
    """journalctl -o json lines from (seconds, message)."""
    return "\n".join(json.dumps({"__REALTIME_TIMESTAMP": str(int(t * 1e6)), "MESSAGE": m})
                     for t, m in lines) + "\n"


START = 1_800_000_000
FIRST_START = [
    (0, "Starting spark-runtime.service - DSpark runtime..."),
    (2, "runtime  | INFO distributed_init_method=tcp://198.18.100.10:25000"),
    (30, "runtime  | INFO Loading safetensors checkpoint shards:   2% Completed | 1/48"),
    (300, "runtime  | INFO Model loading took 78.12 GiB and 270.00 seconds"),
    (310, "runtime  | INFO torch.compile takes 40.00 s in total"),
    (350, "runtime  | INFO FlashInfer autotune: running autotuning 1/3"),
    (900, "runtime  | INFO GPU KV cache size: 2,493,464 tokens"),
    (910, "runtime  | INFO Capturing CUDA graphs (decode, FULL): 1/35"),
    (1100, "runtime  | INFO init engine (profile, create kv cache, warmup model) took 790 s"),
    (1130, "runtime  | INFO Application startup complete."),
    (1140, 'runtime  | INFO:     127.0.0.1:5000 - "POST /v1/chat/completions HTTP/1.1" 200 OK'),
]


def test_time_to_serving_splits_a_start_into_its_phases():
    out = bs.time_to_serving(bs.journal_entries(journal((START + t, m) for t, m in FIRST_START)))
    assert out["ready_s"] == 1130 and out["first_completion_s"] == 1140
    groups = {g["name"]: g["duration_s"] for g in out["groups"]}
    assert groups == {
        "before loading (pre-start check, container, rendezvous)": 30,
        "load weights": 280, "torch.compile, autotune / JIT": 590,
        "KV cache, CUDA graph capture, engine init": 230, "ready to first completion": 10}
    assert sum(groups.values()) == out["first_completion_s"]
    assert [p["phase"] for p in out["phases"]][:3] == ["starting", "rendezvous", "loading"]
    assert out["started_at"] == "2027-01-15T08:00:00Z"
    assert bs.time_to_serving([]) == {}


def test_time_to_serving_of_a_start_that_is_not_ready_yet():
    out = bs.time_to_serving(bs.journal_entries(
        journal((START + t, m) for t, m in FIRST_START[:4]) + "not json\n"))
    assert out["ready_s"] is None and out["first_completion_s"] is None
    assert out["phases"][-1] == {"phase": "loaded", "label": "weights loaded",
                                 "at_s": 300, "duration_s": None}
    binary = json.dumps({"__REALTIME_TIMESTAMP": "1", "MESSAGE": list(b"caf\xc3\xa9")})
    assert bs.journal_entries(binary) == [(1e-06, "café")]


# ---------------------------------------------------------------------- the report

RUNTIME = {"image": "vllm-dspark-runtime:dspark-nvfp4-stage-c", "image_id": "sha256:" + "a" * 64,
           "repo_digests": [], "entrypoint": ["bash", "-c"],
           "cmd": ["exec vllm serve m --api-key %s --port 8888" % KEY]}
PROFILE = {"name": "current", "model": "deepseek-ai/DeepSeek-V4-Flash-0731", "revision": "9e165c30",
           "served_model_name": "deepseek-v4-flash-0731", "settings": {"max_num_seqs": 6}}


def full_report(standin=True):
    items = [fixture_item("standin-off", "off"), fixture_item("standin-on", "on")]
    server = {"api_url": "http://127.0.0.1:8888", "model": STANDIN_MODEL,
              "runtime": bm.runtime_summary(dict(RUNTIME, standin=standin), [KEY])}
    startup = bs.time_to_serving(bs.journal_entries(journal((START + t, m) for t, m in FIRST_START)))
    return bm.build_report(items, settings={"output_tokens": 32, "runs": 2, "exact_output": True,
                                            "unique_prompts": True},
                           server=server, profile=PROFILE, startup=startup, generated_at=WHEN)


def test_the_report_puts_ours_the_recipe_the_field_and_the_profile_side_by_side():
    report = full_report()
    assert report["verdict"] == "measured" and report["concurrency"] == [1, 2]
    assert report["matrix"]["off"]["acceptance_rate"]["256"] == {"1": 0.4, "2": 0.4}
    md = bm.render_markdown(report).splitlines()
    assert "STAND-IN" in md[2]
    text = "\n".join(md)
    assert "## The recipe's published matrix (2026-08-14)" in text
    assert bm.RECIPE["commit"][:12] in text and bm.recipe_url() in text
    assert "| 256 | 82.6 | 56.9 | 54.3 | 35.9 | 162 |" in text
    assert "| 131,072 | 74.9 | 36.0 | 8.4 | 8.6 | 2 |" in text
    assert "128K x c=6 median TTFT: 282 s." in text
    ours = report["matrix"]["off"]["per_stream_tok_s"]["256"]["1"]
    assert "| 256 | %.1f (82.6) | " % ours in text                     # side by side
    assert "| reasoning_code | 41.90 | 55.17 | 1.32x |" in text        # the field report
    assert "| revision | `9e165c30` |" in text and "| max_num_seqs | `6` |" in text
    assert KEY not in text and "--api-key ***REDACTED***" in text     # launch command scrubbed
    assert "| load weights | 280.0 |" in text and "first completion answered after 1140.0 s" in text
    assert "40.0%, 2.00/draft" in text and "20.0%, 1.00/draft" in text


def test_the_report_says_when_the_journal_was_not_read():
    report = bm.build_report([fixture_item("standin-off", "off")], generated_at=WHEN,
                             startup={"why": "journal of spark-runtime.service not read"})
    assert "journal of spark-runtime.service not read" in bm.render_markdown(report)
    assert "STAND-IN" not in bm.render_markdown(report).splitlines()[2]


def test_a_failed_run_makes_the_report_partial_or_failed():
    ok = fixture_item("standin-off", "off")
    bad = {"thinking": "on", "prompt_tokens": 256, "concurrency": [1, 2], "runs": 2,
           "error": "llama-benchy wrote no result", "cells": [], "command": "x"}
    assert bm.build_report([ok, bad], generated_at=WHEN)["verdict"] == "partial"
    assert bm.build_report([bad], generated_at=WHEN)["verdict"] == "failed"


def test_write_report_writes_json_md_png_and_latest(tmp_path):
    paths = bm.write_report(full_report(), str(tmp_path))
    assert pathlib.Path(paths["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.readlink(paths["latest_md"]) == os.path.basename(paths["md"])
    assert json.loads(pathlib.Path(paths["json"]).read_text())["schema_version"] == 2


# ---------------------------------------------------------------------- the module

def test_module_preflight_lists_every_problem_before_any_load(fake, capsys, monkeypatch):
    monkeypatch.setattr(spark_bench, "tool_version", lambda: None)
    code, result = run_module(capsys, {"action": "preflight", "api_url": fake.url,
                                       "model": MODEL, "prompt_lengths": [256, 0],
                                       "concurrency": [], "runs": 2})
    assert code == 1 and result["refusal"] == "no_tool"
    assert len(result["problems"]) == 3 and "pip install -r requirements.txt" in result["msg"]
    assert fake.posts() == []


def test_module_preflight_refuses_a_prompt_longer_than_the_server_takes(fake, capsys, monkeypatch):
    monkeypatch.setattr(spark_bench, "tool_version", lambda: bt.TOOL_VERSION)
    code, result = run_module(capsys, {"action": "preflight", "api_url": fake.url, "model": MODEL,
                                       "prompt_lengths": [256, 262144]})
    assert code == 1 and result["refusal"] == "bad_plan" and "max_model_len 262144" in result["msg"]
    code, result = run_module(capsys, {"action": "preflight", "api_url": fake.url, "model": MODEL,
                                       "prompt_lengths": [256, 131072]})
    assert code == 0 and result["server"]["max_model_len"] == 262144


@pytest.mark.parametrize("setup,reason", [
    (lambda f: setattr(f, "spec", False), "no_spec_decode"),
    (lambda f: setattr(f, "model", "other/model"), "wrong_model"),
    (lambda f: setattr(f, "health", 503), "not_healthy"),
])
def test_module_refuses_before_measuring(fake, tmp_path, capsys, setup, reason):
    setup(fake)
    code, result = run_module(capsys, {"action": "measure", "api_url": fake.url, "model": MODEL,
                                       "prompt_tokens": 256, "tokenizer": "word-level",
                                       "work_dir": str(tmp_path / "w")})
    assert code == 1 and result["refusal"] == reason
    assert fake.posts() == [] and not (tmp_path / "w").exists()


def test_module_check_mode_only_checks(fake, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(spark_bench, "tool_version", lambda: bt.TOOL_VERSION)
    code, result = run_module(capsys, {"action": "measure", "api_url": fake.url, "model": MODEL,
                                       "prompt_tokens": 256, "tokenizer": "word-level",
                                       "work_dir": str(tmp_path / "w"), "_ansible_check_mode": True})
    assert code == 0 and "nothing measured" in result["msg"]
    assert fake.posts() == [] and not (tmp_path / "w").exists()
    code, result = run_module(capsys, {"action": "report", "items": {"results": []},
                                       "report_dir": str(tmp_path), "_ansible_check_mode": True})
    assert code == 0 and "check mode" in result["msg"]


def test_module_report_from_registered_results(tmp_path, capsys):
    registered = {"results": [{"run": fixture_item("standin-off", "off"), "item": [False, 256]},
                              {"run": fixture_item("standin-on", "on"), "item": [True, 256]},
                              {"skipped": True}]}
    code, result = run_module(capsys, {
        "action": "report", "items": registered, "report_dir": str(tmp_path), "api_key": KEY,
        "server": {"model": STANDIN_MODEL, "runtime": dict(RUNTIME, standin=True)},
        "startup_journal": journal((START + t, m) for t, m in FIRST_START)})
    assert code == 0, result
    report = result["report"]
    assert len(report["cells"]) == 4 and report["startup"]["ready_s"] == 1130
    assert "cmd" not in report["server"]["runtime"] and KEY not in json.dumps(report)
    assert (tmp_path / "bench-latest.png").exists()
    assert any("acceptance 40.0%, 2.00/draft" in line for line in result["summary"])


# ---------------------------------------------------------------------- llama-benchy itself

@needs_tool
@pytest.mark.parametrize("no_drafts", [False, True])
def test_llama_benchy_against_the_stand_in_end_to_end(tmp_path, no_drafts):
    server = Standin(tmp_path, api_key=KEY, no_drafts=no_drafts)
    try:
        item = bt.measure(str(tmp_path / "w"), sys.executable, api_url=server.url,
                          model=STANDIN_MODEL, api_key=KEY, tokenizer=bt.WORD_LEVEL,
                          corpus="generated", prompt_tokens=300, output_tokens=16,
                          concurrency=[1, 3], runs=1, thinking=False, timeout=300,
                          home=str(tmp_path / "home"))
    finally:
        server.close()
    assert item["error"] is None and item["rc"] == 0, item["output_tail"]
    assert [(c["concurrency"], c["requests"]) for c in item["cells"]] == [(1, 1), (3, 3)]
    for cell in item["cells"]:
        assert cell["per_stream_tok_s"] > 0 and cell["ttft_s"] > 0
        assert cell["metrics_delta"]["generation_tokens"] == 16 * cell["requests"]
        if no_drafts:
            assert cell["acceptance"] == bt.NOT_MEASURED and cell["acceptance_rate"] is None
        else:
            assert cell["acceptance_rate"] == 0.4 and cell["mean_accepted_per_draft"] == 2.0
    assert KEY not in item["command"] and KEY not in item["output_tail"]


@needs_tool
def test_playbook_end_to_end_against_the_stand_in(tmp_path):
    server = Standin(tmp_path, max_model_len=4096)
    try:
        run_ = playbook(tmp_path, server.url, "-e", "bench_model=" + STANDIN_MODEL,
                        "-e", '{"bench_prompt_lengths": [128, 512], "bench_concurrency": [1, 2]}',
                        "-e", "bench_runs=1", "-e", "bench_output_tokens=8",
                        "-e", "bench_tokenizer=word-level", "-e", "bench_corpus=generated")
    finally:
        server.close()
    assert run_.returncode == 0, run_.stdout + run_.stderr
    assert "thinking OFF, 512 prompt tokens, c=1/2" in run_.stdout
    report = json.loads((tmp_path / "reports" / "bench-latest.json").read_text())
    assert len(report["cells"]) == 2 * 2 * 2
    off = report["matrix"]["off"]["acceptance_rate"]
    assert off == {"128": {"1": 0.4, "2": 0.4}, "512": {"1": 0.4, "2": 0.4}}
    assert report["matrix"]["on"]["acceptance_rate"]["512"] == {"1": 0.2, "2": 0.2}
    assert report["server"]["runtime"]["image"] == "unknown"   # no docker here


def test_playbook_refuses_with_a_clear_message(tmp_path):
    url = "http://127.0.0.1:%d" % free_port()
    run_ = playbook(tmp_path, url)
    assert run_.returncode != 0
    assert "is not up" in run_.stdout and url in run_.stdout
    assert not (tmp_path / "reports").exists()


@needs_tool
def test_playbook_check_mode_puts_no_load(fake, tmp_path):
    run_ = playbook(tmp_path, fake.url, "-e", "bench_model=" + MODEL, "--check")
    assert run_.returncode == 0, run_.stdout + run_.stderr
    assert "check mode: not written" in run_.stdout
    assert fake.posts() == [] and not (tmp_path / "reports").exists()


if __name__ == "__main__":
    if sys.argv[1:2] == ["capture"] and len(sys.argv) == 3:
        sys.path.insert(0, str(pathlib.Path(__file__).parent))
        capture_fixtures(sys.argv[2])
    else:
        sys.exit("usage: python tests/unit/test_bench.py capture DIR")
