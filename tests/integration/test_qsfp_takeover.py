"""DGX OS as users bring it (issue 14): the prepare step seeded, on the worker, an
NVIDIA-style /etc/netplan/40-cx7.yaml with static addresses in other subnets and (where
NetworkManager runs) a hand-made NetworkManager profile on rail 1, and NetworkManager's
own default wired profiles auto-connected the rails. Converge took them over: the file
journaled, the profiles' autoconnect off (not deleted). Here: that state, a foreign
static address refused without qsfp_link_takeover, and a restore that puts everything
back, followed by a converge that takes the rails over again."""

import json
import os
import pathlib
import subprocess
import sys

import time

import yaml
from conftest import docker_sh, http_get, lab_flavour, scenario_extra_vars

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKER = "spark-worker"
JOURNAL = "/var/lib/spark-cluster/qsfp-journal"
RAILS = ["enp1s0f1np1", "enP2p1s0f1np1"]


def playbook(*args, timeout=1200):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    tool = pathlib.Path(sys.executable).with_name("ansible-playbook")
    run = subprocess.run([str(tool), "-i", str(ROOT / "inventory" / "lab"), *scenario_extra_vars(), *args],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)
    return run, run.stdout + run.stderr


def manifests(restored=False):
    """Manifests of the worker's journals: active ones, or (restored=True) restored ones."""
    names = docker_sh(WORKER, f"ls {JOURNAL} 2>/dev/null || true").stdout.split()
    out = []
    for name in names:
        if name.endswith(".restored") == restored:
            text = docker_sh(WORKER, f"cat {JOURNAL}/{name}/manifest.json", check=False).stdout
            if text.strip():
                out.append(dict(json.loads(text), directory=name))
    return out


def ipv4(interface):
    return docker_sh(WORKER, f"ip -4 -o addr show dev {interface} | awk '{{print $4}}'").stdout.split()


def nm_profiles():
    """name -> (autoconnect, device) of every NetworkManager profile on the worker."""
    out = docker_sh(WORKER, "nmcli -t -f NAME,AUTOCONNECT,DEVICE connection show").stdout
    rows = [line.rsplit(":", 2) for line in out.splitlines() if line]
    return {name: (auto, dev) for name, auto, dev in rows}


def test_nvidia_file_was_journaled_and_replaced():
    (manifest,) = [m for m in manifests() if any(f["path"] == "/etc/netplan/40-cx7.yaml" for f in m["files"])]
    entry = next(f for f in manifest["files"] if f["path"] == "/etc/netplan/40-cx7.yaml")
    assert entry["action"] == "move" and entry["mode"] == 0o600
    stored = docker_sh(WORKER, f"cat {JOURNAL}/{manifest['directory']}/{entry['stored']}").stdout
    assert "198.18.110.11/24" in stored
    ours = docker_sh(WORKER, "cat /etc/netplan/40-cx7.yaml").stdout
    assert "(qsfp_link role)" in ours and "198.18.110" not in ours
    assert docker_sh(WORKER, f"stat -c %a {JOURNAL}").stdout.strip() == "700"


def test_networkmanager_profiles_on_the_rails_disabled_not_deleted():
    if lab_flavour(WORKER) != "networkmanager":
        return
    profiles = nm_profiles()
    assert profiles["spark-seed-rail1"][0] == "no"
    for rail in RAILS:
        assert profiles[f"netplan-{rail}"] == ("yes", rail)
    assert profiles["spark-lab-mgmt"] == ("yes", "eth0")
    (manifest,) = [m for m in manifests() if m["nm_profiles"]]
    # NetworkManager's default profiles: those of the rails' ports disabled (and journaled),
    # those of the uncabled ports (a Spark has four) left as NetworkManager made them
    journaled = {p["name"] for p in manifest["nm_profiles"]}
    defaults = {n: v for n, v in profiles.items() if n.startswith("Wired connection")}
    on_rails = sorted(n for n in defaults if n in journaled)
    assert len(on_rails) == len(RAILS), (defaults, journaled)
    assert all(defaults[n][0] == "no" for n in on_rails), defaults
    assert all(auto == "yes" for n, (auto, _dev) in defaults.items() if n not in journaled), defaults
    assert "spark-seed-rail1" in [p["name"] for p in manifest["nm_profiles"]]
    assert "spark-lab-mgmt" not in [p["name"] for p in manifest["nm_profiles"]]


