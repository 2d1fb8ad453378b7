"""A wrong inventory fails in preflight, with a message naming the problem, and no
host is changed. Runs against the live lab after converge: each node's netplan file,
addresses, /etc/hosts, /etc/spark-cluster (contents and modes), nft ruleset and
spark units must be exactly as before, and the recap must say changed=0 everywhere."""

import copy
import difflib
import os
import re
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAB = ROOT / "inventory" / "lab"


def load_lab():
    return yaml.safe_load((LAB / "hosts.yml").read_text())


def hosts_of(inv):
    groups = inv["spark"]["children"]
    return groups["spark_head"]["hosts"], groups["spark_workers"]["hosts"]


def two_heads(inv):
    heads, workers = hosts_of(inv)
    heads["spark-worker"] = workers.pop("spark-worker")
    return inv


def no_worker(inv):
    _, workers = hosts_of(inv)
    workers.clear()
    return inv


def duplicate_address(inv):
    heads, workers = hosts_of(inv)
    workers["spark-worker"]["spark_rails"][0]["address"] = heads["spark-head"]["spark_rails"][0]["address"]
    return inv


def rails_in_one_subnet(inv):
    for group in hosts_of(inv):
        for node in group.values():
            node["spark_rails"][1]["address"] = node["spark_rails"][1]["address"].replace(".101.", ".100.").replace(".10/", ".20/").replace(".11/", ".21/")
    return inv


def wrong_interface(inv):
    _, workers = hosts_of(inv)
    workers["spark-worker"]["spark_rails"][0]["interface"] = "enP7s7"
    return inv


def rail_on_management(inv):
    heads, workers = hosts_of(inv)
    heads["spark-head"]["spark_rails"][0]["address"] = "198.19.0.50/24"
    workers["spark-worker"]["spark_rails"][0]["address"] = "198.19.0.51/24"
    return inv


def mtu_out_of_range(inv):
    _, workers = hosts_of(inv)
    workers["spark-worker"]["spark_mtu"] = 9600
    return inv


def serving_env_repins_gloo(inv):
    """Compose's environment: wins over the env file: a pinned key there is refused."""
    heads, _ = hosts_of(inv)
    heads["spark-head"]["serving_environment"] = {"GLOO_SOCKET_IFNAME": "eth0"}
    return inv


def serving_env_carries_a_token(inv):
    heads, _ = hosts_of(inv)
    heads["spark-head"]["serving_environment"] = {"HF_TOKEN": "hf_not_a_real_token"}
    return inv


def missing_head(inv):
    heads, _ = hosts_of(inv)
    heads.clear()
    return inv


ZEROS = "sha256:" + "0" * 64


def lab_registry_tag():
    """The stand-in image's tag in the head's registry (lab/prepare.yml wrote its digest)."""
    ref = (ROOT / ".cache" / "lab-runtime-image.ref").read_text().strip()
    return ref.split("@")[0]


def pull(inv, ref):
    heads, workers = hosts_of(inv)
    for node in list(heads.values()) + list(workers.values()):
        node["runtime_image_source"] = "pull"
        node["runtime_image_pull_ref"] = ref
    return inv


def pull_wrong_digest(inv):
    """The registry's tag names another digest than the pin."""
    return pull(inv, f"{lab_registry_tag()}@{ZEROS}")


def pull_image_missing(inv):
    return pull(inv, f"127.0.0.1:5000/spark/no-such-image@{ZEROS}")


def pull_registry_down(inv):
    """Nothing listens there: as a registry that is down."""
    return pull(inv, f"127.0.0.1:5999/anemll/dspark-vllm-gx10:0.1.1-standin@{ZEROS}")


def pull_by_tag(inv):
    return pull(inv, lab_registry_tag())


