"""Every library/ module's main() with real arguments, most in check mode (Ansible's
patch_module_args pattern): arguments accepted, results shaped as RETURN says,
nothing changed in check mode, failures with their message. The logic behind each is
tested in its own module_utils test file; the first tests here make sure every module's
main() runs in some unit test file, imported by its own name."""

import json
import os
import pathlib
import re
import time

import pytest

import firewall_ruleset
import hub_seed  # tests/lab: the lab-only model seeder
import hf_cache_facts
import hf_cache_key
import hf_cache_snapshot
import link_probe
import link_report
import runtime_image_wait
import serving_smoke
import serving_wait
import validate_inventory
from spark_cluster.cache import rules as spark_cache
from ansible.module_utils.basic import AnsibleModule

REPO = "deepseek-ai/DeepSeek-V4-Flash-DSpark"
ROOT = pathlib.Path(__file__).resolve().parents[2]
LIBRARY = sorted(path.stem for path in (ROOT / "library").glob("*.py"))


# ---------------------------------------------------------------- every module's main()

def test_no_module_shares_its_stem_with_a_module_utils_file():
    """A shared stem makes ``import <stem>`` ambiguous on the test path (the old
    spark_bench/spark_diagnose workaround: loading the module file by path)."""
    utils = {path.stem for path in (ROOT / "module_utils").iterdir() if path.name != "__pycache__"}
    assert "spark_cluster" in utils
    assert sorted(set(LIBRARY) & utils) == []


@pytest.mark.parametrize("name", LIBRARY)
def test_every_module_main_runs_in_a_unit_test(name):
    """Some tests/unit file imports the module by its name and runs its main(): directly,
    or through run_main (conftest) or a file's own run/run_module helper."""
    imported = re.compile(r"^\s*import %s\b" % name, re.M)
    called = re.compile(r"\b%s\.main\(\)|\b(?:run_main|run_module|run)\(\s*%s\b" % (name, name))
    files = [path.name for path in sorted((ROOT / "tests" / "unit").glob("test_*.py"))
             if imported.search(text := path.read_text(encoding="utf-8")) and called.search(text)]
    assert files, "library/%s.py: no unit test runs its main()" % name


# ---------------------------------------------------------------- validate_inventory

def rails(last):
    return [{"interface": "enp1s0f1np1", "address": f"192.168.100.{last}/24"},
            {"interface": "enP2p1s0f1np1", "address": f"192.168.101.{last}/24"}]


def test_validate_inventory_good_cluster_in_check_mode(run_main):
    nodes = {"spark-1": {"rails": rails(10), "mgmt": "10.0.0.21", "mtu": 9000},
             "spark-2": {"rails": rails(11), "mgmt": "10.0.0.22", "mtu": 9000}}
    code, out = run_main(validate_inventory, {"heads": ["spark-1"], "workers": ["spark-2"],
                                              "nodes": nodes}, check=True)
    assert code == 0 and out == {"changed": False, "problems": [], "invocation": out["invocation"]}


def test_validate_inventory_host_scope_names_the_missing_twin(run_main):
    code, out = run_main(validate_inventory, {
        "scope": "host", "host": "spark-2", "rails": rails(11),
        "interfaces": ["lo", "wlP9s9", "enp1s0f1np1"], "default_interface": "wlP9s9"}, check=True)
    assert code == 1 and out["failed"]
    assert "spark-2: spark_rails[1].interface is 'enP2p1s0f1np1' (not on this host)" in out["msg"]


def test_validate_inventory_returns_the_problems_for_the_preflight_to_gather(run_main):
    """fail_on_problems false: the same per-item messages, returned, not failed (the
    preflight lists every host's problems in one failure)."""
    code, out = run_main(validate_inventory, {
        "scope": "host", "host": "spark-2", "rails": rails(11), "fail_on_problems": False,
        "interfaces": ["lo", "wlP9s9", "enp1s0f1np1"], "default_interface": "wlP9s9"}, check=True)
    assert code == 0 and not out.get("failed")
    assert "spark-2: spark_rails[1].interface is 'enP2p1s0f1np1' (not on this host)" in out["problems"][0]["message"]


