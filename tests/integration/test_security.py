"""Security in the lab: the API key never leaves its 0600 file (not in docker inspect, the
compose file, the unit, env files, world-readable files or Ansible's output), /v1 needs
it and /health does not, the API answers only on its bind address and only to its
clients, and the firewall (table inet spark_cluster) drops the cluster ports from
anywhere but the rails.

Cross-node probes run from the controller with docker exec, once (head's parametrization).
"""

import ipaddress
import json
import subprocess
import time

import pytest

from conftest import ROOT, http_get as get

KEY_FILE = ROOT / ".cache" / "lab-api-key"
# the served name of the default serving profile (roles/spark_common/profiles/current.yml)
MODEL = "deepseek-v4-flash-0731"
PROBE_PORT = 45871  # inside the ephemeral range: rail-only, nothing listens there


@pytest.fixture(scope="session")
def api_key():
    assert KEY_FILE.exists(), f"{KEY_FILE} missing: the lab's group_vars generate it on the first run"
    assert KEY_FILE.stat().st_mode & 0o077 == 0, f"{KEY_FILE} is readable by others"
    key = KEY_FILE.read_text().strip()
    assert len(key) >= 32
    return key


def is_head(hostvars):
    return hostvars["inventory_hostname"] in hostvars["groups"]["spark_head"]


def node(hostvars, group, index=0):
    name = hostvars["groups"][group][index]
    return hostvars["hostvars"][name]


def dexec(container, cmd, timeout=60):
    return subprocess.run(["docker", "exec", container, "sh", "-c", cmd], capture_output=True, text=True,
                          timeout=timeout)


def connect(container, address, port, timeout=3):
    """'ok', 'refused' or 'timeout' of a TCP connect from inside a node."""
    code = ("import socket,sys\n"
            "s=socket.socket(); s.settimeout(%d)\n"
            "try:\n s.connect((%r,%d)); print('ok')\n"
            "except ConnectionRefusedError: print('refused')\n"
            "except (socket.timeout, TimeoutError): print('timeout')\n"
            "except OSError as e: print('error', e)\n" % (timeout, address, port))
    return dexec(container, f"python3 -c \"{code}\"", timeout=timeout + 30).stdout.strip()


def wait_api(base, timeout=180):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if get(base + "/health")[0] == 200:
            return
        time.sleep(2)
    pytest.fail(f"{base}/health did not answer in {timeout} s")


@pytest.fixture
def api_base(hostvars):
    head = node(hostvars, "spark_head")
    base = f"http://{head['spark_mgmt_address']}:8888"
    wait_api(base)
    return base


# --------------------------------------------------------------------------- the key's file and where it is not

def test_key_file_is_0400_of_the_runtime_uid_on_the_head_only(host, hostvars, api_key):
    """The runtime runs as the image's uid (1000): a 0600 root key file would be
    unreadable inside the container."""
    f = host.file("/etc/spark-cluster/api-key")
    if not is_head(hostvars):
        assert not f.exists
        return
    assert f.exists and f.uid == 1000 and f.gid == 1000 and f.mode == 0o400
    assert not host.file("/etc/spark-cluster/api-key.env").exists


def test_key_not_in_docker_inspect(host, hostvars, api_key, api_base):
    inspect = host.check_output("docker inspect spark-runtime")
    assert api_key not in inspect
    config = json.loads(inspect)[0]["Config"]
    names = [e.split("=", 1)[0] for e in config["Env"]]
    assert "VLLM_API_KEY" not in names and "HF_TOKEN" not in names
    assert "HF_HUB_OFFLINE=1" in config["Env"]  # the runtime never talks to the Hub
    assert not any(api_key in arg for arg in (config.get("Cmd") or []) + (config.get("Entrypoint") or []))
    if is_head(hostvars):  # the key arrives as a mounted secret file, read by the launcher
        mounts = json.loads(inspect)[0]["Mounts"]
        assert any(m["Destination"] == "/run/secrets/api_key" for m in mounts), mounts
        assert config["Entrypoint"] == ["bash", "/run/spark-cluster/launch"]


