"""The cluster firewall (module_utils/spark_cluster/link/firewall.py), and the secrets rules that can be
checked without a node: tasks that touch a secret hide it, the stand-in's API key."""

import importlib.util
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import spark_common_defaults
from spark_cluster.link import firewall as fw

ROOT = pathlib.Path(__file__).resolve().parents[2]
RAILS = ["198.18.100.10/24", "198.18.101.10/24", "198.18.100.11/24", "198.18.101.11/24"]
PORTS = {"master": [29501], "image_stream": [29610], "rsync": [873], "iperf3": ["5201-5240"],
         "ib_write_bw": ["18515-18518"]}


def plan(**kw):
    args = dict(rail_addresses=RAILS, rail_tcp=PORTS, rail_udp={}, ephemeral_range=(32768, 60999),
                api_port=8888, api_clients=["198.19.0.1/32"])
    args.update(kw)
    return fw.build_plan(**args)


# --------------------------------------------------------------------------- ports

@pytest.mark.parametrize("spec, expected", [
    (29501, (29501, 29501)), ("873", (873, 873)), ("32768-60999", (32768, 60999)),
    ("5201:5240", (5201, 5240)), (" 1-65535 ", (1, 65535)),
])
def test_port_specs(spec, expected):
    assert fw.parse_port_spec(spec) == expected


@pytest.mark.parametrize("spec", [0, 65536, "x", "10-5", "1-2-3", "", True, "-5"])
def test_bad_port_specs_are_refused(spec):
    with pytest.raises(fw.FirewallError):
        fw.parse_port_spec(spec, "firewall_extra_rail_tcp")


def test_ranges_merge_overlapping_and_adjacent():
    assert fw.merge_ranges([(10, 20), (5, 9), (15, 30), (40, 40), (41, 45), (100, 100)]) == [
        (5, 30), (40, 45), (100, 100)]


def test_sysctl_port_range():
    assert fw.parse_sysctl_port_range("32768\t60999\n") == (32768, 60999)
    with pytest.raises(fw.FirewallError):
        fw.parse_sysctl_port_range("32768")


def test_ephemeral_range_read_from_the_sysctl_file(tmp_path):
    sysctl = tmp_path / "ip_local_port_range"
    sysctl.write_text("40000\t50000\n")
    assert fw.read_ephemeral_range(str(sysctl)) == (40000, 50000)


# --------------------------------------------------------------------------- plan

def test_plan_rails_from_every_node_and_merged_ports():
    p = plan()
    assert p["rails_v4"] == ["198.18.100.0/24", "198.18.101.0/24"]
    assert p["tcp"] == ["873", "5201-5240", "18515-18518", "29501", "29610", "32768-60999"]
    assert p["api_port"] == 8888 and p["api_clients_v4"] == ["198.19.0.1/32"] and p["api_clients_v6"] == []


def test_master_port_inside_the_ephemeral_range_is_merged():
    p = plan(rail_tcp={"master": [40000], "ray": [6379, 8265, 10001, "10002-19999"], "ib_write_bw": ["18515-18518"]})
    assert p["tcp"] == ["6379", "8265", "10001-19999", "32768-60999"]
    assert p["purposes_tcp"]["master"] == ["40000"]


def test_api_clients_both_families_without_overlaps():
    p = plan(api_clients=["10.1.0.0/16", "10.0.0.0/8", "fd00::/8", "192.168.1.7"])
    assert p["api_clients_v4"] == ["10.0.0.0/8", "192.168.1.7/32"]
    assert p["api_clients_v6"] == ["fd00::/8"]


def test_empty_api_clients_means_loopback_only():
    p = plan(api_clients=[])
    text = fw.render(p)
    assert p["api_clients_v4"] == [] and "# API tcp 8888: loopback only" in text
    assert 'tcp dport 8888 counter drop' in text