def test_validate_inventory_environment_scope_refuses_and_hides_values(run_main):
    code, out = run_main(validate_inventory, {
        "scope": "environment", "host": "spark-1",
        "environment": {"serving_environment": {"NCCL_SOCKET_IFNAME": "wlP9s9",
                                                "HF_TOKEN": "hf_s3cretvalue",
                                                "VLLM_LOGGING_LEVEL": "DEBUG"}}}, check=True)
    assert code == 1
    assert [p["variable"] for p in out["problems"]] == ["serving_environment.HF_TOKEN",
                                                        "serving_environment.NCCL_SOCKET_IFNAME"]
    assert "hf_s3cretvalue" not in json.dumps(out)


# ---------------------------------------------------------------- firewall_ruleset

def test_firewall_ruleset_renders_in_check_mode(run_main):
    code, out = run_main(firewall_ruleset, {
        "rail_addresses": ["198.18.100.10/24", "198.18.101.10/24"],
        "rail_tcp": {"master": 29501, "rsync": [873]}, "ephemeral_range": "32768-60999",
        "api_port": 8888, "api_clients": ["10.20.0.0/24"]}, check=True)
    assert code == 0 and out["changed"] is False
    assert out["ephemeral_range"] == "32768-60999"
    assert "table inet spark_cluster" in out["ruleset"]
    assert "29501" in out["ruleset"] and "10.20.0.0/24" in out["ruleset"]


def test_firewall_ruleset_refuses_a_bad_range(run_main):
    code, out = run_main(firewall_ruleset, {"rail_addresses": ["198.18.100.10/24"],
                                            "ephemeral_range": "60999-32768"}, check=True)
    assert code == 1 and "firewall_ephemeral_range" in out["msg"]


# ---------------------------------------------------------------- HF cache modules

@pytest.fixture
def hub(tmp_path):
    hub_dir = tmp_path / "hub"
    hub_seed.seed_fake_repo(str(hub_dir), REPO, shards=2, shard_bytes=4096)
    jit = tmp_path / "jit"
    (jit / "vllm").mkdir(parents=True)
    (jit / "vllm" / "kernel.bin").write_bytes(b"tuned")
    return hub_dir, jit


def test_hf_cache_facts_complete_snapshot_in_check_mode(run_main, hub):
    hub_dir, jit = hub
    code, out = run_main(hf_cache_facts, {
        "hub_dir": str(hub_dir), "repo": REPO, "expected_shards": 2, "jit_dir": str(jit),
        "mode": "rsync", "role": "head"}, check=True)
    assert code == 0, out
    assert out["snapshot"]["complete"] is True and out["problems"] == []
    assert out["jit"]["files"] == 1 and out["free_bytes"] > 0


def test_hf_cache_facts_nfs_worker(run_main, hub):
    hub_dir, jit = hub
    code, out = run_main(hf_cache_facts, {
        "hub_dir": str(hub_dir), "repo": REPO, "jit_dir": str(jit / "absent"),
        "mode": "nfs", "role": "worker", "nfs_mount_point": str(hub_dir),
        "fail_on_problems": False}, check=True)
    assert code == 0 and out["jit"] is None
    assert out["nfs_mount_unit"] == "tmp-" + str(hub_dir)[5:].replace("-", "\\x2d").replace("/", "-")


def test_hf_cache_facts_token_required_but_absent_fails(run_main, tmp_path):
    code, out = run_main(hf_cache_facts, {
        "hub_dir": str(tmp_path / "hub"), "repo": REPO, "jit_dir": str(tmp_path),
        "mode": "rsync", "role": "head", "download": True, "token_required": True}, check=True)
    assert code == 1 and out["msg"] == "; ".join(out["problems"]) and out["problems"]


def test_hf_cache_key_write_and_clear_change_nothing_in_check_mode(run_main, hub):
    _, jit = hub
    code, out = run_main(hf_cache_key, {"jit_dir": str(jit), "action": "write",
                                        "image_id": "sha256:abc"}, check=True)
    assert code == 0 and out["changed"] is True
    assert not (jit / ".spark-cache-key").exists()
    code, out = run_main(hf_cache_key, {"jit_dir": str(jit), "action": "clear"}, check=True)
    assert code == 0 and out["changed"] is True and out["message"] == "would clear 1 files"
    assert (jit / "vllm" / "kernel.bin").exists()