def test_foreign_static_address_is_refused_without_takeover():
    docker_sh(WORKER, "umask 077; printf 'network:\\n  ethernets:\\n    enP2p1s0f1np1:\\n"
                      "      addresses: [198.18.120.11/24]\\n' > /etc/netplan/55-foreign.yaml")
    state = "sha256sum /etc/netplan/*.yaml; ip -4 -o addr show | awk '{print $2, $4}' | sort"
    before = docker_sh(WORKER, state).stdout
    try:
        run, output = playbook(str(ROOT / "site.yml"), "--tags", "qsfp_link", "-e", "qsfp_link_takeover=false")
        after = docker_sh(WORKER, state).stdout
    finally:
        docker_sh(WORKER, "rm -f /etc/netplan/55-foreign.yaml")
    flat = " ".join(output.split())
    assert run.returncode != 0, output[-2000:]
    assert "enP2p1s0f1np1 holds a foreign static address 198.18.120.11/24" in flat, output[-3000:]
    assert "qsfp_link_takeover: true" in flat
    assert "PLAY [QSFP link" not in output, "a play after preflight ran"
    assert after == before


def serving_units():
    """Nodes running the serving unit (default scenario), worker first."""
    return [c for c in (WORKER, "spark-head")
            if docker_sh(c, "systemctl is-enabled spark-runtime", check=False).returncode == 0]


def test_restore_puts_everything_back_then_converge_takes_over_again():
    flavour = lab_flavour(WORKER)
    serving = serving_units()
    for c in serving:  # the rails change under it: stop it rather than let it crash-loop
        docker_sh(c, "systemctl stop spark-runtime")
    run, output = playbook(str(ROOT / "playbooks" / "qsfp-restore.yml"), "--limit", WORKER)
    assert run.returncode == 0, output[-3000:]
    restored = docker_sh(WORKER, "cat /etc/netplan/40-cx7.yaml").stdout
    assert "198.18.110.11/24" in restored and "(qsfp_link role)" not in restored
    assert manifests() == [], "every journal is marked restored"
    assert manifests(restored=True)
    assert "198.18.101.11/24" not in ipv4("enP2p1s0f1np1")
    if flavour == "networkmanager":
        assert nm_profiles()["spark-seed-rail1"][0] == "yes"
        assert ipv4("enp1s0f1np1") == ["198.18.110.11/24"]
        assert ipv4("enP2p1s0f1np1")[0] in ("198.18.111.11/24", "198.18.112.11/24")
        assert "renderer: NetworkManager" in docker_sh(WORKER, "cat /etc/netplan/01-network-manager-all.yaml").stdout
    else:
        assert ipv4("enp1s0f1np1") == ["198.18.110.11/24"]
        assert ipv4("enP2p1s0f1np1") == ["198.18.111.11/24"]

    run, output = playbook(str(ROOT / "site.yml"), "--tags", "qsfp_link")
    assert run.returncode == 0, output[-3000:]
    assert ipv4("enp1s0f1np1") == ["198.18.100.11/24"]
    assert ipv4("enP2p1s0f1np1") == ["198.18.101.11/24"]
    doc = yaml.safe_load(docker_sh(WORKER, "cat /etc/netplan/40-cx7.yaml").stdout)
    assert "renderer" not in doc["network"]
    assert len(manifests()) == 1
    if serving:
        for c in serving:
            docker_sh(c, "systemctl reset-failed spark-runtime; systemctl start --no-block spark-runtime")
        mgmt = yaml.safe_load((ROOT / "inventory" / "lab" / "hosts.yml").read_text())
        head = mgmt["spark"]["children"]["spark_head"]["hosts"]["spark-head"]["spark_mgmt_address"]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and http_get(f"http://{head}:8888/health")[0] != 200:
            time.sleep(3)
        assert http_get(f"http://{head}:8888/health")[0] == 200, "the pair did not serve again in 300 s"
