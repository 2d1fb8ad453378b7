"""discover.yml in the live lab: from an inventory with only the management addresses
(inventory/lab-mgmt) to an inventory equal to the lab's, which site.yml converges with
(nothing to change: it is the one the lab was converged with); then, with the worker's
cable moved to its other QSFP port, discovery finds the new port (crossed cabling:
refused, then accepted). The nodes are unchanged by discovery; the cabling is put back
at the end and the rails and serving pair come back. Runs in molecule's verify."""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import pytest
import yaml
from conftest import docker_sh as sh, http_get, lab_vars, rails_up, wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
MGMT = ROOT / "inventory" / "lab-mgmt"
NAME = "lab-discovered"
OUT = ROOT / "inventory" / NAME
NODES = ("spark-head", "spark-worker")
SUBNETS = '{"discover_rail_subnets": ["198.18.100.0/24", "198.18.101.0/24"]}'
TIMES = {}


def playbook(*args, timeout=600):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    exe = pathlib.Path(sys.executable).with_name("ansible-playbook")
    t0 = time.monotonic()
    run = subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)
    return run, time.monotonic() - t0


def discover(*extra):
    return playbook("-i", str(MGMT), str(ROOT / "discover.yml"), "-e", f"discover_name={NAME}", "-e", SUBNETS, *extra)


def written_rails():
    inv = yaml.safe_load((OUT / "hosts.yml").read_text())
    rails = {}
    for group in inv["spark"]["children"].values():
        for name, hv in group["hosts"].items():
            rails[name] = hv["spark_rails"]
    return rails


def node_state(container):
    """Links (name, admin/carrier flags, MTU), addresses and routes of a node."""
    return sh(container, "ip -o link show | sed 's/^[0-9]*: //; s/ link\\/.*//' | sort; "
                         "ip -o addr show | awk '{print $2, $4}' | sort; ip route show table all | sort").stdout


def recap(output):
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", output, re.M)}


def lab(*args):
    return subprocess.run([sys.executable, str(ROOT / "lab" / "spark_lab.py"), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module", autouse=True)
def cleanup():
    yield
    shutil.rmtree(OUT, ignore_errors=True)
    (ROOT / "reports" / f"discovery-{NAME}.md").unlink(missing_ok=True)
    (ROOT / "reports" / f"discovery-{NAME}.json").unlink(missing_ok=True)


def test_discovers_the_labs_inventory_and_changes_nothing():
    shutil.rmtree(OUT, ignore_errors=True)
    before = {c: node_state(c) for c in NODES}
    run, TIMES["discover"] = discover()
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert {c: node_state(c) for c in NODES} == before, "discovery changed a node"
    lab_rails = {name: hv["spark_rails"] for name, hv in lab_vars().items()}
    assert written_rails() == lab_rails
    summary = (OUT / "discovery.md").read_text()
    assert "| enp1s0f0np0 | - | 0 | 0000:01 | no | - | (not probed) | - |" in summary
    assert "| enp1s0f1np1 | - | 1 | 0000:01 | yes |" in summary and "spark-worker:enp1s0f1np1" in summary
    print(f"discover.yml: {TIMES['discover']:.1f} s")


def test_site_converges_with_the_discovered_inventory():
    """The discovered inventory passes preflight and site.yml converges with it. In
    molecule's verify the lab is already converged with inventory/lab: the network and
    runtime env plays must change nothing. With SPARK_DISCOVER_FULL=1 (make
    lab-discover, on a fresh lab) the whole site.yml runs from bare nodes."""
    if os.environ.get("SPARK_DISCOVER_FULL"):
        run, seconds = playbook("-i", str(OUT), str(ROOT / "site.yml"), timeout=1800)
        assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
        print(f"site.yml with the discovered inventory, from bare nodes: {seconds:.1f} s")
        return
    run, seconds = playbook("-i", str(OUT), str(ROOT / "site.yml"), "--tags", "qsfp_link,runtime_env")
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "PLAY [QSFP link" in out
    assert recap(out) and all(v == 0 for h, v in recap(out).items() if h in NODES), out[-2500:]
    print(f"site.yml (preflight, qsfp_link, runtime_env) with it: {seconds:.1f} s, changed=0")


def test_finds_the_cable_in_the_other_port():
    hosts = lab_vars()
    api = f"http://{hosts['spark-head']['spark_mgmt_address']}:8888/health"
    serving = http_get(api)[0] == 200
    moved = lab("replug", "--other-port", "spark-worker")
    assert moved.returncode == 0, moved.stderr
    try:
        assert "enp1s0f0np0" in sh("spark-worker", "ip -o link show up | grep LOWER_UP").stdout
        run, _ = discover()
        out = " ".join((run.stdout + run.stderr).split())
        assert run.returncode != 0
        assert ("crossed: spark-head port 1 (enp1s0f1np1, enP2p1s0f1np1) is cabled to spark-worker port 0 "
                "(enp1s0f0np0, enP2p1s0f0np0)") in out, out[-3000:]
        assert "discover_allow_crossed=true" in out
        run, TIMES["moved"] = discover("-e", "discover_allow_crossed=true")
        assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
        rails = written_rails()
        assert [r["interface"] for r in rails["spark-worker"]] == ["enp1s0f0np0", "enP2p1s0f0np0"]
        assert [r["interface"] for r in rails["spark-head"]] == ["enp1s0f1np1", "enP2p1s0f1np1"]
    finally:
        back = lab("replug")
        assert back.returncode == 0, back.stderr
        assert wait_for(lambda: rails_up(hosts), 90) is not None, "rails not back 90 s after the cable went back"
        if serving:  # leave the pair serving for the tests after this one
            assert wait_for(lambda: http_get(api)[0] == 200, 180) is not None, \
                "the serving pair did not come back within 180 s"