@pytest.mark.parametrize("kw, message", [
    (dict(rail_tcp={"extra": ["20-30"]}), "port 22 is protected"),
    (dict(rail_tcp={"extra": ["1-1024"]}, ephemeral_range=None), "extra: tcp port 22"),
    (dict(api_port=29501), "spark_api_port 29501 is also a rail-only cluster port (master)"),
    (dict(api_port=40000), "(ephemeral)"),
    (dict(api_port=22, rail_tcp={}), "protected (SSH)"),
    (dict(rail_addresses=[]), "no rail address"),
    (dict(rail_addresses=["198.18.100.10"]), None),
    (dict(rail_addresses=["0.0.0.0/0"]), "from everywhere"),
    (dict(rail_addresses=["rail0"]), "spark_rails: 'rail0'"),
    (dict(api_clients=["10.0.0.0/33"]), "firewall_api_clients: '10.0.0.0/33'"),
])
def test_refusals_name_the_variable(kw, message):
    if message is None:  # a /32 rail is odd but not wrong
        assert plan(**kw)["rails_v4"] == ["198.18.100.10/32"]
        return
    with pytest.raises(fw.FirewallError) as err:
        plan(**kw)
    assert message in str(err.value)


# --------------------------------------------------------------------------- render

def test_render_replaces_only_its_own_table_and_never_mentions_ssh():
    text = fw.render(plan(), header="managed by Ansible")
    assert text.startswith("#!/usr/sbin/nft -f\n# managed by Ansible\n")
    body = text[text.index("table inet spark_cluster\n"):]
    assert body.startswith("table inet spark_cluster\ndelete table inet spark_cluster\n\ntable inet spark_cluster {")
    assert "flush ruleset" not in text and "flush" not in body
    assert not re.search(r"\b22\b", body)
    assert "table ip " not in text and "table ip6 " not in text  # Docker's tables are not ours
    assert "policy accept;" in body and "policy drop" not in body


def test_render_established_and_loopback_first_then_restrictions():
    rules = [line.strip() for line in fw.render(plan()).splitlines() if line.startswith("\t\t") and "dport" in line
             or line.strip().startswith(("ct state", "iifname"))]
    assert rules[0].startswith("ct state established,related accept")
    assert rules[1].startswith('iifname "lo" accept')
    accept = rules.index(next(r for r in rules if r.startswith("tcp dport @rail_tcp_ports ip saddr @rail_nets_v4 accept")))
    drop = rules.index(next(r for r in rules if r.startswith("tcp dport @rail_tcp_ports counter drop")))
    api_ok = rules.index(next(r for r in rules if r.startswith("tcp dport 8888 ip saddr @api_clients_v4 accept")))
    api_drop = rules.index(next(r for r in rules if r.startswith("tcp dport 8888 counter drop")))
    assert 1 < accept < drop < api_ok < api_drop


def test_render_sets():
    text = fw.render(plan(rail_udp={"nfs": [111, 2049]}))
    assert "elements = { 198.18.100.0/24, 198.18.101.0/24 }" in text
    assert "elements = { 873, 5201-5240, 18515-18518, 29501, 29610, 32768-60999 }" in text
    assert "elements = { 111, 2049 }" in text
    assert "elements = { 198.19.0.1/32 }" in text


def test_render_is_deterministic():
    a = fw.render(plan(rail_tcp=dict(reversed(list(PORTS.items())))))
    assert a == fw.render(plan())


def test_render_without_api_rule():
    text = fw.render(plan(api_port=None))
    assert "8888" not in text and "api_clients_v4" in text


@pytest.mark.skipif(not shutil.which("nft"), reason="no nft here (the role checks the file with nft -c on the node)")
def test_nft_accepts_the_file(tmp_path):
    path = tmp_path / "spark.nft"
    path.write_text(fw.render(plan(rail_udp={"nfs": [111, 2049]}, api_clients=["10.0.0.0/8", "fd00::/8"],
                                   client_ports={"prometheus": {"port": 9090, "clients": ["198.19.0.0/24", "fd00::/8"]}})))
    run = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
    if "Operation not permitted" in run.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN")
    assert run.returncode == 0, run.stderr