def test_key_not_in_compose_unit_env_or_readable_files(host, hostvars, api_key):
    for path in ("/etc/spark-cluster/compose.yml", "/etc/systemd/system/spark-runtime.service",
                 "/etc/spark-cluster/runtime.env", "/etc/spark-cluster/runtime-env.json"):
        f = host.file(path)
        assert f.exists and api_key not in f.content_string, path
    holders = host.run(f"grep -rlF -- '{api_key}' /etc /usr/local/lib/spark-cluster /var/lib/spark-cluster "
                       "/var/log/spark-cluster").stdout.split()
    assert holders == (["/etc/spark-cluster/api-key"] if is_head(hostvars) else []), holders
    readable = host.check_output("find /etc/spark-cluster -type f -perm -o=r").split()
    for path in readable:
        assert api_key not in host.file(path).content_string, path
    assert "/etc/spark-cluster/api-key" not in readable


def test_key_not_in_the_runtime_log(host, api_key):
    logs = host.run("docker logs spark-runtime 2>&1; journalctl -u spark-runtime --no-pager -o cat")
    assert api_key not in logs.stdout


# --------------------------------------------------------------------------- the API

def test_v1_needs_the_key_health_and_metrics_do_not(hostvars, api_key, api_base):
    if not is_head(hostvars):
        pytest.skip("head only")
    assert get(api_base + "/health")[0] == 200
    status, body = get(api_base + "/v1/models")
    assert status == 401, body
    assert get(api_base + "/v1/models", key="wrong-" + api_key)[0] == 401
    status, body = get(api_base + "/v1/models", key=api_key)
    assert status == 200 and MODEL in [m["id"] for m in json.loads(body)["data"]]
    assert "vllm:generation_tokens_total" in get(api_base + "/metrics")[1]


def test_api_answers_only_on_its_bind_address(host, hostvars, rails, api_base):
    listening = host.check_output("ss -Hltn")
    for wildcard in ("0.0.0.0:8888", "*:8888", "[::]:8888"):
        assert wildcard not in listening
    if not is_head(hostvars):
        return
    assert f"{hostvars['spark_mgmt_address']}:8888" in listening
    assert f"{rails[0]['address'].split('/')[0]}:8888" not in listening
    worker = node(hostvars, "spark_workers")["ansible_host"]
    for rail in rails:  # not bound there (refused), or dropped (timeout): never answered
        assert connect(worker, rail["address"].split("/")[0], 8888) in ("refused", "timeout")
    # bound on the management address, but the worker is not an API client: dropped
    assert connect(worker, hostvars["spark_mgmt_address"], 8888) == "timeout"