def test_hf_cache_key_write_then_plan_then_clear(run_main, hub):
    _, jit = hub
    code, out = run_main(hf_cache_key, {"jit_dir": str(jit), "action": "write",
                                        "image_id": "sha256:abc"})
    assert code == 0 and out["changed"] is True and (jit / ".spark-cache-key").exists()
    code, again = run_main(hf_cache_key, {"jit_dir": str(jit), "action": "write",
                                          "image_id": "sha256:abc"})
    assert again["changed"] is False
    code, out = run_main(hf_cache_key, {"jit_dir": str(jit), "action": "plan",
                                        "head": again["state"], "runtime_image_id": "sha256:abc"},
                         check=True)
    assert code == 0 and out["action"] == "none"
    code, out = run_main(hf_cache_key, {"jit_dir": str(jit), "action": "clear",
                                        "image_id": "sha256:abc"})
    assert code == 0 and out["changed"] is True and not (jit / "vllm" / "kernel.bin").exists()
    code, out = run_main(hf_cache_key, {"jit_dir": str(jit / "absent")}, check=True)
    assert code == 1 and "does not exist" in out["msg"]


def test_hf_cache_snapshot_verifies_a_seeded_snapshot(run_main, tmp_path):
    hub_dir = tmp_path / "hub"
    hub_seed.seed_fake_repo(str(hub_dir), REPO, shards=2, shard_bytes=4096)
    code, out = run_main(hf_cache_snapshot, {"hub_dir": str(hub_dir), "repo": REPO}, check=True)
    assert code == 0 and out["changed"] is False and out["bad"] == [] and out["commit"]
    assert out["verified"] == 4


def test_hf_cache_snapshot_incomplete_and_corrupt(run_main, tmp_path):
    hub_dir = tmp_path / "hub"
    code, out = run_main(hf_cache_snapshot, {"hub_dir": str(hub_dir), "repo": REPO}, check=True)
    assert code == 1 and "is incomplete" in out["msg"]
    hub_seed.seed_fake_repo(str(hub_dir), REPO, shards=2, shard_bytes=4096)
    blob = next(p for p in (hub_dir / ("models--" + REPO.replace("/", "--")) / "blobs").iterdir()
                if p.stat().st_size == max(q.stat().st_size for q in p.parent.iterdir()))
    blob.write_bytes(b"\0" * blob.stat().st_size)
    code, out = run_main(hf_cache_snapshot, {"hub_dir": str(hub_dir), "repo": REPO}, check=True)
    assert code == 1 and "do not match their hash" in out["msg"]


# ---------------------------------------------------------------- link_probe

def test_link_probe_link_mode_on_a_spark(run_main, spark_sysfs):
    sysfs = spark_sysfs(addresses={"enp1s0f1np1": "192.168.100.10/24"})
    code, out = run_main(link_probe, {"mode": "link", "interface": "enp1s0f1np1",
                                      "sysfs": str(sysfs.root)}, check=True)
    assert code == 0
    probe = out["probe"]
    assert probe["exists"] is True and probe["rdma_device"] == "rocep1s0f1"
    assert probe["rdma_available"] is True and probe["mtu"] == 9000


def test_link_probe_skips_measurements_in_check_mode(run_main):
    code, out = run_main(link_probe, {"mode": "iperf3", "target": "198.18.100.11"}, check=True)
    assert code == 0 and out["skipped"] is True and out["changed"] is False


@pytest.fixture
def no_perftest(monkeypatch):
    real = AnsibleModule.get_bin_path

    def get_bin_path(self, name, *args, **kwargs):
        return None if name == "ib_write_bw" else real(self, name, *args, **kwargs)

    monkeypatch.setattr(AnsibleModule, "get_bin_path", get_bin_path)


def test_link_probe_perftest_missing_on_a_node_with_rdma(run_main, spark_sysfs, no_perftest):
    """A Spark with its RDMA twins but without the perftest package: the probe says the
    node has RDMA hardware, so the report fails instead of 'not measured'."""
    sysfs = spark_sysfs(addresses={"enp1s0f1np1": "192.168.100.10/24"})
    code, out = run_main(link_probe, {"mode": "rdma", "interface": "enp1s0f1np1",
                                      "target": "192.168.100.11", "gid_index": 3,
                                      "sysfs": str(sysfs.root)})
    assert code == 0
    assert out["probe"] == {"kind": "rdma", "measured": False, "ok": False, "gbps": None,
                            "rdma_hardware": True, "hca": "rocep1s0f1",
                            "reason": "ib_write_bw (perftest) not installed"}


