"""The status table (module_utils/spark_cluster/reports/status.py)."""

import datetime

from spark_cluster.monitoring import metrics as sm
from spark_cluster.reports import status as st

RAILS = [{"interface": "enp1s0f1np1", "address": "192.168.100.10/24"},
         {"interface": "enP2p1s0f1np1", "address": "192.168.101.10/24"}]
IP = [
    {"ifname": "enp1s0f1np1", "operstate": "UP", "mtu": 9000, "flags": ["UP", "LOWER_UP"],
     "addr_info": [{"family": "inet", "local": "192.168.100.10", "prefixlen": 24},
                   {"family": "inet6", "local": "fe80::1", "prefixlen": 64}]},
    {"ifname": "enP2p1s0f1np1", "operstate": "DOWN", "mtu": 1500, "flags": ["UP"], "addr_info": []},
]


def test_rails_state():
    rails = st.rails_state(IP, RAILS + [{"interface": "gone0", "address": "10.0.0.1/24"}])
    assert rails[0] == {"interface": "enp1s0f1np1", "expected": "192.168.100.10/24",
                        "addresses": ["192.168.100.10/24"], "mtu": 9000, "state": "UP", "ok": True}
    assert not rails[1]["ok"] and rails[1]["state"] == "DOWN"
    assert rails[2]["state"] == "missing"


def test_gid_in_force():
    assert st.gid_in_force("NCCL_IB_HCA=rocep1s0f1\nNCCL_IB_GID_INDEX=3\n") == "3"
    assert st.gid_in_force("NCCL_IB_DISABLE=1\n").startswith("none")
    assert st.gid_in_force("NCCL_IB_HCA=a,b\n").startswith("per device")
    assert st.gid_in_force(None) == "no env file"


def test_starts_last_hour():
    journal = ("Starting spark-runtime.service...\nStarted spark-runtime.service - Spark.\n"
               "spark-runtime.service: Scheduled restart job, restart counter is at 1.\n"
               "Started spark-runtime.service - Spark.\n")
    assert st.starts_last_hour(journal) == 2


def node(host, role, unit_state="active/running", rails=None, api=None):
    n = {"host": host, "role": role, "unit": "spark-runtime.service", "unit_state": unit_state,
         "rails": rails if rails is not None else st.rails_state(IP[:1], RAILS[:1]), "gid_index": "3",
         "image_id": "sha256:" + "a" * 64, "starts_last_hour": 1, "memory": {"total_gib": 119.7, "available_gib": 20.1},
         "watchdog": "ok: probe token after 0.10 s"}
    if api is not None:
        n["api"] = api
    return n


def test_report_serving_and_markdown():
    cell = {"thinking": "off", "prompt_tokens": 256, "concurrency": 1, "per_stream_tok_s": 82.6,
            "aggregate_tok_s": 82.6}
    bench = {"generated_at": "2026-11-29T10:00:00Z", "cells": [
        cell, dict(cell, concurrency=6, per_stream_tok_s=35.9, aggregate_tok_s=162.0),
        dict(cell, prompt_tokens=2048, per_stream_tok_s=64.6),
        dict(cell, thinking="on", per_stream_tok_s=70.04)]}
    report = st.build_report([node("h", "head", api={"health": 200, "models": ["m"]}), node("w", "worker")], bench,
                             {"verdict": "pass", "generated_at": "2026-11-29T09:00:00Z"},
                             datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.timezone.utc))
    assert report["verdict"] == "serving" and report["problems"] == []
    assert report["bench"] == ("thinking OFF 256 tok c=1 82.6 tok/s, c=6 aggregate 162 tok/s; "
                               "thinking ON 256 tok c=1 70.0 tok/s (2026-11-29T10:00:00Z)")
    md = st.render_markdown(report)
    assert "| h | head | enp1s0f1np1 UP 192.168.100.10/24 mtu 9000 | 3 |" in md
    assert "- head `/v1/models`: m" in md and "- last link report: pass" in md


def test_report_degraded_names_the_problems():
    report = st.build_report([node("h", "head", unit_state="failed/failed", api={"health": 0}),
                              node("w", "worker", rails=st.rails_state(IP[1:], RAILS[1:]))])
    assert report["verdict"] == "degraded"
    assert any("h: spark-runtime.service is failed/failed" in p for p in report["problems"])
    assert any("w: rail enP2p1s0f1np1 DOWN" in p for p in report["problems"])
    assert any("/health answered nothing" in p for p in report["problems"])
    assert report["bench"] == "none"