def test_role_defaults_match_the_roles_they_describe():
    fwd = yaml.safe_load((ROOT / "roles/firewall/defaults/main.yml").read_text())
    assert fwd["firewall_api_clients"] == [] and fwd["firewall_ray"] is False
    assert fwd["firewall_protected_ports"] == [22]
    # the cluster ports come from roles/spark_common, the one owner of each
    common = spark_common_defaults()
    fw_vars = (ROOT / "roles/firewall/vars/main.yml").read_text()
    probe_vars = (ROOT / "roles/spark_common/tasks/probe_layout.yml").read_text()
    for var, default, where in (("spark_master_port", "{{ spark_profile_settings.master_port }}", fw_vars),
                                ("spark_image_stream_port", 29610, fw_vars),
                                ("spark_rsync_port", 873, fw_vars),
                                # the probe ports: through spark_probe_ports (test_pairs_plan.py)
                                ("spark_iperf3_port", 5201, probe_vars), ("spark_rdma_port", 18515, probe_vars)):
        assert common[var] == default, var
        assert var in where, var
    assert "spark_probe_ports" in fw_vars


# --------------------------------------------------------------------------- secrets, statically

SECRET_VARS = ("serving_api_key", "hf_cache_token", "bench_api_key")
# A mention that only tests presence or length carries no value
SECRET_VALUE = re.compile(r"\b(%s)\b(?!\s*\|\s*(length|bool)\b)(?!\s+is\s)" % "|".join(SECRET_VARS))
TASK_KEYWORDS = {"name", "when", "register", "no_log", "loop", "loop_control", "tags", "vars", "notify",
                 "changed_when", "failed_when", "delegate_to", "run_once", "become", "check_mode",
                 "environment", "timeout", "until", "retries", "delay", "ignore_errors", "listen",
                 "any_errors_fatal", "block", "rescue", "always", "args", "throttle"}


def tasks_of(node):
    if isinstance(node, list):
        for item in node:
            yield from tasks_of(item)
    elif isinstance(node, dict):
        if any(k in node for k in ("block", "rescue", "always")):
            for key in ("block", "rescue", "always"):
                yield from tasks_of(node.get(key) or [])
        elif any(k in node for k in ("tasks", "pre_tasks", "post_tasks", "handlers")):
            for key in ("tasks", "pre_tasks", "post_tasks", "handlers"):
                yield from tasks_of(node.get(key) or [])
        else:
            yield node


JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)


def hands_over(value, raw=False):
    """Does this value (a template, or a raw expression like assert's that) use a secret's value?"""
    text = yaml.safe_dump(value)
    return bool(SECRET_VALUE.search(text if raw else " ".join(JINJA.findall(text))))


def module_param_is_no_log(module, param):
    path = ROOT / "library" / f"{module.rsplit('.', 1)[-1]}.py"
    if not path.exists():
        return False
    return re.search(rf"\b{param}=dict\([^)]*no_log=True", path.read_text()) is not None


def secret_leaks(task):
    """Places where a task hands a secret's value to something that could print it."""
    hidden = task.get("no_log") not in (None, False, "false")
    leaks = []
    for key, value in task.items():
        if key in ("name", "when", "no_log", "register", "changed_when", "failed_when", "loop_control"):
            continue
        if key in TASK_KEYWORDS:
            if hands_over(value) and not hidden:
                leaks.append(key)
            continue
        args = value if isinstance(value, dict) else {"_raw": value}
        for param, arg in args.items():
            if hands_over(arg, raw=param == "that") and not hidden and not module_param_is_no_log(key, param):
                leaks.append(f"{key}.{param}")
    return leaks


def task_files():
    return sorted(list(ROOT.glob("roles/*/tasks/*.yml")) + list(ROOT.glob("playbooks/*.yml"))
                  + list(ROOT.glob("tests/lab/standin/*.yml")))


def test_every_task_that_hands_over_a_secret_hides_it():
    problems, seen = [], 0
    for path in task_files():
        for task in tasks_of(yaml.safe_load(path.read_text()) or []):
            leaks = secret_leaks(task)
            seen += hands_over(task)
            if leaks:
                problems.append(f"{path.relative_to(ROOT)}: {task.get('name')}: {leaks}")
    assert seen >= 5, "the scan found too few secret mentions: is it looking at the right files?"
    assert problems == []


