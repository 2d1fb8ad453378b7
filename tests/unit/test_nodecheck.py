"""The node check (module_utils/spark_cluster/monitoring/node_check.py) and the monitoring_config module: what
they write is what the rules of spark_monitoring join on."""

import json

import pytest
from ansible.module_utils.testing import patch_module_args
from prometheus_client.parser import text_string_to_metric_families

from spark_cluster.monitoring import metrics as sm
from spark_cluster.monitoring import node_check as nc

ROUTE_V4 = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
wlP9s9\t00000000\t0100A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
wlP9s9\t0000A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0
enp1s0f1np1\t0064A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""
ROUTE_V6 = """00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 enP7s7
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 enp1s0f1np1
"""


def samples(text):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_default_route_devices_from_proc():
    assert nc.default_route_devices(ROUTE_V4, ROUTE_V6) == ["enP7s7", "wlP9s9"]
    assert nc.default_route_devices(ROUTE_V4.splitlines()[0], "") == []


def test_systemctl_show_parsing():
    assert nc.parse_systemctl_show("NRestarts=3\nActiveState=active\n") == {"restarts": 3, "active": True}
    assert nc.parse_systemctl_show("ActiveState=failed\n") == {"restarts": None, "active": False}


def fake_run(nft_rc=0, shows=None):
    calls = []

    def run(argv):
        calls.append(argv)
        if argv[0].endswith("nft"):
            return nft_rc, ""
        return 0, (shows or {}).get(argv[-1], "NRestarts=0\nActiveState=inactive\n")
    return run, calls


def test_collect_writes_the_series_the_rules_join_on():
    run, calls = fake_run(shows={"spark-runtime.service": "NRestarts=4\nActiveState=active\n"})
    config = {"rails": ["enp1s0f1np1", "enP2p1s0f1np1"], "units": ["spark-runtime.service"]}
    reads = {"/proc/net/route": ROUTE_V4, "/proc/net/ipv6_route": ""}
    text = nc.collect(config, run=run, read=reads.get, clock=lambda: 1700000000.5)
    got = samples(text)
    assert got[(sm.S_RAIL_INFO, (("device", "enp1s0f1np1"), ("rail", "0")))] == 1
    assert got[(sm.S_RAIL_INFO, (("device", "enP2p1s0f1np1"), ("rail", "1")))] == 1
    assert got[(sm.S_MGMT_INFO, (("device", "wlP9s9"),))] == 1
    assert got[(sm.S_FIREWALL, (("table", "inet spark_cluster"),))] == 1
    assert got[(sm.S_RESTARTS, (("unit", "spark-runtime.service"),))] == 4
    assert got[("spark_unit_active", (("unit", "spark-runtime.service"),))] == 1
    assert got[(sm.S_CHECK_TIME, ())] == 1700000000.5
    assert ["/usr/sbin/nft", "list", "table", "inet", "spark_cluster"] in calls


def test_collect_reports_a_missing_table_and_unknown_restarts():
    run, _ = fake_run(nft_rc=1, shows={"x.service": "ActiveState=failed\n"})
    text = nc.collect({"rails": [], "units": ["x.service"]}, run=run, read=lambda p: "", clock=lambda: 1.0)
    got = samples(text)
    assert got[(sm.S_FIREWALL, (("table", "inet spark_cluster"),))] == 0
    assert (sm.S_RESTARTS, (("unit", "x.service"),)) not in got
    assert got[("spark_unit_active", (("unit", "x.service"),))] == 0


def test_main_writes_the_textfile_atomically(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(nc, "_run", fake_run()[0])
    monkeypatch.setattr(nc, "collect", lambda config: nc.render([], [], "inet spark_cluster", True, {}, 5.0))
    cfg = tmp_path / "node-check.json"
    cfg.write_text(json.dumps({"textfile_dir": str(tmp_path), "rails": []}))
    assert nc.main([str(cfg)]) == 0
    out = tmp_path / nc.OUTPUT_NAME
    assert out.stat().st_mode & 0o777 == 0o644
    assert "spark_node_check_timestamp_seconds 5.000" in out.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node-check.json", nc.OUTPUT_NAME]
    assert nc.main([str(tmp_path / "missing.json")]) == 1
    assert nc.main([]) == 2


# --------------------------------------------------------------------------- the module

def run_module(capsys, args):
    import monitoring_config

    with patch_module_args(args), pytest.raises(SystemExit) as info:
        monitoring_config.main()
    return info.value.code, json.loads(capsys.readouterr().out)


def test_module_renders_rules_and_config(capsys):
    code, result = run_module(capsys, {
        "runtime_target": "198.19.0.10:8888", "runtime_node": "spark-head",
        "nodes": {"spark-head": "198.18.100.10/24", "spark-worker": "198.18.100.11/24"},
        "rule_files": ["/etc/prometheus/spark-cluster.rules.yml"], "scrape_interval": "5s",
        "alert_params": {"for_SparkRailDown": "10s"}, "prometheus_target": "127.0.0.1:9090"})
    assert code == 0, result
    assert result["changed"] is False
    jobs = {j["job_name"]: j for j in result["config"]["scrape_configs"]}
    assert [c["targets"][0] for c in jobs["node"]["static_configs"]] == ["198.18.100.10:9100", "198.18.100.11:9100"]
    assert jobs["spark-runtime"]["static_configs"] == [{"targets": ["198.19.0.10:8888"], "labels": {"node": "spark-head"}}]
    alerts = {r["alert"]: r for r in result["rules"]["groups"][1]["rules"]}
    assert alerts["SparkRailDown"]["for"] == "10s"
    assert any(line.startswith("SparkRailDown (critical, for 10s): ") for line in result["alerts"])


@pytest.mark.parametrize("args, message", [
    ({"alert_params": {"for_Nope": "1m"}}, "unknown key 'for_Nope'"),
    ({"nodes": {"spark-head": ""}}, "spark-head has no rail-0 address"),
    ({"nodes": {}}, "no node exporter target"),
    ({"scrape_interval": "fast"}, "not a Prometheus duration"),
])
def test_module_refuses_bad_input(capsys, args, message):
    base = {"nodes": {"spark-head": "198.18.100.10/24"}, "rule_files": ["/r.yml"]}
    code, result = run_module(capsys, dict(base, **args))
    assert code == 1 and message in result["msg"], result


def test_ipv6_rail_addresses_are_bracketed():
    assert sm.node_targets({"a": "fd00::10/64"}, 9100) == [{"target": "[fd00::10]:9100", "node": "a"}]


def test_the_output_name_has_one_owner():
    """spark_nodecheck.py names its output; roles/monitoring asks it (filter), never spells it."""
    import importlib.util
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    path = root / "roles/monitoring/filter_plugins/spark_nodecheck.py"
    spec = importlib.util.spec_from_file_location("monitoring_filter_spark_nodecheck", path)
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    output = plugin.FilterModule().filters()["spark_node_check_output"]
    assert output("/var/lib/prometheus/node-exporter") == f"/var/lib/prometheus/node-exporter/{nc.OUTPUT_NAME}"
    for f in sorted((root / "roles").rglob("*")):  # what acts (meta/ describes, in words)
        if f.is_file() and f.suffix in (".yml", ".j2") and "meta" not in f.parts:
            assert nc.OUTPUT_NAME not in f.read_text(), f"{f.relative_to(root)} spells {nc.OUTPUT_NAME}: use spark_node_check_output"