# A Prometheus 2.x instant query for spark_monitoring.RECORDED_SELECTOR, shaped like the
# head's answer (GET /api/v1/query): TTFT quantiles, a NaN acceptance (no drafts in the
# window), a series of another rule set that must be left out.
PROM_QUERY = {"status": "success", "data": {"resultType": "vector", "result": [
    {"metric": {"__name__": "spark:time_to_first_token_seconds:quantile", "model_name": "m", "quantile": "0.9"},
     "value": [1764460800.0, "0.412"]},
    {"metric": {"__name__": "spark:memory_available:ratio", "instance": "192.168.100.11:9100", "job": "node",
                "node": "spark-worker"}, "value": [1764460800.0, "0.21"]},
    {"metric": {"__name__": "spark:generation_tokens:rate1m", "model_name": "m"}, "value": [1764460800.0, "35.4"]},
    {"metric": {"__name__": "spark:spec_decode_acceptance_rate:ratio", "model_name": "m"},
     "value": [1764460800.0, "NaN"]},
    {"metric": {"__name__": "spark:time_to_first_token_seconds:quantile", "model_name": "m", "quantile": "0.5"},
     "value": [1764460800.0, "0.2"]},
    {"metric": {"__name__": "spark:something_else:sum"}, "value": [1764460800.0, "1"]},
]}}
PROM_ALERTS = {"status": "success", "data": {"alerts": [
    {"labels": {"alertname": "SparkRailDown", "node": "spark-worker", "severity": "critical"}, "state": "firing"},
    {"labels": {"alertname": "SparkEngineStalled", "severity": "critical"}, "state": "pending"},
    {"labels": {"alertname": "Watchdog"}, "state": "firing"},
]}}


def test_recorded_values_in_rule_order_nan_as_no_data():
    rows = sm.recorded_values(PROM_QUERY["data"]["result"])
    assert [r["record"] for r in rows] == [
        "spark:generation_tokens:rate1m", "spark:spec_decode_acceptance_rate:ratio",
        "spark:time_to_first_token_seconds:quantile", "spark:time_to_first_token_seconds:quantile",
        "spark:memory_available:ratio"]
    assert rows[1]["value"] is None
    assert [r["labels"] for r in rows[2:]] == ["quantile=0.5", "quantile=0.9", "node=spark-worker"]


def test_firing_alerts_only_the_projects_and_only_firing():
    assert sm.firing_alerts(PROM_ALERTS["data"]["alerts"]) == ["SparkRailDown (spark-worker)"]
    assert sm.firing_alerts(None) == []


def test_report_shows_recorded_metrics_and_firing_alerts_degrade():
    metrics = {"prometheus": "http://127.0.0.1:9090", "values": sm.recorded_values(PROM_QUERY["data"]["result"]),
               "alerts": sm.firing_alerts(PROM_ALERTS["data"]["alerts"])}
    head = node("h", "head", api={"health": 200, "models": ["m"]})
    head["metrics"] = metrics
    report = st.build_report([head, node("w", "worker")])
    assert report["verdict"] == "degraded"
    assert "alert firing: SparkRailDown (spark-worker)" in report["problems"]
    md = st.render_markdown(report)
    assert "## Recorded metrics (Prometheus http://127.0.0.1:9090)" in md
    assert "| `spark:generation_tokens:rate1m` | - | 35.4 |" in md
    assert "| `spark:spec_decode_acceptance_rate:ratio` | - | no data |" in md
    assert "| `spark:memory_available:ratio` | node=spark-worker | 0.21 |" in md


def test_report_says_when_prometheus_did_not_answer():
    head = node("h", "head", api={"health": 200, "models": ["m"]})
    head["metrics"] = {"prometheus": "http://127.0.0.1:9090", "error": "HTTP no answer: Connection refused"}
    md = st.render_markdown(st.build_report([head]))
    assert "Prometheus did not answer: HTTP no answer: Connection refused" in md
    assert "Recorded metrics" not in st.render_markdown(st.build_report([node("h", "head")]))