def test_the_scan_catches_a_leaking_task():
    leaky = {"name": "x", "ansible.builtin.copy": {"content": "{{ serving_api_key }}", "dest": "/x"}}
    assert secret_leaks(leaky) == ["ansible.builtin.copy.content"]
    assert secret_leaks(dict(leaky, no_log=True)) == []
    assert secret_leaks({"name": "y", "ansible.builtin.debug": {"msg": "{{ serving_api_key | length > 0 }}"}}) == []
    assert secret_leaks({"name": "v", "ansible.builtin.assert": {"that": ["serving_api_key == 'x'"]}}) \
        == ["ansible.builtin.assert.that"]
    assert secret_leaks({"name": "u", "ansible.builtin.fail": {"msg": "set serving_api_key"}}) == []
    assert secret_leaks({"name": "z", "serving_smoke": {"api_key": "{{ serving_api_key }}"}}) == []  # no_log param
    assert secret_leaks({"name": "w", "ansible.builtin.command": "echo x", "environment": {"T": "{{ hf_cache_token }}"}}) \
        == ["environment"]


def test_no_secret_goes_through_an_env_file_or_argv_of_the_runtime():
    compose = (ROOT / "roles/serving/templates/compose.yml.j2").read_text()
    assert "serving_api_key_path" in compose.split("secrets:", 2)[-1]  # only the secret's file
    env_files = compose.split("env_file:", 1)[1].split("{% if", 1)[0]
    assert "api" not in env_files
    assert "VLLM_API_KEY" not in compose and "serving_api_key }}" not in compose
    unit = (ROOT / "roles/serving/templates/spark-runtime.service.j2").read_text()
    assert "serving_api_key }}" not in unit
    # the one variable the unit sets: where the pre-start check's package is (no secret)
    assert [line for line in unit.splitlines() if "Environment" in line] == ["Environment=PYTHONPATH={{ spark_lib_dir }}"]


# --------------------------------------------------------------------------- the stand-in's key

def load_standin():
    spec = importlib.util.spec_from_file_location("standin_server_fw", ROOT / "tests/lab/standin/server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_standin_reads_the_key_like_vllm(tmp_path):
    """vLLM reads only VLLM_API_KEY: a key left in the secret file (the launcher did not
    export it) means an open API, in the lab as in production."""
    server = load_standin()
    secret = tmp_path / "api_key"
    secret.write_text("k3y\n")
    assert server.read_api_key({"VLLM_API_KEY": "env-key", "SPARK_API_KEY_FILE": str(secret)}) == "env-key"
    assert server.read_api_key({"SPARK_API_KEY_FILE": str(secret)}) is None
    assert server.read_api_key({}) is None


def test_standin_protects_only_v1_routes():
    server = load_standin()
    api = server.Api("m", api_key="k3y")
    assert server.authorized(api, "/health", None) and server.authorized(api, "/metrics", None)
    assert not server.authorized(api, "/v1/models", None)
    assert not server.authorized(api, "/v1/models", "Bearer nope")
    assert server.authorized(api, "/v1/chat/completions", "Bearer k3y")
    assert server.authorized(server.Api("m"), "/v1/models", None)  # no key: open


def test_client_ports_accept_their_clients_and_loopback_only():
    p = plan(client_ports={"prometheus": {"port": 9090, "clients": ["198.19.0.1", "fd00::/8"]}})
    assert p["client_ports"] == [{"name": "prometheus", "port": 9090, "clients_v4": ["198.19.0.1/32"],
                                  "clients_v6": ["fd00::/8"]}]
    rules = [line.strip() for line in fw.render(p).splitlines()]
    assert "tcp dport 9090 ip saddr { 198.19.0.1/32 } accept" in rules
    assert "tcp dport 9090 ip6 saddr { fd00::/8 } accept" in rules
    assert rules.index("tcp dport 9090 ip6 saddr { fd00::/8 } accept") < rules.index(
        'tcp dport 9090 counter drop comment "prometheus: not a configured client"')
    closed = fw.render(plan(client_ports={"prometheus": {"port": 9090, "clients": []}}))
    assert "tcp dport 9090 counter drop" in closed and "9090 ip saddr" not in closed
    assert "# prometheus tcp 9090: loopback only" in closed


@pytest.mark.parametrize("port, message", [(8888, "already a cluster, API or protected port"),
                                           (29501, "already a cluster"), (22, "already"), ("x", "not a port")])
def test_client_ports_refuse_taken_ports(port, message):
    with pytest.raises(fw.FirewallError, match=message):
        plan(client_ports={"prometheus": {"port": port, "clients": []}})