CASES = [
    (two_heads, "expected exactly one head"),
    (no_worker, "expected at least one worker"),
    (duplicate_address, "spark_rails[0].address is 198.18.100.10; expected an address no other node or rail uses"),
    (rails_in_one_subnet, "expected each rail on its own subnet"),
    (wrong_interface, "spark-worker: spark_rails[0].interface is 'enP7s7' (not on this host)"),
    (rail_on_management, "overlapping the management network 198.19.0.0/24"),
    (mtu_out_of_range, "spark-worker: spark_mtu is 9600; expected an integer from 1280 to 9216"),
    (missing_head, "groups.spark_head is 0 host(s) []; expected exactly one head"),
    (serving_env_repins_gloo, "spark-head: serving_environment.GLOO_SOCKET_IFNAME is set; expected not set here. "
                              "setting GLOO_SOCKET_IFNAME would override a pinned key"),
    (serving_env_carries_a_token, "spark-head: serving_environment.HF_TOKEN is set; expected not set here. "
                                  "setting HF_TOKEN looks like a secret"),
    # the pull source (runtime_image_source pull): each refused in preflight, nothing pulled or tagged
    (pull_wrong_digest, "wrong digest: 127.0.0.1:5000/anemll/dspark-vllm-gx10:0.1.1-standin is sha256:"),
    (pull_image_missing, "image missing: registry 127.0.0.1:5000/spark/no-such-image has no manifest"),
    (pull_registry_down, "registry 127.0.0.1:5999 cannot be reached"),
    (pull_by_tag, "a pull names its image by digest"),
]

# What preflight must leave as it found it on each node (after converge). The ruleset is
# read stateless (-s): rule counters move with any traffic (Prometheus scrapes every few seconds).
# Timer-driven oneshot services (the head's spark-watchdog.service, spark-node-check.service)
# go activating/inactive on their own every interval, and their timers running/waiting:
# the services' run state and the timers' sub-state are not compared (their unit files,
# load and active states are).
STATE_SCRIPT = r"""
sha256sum /etc/netplan/40-cx7.yaml /etc/hosts 2>&1
find /etc/spark-cluster -exec stat -c '%n %a %U:%G %s' {} + 2>&1 | sort
find /etc/spark-cluster -type f -exec sha256sum {} + 2>&1 | sort
nft -s list ruleset 2>&1 | sha256sum
systemctl list-unit-files --no-legend 'spark*' 2>&1 | sort
systemctl list-units --all --no-legend --plain 'spark*' 2>&1 | awk '{print $1}' | sort | while read -r u; do
  if [ "$(systemctl show -p Type --value "$u")" = oneshot ]; then echo "$u $(systemctl show -p LoadState --value "$u") oneshot";
  elif [ "${u%.timer}" != "$u" ]; then echo "$u $(systemctl show -p LoadState -p ActiveState --value "$u" | tr '\n' ' ')";
  else echo "$u $(systemctl show -p LoadState -p ActiveState -p SubState --value "$u" | tr '\n' ' ')"; fi
done
ip -4 -o addr show | awk '{print $2, $4}' | sort
"""
RECAP_RE = re.compile(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", re.M)


def node_state(container):
    out = subprocess.run(["docker", "exec", container, "sh", "-c", STATE_SCRIPT],
                         capture_output=True, text=True, check=True)
    return out.stdout


@pytest.mark.parametrize("mutate,message", CASES, ids=[c[0].__name__ for c in CASES])
def test_bad_inventory_fails_in_preflight_and_changes_nothing(tmp_path, mutate, message):
    inv_dir = tmp_path / "inventory"
    shutil.copytree(LAB / "group_vars", inv_dir / "group_vars")
    (inv_dir / "hosts.yml").write_text(yaml.safe_dump(mutate(copy.deepcopy(load_lab()))))

    before = {c: node_state(c) for c in ("spark-head", "spark-worker")}
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    playbook = pathlib.Path(sys.executable).with_name("ansible-playbook")
    run = subprocess.run(
        [str(playbook), "-i", str(inv_dir), str(ROOT / "site.yml")],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600,
    )
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert message in " ".join(output.split()), output[-3000:]
    assert "PLAY [QSFP link" not in output, "a play after preflight ran"
    recap = output[output.rindex("PLAY RECAP"):]
    changed = dict(RECAP_RE.findall(recap))
    assert changed and set(changed.values()) == {"0"}, recap
    after = {c: node_state(c) for c in ("spark-head", "spark-worker")}
    for container in before:
        assert "/etc/spark-cluster/runtime.env" in before[container]  # converged before
        diff = "\n".join(difflib.unified_diff(before[container].splitlines(), after[container].splitlines(),
                                             "before", "after", lineterm="", n=0))
        assert after[container] == before[container], f"{container} changed:\n{diff}"
