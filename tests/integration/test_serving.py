"""Serving in the lab (stand-in runtime): files, units, one image ID everywhere, the API,
and three faults - a wrong pin and a cache the runtime uid cannot write each stop the
start with the pre-start check's message, and rebooting both nodes brings the service
back without Ansible (killed ranks: test_faults.py). Each fault test is bounded (< 2 min) and restores the lab.

The fault tests drive the lab from the controller (docker exec, lab/spark_lab.py) and
run once (on the head's parametrization)."""

import json
import pathlib
import subprocess
import sys
import time

import pytest

from conftest import ROOT, http_get, lab_api_key

sys.path.insert(0, str(ROOT / "module_utils"))
from spark_cluster.runtime import profiles as spark_profiles  # noqa: E402  (the profile data the roles' defaults come from)


def profile(hostvars):
    """The settings of the serving profile in force (spark_profile, default current)."""
    return spark_profiles.load(hostvars.get("spark_profile", "current"))["settings"]

# the served name of the default serving profile (roles/spark_common/profiles/current.yml)
MODEL = "deepseek-v4-flash-0731"
MASTER_PORT = 25000
PARAMS = "/etc/spark-cluster/runtime-env.json"
UNIT = "spark-runtime.service"


def is_head(hostvars):
    return hostvars["inventory_hostname"] in hostvars["groups"]["spark_head"]


def containers(hostvars):
    hv = hostvars["hostvars"]
    head = hostvars["groups"]["spark_head"][0]
    workers = hostvars["groups"]["spark_workers"]
    return hv[head]["ansible_host"], [hv[w]["ansible_host"] for w in workers]


def api_url(hostvars):
    head = hostvars["groups"]["spark_head"][0]
    return f"http://{hostvars['hostvars'][head]['spark_mgmt_address']}:8888"


def dexec(container, cmd, check=False, timeout=60):
    return subprocess.run(["docker", "exec", container, "sh", "-c", cmd], capture_output=True,
                          text=True, check=check, timeout=timeout)


def started_at(container):
    return dexec(container, "docker inspect -f '{{.State.StartedAt}}' spark-runtime").stdout.strip()


def wait_pair_healthy(hostvars, timeout, not_before=None):
    """Wait until the head answers /health and (optionally) both ranks run containers
    started after the given StartedAt values. Returns seconds waited."""
    head, workers = containers(hostvars)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        status, _ = http_get(api_url(hostvars) + "/health")
        fresh = all(started_at(c) != old for c, old in (not_before or {}).items())
        if status == 200 and fresh:
            return time.monotonic() - t0
        time.sleep(2)
    states = {c: dexec(c, f"systemctl is-active {UNIT}; journalctl -u {UNIT} -n 5 -o cat").stdout
              for c in [head] + workers}
    pytest.fail(f"the pair did not come back healthy in {timeout} s: {states}")


@pytest.fixture(autouse=True)
def serving_pair(hostvars):
    """Earlier tests reboot nodes (test_qsfp_reboot): each test starts from a serving
    pair, after the recovery the units do on their own (bounded wait)."""
    wait_pair_healthy(hostvars, timeout=180)


# --------------------------------------------------------------------------- files and units