def test_smoke_module_sends_the_key_and_never_prints_it(hostvars, api_key, api_base):
    if not is_head(hostvars):
        pytest.skip("runs once")
    args = {"base_url": api_base, "model": MODEL, "api_key": api_key}
    run = subprocess.run([str(ROOT / ".venv/bin/ansible"), "-i", str(ROOT / "inventory/lab"), "spark_head", "-v",
                          "-m", "serving_smoke", "-a", json.dumps(args)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "thinking off: ok" in run.stdout
    assert api_key not in run.stdout and api_key not in run.stderr


# --------------------------------------------------------------------------- the firewall

def nft_table(host):
    data = json.loads(host.check_output("nft -j list table inet spark_cluster"))["nftables"]
    sets = {i["set"]["name"]: i["set"].get("elem", []) for i in data if "set" in i}
    chains = [i["chain"] for i in data if "chain" in i]
    rules = [i["rule"] for i in data if "rule" in i]
    return sets, chains, rules


def elements(raw):
    out = []
    for e in raw:
        if isinstance(e, dict) and "prefix" in e:
            out.append(f"{e['prefix']['addr']}/{e['prefix']['len']}")
        elif isinstance(e, dict) and "range" in e:
            out.append("%s-%s" % tuple(e["range"]))
        else:
            out.append(str(e))
    return out


def test_firewall_table_is_loaded_by_its_enabled_unit(host, hostvars, rails):
    unit = host.service("spark-firewall")
    assert unit.is_enabled and unit.is_running
    f = host.file("/etc/spark-cluster/nftables.conf")
    assert f.user == "root" and f.mode == 0o600
    assert "flush ruleset" not in f.content_string
    sets, chains, rules = nft_table(host)
    all_rails = {r["address"] for h in hostvars["groups"]["spark"] for r in hostvars["hostvars"][h]["spark_rails"]}
    nets = {f"{a.split('/')[0].rsplit('.', 1)[0]}.0/{a.split('/')[1]}" for a in all_rails}
    assert set(elements(sets["rail_nets_v4"])) == nets
    ports = elements(sets["rail_tcp_ports"])
    low, high = host.file("/proc/sys/net/ipv4/ip_local_port_range").content_string.split()
    for port in ("25000", "29610", "873", f"{low}-{high}"):
        assert port in ports, (port, ports)
    assert not any(int(p.split("-")[0]) <= 22 <= int(p.split("-")[-1]) for p in ports)  # SSH never restricted
    clients = [ipaddress.ip_network(c) for c in hostvars["firewall_api_clients"]]
    assert [ipaddress.ip_network(e) for e in elements(sets["api_clients_v4"])] == clients
    (chain,) = chains
    assert chain["hook"] == "input" and chain["policy"] == "accept"
    first = json.dumps(rules[0]["expr"])
    assert '"ct"' in first and "established" in first and "accept" in first
    assert any("@rail_tcp_ports" in json.dumps(r["expr"]) and '"drop"' in json.dumps(r["expr"]) for r in rules)
    assert any("8888" in json.dumps(r["expr"]) and '"drop"' in json.dumps(r["expr"]) for r in rules)
    # the rest of the ruleset is someone else's and still there
    tables = host.check_output("nft list tables")
    assert "table ip filter" in tables or "table ip nat" in tables


def drop_counter(container):
    data = json.loads(dexec(container, "nft -j list table inet spark_cluster").stdout)["nftables"]
    for item in data:
        rule = item.get("rule")
        if rule and rule.get("comment") == "cluster ports: not from the rails":
            return next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
    raise AssertionError("no drop rule with a counter")


def test_cluster_ports_only_from_the_rails(hostvars, rails):
    if not is_head(hostvars):
        pytest.skip("runs once")
    head = hostvars["ansible_host"]
    worker = node(hostvars, "spark_workers")["ansible_host"]
    rail0 = rails[0]["address"].split("/")[0]
    mgmt = hostvars["spark_mgmt_address"]
    master_port = json.loads(dexec(head, "cat /etc/spark-cluster/runtime-env.json").stdout)["node"]["master_port"]
    before = drop_counter(head)
    # the store listens on every address ([::] dual-stack, as torch's does): without the
    # firewall this would connect; dropped, it times out
    assert connect(worker, mgmt, master_port) == "timeout"
    assert drop_counter(head) > before
    # a temporary listener on every address, on a rail-only port
    start = dexec(head, f"setsid python3 -m http.server --bind 0.0.0.0 {PROBE_PORT} >/dev/null 2>&1 & echo $!")
    pid = start.stdout.strip()
    try:
        t0 = time.monotonic()
        while f":{PROBE_PORT}" not in dexec(head, "ss -Hltn").stdout and time.monotonic() - t0 < 10:
            time.sleep(0.5)
        assert connect(worker, rail0, PROBE_PORT) == "ok"          # from the rail: accepted
        assert connect(worker, mgmt, PROBE_PORT) == "timeout"      # from management: dropped
        assert connect(head, mgmt, PROBE_PORT) == "ok"             # loopback (local) traffic is not touched
    finally:
        dexec(head, f"kill {pid}")
    # SSH and other unrestricted ports are untouched: a closed one is refused, not dropped
    assert connect(worker, mgmt, 22) in ("refused", "ok")
