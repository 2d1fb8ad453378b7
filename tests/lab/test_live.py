"""Live checks of a running lab (`lab/spark_lab.py up` first). Needs root and docker.

Run:  SPARK_LAB_LIVE=1 python -m pytest tests/lab/test_live.py
Skipped otherwise. Order matters (the restart test comes last); addresses added here
are temporary (198.18.100.0/24, 198.18.101.0/24, lab-only) and removed afterwards.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("SPARK_LAB_LIVE") != "1",
                                reason="live lab tests: set SPARK_LAB_LIVE=1 after `spark_lab.py up`")

_PATH = Path(__file__).resolve().parents[2] / "lab" / "spark_lab.py"
_spec = importlib.util.spec_from_file_location("spark_lab", _PATH)
lab = importlib.util.module_from_spec(_spec)
sys.modules["spark_lab"] = lab
_spec.loader.exec_module(lab)


@pytest.fixture(scope="module")
def topo():
    return lab.plan_topology(lab.load_inventory(lab.DEFAULT_INVENTORY))


def sh(container: str, cmd: str, check: bool = True, timeout: float = 180) -> str:
    res = subprocess.run(["docker", "exec", container, "sh", "-c", cmd],
                         text=True, capture_output=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{container}: {cmd}: rc {res.returncode}\n{res.stdout}{res.stderr}")
    return res.stdout


def test_systemd_running(topo):
    for n in topo.nodes:
        assert sh(n.container, "systemctl is-system-running", check=False).strip() == "running"


def test_rails_up_mtu_no_address(topo):
    for n in topo.nodes:
        links = {l["ifname"]: l for l in json.loads(sh(n.container, "ip -j addr show"))}
        for ifname in n.rails:
            l = links[ifname]
            assert "UP" in l["flags"] and "LOWER_UP" in l["flags"]
            assert l["mtu"] == topo.mtu
            assert [a for a in l.get("addr_info", []) if a["family"] == "inet"] == []


def test_default_route_is_mgmt(topo):
    for n in topo.nodes:
        routes = json.loads(sh(n.container, "ip -j route show default"))
        assert [(r["gateway"], r["dev"]) for r in routes] == [(lab.GATEWAY, "eth0")]


def test_python_pyroute2(topo):
    for n in topo.nodes:
        sh(n.container, "python3 -c 'import pyroute2, yaml'")


def test_nested_docker(topo):
    n = topo.nodes[0]
    sh(n.container, "docker info --format '{{.Driver}}' | grep -qx vfs")
    sh(n.container, "docker compose version")
    sh(n.container, "docker image inspect spark-lab-base >/dev/null 2>&1 || "
                    "docker import /opt/spark-lab/base-rootfs.tar spark-lab-base")
    assert sh(n.container, "docker run --rm --network host spark-lab-base python3 -c 'print(1)'").strip() == "1"
    assert sh(n.container, "docker run --rm spark-lab-base python3 -c 'print(2)'").strip() == "2"


@pytest.fixture
def rail_addresses(topo):
    """Temporary rail addresses: 198.18.(100+rail).(10+rank)/24."""
    added = []
    for rank, n in enumerate(topo.nodes):
        for i, ifname in enumerate(n.rails):
            addr = f"198.18.{100 + i}.{10 + rank}"
            sh(n.container, f"ip addr add {addr}/24 dev {ifname}")
            added.append((n.container, ifname, addr))
    yield added
    for container, ifname, addr in added:
        sh(container, f"ip addr del {addr}/24 dev {ifname}", check=False)


def test_jumbo_ping_and_iperf_each_rail(topo, rail_addresses):
    a, b = topo.nodes[0], topo.nodes[1]
    for i in range(len(a.rails)):
        dst = f"198.18.{100 + i}.11"
        sh(a.container, f"ping -c 2 -W 2 -M do -s {topo.mtu - 28} {dst}")
        out = sh(a.container, f"ping -c 1 -W 2 -M do -s {topo.mtu - 27} {dst}", check=False)
        assert " 0% packet loss" not in out
    sh(b.container, "iperf3 -s -1 -D -B 198.18.100.11 && sleep 0.5")
    res = json.loads(sh(a.container, "iperf3 -J -t 2 -c 198.18.100.11 -B 198.18.100.10"))
    assert res["end"]["sum_received"]["bits_per_second"] > 1e9


def test_restart_worker_replugs(topo):
    w = topo.nodes[-1]
    subprocess.run([sys.executable, str(_PATH), "restart", w.name], check=True)
    for n in topo.nodes:
        links = {l["ifname"]: l for l in json.loads(sh(n.container, "ip -j link show"))}
        for ifname in n.rails:
            assert "LOWER_UP" in links[ifname]["flags"] and links[ifname]["mtu"] == topo.mtu
    out = subprocess.run([sys.executable, str(_PATH), "replug"], check=True,
                         capture_output=True, text=True)
    assert "nothing changed" in out.stderr
