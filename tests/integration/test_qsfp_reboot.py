"""A reboot keeps the rails: restarting a node container (the lab's reboot; the lab
tool plugs the cable back in) brings its QSFP addresses back from the netplan file
through systemd-networkd, without Ansible."""

import json
import pathlib
import subprocess
import sys
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def rails_by_node():
    inv = yaml.safe_load((ROOT / "inventory" / "lab" / "hosts.yml").read_text())
    nodes = {}
    for group in inv["spark"]["children"].values():
        for name, hv in group["hosts"].items():
            nodes[hv.get("ansible_host", name)] = hv["spark_rails"]
    return nodes


def addresses(container, interface):
    out = subprocess.run(["docker", "exec", container, "ip", "-j", "-4", "addr", "show", "dev", interface],
                         capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        return []
    return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(out.stdout) for a in link["addr_info"]]


def test_restarted_node_gets_its_rails_back_without_ansible():
    nodes = rails_by_node()
    started = time.monotonic()
    subprocess.run([sys.executable, str(ROOT / "lab" / "spark_lab.py"), "restart", "spark-worker"],
                   check=True, capture_output=True, timeout=300)
    deadline = time.monotonic() + 60
    missing = None
    while time.monotonic() < deadline:
        missing = [(c, r["interface"]) for c, rails in nodes.items() for r in rails
                   if r["address"] not in addresses(c, r["interface"])]
        if not missing:
            break
        time.sleep(1)
    assert not missing, f"rails without their address 60 s after the reboot: {missing}"
    recovered = time.monotonic() - started
    peer = nodes["spark-head"][0]["address"].split("/")[0]
    ping = subprocess.run(["docker", "exec", "spark-worker", "ping", "-c", "2", "-W", "2", "-M", "do", "-s", "8972", peer],
                          capture_output=True, text=True)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    print(f"rails back {recovered:.1f} s after the restart began")