def restart_refused(worker, needle, what, within=30):
    """Restart the unit on a worker: the pre-start check must refuse (its line in the
    journal names the problem) and no runtime container may run."""
    since = dexec(worker, "date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    dexec(worker, f"systemctl restart --no-block {UNIT}")
    t0, journal = time.monotonic(), ""
    while time.monotonic() - t0 < within:
        journal = dexec(worker, f"journalctl -u {UNIT} --since '{since}' -o cat --no-pager").stdout
        if "spark-prestart:" in journal and needle in journal:
            break
        time.sleep(1)
    assert "spark-prestart:" in journal and needle in journal, journal
    running = dexec(worker, "docker inspect -f '{{.State.Running}}' spark-runtime").stdout.strip()
    assert running != "true", f"the runtime started despite {what}"


def refused_on_a_worker(hostvars, needle, what, *, first, then=None, restore):
    """A fault on the first worker: run `first` (it must succeed), then `then` (if any), expect
    restart_refused(needle); whatever happened, run `restore` and restart the unit; then wait
    for the pair to be healthy again. Every step is a shell command in the worker's container."""
    _, workers = containers(hostvars)
    worker = workers[0]
    dexec(worker, first, check=True)
    try:
        if then:
            dexec(worker, then, check=True)
        restart_refused(worker, needle, what)
    finally:
        dexec(worker, restore)
        dexec(worker, f"systemctl reset-failed {UNIT}; systemctl restart --no-block {UNIT}")
    wait_pair_healthy(hostvars, 120)


def test_compose_file_carries_the_field_flags(host, hostvars):
    f = host.file("/etc/spark-cluster/compose.yml")
    assert f.exists and f.user == "root"
    text = f.content_string
    command = text.split("command:", 1)[1]
    nnodes = 1 + len(hostvars["groups"]["spark_workers"])
    gpu_share = hostvars.get("serving_gpu_memory_utilization", 0.82)  # the lab's is its own (memory guard)
    for flag in ('"--trust-remote-code"', '"--gpu-memory-utilization"', f'"{gpu_share}"', '"--max-model-len"',
                 f'"{profile(hostvars)["max_model_len"]}"', '"--port"', '"8888"', '"--enable-auto-tool-choice"',
                 '"--speculative-config"', '\\"method\\":\\"dspark\\"', '\\"num_speculative_tokens\\":5',
                 '"--tokenizer-mode"', '"--reasoning-parser"', '"--tool-call-parser"', '"deepseek_v4"',
                 '"--nnodes"', f'"{nnodes}"', '"--tensor-parallel-size"', '"--master-addr"', '"--master-port"'):
        assert flag in command, flag
    assert ('"--headless"' in command) is (not is_head(hostvars))
    assert "network_mode: host" in text and "ipc: host" in text
    assert "/etc/spark-cluster/runtime.env" in text
    assert "/cache/huggingface/hub" in text and "/var/cache/spark-jit" in text
    assert "VLLM_API_KEY" not in text and "TOKEN" not in text


def test_compose_layout_is_one_the_model_accepts(host, hostvars):
    """TP x PP = nodes (one GPU per lab node), TP divides the seeded config's 64 heads:
    two nodes run TP=2, three TP=1 x PP=3 (module_utils/spark_cluster/runtime/layout.py)."""
    command = host.file("/etc/spark-cluster/compose.yml").content_string.split("command:", 1)[1]
    args = [json.loads(line.strip()[2:]) for line in command.splitlines()
            if line.strip().startswith("- ")]
    tp = int(args[args.index("--tensor-parallel-size") + 1])
    pp = int(args[args.index("--pipeline-parallel-size") + 1])
    nnodes = 1 + len(hostvars["groups"]["spark_workers"])
    assert tp * pp == nnodes and 64 % tp == 0
    assert (tp, pp) == {2: (2, 1), 3: (1, 3), 4: (4, 1)}[nnodes]


def test_compose_runs_the_profiles_configuration(host, hostvars):
    """The serving profile's launch settings (current: the recipe's 6 x 1M with nvfp4_ds_mla
    KV; seed: the field report's 1 x 262K with fp8), each from its named variable (docs/serving.md:
    the flag/env table, generated from the profiles)."""
    text = host.file("/etc/spark-cluster/compose.yml").content_string
    command = text.split("command:", 1)[1]
    settings = profile(hostvars)
    for pair in (("--max-num-seqs", settings["max_num_seqs"]), ("--kv-cache-dtype", settings["kv_cache_dtype"]),
                 ("--block-size", settings["block_size"]),
                 ("--max-num-batched-tokens", settings["max_num_batched_tokens"]),
                 ("--revision", hostvars["hf_cache_revision"])):
        assert f'"{pair[0]}"\n      - "{pair[1]}"' in command, pair
    for flag in ("--enable-prefix-caching", "--enable-flashinfer-autotune", "--reasoning-config",
                 "--default-chat-template-kwargs"):
        assert f'"{flag}"' in command, flag
    env = text.split("environment:", 1)[1].split("ulimits:", 1)[0].split("volumes:", 1)[0]
    for line in ('VLLM_USE_B12X_MOE: "1"', 'HF_HUB_DISABLE_XET: "1"',
                 'HF_HUB_CACHE: "/cache/huggingface/hub"'):
        assert line in env, line


def test_container_runs_the_images_contract(host, hostvars):
    """Read from the image, not assumed: explicit entrypoint, the binary by path (not on
    the image's PATH), the /opt/env exports, the image's uid owning the caches."""
    inspect = json.loads(host.check_output("docker inspect spark-runtime"))[0]
    image = json.loads(host.check_output(f"docker image inspect {inspect['Config']['Image']}"))[0]
    config = inspect["Config"]
    # the pulled image (current profile) keeps vLLM in /usr/local, the built one in /opt/env
    prefix = "/opt/env" if config["Cmd"][0].startswith("/opt/env/") else "/usr/local"
    assert image["Config"]["User"] == "1000" and image["Config"]["Entrypoint"] == ["bash"]
    assert image["Config"]["Labels"].get("spark-cluster.standin") == "true"
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"] == ["bash", "/run/spark-cluster/launch"]
    assert config["Cmd"][:2] == [f"{prefix}/bin/vllm", "serve"]
    env = dict(e.split("=", 1) for e in config["Env"])
    if prefix == "/opt/env":
        assert env["PATH"].startswith("/opt/env/bin:") and "/opt/env/lib" in env["LD_LIBRARY_PATH"].split(":")
    else:
        assert env["PATH"].startswith("/usr/local/cuda/bin:") and env["LD_LIBRARY_PATH"].startswith("/usr/local/cuda/lib64")
    assert env["CUDA_HOME"] and env["HF_HUB_CACHE"] == "/cache/huggingface/hub"
    for path in ("/var/cache/spark-jit", "/var/cache/spark-jit/deep_gemm", "/var/lib/spark-hf/hub"):
        assert host.file(path).uid == 1000, path
    # the running process's uid, read on the node (no docker exec into the container)
    pid = host.check_output("docker inspect -f '{{.State.Pid}}' spark-runtime")
    assert host.check_output(f"stat -c %u /proc/{pid}") == "1000"


def test_unit_is_enabled_active_and_checks_pinning_first(host, hostvars):
    unit = host.file(f"/etc/systemd/system/{UNIT}").content_string
    assert "Environment=PYTHONPATH=/usr/local/lib/spark-cluster\n" in unit
    assert ("ExecStartPre=/usr/bin/python3 -m spark_cluster.node.prestart "
            "--params /etc/spark-cluster/runtime-env.json --access /etc/spark-cluster/runtime-access.json") in unit
    assert "compose -f /etc/spark-cluster/compose.yml -p spark-runtime up" in unit
    assert "ExecStop=-/usr/bin/docker compose -f /etc/spark-cluster/compose.yml -p spark-runtime down" in unit
    assert "Restart=on-failure" in unit and "RestartSec=" in unit and "StartLimitBurst=" in unit
    assert "VLLM_API_KEY" not in unit
    service = host.service("spark-runtime")
    assert service.is_enabled
    assert service.is_running


def test_every_node_runs_the_same_image_id(host, hostvars):
    head, workers = containers(hostvars)
    ids = {c: dexec(c, "docker inspect -f '{{.Image}}' spark-runtime").stdout.strip()
           for c in [head] + workers}
    assert len(set(ids.values())) == 1 and next(iter(ids.values())).startswith("sha256:"), ids
    label = host.check_output(
        "docker inspect -f '{{index .Config.Labels \"spark-cluster.runtime-image-id\"}}' spark-runtime")
    assert label == ids[head]


def test_the_record_says_where_the_image_came_from(host, hostvars):
    """runtime-image.json: source, digest (pull) or commits (build), the image ID."""
    if not is_head(hostvars):
        pytest.skip("the image is pulled or built on the head")
    record = json.loads(host.file("/var/lib/spark-cluster/runtime-image.json").content_string)
    assert record["image_id"].startswith("sha256:") and record["standin"] is True
    if record["source"] == "pull":
        assert record["digest"].startswith("sha256:") and record["ref"].endswith("@" + record["digest"])
        assert any(d.endswith("@" + record["digest"]) for d in record["repo_digests"])
        return
    log = host.file("/var/log/spark-cluster/image-build.log")
    assert log.exists and "built " in log.content_string
    assert "WORKER_HOST" not in log.content_string  # head only, through the recipe's own switch
    env = host.file("/var/lib/spark-cluster/recipe-build.env").content_string
    assert "WORKER_BUILD=0\n" in env and "DSPARK_BASE_IMAGE=" in env
    assert len(record["recipe_commit"]) == 40 and record["base_image_id"].startswith("sha256:")


def test_rendezvous_listens_like_torch_and_the_api_only_where_configured(host, hostvars):
    """torch's TCPStore listens on [::] dual-stack whatever MASTER_ADDR says (docs/real-stack.md),
    so the store is on every address and the firewall keeps its port to the rails
    (test_security.py); the API binds only the configured address."""
    listening = host.check_output("ss -Hltn")
    if is_head(hostvars):
        assert f"*:{MASTER_PORT} " in listening or f"[::]:{MASTER_PORT} " in listening, listening
        assert f"{hostvars['spark_mgmt_address']}:8888" in listening
    else:
        assert f":{MASTER_PORT} " not in listening  # a worker runs no store
    assert "0.0.0.0:8888" not in listening and "*:8888" not in listening


def test_api_answers(hostvars):
    if not is_head(hostvars):
        pytest.skip("head only")
    base = api_url(hostvars)
    status, body = http_get(base + "/health")
    assert status == 200 and body == ""
    status, _ = http_get(base + "/v1/models")
    assert status == 401, "the API answered without its key"
    status, body = http_get(base + "/v1/models", key=lab_api_key())
    assert status == 200 and MODEL in [m["id"] for m in json.loads(body)["data"]]
    status, body = http_get(base + "/metrics")
    assert "vllm:spec_decode_num_accepted_tokens_per_pos_total" in body


def test_smoke_module_runs_on_the_head(hostvars):
    if not is_head(hostvars):
        pytest.skip("head only")
    run = subprocess.run(
        [str(pathlib.Path(sys.executable).with_name("ansible")), "-i", str(ROOT / "inventory/lab"), "spark_head",
         "-m", "serving_smoke", "-a", json.dumps({"base_url": api_url(hostvars), "model": MODEL, "api_key": lab_api_key()})],
        capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "thinking off: ok" in run.stdout


# --------------------------------------------------------------------------- faults

def test_a_cache_the_runtime_uid_cannot_write_stops_the_start_with_its_message(hostvars):
    """A root-owned JIT directory (what the old roles left): the pre-start check names it
    and the runtime never starts (no crash loop inside the container)."""
    if not is_head(hostvars):
        pytest.skip("runs once")
    target = "/var/cache/spark-jit/triton"
    refused_on_a_worker(hostvars, f"uid 1000 cannot write {target}", "a cache it cannot write",
                        first=f"chown 0:0 {target} && chmod 0700 {target}",
                        restore=f"chown 1000:1000 {target} && chmod 0755 {target}")


def test_wrong_pin_stops_the_start_with_the_prestart_message(hostvars):
    if not is_head(hostvars):
        pytest.skip("runs once")
    backup = PARAMS + ".test-backup"
    refused_on_a_worker(hostvars, "198.18.100.99", "the wrong pin",
                        first=f"cp -p {PARAMS} {backup}",
                        then="python3 -c \"import json; p=json.load(open('%s')); "
                             "p['node']['address']='198.18.100.99'; p['rails'][0]['address']='198.18.100.99/24'; "
                             "json.dump(p, open('%s','w'))\"" % (PARAMS, PARAMS),
                        restore=f"mv -f {backup} {PARAMS}")


def test_rebooting_both_nodes_brings_the_service_back_without_ansible(hostvars):
    if not is_head(hostvars):
        pytest.skip("runs once")
    head, workers = containers(hostvars)
    names = hostvars["groups"]["spark_workers"] + hostvars["groups"]["spark_head"]
    for name in names:   # workers first, then the head, like a power cycle of the rack
        subprocess.run([sys.executable, str(ROOT / "lab/spark_lab.py"), "restart", name,
                        "--inventory", str(ROOT / "inventory/lab")], check=True, timeout=240,
                       capture_output=True)
    waited = wait_pair_healthy(hostvars, 150)
    for c in [head] + workers:
        assert dexec(c, f"systemctl is-active {UNIT}").stdout.strip() == "active"
    print(f"service back {waited:.0f} s after the last reboot")
