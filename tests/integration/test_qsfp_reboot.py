"""A reboot keeps the rails: restarting a node container (the lab's reboot; the lab
tool plugs the cable back in) brings its QSFP addresses back from the netplan file
through the renderer (NetworkManager in the DGX OS flavour, systemd-networkd in the
other), without Ansible: our addresses only (no link-local, no DHCP lease), and the
management interface as it was (still NetworkManager's where NetworkManager runs)."""

import json
import pathlib
import subprocess
import sys
import time

import yaml
from conftest import docker_sh, lab_flavour

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


def mgmt_state(container):
    """Default route, eth0's addresses and (where NetworkManager runs) the profile holding eth0."""
    script = ("ip -4 route show default; ip -4 -o addr show dev eth0 | awk '{print $4}'; "
              "nmcli -t -g GENERAL.CONNECTION device show eth0 2>/dev/null || true")
    return docker_sh(container, script).stdout


def test_restarted_node_gets_its_rails_back_without_ansible():
    nodes = rails_by_node()
    flavour = lab_flavour("spark-worker")
    mgmt_before = mgmt_state("spark-worker")
    started = time.monotonic()
    subprocess.run([sys.executable, str(ROOT / "lab" / "spark_lab.py"), "restart", "spark-worker"],
                   check=True, capture_output=True, timeout=300)
    deadline = time.monotonic() + 60
    wrong = None
    while time.monotonic() < deadline:
        wrong = [(c, r["interface"], addresses(c, r["interface"])) for c, rails in nodes.items() for r in rails
                 if addresses(c, r["interface"]) != [r["address"]]]
        if not wrong:
            break
        time.sleep(1)
    assert not wrong, f"rails without exactly their address 60 s after the reboot: {wrong}"
    recovered = time.monotonic() - started
    # a late DHCP lease or link-local address would show up here
    time.sleep(5)
    for r in nodes["spark-worker"]:
        assert addresses("spark-worker", r["interface"]) == [r["address"]]
    peer = nodes["spark-head"][0]["address"].split("/")[0]
    ping = subprocess.run(["docker", "exec", "spark-worker", "ping", "-c", "2", "-W", "2", "-M", "do", "-s", "8972", peer],
                          capture_output=True, text=True)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert mgmt_state("spark-worker") == mgmt_before
    if flavour == "networkmanager":
        devices = docker_sh("spark-worker", "nmcli -t -f DEVICE,STATE,CONNECTION device").stdout
        assert "eth0:connected:spark-lab-mgmt" in devices, devices
        for r in nodes["spark-worker"]:
            assert f"{r['interface']}:connected:netplan-{r['interface']}" in devices, devices
    print(f"rails back {recovered:.1f} s after the restart began ({flavour} flavour)")
