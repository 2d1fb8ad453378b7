"""validate-link.yml fails with a clear verdict when a rail is broken, after running
every check, and still writes its report. Each case breaks the lab by hand, runs the
playbook, and restores the rail."""

import json
import os
import pathlib
import subprocess
import sys

import pytest
from conftest import reapply_rail

ROOT = pathlib.Path(__file__).resolve().parents[2]


def sh(container, script):
    return subprocess.run(["docker", "exec", container, "sh", "-c", script], capture_output=True, text=True, check=True)


def validate(report_dir):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    playbook = pathlib.Path(sys.executable).with_name("ansible-playbook")
    run = subprocess.run(
        [str(playbook), "-i", str(ROOT / "inventory" / "lab"), str(ROOT / "validate-link.yml"),
         "-e", f"link_validation_report_dir={report_dir}",
         # the verdicts are what is tested here, not the rates: 1 s per iperf3 run, not 10;
         # the ten pings of each check 50 ms apart, not 200 (the same count, the same
         # thresholds); a server that cannot bind the broken rail's address given 3 s to
         # listen, not 10 (a healthy one listens within a second); no collective probe
         # (no GPU in the lab: it would only say "not measured")
         "-e", "link_validation_iperf3_duration=1",
         "-e", "link_validation_ping_interval=0.05",
         "-e", "link_validation_server_start_timeout=3",
         "-e", "link_validation_collective=false"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600,
    )
    report = json.loads((report_dir / "link-latest.json").read_text())
    return run, report


def restore_rail1():
    sh("spark-worker", "ip link set dev enP2p1s0f1np1 mtu 9000")
    reapply_rail("spark-worker", "enP2p1s0f1np1")
    sh("spark-worker", "for i in $(seq 1 20); do ip -4 -o addr show dev enP2p1s0f1np1 | grep -q 198.18.101.11/24 && exit 0; sleep 0.5; done; exit 1")


@pytest.mark.parametrize(
    "breakage,check",
    [
        ("ip link set dev enP2p1s0f1np1 mtu 1500", "mtu"),
        ("ip addr flush dev enP2p1s0f1np1", "ping"),
    ],
    ids=["mtu_lowered_on_one_end", "rail_address_removed"],
)
def test_broken_rail_fails_with_a_clear_verdict(tmp_path, breakage, check):
    sh("spark-worker", breakage)
    try:
        run, report = validate(tmp_path)
    finally:
        restore_rail1()
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-2000:]
    assert report["verdict"] == "fail"
    assert report["fit_for_tensor_parallel"] is False
    rail0, rail1 = report["rails"]
    assert rail0["verdict"] != "fail", "the healthy rail must not be blamed"
    assert rail1["verdict"] == "fail"
    failed = {c for d in rail1["directions"] for c, v in d["checks"].items() if v["status"] == "fail"}
    assert check in failed, failed
    # every check ran although one failed: TCP was measured on the healthy rail
    assert all(d["checks"]["tcp"]["status"] == "pass" for d in rail0["directions"])
    assert (tmp_path / "link-latest.md").exists() and (tmp_path / "link-latest.png").exists()
