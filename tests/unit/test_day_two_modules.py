"""The day-two modules' main(): spark_node_status, spark_status_report, spark_diagnose."""

import json
import tarfile
import threading
import urllib.parse
import http.server

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

import spark_diagnose
import spark_node_status
import spark_status_report

KEY = "Zq3kP9mW2xR7tY5uV8nB4cD6fG1hJ0aL"
RAILS = [{"interface": "enp1s0f1np1", "address": "192.168.100.10/24"}]
IP = [{"ifname": "enp1s0f1np1", "operstate": "UP", "mtu": 9000, "flags": ["UP", "LOWER_UP"],
       "addr_info": [{"family": "inet", "local": "192.168.100.10", "prefixlen": 24}]}]


def run(module, args, capsys):
    with patch_module_args(args), pytest.raises(SystemExit) as info:
        module.main()
    return info.value.code, json.loads(capsys.readouterr().out)


@pytest.fixture
def commands(monkeypatch):
    outputs = {
        "ip": (0, json.dumps(IP), ""),
        "docker": (0, "sha256:" + "b" * 64 + "\n", ""),
        "systemctl": (0, "ActiveState=active\nSubState=running\nNRestarts=2\n", ""),
        "journalctl": (0, f"Started spark-runtime.service.\nclient key {KEY}\n", ""),
        "timeout": (0, f"HF_TOKEN=hf_{'a' * 30} Bearer {KEY}\n", ""),
    }
    seen = []

    def fake(self, args, **kwargs):
        seen.append(args)
        return outputs.get(args[0], (1, "", "not here"))
    monkeypatch.setattr(basic.AnsibleModule, "run_command", fake)
    return seen


def test_node_status_worker(commands, tmp_path, capsys):
    env = tmp_path / "runtime.env"
    env.write_text("NCCL_IB_HCA=rocep1s0f1\nNCCL_IB_GID_INDEX=3\n")
    code, result = run(spark_node_status, {"role": "worker", "rails": RAILS, "env_path": str(env),
                                           "image": "img", "watchdog_state_path": str(tmp_path / "none")}, capsys)
    assert code == 0, result
    status = result["status"]
    assert status["rails"][0]["ok"] and status["gid_index"] == "3"
    assert status["unit_state"] == "active/running" and status["automatic_restarts"] == 2
    assert status["starts_last_hour"] == 1 and status["image_id"].startswith("sha256:")
    assert "api" not in status and result["changed"] is False


def test_node_status_head_reads_the_watchdog_and_the_api(commands, tmp_path, capsys):
    state = tmp_path / "wd.json"
    state.write_text(json.dumps({"last_check": {"verdict": "ok", "reason": "probe token after 0.1 s"}}))
    code, result = run(spark_node_status, {"role": "head", "rails": RAILS, "image": "img",
                                           "watchdog_state_path": str(state),
                                           "api_base_url": "http://127.0.0.1:9"}, capsys)
    assert code == 0
    assert result["status"]["watchdog"] == "ok: probe token after 0.1 s"
    assert result["status"]["api"]["health"] == 0 and "models_error" in result["status"]["api"]


@pytest.fixture
def prometheus():
    """A fake Prometheus on 127.0.0.1 answering /api/v1/query and /api/v1/alerts as 2.x does."""
    from test_status import PROM_ALERTS, PROM_QUERY
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            url = urllib.parse.urlsplit(self.path)
            seen.append((url.path, urllib.parse.parse_qs(url.query)))
            body = {"/api/v1/query": PROM_QUERY, "/api/v1/alerts": PROM_ALERTS}.get(url.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(body or {"status": "error"}).encode())

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_node_status_head_reads_prometheus(commands, tmp_path, capsys, prometheus):
    url, seen = prometheus
    code, result = run(spark_node_status, {"role": "head", "rails": RAILS, "image": "img",
                                           "watchdog_state_path": str(tmp_path / "none"),
                                           "prometheus_url": url + "/"}, capsys)
    assert code == 0
    metrics = result["status"]["metrics"]
    assert seen[0] == ("/api/v1/query", {"query": ['{__name__=~"spark:.+"}']})
    assert metrics["values"][0] == {"record": "spark:generation_tokens:rate1m", "labels": "", "value": 35.4}
    assert metrics["alerts"] == ["SparkRailDown (spark-worker)"]


def test_node_status_head_prometheus_down(commands, tmp_path, capsys):
    code, result = run(spark_node_status, {"role": "head", "rails": RAILS, "image": "img",
                                           "watchdog_state_path": str(tmp_path / "none"),
                                           "prometheus_url": "http://127.0.0.1:9"}, capsys)
    assert code == 0 and result["status"]["metrics"]["error"].startswith("HTTP no answer")


def test_status_report_writes_md_and_json(tmp_path, capsys):
    node = {"host": "h", "role": "head", "unit": "u", "unit_state": "active/running", "rails": [],
            "gid_index": "3", "image_id": "sha256:x", "starts_last_hour": 1, "memory": {},
            "api": {"health": 200, "models": ["m"]}}
    (tmp_path / "bench-latest.json").write_text(json.dumps({"cells": [
        {"thinking": "on", "prompt_tokens": 256, "concurrency": 1, "per_stream_tok_s": 40.0}]}))
    code, result = run(spark_status_report, {"nodes": [node], "report_dir": str(tmp_path),
                                             "bench_report": str(tmp_path / "bench-latest.json"),
                                             "link_report": str(tmp_path / "missing.json")}, capsys)
    assert code == 0 and result["changed"]
    assert json.loads((tmp_path / "status-latest.json").read_text())["verdict"] == "serving"
    assert "| h | head |" in (tmp_path / "status-latest.md").read_text()
    assert "thinking ON 256 tok c=1 40.0 tok/s" in result["markdown"]


def test_diagnose_bundle_is_scrubbed(commands, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(spark_diagnose.shutil, "which", lambda name: None if name == "nvidia-smi" else "/bin/" + name)
    config = tmp_path / "etc"
    config.mkdir()
    (config / "api-key").write_text(KEY)
    (config / "runtime.env").write_text(f"VLLM_API_KEY={KEY}\nNCCL_IB_GID_INDEX=3\n")
    dest = tmp_path / "out" / "bundle.tar.gz"
    code, result = run(spark_diagnose, {"dest": str(dest), "rails": RAILS, "config_dir": str(config),
                                         "secret_files": [str(config / "api-key")], "secrets": []}, capsys)
    assert code == 0, result
    assert oct(dest.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(dest) as tar:
        texts = {m.name.split("/", 1)[1]: tar.extractfile(m).read().decode() for m in tar}
    assert all(KEY not in t and "hf_" + "a" * 30 not in t for t in texts.values())
    assert texts["nvidia-smi-q.txt"] == "nvidia-smi: not on this node\n"
    assert f"files{config}/runtime.env" in texts and f"files{config}/api-key" not in texts
    assert "NCCL_IB_GID_INDEX=3" in texts[f"files{config}/runtime.env"]