def test_link_probe_rdma_twin_missing_on_a_node_with_rdma(run_main, spark_sysfs):
    sysfs = spark_sysfs(addresses={"enp1s0f1np1": "192.168.100.10/24"})
    (sysfs.root / "class" / "infiniband" / "rocep1s0f1").unlink()
    code, out = run_main(link_probe, {"mode": "rdma", "interface": "enp1s0f1np1",
                                      "target": "192.168.100.11", "gid_index": 3,
                                      "sysfs": str(sysfs.root)})
    assert out["probe"]["rdma_hardware"] is True and out["probe"]["measured"] is False
    assert out["probe"]["reason"] == "no RDMA device behind enp1s0f1np1"


def test_link_probe_rdma_on_the_lab_is_not_hardware(run_main, tmp_path):
    code, out = run_main(link_probe, {"mode": "rdma_server", "interface": "enp1s0f1np1",
                                      "target": "198.18.100.11", "sysfs": str(tmp_path)})
    assert out["probe"]["rdma_hardware"] is False
    assert "class/infiniband is empty or missing" in out["probe"]["reason"]


def test_link_probe_rdma_that_ran_and_failed(run_main, spark_sysfs, monkeypatch):
    """ib_write_bw ran and could not connect: measured, not ok, with the tool's error."""
    sysfs = spark_sysfs(addresses={"enp1s0f1np1": "192.168.100.10/24"})
    fixture = pathlib.Path(__file__).parent / "fixtures" / "linkprobe" / "ib_write_bw_no_server.txt"
    monkeypatch.setattr(AnsibleModule, "get_bin_path",
                        lambda self, name, *a, **k: "/usr/bin/" + name)
    monkeypatch.setattr(AnsibleModule, "run_command",
                        lambda self, argv, **k: (1, fixture.read_text(), ""))
    code, out = run_main(link_probe, {"mode": "rdma", "interface": "enp1s0f1np1",
                                      "target": "192.168.100.11", "gid_index": 3,
                                      "sysfs": str(sysfs.root)})
    probe = out["probe"]
    assert probe["measured"] is True and probe["ok"] is False and probe["rc"] == 1
    assert probe["argv"][:5] == ["/usr/bin/ib_write_bw", "-d", "rocep1s0f1", "-x", "3"]
    assert probe["error"]


def silent_iperf3_server(monkeypatch):
    """iperf3 -D that returns 0 and never listens (a server that cannot bind its address)."""
    monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda self, name, *a, **k: "/usr/bin/" + name)
    monkeypatch.setattr(AnsibleModule, "run_command", lambda self, argv, **k: (0, "", ""))
    monkeypatch.setattr(link_probe, "tcp_listening", lambda port: False)


def test_link_probe_server_that_never_listens_fails_after_start_timeout(run_main, monkeypatch, tmp_path):
    silent_iperf3_server(monkeypatch)
    started = time.monotonic()
    code, out = run_main(link_probe, {"mode": "iperf3_servers", "port": 5211, "processes": 2,
                                      "source": "198.18.101.11", "state_dir": str(tmp_path),
                                      "start_timeout": 0.3})
    assert 0.3 <= time.monotonic() - started < 5
    assert code == 1 and out["msg"] == "iperf3 servers not listening on [5211, 5212] after 0.3 s"


