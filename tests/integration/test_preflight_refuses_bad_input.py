"""A wrong inventory fails in preflight, with a message naming the problem, and no
host is changed. Runs against the live lab after converge: each node's netplan file,
addresses, /etc/hosts, /etc/spark-cluster (contents and modes), nft ruleset and
spark units must be exactly as converge left them (read once, before the first run), and
the recap must say changed=0 everywhere.

The preflight lists every problem at once, so problems it finds in independent checks
share one site.yml run (each message asserted); a run of its own for each way it stops
or answers differently: a structural inventory (the controller stops before any node
is checked), a node missing from the plays, and each answer of the head's registry
probe (one pinned reference per run)."""

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
    heads["spark-head"].setdefault("serving_environment", {})["GLOO_SOCKET_IFNAME"] = "eth0"
    return inv


def serving_env_carries_a_token(inv):
    heads, _ = hosts_of(inv)
    heads["spark-head"].setdefault("serving_environment", {})["HF_TOKEN"] = "hf_not_a_real_token"
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


PROBLEMS = {
    two_heads: "expected exactly one head",
    no_worker: "expected at least one worker",
    duplicate_address: "spark_rails[0].address is 198.18.100.10; expected an address no other node or rail uses",
    rails_in_one_subnet: "expected each rail on its own subnet",
    wrong_interface: "spark-worker: spark_rails[0].interface is 'enP7s7' (not on this host)",
    rail_on_management: "overlapping the management network 198.19.0.0/24",
    mtu_out_of_range: "spark-worker: spark_mtu is 9600; expected an integer from 1280 to 9216",
    missing_head: "groups.spark_head is 0 host(s) []; expected exactly one head",
    serving_env_repins_gloo: "spark-head: serving_environment.GLOO_SOCKET_IFNAME is set; expected not set here. "
                             "setting GLOO_SOCKET_IFNAME would override a pinned key",
    serving_env_carries_a_token: "spark-head: serving_environment.HF_TOKEN is set; expected not set here. "
                                 "setting HF_TOKEN looks like a secret",
    # the pull source (runtime_image_source pull): each refused in preflight, nothing pulled or tagged
    pull_wrong_digest: "wrong digest: 127.0.0.1:5000/anemll/dspark-vllm-gx10:0.1.1-standin is sha256:",
    pull_image_missing: "image missing: registry 127.0.0.1:5000/spark/no-such-image has no manifest",
    pull_registry_down: "registry 127.0.0.1:5999 cannot be reached",
    pull_by_tag: "a pull names its image by digest",
}

# One site.yml run each, the inventory mutated by each function in turn. Apart: the two
# structural inventories (the controller's play stops at once; they contradict each other),
# the inventory without a worker (the node plays run on the head alone; with it, a rail on
# the management network, a controller-side rule on another field), and the four answers of
# the head's registry probe (runtime_image_pull_ref: one value per run). Together: the
# controller's inventory rules, a node's facts and the launch settings, each on fields of
# its own, as a user's first inventory could have them all.
RUNS = [
    (two_heads,),
    (missing_head,),
    (rail_on_management, no_worker),
    (duplicate_address, rails_in_one_subnet, mtu_out_of_range, wrong_interface,
     serving_env_repins_gloo, serving_env_carries_a_token),
    (pull_wrong_digest,),
    (pull_image_missing,),
    (pull_registry_down,),
    (pull_by_tag,),
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
NODES = ("spark-head", "spark-worker")


def node_states(containers=NODES):
    """What preflight must leave as it found it, of each container, read side by side."""
    procs = {c: subprocess.Popen(["docker", "exec", c, "sh", "-c", STATE_SCRIPT], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for c in containers}
    out = {}
    for container, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{container}: {stderr}"
        out[container] = stdout
    return out


def node_state(container):
    return node_states((container,))[container]


@pytest.fixture(scope="module")
def converged():
    """The nodes as converge left them, read once: every run below must leave exactly this."""
    state = node_states()
    for container in NODES:
        assert "/etc/spark-cluster/runtime.env" in state[container], f"{container} is not converged"
    return state


def test_every_problem_has_a_run():
    named = [m.__name__ for run in RUNS for m in run]
    assert sorted(named) == sorted(m.__name__ for m in PROBLEMS)


@pytest.mark.parametrize("mutations", RUNS, ids=["+".join(m.__name__ for m in run) for run in RUNS])
def test_bad_inventory_fails_in_preflight_and_changes_nothing(tmp_path, converged, mutations):
    inv_dir = tmp_path / "inventory"
    shutil.copytree(LAB / "group_vars", inv_dir / "group_vars")
    inv = copy.deepcopy(load_lab())
    for mutate in mutations:
        inv = mutate(inv)
    (inv_dir / "hosts.yml").write_text(yaml.safe_dump(inv))

    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    playbook = pathlib.Path(sys.executable).with_name("ansible-playbook")
    run = subprocess.run(
        [str(playbook), "-i", str(inv_dir), str(ROOT / "site.yml")],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600,
    )
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    flat = " ".join(output.split())
    missing = [f"{m.__name__}: {PROBLEMS[m]}" for m in mutations if PROBLEMS[m] not in flat]
    assert not missing, "\n".join(missing) + "\n" + output[-3000:]
    assert "PLAY [QSFP link" not in output, "a play after preflight ran"
    recap = output[output.rindex("PLAY RECAP"):]
    changed = dict(RECAP_RE.findall(recap))
    assert changed and set(changed.values()) == {"0"}, recap
    after = node_states()
    for container in NODES:
        diff = "\n".join(difflib.unified_diff(converged[container].splitlines(), after[container].splitlines(),
                                             "converged", "after", lineterm="", n=0))
        assert after[container] == converged[container], f"{container} changed:\n{diff}"
