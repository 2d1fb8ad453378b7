"""Monitoring on the live lab (roles/monitoring): Prometheus on the head's loopback scrapes
the stand-in runtime and both node exporters over rail 0, the rules record values, and the
rail-down alert fires when a rail is taken down (and clears when it comes back)."""

import json
import os
import pathlib
import re
import subprocess
import time
import urllib.parse

import pytest
import yaml

from conftest import lab_vars as inventory_vars
from test_faults import record, wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
# SPARK_LAB_INVENTORY: another lab inventory (same group_vars), e.g. a private copy
INVENTORY = pathlib.Path(os.environ.get("SPARK_LAB_INVENTORY", ROOT / "inventory" / "lab"))
HEAD = "spark-head"
WORKER = "spark-worker"
PROM = "http://127.0.0.1:9090"


def lab_vars():
    return inventory_vars(INVENTORY)


def sh(name, script, check=True, timeout=120):
    """Run a shell command on a lab node (by inventory name) through docker exec."""
    container = lab_vars()[name].get("ansible_host", name)
    return subprocess.run(["docker", "exec", container, "sh", "-c", script],
                          capture_output=True, text=True, check=check, timeout=timeout)


def rail_addresses_back(hosts):
    return all(rail["address"] in sh(name, f"ip -4 -o addr show dev {rail['interface']}", check=False).stdout
               for name, hv in hosts.items() for rail in hv["spark_rails"])


def monitoring_vars():
    return yaml.safe_load((INVENTORY / "group_vars" / "spark" / "monitoring.yml").read_text())


pytestmark = pytest.mark.skipif(not monitoring_vars().get("monitoring_enabled"),
                                reason="monitoring_enabled is false in the lab inventory")


def prom(path, **params):
    """GET the head's Prometheus API from inside the head (it listens on its loopback only)."""
    url = PROM + path + ("?" + urllib.parse.urlencode(params) if params else "")
    out = sh(HEAD, f"curl -sf --max-time 5 '{url}'", check=False)
    assert out.returncode == 0, f"Prometheus on {HEAD} did not answer {url}: {out.stderr}"
    data = json.loads(out.stdout)
    assert data["status"] == "success", data
    return data["data"]


def query(expr):
    return prom("/api/v1/query", query=expr)["result"]


def listeners(container, port):
    out = sh(container, f"ss -ltnH 'sport = :{port}'").stdout
    return sorted({line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()})


def test_prometheus_listens_on_the_head_loopback_only():
    assert listeners(HEAD, 9090) == ["127.0.0.1"]
    assert sh(WORKER, "systemctl is-active prometheus", check=False).stdout.strip() != "active"


def test_node_exporter_listens_on_rail0_only_and_the_firewall_keeps_it_on_the_rails():
    for name, hv in lab_vars().items():
        rail0 = hv["spark_rails"][0]["address"].split("/")[0]
        assert listeners(name, 9100) == [rail0], f"{name}: node exporter not bound to rail 0 only"
        table = sh(name, "nft -n list table inet spark_cluster").stdout
        rail_ports = table.split("set rail_tcp_ports", 1)[1].split("}", 1)[0]
        assert re.search(r"\b9100\b", rail_ports), f"{name}: 9100 is not a rail-only port:\n{table}"
        # nothing answers on the management address
        mgmt = hv["spark_mgmt_address"]
        assert sh(HEAD if name != HEAD else WORKER,
                  f"curl -s --max-time 3 http://{mgmt}:9100/metrics", check=False).returncode != 0


def test_every_target_is_up():
    hosts = lab_vars()
    expected = {f"http://{hv['spark_rails'][0]['address'].split('/')[0]}:9100/metrics" for hv in hosts.values()}
    expected.add(f"http://{hosts[HEAD]['spark_mgmt_address']}:8888/metrics")
    expected.add(f"{PROM}/metrics")
    state = {}

    def all_up():
        targets = prom("/api/v1/targets", state="active")["activeTargets"]
        state.clear()
        state.update({t["scrapeUrl"]: (t["health"], t.get("lastError")) for t in targets})
        return set(state) == expected and all(h == "up" for h, _ in state.values())

    assert wait_for(all_up, 60) is not None, f"targets not all up: {state}, expected {sorted(expected)}"


def test_rules_record_from_the_runtime_and_the_node_check():
    hosts = lab_vars()
    assert {r["metric"]["node"] for r in query("spark:memory_available:ratio")} == set(hosts)
    assert all(0 < float(r["value"][1]) <= 1 for r in query("spark:memory_available:ratio"))
    rails = query("spark_rail_info")
    assert len(rails) == sum(len(hv["spark_rails"]) for hv in hosts.values())
    assert {r["metric"]["node"] for r in query("spark_firewall_table_present == 1")} == set(hosts)
    mgmt = query("spark_mgmt_interface_info")
    assert {r["metric"]["device"] for r in mgmt} == {"eth0"}, mgmt
    assert query("spark:requests_running:sum"), "no requests-running series from the runtime"
    assert query("vllm:spec_decode_num_drafts_total"), "the runtime's spec-decode counters are not scraped"
    # what a healthy lab must not show (restarts and target blips can follow the fault tests)
    healthy = ("SparkRailDown", "SparkRailMtuWrong", "SparkFirewallTableMissing", "SparkNodeCheckStale",
               "SparkManagementTrafficWhileServing", "SparkEngineStalled")
    firing = [r["metric"] for r in query('ALERTS{alertstate="firing"}') if r["metric"]["alertname"] in healthy]
    assert not firing, f"alerts fire on a healthy lab: {firing}"


def test_rail_down_fires_its_alert_and_clears():
    hosts = lab_vars()
    worker = hosts[WORKER]
    iface = worker["spark_rails"][-1]["interface"]   # not rail 0: Prometheus scrapes over it
    rail = str(len(worker["spark_rails"]) - 1)
    firing = (f'ALERTS{{alertname="SparkRailDown",alertstate="firing",node="{WORKER}",'
              f'device="{iface}",rail="{rail}"}}')
    sh(WORKER, f"ip link set dev {iface} down")
    t0 = time.monotonic()
    try:
        fired = wait_for(lambda: bool(query(firing)), 90)
    finally:
        sh(WORKER, f"ip link set dev {iface} up")
    t1 = time.monotonic()
    cleared = wait_for(lambda: not query('ALERTS{alertname="SparkRailDown"}'), 90)
    rails_back = wait_for(lambda: rail_addresses_back(hosts), 90)
    record("monitoring_rail_down_alert", interface=iface, fired_after_s=fired,
           for_s=monitoring_vars()["monitoring_alert_params"]["for_SparkRailDown"],
           cleared_after_s=cleared, rails_back_after_s=rails_back,
           total_s=round(time.monotonic() - t0, 1), down_s=round(t1 - t0, 1))
    assert fired is not None, "SparkRailDown did not fire within 90 s of the rail going down"
    assert cleared is not None, "SparkRailDown did not clear within 90 s of the rail coming back"
    assert rails_back is not None, "the rail did not come back with its addresses"


@pytest.mark.parametrize("name", [HEAD, WORKER])
def test_node_check_writes_its_file_often(name):
    text = sh(name, "cat /var/lib/prometheus/node-exporter/spark.prom").stdout
    stamp = float(next(l for l in text.splitlines() if l.startswith("spark_node_check_timestamp_seconds")).split()[1])
    now = float(sh(name, "date +%s").stdout)
    assert now - stamp < 30, f"{name}: the node check last wrote {now - stamp:.0f} s ago"
    assert 'spark_unit_restarts_total{unit="spark-runtime.service"}' in text