def test_link_probe_server_start_timeout_defaults_to_ten_seconds(run_main, monkeypatch, tmp_path):
    silent_iperf3_server(monkeypatch)
    clock = iter(range(0, 1000, 3))  # every reading of the clock 3 s later
    monkeypatch.setattr(link_probe.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(link_probe.time, "sleep", lambda seconds: None)
    code, out = run_main(link_probe, {"mode": "iperf3_servers", "port": 5211, "state_dir": str(tmp_path)})
    assert code == 1 and out["msg"] == "iperf3 servers not listening on [5211] after 10 s"
    code, out = run_main(link_probe, {"mode": "iperf3_servers", "port": 5211, "state_dir": str(tmp_path),
                                      "start_timeout": 0})
    assert code == 1 and out["msg"] == "start_timeout must be > 0"


def test_link_probe_refuses_zero_processes(run_main):
    code, out = run_main(link_probe, {"mode": "iperf3", "target": "198.18.100.11",
                                      "processes": 0}, check=True)
    assert code == 1 and out["msg"] == "processes and streams must be >= 1"


# ---------------------------------------------------------------- link_report

def registered(probe, pair_id):
    """One loop item as Ansible registers it."""
    return {"item": {"id": pair_id}, "probe": probe, "changed": False}


def test_link_report_check_mode_writes_nothing(run_main, tmp_path):
    pair = {"id": "r0:a>b", "rail": 0, "src_host": "a", "dst_host": "b",
            "src_interface": "enp1s0f1np1", "dst_interface": "enp1s0f1np1",
            "src_address": "198.18.100.10", "dst_address": "198.18.100.11",
            "rdma_status": "not_measured", "rdma_reason": "no RDMA device"}
    link = {"results": [{"probe": {"interface": "enp1s0f1np1", "mtu": 9000, "speed_mbps": 10000,
                                   "rdma_device": None, "rdma_available": False}}]}
    code, out = run_main(link_report, {
        "pairs": [pair], "probes": {"ping": {"results": [registered({"kind": "ping"}, "r0:a>b")]},
                                    "rdma": {"results": [{"skipped": True, "item": pair}]}},
        "links": {"a": link, "b": link}, "env_file_present": {"a": {"stat": {"exists": True}}},
        "report_dir": str(tmp_path / "reports")}, check=True)
    assert code == 0 and out["changed"] is False
    assert out["verdict"] in ("fail", "incomplete") and "paths" not in out
    assert not (tmp_path / "reports").exists()
    assert out["report"]["nodes"]["a"]["pinning"]["env_file_present"] is True


def test_link_report_writes_files(run_main, tmp_path):
    code, out = run_main(link_report, {"pairs": [], "report_dir": str(tmp_path), "formats": ["json", "md"]})
    assert code == 0 and out["changed"] is True
    assert pathlib.Path(out["paths"]["latest_json"]).exists()
    assert "png" not in out["paths"]


def test_link_report_bad_pair_fails_with_message(run_main, tmp_path):
    code, out = run_main(link_report, {"pairs": [{"id": "x"}], "report_dir": str(tmp_path)}, check=True)
    assert code == 1 and out["msg"].startswith("cannot build the link report")


# ---------------------------------------------------------------- runtime_image_wait

def wait_for_build(run_main, tmp_path, log_text, rc_text):
    """runtime_image_wait over a build log and its exit-code file, without waiting."""
    log, rc = tmp_path / "build.log", tmp_path / "build.rc"
    log.write_text(log_text)
    rc.write_text(rc_text)
    return run_main(runtime_image_wait, {"log_path": str(log), "rc_path": str(rc),
                                         "wait_seconds": 0}, check=True)


def test_runtime_image_wait_finished_build(run_main, tmp_path):
    code, out = wait_for_build(run_main, tmp_path, "Step 1/3 : FROM base\nStep 3/3 : RUN make\n"
                               "Successfully built abc\n", "0\n")
    assert code == 0 and out["finished"] is True and out["exit_code"] == 0
    assert out["tail"][-1] == "Successfully built abc"


def test_runtime_image_wait_failed_and_running_builds(run_main, tmp_path):
    code, out = wait_for_build(run_main, tmp_path, "compiling\nerror: out of memory\n", "2\n")
    assert code == 1 and "image build failed (exit 2)" in out["msg"] and "out of memory" in out["msg"]
    code, out = run_main(runtime_image_wait, {"log_path": str(tmp_path / "none.log"),
                                              "rc_path": str(tmp_path / "none.rc"),
                                              "wait_seconds": 0}, check=True)
    assert code == 0 and out["finished"] is False and out["exit_code"] == -1


# ---------------------------------------------------------------- serving_smoke

def fake_api(answers):
    """http_json stand-in: answers by URL suffix, records the calls."""
    calls = []

    def http_json(url, body=None, api_key=None, timeout=30):
        calls.append((url, body, api_key))
        if url.endswith("/v1/models"):
            return answers["models"]
        return answers["chat"](body)

    return http_json, calls


def chat(content, reasoning="thought"):
    return 200, {"choices": [{"message": {"content": content, "reasoning": reasoning}}]}


def test_serving_smoke_passes_and_sends_the_key(run_main, monkeypatch):
    http_json, calls = fake_api({"models": (200, {"data": [{"id": REPO}]}),
                                 "chat": lambda body: chat("42")})
    monkeypatch.setattr(serving_smoke, "http_json", http_json)
    code, out = run_main(serving_smoke, {"model": REPO, "api_key": "k3y"}, check=True)
    assert code == 0, out
    assert out["models"] == [REPO] and [c["reasoning_effort"] for c in out["checks"]] == [None, None]
    assert [c["chat_template_kwargs"] for c in out["checks"]] == [{"thinking": True}, {"thinking": False}]
    assert all("reasoning_effort" not in body for _, body, _ in calls if body)
    assert all(key == "k3y" for _, _, key in calls) and len(calls) == 3
    assert "k3y" not in json.dumps(out)


def test_serving_smoke_sends_the_profiles_levels_and_refuses_kwargs_that_contradict(run_main, monkeypatch):
    """The current profile's levels: on = high ({thinking, reasoning_effort: high}), off = off."""
    http_json, calls = fake_api({"models": (200, {"data": [{"id": REPO}]}),
                                 "chat": lambda body: chat("42")})
    monkeypatch.setattr(serving_smoke, "http_json", http_json)
    on = {"thinking": True, "reasoning_effort": "high"}
    code, out = run_main(serving_smoke, {"model": REPO, "thinking_on_kwargs": on,
                                         "thinking_off_kwargs": {"thinking": False}}, check=True)
    assert code == 0, out
    assert [body["chat_template_kwargs"] for _, body, _ in calls if body] == [on, {"thinking": False}]
    code, out = run_main(serving_smoke, {"model": REPO, "thinking_off_kwargs": {"thinking": True}}, check=True)
    assert code == 1 and "does not turn thinking off" in out["msg"]


def test_serving_smoke_null_content_fails_when_asked(run_main, monkeypatch):
    http_json, _ = fake_api({"models": (200, {"data": [{"id": REPO}]}),
                             "chat": lambda body: chat(None, "42")})
    monkeypatch.setattr(serving_smoke, "http_json", http_json)
    code, out = run_main(serving_smoke, {"model": REPO, "fail_on_null_content": True}, check=True)
    assert code == 1 and out["null_content"] is True


def test_serving_smoke_unauthorized(run_main, monkeypatch):
    http_json, _ = fake_api({"models": (401, {"message": "unauthorized"}),
                             "chat": lambda body: (401, {"message": "unauthorized"})})
    monkeypatch.setattr(serving_smoke, "http_json", http_json)
    code, out = run_main(serving_smoke, {"model": REPO}, check=True)
    assert code == 1 and "GET /v1/models answered HTTP 401" in out["msg"]


# ---------------------------------------------------------------- serving_wait

def node(monkeypatch, active="active", running=True, lines=(), health=200):
    monkeypatch.setattr(serving_wait, "unit_state", lambda module, unit: (active, "running", "success"))
    monkeypatch.setattr(serving_wait, "container",
                        lambda module, name: (running, "2026-11-29T10:00:00.123456789Z" if running else ""))
    monkeypatch.setattr(serving_wait, "log_lines", lambda module, name, since, count: list(lines))
    monkeypatch.setattr(serving_wait, "http_json", lambda url, api_key=None, timeout=5: (health, ""))


def test_serving_wait_head_ready(run_main, monkeypatch):
    node(monkeypatch, lines=["Loading safetensors checkpoint shards: 48/48", "Application startup complete."])
    code, out = run_main(serving_wait, {"role": "head", "wait_seconds": 0}, check=True)
    assert code == 0 and out["ready"] is True and out["phase"] == "ready"


def test_serving_wait_head_still_loading(run_main, monkeypatch):
    node(monkeypatch, lines=["Loading safetensors checkpoint shards: 12/48"], health=0)
    code, out = run_main(serving_wait, {"role": "head", "wait_seconds": 0}, check=True)
    assert code == 0 and out["ready"] is False
    assert out["progress"] == {"current": 12, "total": 48} or "12/48" in out["message"]


def test_serving_wait_worker_waiting_for_master(run_main, monkeypatch):
    node(monkeypatch, lines=["INFO waiting for master 198.18.100.10:29501"])
    code, out = run_main(serving_wait, {"role": "worker", "wait_seconds": 0}, check=True)
    assert code == 0 and out["ready"] is True and out["message"].startswith("worker up:")


def test_serving_wait_failed_unit_shows_its_journal(run_main, monkeypatch):
    node(monkeypatch, active="failed", running=False)
    monkeypatch.setattr(AnsibleModule, "run_command",
                        lambda self, argv, **k: (0, "RuntimeError: Unable to find address for: enp1s0f1np1\n", ""))
    code, out = run_main(serving_wait, {"role": "worker", "wait_seconds": 0}, check=True)
    assert code == 1 and out["unit_failed"] is True
    assert "Unable to find address for: enp1s0f1np1" in out["msg"]


# ---------------------------------------------------------------- qsfp_netstate

NETCONF = pathlib.Path(__file__).parent / "fixtures" / "netconf"
NETSTATE_RAILS = [{"interface": "enp1s0f1np1", "address": "198.18.100.10/24"},
                  {"interface": "enP2p1s0f1np1", "address": "198.18.101.10/24"}]


def dgx_os_node(monkeypatch, tmp_path, netplan):
    """A node whose commands answer from the captured DGX OS readings (fixtures/netconf):
    NetworkManager running, NVIDIA's netplan file, the rails' ip -j addr."""
    import qsfp_netstate

    (tmp_path / "etc" / "netplan").mkdir(parents=True)
    for name, text in netplan.items():
        (tmp_path / "etc" / "netplan" / name).write_text(text)
    details = {}
    for name in ("wired1", "wired2", "mgmt", "old"):
        text = (NETCONF / f"nm-detail-{name}.txt").read_text()
        uuid = next(line.split(":", 1)[1] for line in text.splitlines() if line.startswith("connection.uuid:"))
        details[uuid] = text

    def run_command(self, argv, **kwargs):
        if argv[:2] == ["ip", "-j"]:
            return 0, (NETCONF / "ip-addr.json").read_text(), ""
        if argv[0] == "systemctl":
            return 3, "inactive\n", ""
        if argv[-1] == "general":
            return 0, "running\n", ""
        if argv[-2:] == ["connection", "show"]:
            return 0, (NETCONF / "nm-connections.txt").read_text(), ""
        if argv[-3:-1] == ["show", "uuid"]:
            return 0, details.get(argv[-1], ""), ""
        if argv[-1] == "device":
            return 0, (NETCONF / "nm-devices.txt").read_text(), ""
        raise AssertionError(argv)

    monkeypatch.setattr(AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda self, name, *a, **k: "/usr/bin/" + name)
    return qsfp_netstate


def test_qsfp_netstate_on_dgx_os_as_shipped_in_check_mode(run_main, monkeypatch, tmp_path):
    module = dgx_os_node(monkeypatch, tmp_path, {
        "00-all.yaml": "network:\n  version: 2\n  renderer: NetworkManager\n"})
    code, out = run_main(module, {"rails": NETSTATE_RAILS, "root": str(tmp_path)}, check=True)
    assert code == 0, out
    state = out["ansible_facts"]["qsfp_netstate"]
    assert state["renderer"] == "NetworkManager" and out["changed"] is False
    assert [r["interface"] for r in state["rails"]] == ["enp1s0f1np1", "enP2p1s0f1np1"]
    assert state["summary"]


def test_qsfp_netstate_unreadable_netplan_file_fails(run_main, monkeypatch, tmp_path):
    module = dgx_os_node(monkeypatch, tmp_path, {"50-broken.yaml": "network: [unclosed\n"})
    code, out = run_main(module, {"rails": NETSTATE_RAILS, "root": str(tmp_path)}, check=True)
    assert code == 1 and "cannot read netplan file /etc/netplan/50-broken.yaml" in out["msg"]
