"""The node check: what node exporter cannot see, written for its textfile collector.

Run on every node by ``spark-node-check.timer`` (roles/monitoring), as root::

    PYTHONPATH=/usr/local/lib/spark-cluster python3 -m spark_cluster.node.node_check /etc/spark-cluster/node-check.json

It writes ``<textfile dir>/spark.prom`` (atomically: a temporary file renamed over it)
with the series the alert rules of ``monitoring.metrics`` join with node exporter's:

* ``spark_rail_info{device, rail}`` 1 per QSFP rail of this node (the config lists the
  rails' interfaces in rail order): which
  netdev is which rail, so ``node_network_up`` / ``node_network_mtu_bytes`` of exactly the
  rails are alerted on;
* ``spark_mgmt_interface_info{device}`` 1 per interface carrying a default route (read
  from ``/proc/net/route`` and ``/proc/net/ipv6_route``): the interface that must stay
  quiet while serving;
* ``spark_firewall_table_present{table}`` 1/0: ``nft list table inet spark_cluster``;
* ``spark_unit_restarts_total{unit}`` (systemd's ``NRestarts``) and ``spark_unit_active``;
* ``spark_node_check_timestamp_seconds``: when this was written (staleness alert).

Plain Python 3.11+, stdlib only; the collectors take their inputs as arguments so the unit
tests run them on fixtures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from ..common.fileio import read_text, write_atomic

OUTPUT_NAME = "spark.prom"


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels):
    return ",".join('%s="%s"' % (k, _escape(v)) for k, v in sorted(labels.items()))


def render(rails, mgmt_devices, firewall_table, firewall_present, units, now):
    """The textfile (Prometheus exposition format).

    rails: [{"rail": 0, "device": "enp1s0f1np1"}]; mgmt_devices: ["wlP9s9"];
    units: {"spark-runtime.service": {"restarts": 3, "active": True}} (restarts None:
    unknown, not written)."""
    out = [
        "# HELP spark_rail_info QSFP rail of this node: netdev and rail index.",
        "# TYPE spark_rail_info gauge",
    ]
    out += ["spark_rail_info{%s} 1" % _labels({"device": r["device"], "rail": r["rail"]}) for r in rails]
    out += [
        "# HELP spark_mgmt_interface_info Interface carrying a default route (management).",
        "# TYPE spark_mgmt_interface_info gauge",
    ]
    out += ["spark_mgmt_interface_info{%s} 1" % _labels({"device": d}) for d in sorted(set(mgmt_devices))]
    out += [
        "# HELP spark_firewall_table_present 1 if the cluster's nftables table is loaded.",
        "# TYPE spark_firewall_table_present gauge",
        "spark_firewall_table_present{%s} %d" % (_labels({"table": firewall_table}), 1 if firewall_present else 0),
        "# HELP spark_unit_restarts_total Automatic restarts of the unit (systemd NRestarts).",
        "# TYPE spark_unit_restarts_total counter",
    ]
    out += ["spark_unit_restarts_total{%s} %d" % (_labels({"unit": u}), s["restarts"])
            for u, s in sorted(units.items()) if s.get("restarts") is not None]
    out += [
        "# HELP spark_unit_active 1 if the unit is active.",
        "# TYPE spark_unit_active gauge",
    ]
    out += ["spark_unit_active{%s} %d" % (_labels({"unit": u}), 1 if s.get("active") else 0)
            for u, s in sorted(units.items())]
    out += [
        "# HELP spark_node_check_timestamp_seconds When the node check last wrote this file.",
        "# TYPE spark_node_check_timestamp_seconds gauge",
        "spark_node_check_timestamp_seconds %.3f" % now,
    ]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- collectors

def default_route_devices(route_v4="", route_v6=""):
    """Interfaces with a default route, from /proc/net/route and /proc/net/ipv6_route text."""
    devices = set()
    for line in route_v4.splitlines()[1:]:
        fields = line.split()
        # Iface Destination Gateway Flags RefCnt Use Metric Mask ...
        if len(fields) >= 8 and fields[1] == "00000000" and fields[7] == "00000000":
            devices.add(fields[0])
    for line in route_v6.splitlines():
        fields = line.split()
        # dest dest_len src src_len nexthop metric refcnt use flags iface
        if len(fields) >= 10 and set(fields[0]) == {"0"} and fields[1] == "00" and fields[9] != "lo":
            devices.add(fields[9])
    return sorted(devices)


def parse_systemctl_show(text):
    """``systemctl show -p NRestarts -p ActiveState UNIT`` -> {"restarts", "active"}."""
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    restarts = props.get("NRestarts", "")
    return {"restarts": int(restarts) if restarts.isdigit() else None,
            "active": props.get("ActiveState") == "active"}


def _run(argv):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return 127, ""
    return proc.returncode, proc.stdout


def collect(config, run=_run, read=read_text, clock=time.time):
    family, _, name = config.get("firewall_table", "inet spark_cluster").partition(" ")
    rc, _ = run([config.get("nft", "/usr/sbin/nft"), "list", "table", family, name])
    units = {}
    for unit in config.get("units", []):
        _, out = run(["systemctl", "show", "-p", "NRestarts", "-p", "ActiveState", unit])
        units[unit] = parse_systemctl_show(out)
    return render(
        rails=[{"rail": i, "device": dev} for i, dev in enumerate(config.get("rails", []))],
        mgmt_devices=default_route_devices(read("/proc/net/route") or "", read("/proc/net/ipv6_route") or ""),
        firewall_table="%s %s" % (family, name),
        firewall_present=(rc == 0),
        units=units,
        now=clock())


USAGE = "usage: python3 -m spark_cluster.node.node_check CONFIG.json"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if len(argv) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        with open(argv[0], encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, ValueError) as exc:
        print("spark_nodecheck: cannot read %s: %s" % (argv[0], exc), file=sys.stderr)
        return 1
    path = os.path.join(config["textfile_dir"], OUTPUT_NAME)
    write_atomic(path, collect(config), default_mode=0o644)
    print("spark_nodecheck: wrote %s" % path)
    return 0
