"""Recording and alert rules (module_utils/spark_cluster/monitoring/metrics.py), checked by promtool against
the hand-written series of tests/promtool/, the Grafana dashboard generated from the same
rule names, and the one formula table the benchmark shares with the rules."""

import importlib.util
import json
import pathlib
import re

import pytest
import yaml

from spark_cluster.reports import bench_data as bench
from spark_cluster.monitoring import metrics as sm

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEST_FILE = ROOT / "tests" / "promtool" / "spark_rules_test.yml"


def _load_tool():
    spec = importlib.util.spec_from_file_location("monitoring_files", ROOT / "scripts" / "monitoring_files.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


def promtool_results(tmp_path, rules_text=None, checks=tool.CHECKS):
    return {what: (rc, out) for what, rc, out in tool.run_promtool(tmp_path, rules_text, checks)}


def rule_tests(tmp_path, rules_text):
    """(returncode, output) of promtool test rules on these rules."""
    return promtool_results(tmp_path, rules_text, ("test rules",))["test rules"]


# --------------------------------------------------------------------------- promtool

def test_promtool_checks_and_rule_tests_pass(tmp_path):
    results = promtool_results(tmp_path)
    for what, (rc, out) in results.items():
        assert rc == 0, f"promtool {what} failed:\n{out}"


# Every series name the rules read: renamed in the rules, the hand-written series no longer
# match and a test fails.
SERIES = [sm.M_DRAFTS + "_total", sm.M_DRAFT_TOKENS + "_total", sm.M_ACCEPTED + "_total",
          sm.M_PER_POS + "_total", sm.M_GENERATION + "_total", sm.M_TTFT + "_bucket",
          sm.M_TPOT + "_count", sm.M_TPOT + "_sum", sm.M_RUNNING, sm.M_WAITING,
          sm.N_UP, sm.N_MTU, sm.N_RX, sm.N_TX, sm.N_MEM_AVAILABLE, sm.N_MEM_TOTAL,
          sm.S_RAIL_INFO, sm.S_MGMT_INFO, sm.S_FIREWALL, sm.S_RESTARTS, sm.S_CHECK_TIME]


def test_every_series_name_is_in_the_hand_written_tests():
    text = TEST_FILE.read_text()
    for name in SERIES:
        assert f"'{name}{{" in text, f"{name}: no input series in {TEST_FILE.name}"


@pytest.mark.parametrize("name", SERIES)
def test_a_renamed_metric_fails_the_rule_tests(tmp_path, name):
    rules = tool.rules_yaml()
    assert re.search(re.escape(name) + r"\b", rules)
    mutated = re.sub(re.escape(name) + r"(?![A-Za-z0-9_])", name.replace(":", ":x_", 1)
                     if ":" in name else "x_" + name, rules)
    rc, out = rule_tests(tmp_path, mutated)
    assert rc != 0, f"renaming {name} in the rules went unnoticed:\n{out}"


def _swap_ratio(monkeypatch, name, num, den):
    monkeypatch.setitem(sm.RATIOS, name, (num, den))


@pytest.mark.parametrize("mutate", [
    # the two shared formulas: another denominator, numerator and denominator swapped
    lambda mp: _swap_ratio(mp, "acceptance_rate", sm.M_ACCEPTED, sm.M_DRAFTS),
    lambda mp: _swap_ratio(mp, "mean_accepted_per_draft", sm.M_DRAFTS, sm.M_ACCEPTED),
    lambda mp: _swap_ratio(mp, "mean_accepted_per_draft", sm.M_ACCEPTED, sm.M_DRAFT_TOKENS),
    # thresholds and windows the alerts are tested at
    lambda mp: mp.setitem(sm.DEFAULT_PARAMS, "acceptance_rate_min", 0.01),
    lambda mp: mp.setitem(sm.DEFAULT_PARAMS, "rail_mtu", 1500),
    lambda mp: mp.setitem(sm.DEFAULT_PARAMS, "restarts_per_hour_max", 5),
    lambda mp: mp.setitem(sm.DEFAULT_PARAMS, "memory_available_ratio_min", 0.01),
    lambda mp: mp.setitem(sm.DEFAULT_PARAMS, "mgmt_bytes_per_s_max", 50000000),
    lambda mp: mp.setitem(sm.DEFAULT_PARAMS, "for_SparkRailDown", "15m"),
], ids=["acceptance/drafts", "drafts/accepted", "accepted/draft_tokens", "acceptance_min",
        "mtu", "restarts", "memory", "mgmt_bytes", "rail_for"])
def test_a_changed_formula_fails_the_rule_tests(tmp_path, monkeypatch, mutate):
    mutate(monkeypatch)
    rc, out = rule_tests(tmp_path, tool.rules_yaml())
    assert rc != 0, f"the change went unnoticed:\n{out}"


@pytest.mark.parametrize("old, new", [
    ("histogram_quantile(0.9,", "histogram_quantile(0.95,"),
    ("_count[5m])) / (sum by (model_name) (rate(vllm:request_time_per_output_token_seconds_sum",
     "_sum[5m])) / (sum by (model_name) (rate(vllm:request_time_per_output_token_seconds_count"),
    ("node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
     "node_memory_MemTotal_bytes / node_memory_MemAvailable_bytes"),
    ("unless on (instance, device) (node_network_up == 1)", "unless on (instance, device) node_network_up"),
    ("increase(spark_unit_restarts_total[1h])", "increase(spark_unit_restarts_total[1m])"),
])
def test_an_edited_expression_fails_the_rule_tests(tmp_path, old, new):
    rules = tool.rules_yaml()
    assert old in rules
    rc, out = rule_tests(tmp_path, rules.replace(old, new))
    assert rc != 0, f"{old!r} -> {new!r} went unnoticed:\n{out}"


def test_every_rule_has_a_unit_test():
    tests = yaml.safe_load(TEST_FILE.read_text())
    exprs = " ".join(t["expr"] for case in tests["tests"] for t in case.get("promql_expr_test", []))
    alerts = {e["labels"] for case in tests["tests"] for t in case.get("promql_expr_test", [])
              for e in t.get("exp_samples") or []}
    alert_text = " ".join(alerts)
    for rule in sm.RECORDING_RULES:
        assert rule["record"] in exprs, f"recording rule {rule['record']} has no promql_expr_test"
    for alert in sm.ALERTS:
        assert f'alertname="{alert["alert"]}"' in alert_text, f"alert {alert['alert']} never fires in a test"


# --------------------------------------------------------------------------- rendering

def test_rules_render_the_parameters():
    rules = sm.render_rules({"for_SparkRailDown": "10s", "acceptance_rate_min": 0.2})
    alerts = {r["alert"]: r for r in rules["groups"][1]["rules"]}
    assert alerts["SparkRailDown"]["for"] == "10s"
    assert alerts["SparkAcceptanceCollapsed"]["expr"].endswith("< 0.2")
    assert "{{ $labels.instance }}" in alerts["SparkRailDown"]["annotations"]["summary"]
    assert "{" not in alerts["SparkEngineStalled"]["annotations"]["summary"].replace("{{", "")


@pytest.mark.parametrize("overrides, message", [
    ({"for_SparkNope": "1m"}, "unknown key 'for_SparkNope'"),
    ({"for_SparkRailDown": "soon"}, "not a Prometheus duration"),
    ({"acceptance_rate_min": "high"}, "is not a number"),
    ({"rail_mtu": -1}, "is negative"),
])
def test_bad_parameters_are_refused(overrides, message):
    with pytest.raises(sm.MonitoringError, match=message):
        sm.render_rules(overrides)


def test_every_alert_has_a_for_parameter_and_every_parameter_is_used():
    text = json.dumps(sm.RECORDING_RULES) + json.dumps(sm.ALERTS)
    for key in sm.DEFAULT_PARAMS:
        if key.startswith("for_"):
            assert key[4:] in [a["alert"] for a in sm.ALERTS]
        else:
            assert "{%s}" % key in text, f"parameter {key} is not used by any rule"


def test_prometheus_config_scrapes_runtime_and_every_node():
    cfg = sm.render_prometheus_config(
        [{"target": "127.0.0.1:8888", "node": "h"}],
        [{"target": "192.168.100.10:9100", "node": "h"}, {"target": "192.168.100.11:9100", "node": "w"}],
        ["/etc/prometheus/spark.rules.yml"], scrape_interval="5s")
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert [c["targets"] for c in jobs["node"]["static_configs"]] == [["192.168.100.10:9100"], ["192.168.100.11:9100"]]
    assert jobs["spark-runtime"]["static_configs"][0]["labels"] == {"node": "h"}
    assert cfg["global"]["scrape_interval"] == "5s"
    with pytest.raises(sm.MonitoringError, match="not a Prometheus duration"):
        sm.render_prometheus_config([], [{"target": "x:1", "node": "h"}], [], scrape_interval="often")
    with pytest.raises(sm.MonitoringError, match="no node exporter target"):
        sm.render_prometheus_config([], [], [])


# --------------------------------------------------------------------------- dashboard

def test_committed_dashboard_is_generated_from_the_rules():
    assert tool.DASHBOARD.read_text() == sm.dashboard_json(), (
        "docs/grafana/spark-cluster.json differs from the rules: run "
        "scripts/monitoring_files.py dashboard")
    assert tool.main(["dashboard", "--check"]) == 0


def test_dashboard_queries_only_recorded_series():
    records = {r["record"] for r in sm.RECORDING_RULES}
    dash = json.loads(tool.DASHBOARD.read_text())
    queried = set()
    for panel in dash["panels"]:
        for target in panel["targets"]:
            name = target["expr"].split("{")[0]
            assert name in records, f"panel {panel['title']!r} queries {name}, not a recording rule"
            queried.add(name)
    assert queried == records
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


# --------------------------------------------------------------------------- one formula table

def test_bench_computes_the_ratios_of_the_recording_rules():
    delta = {"drafts": 10.0, "draft_tokens": 50.0, "accepted_tokens": 12.0, "per_pos": {"0": 7.0, "1": 5.0}}
    rates = bench.spec_rates(delta)
    assert rates["acceptance_rate"] == pytest.approx(0.24)       # the promtool test's 0.24
    assert rates["mean_accepted_per_draft"] == pytest.approx(1.2)  # and its 1.2
    assert rates["per_position"] == {"0": pytest.approx(0.7), "1": pytest.approx(0.5)}
    assert set(sm.RATIOS) <= set(rates)
    for name, (num, den) in sm.RATIOS.items():
        assert bench.FORMULAS[name] == f"d({num}) / d({den})"
        rule = next(r for r in sm.RECORDING_RULES if r.get("ratio") == name)
        expr = sm._one_line(sm.recording_expr(rule))
        assert expr.index(num) < expr.index("/ (") < expr.index(den)


def test_bench_follows_the_table(monkeypatch):
    monkeypatch.setitem(sm.RATIOS, "acceptance_rate", (sm.M_ACCEPTED, sm.M_DRAFTS))
    rates = bench.spec_rates({"drafts": 10.0, "draft_tokens": 50.0, "accepted_tokens": 12.0})
    assert rates["acceptance_rate"] == pytest.approx(1.2)


def test_monitoring_doc_names_every_alert_and_recorded_series():
    doc = (ROOT / "docs" / "monitoring.md").read_text()
    for alert in sm.ALERTS:
        assert f"`{alert['alert']}`" in doc, f"docs/monitoring.md does not say what {alert['alert']} means"
    for rule in sm.RECORDING_RULES:
        assert f"`{rule['record']}`" in doc, f"docs/monitoring.md does not list {rule['record']}"
