"""The Hugging Face cache in the lab (after site.yml / playbooks/cache.yml): the fake model
on the head, copied to the worker over QSFP rail 0 (byte counters prove the rail, not the
management network), verified, a second pull copies nothing, a truncated or corrupted
blob on a worker is detected and fetched again; the rsync daemon is on rail 0
only; node-local JIT caches (their alignment across starts: test_jit_cache.py); nfs mode
renders valid files without starting anything; bad input fails before any copy.

Set HF_CACHE_RATE_MB=500 to measure the fan-out rate with a 500 MB fake shard set."""

import json
import os
import pathlib
import shlex
import subprocess
import sys
import time

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
HUB = "/var/lib/spark-hf/hub"
JIT = "/var/cache/spark-jit"
# the model of the default serving profile (roles/spark_common/profiles/current.yml)
REPO_DIR = "models--deepseek-ai--DeepSeek-V4-Flash-0731"
# The JIT table (pinned literally by tests/unit/test_jit_cache.py)
JIT_VARS = yaml.safe_load((ROOT / "roles/spark_common/defaults/main/caches.yml").read_text())["jit_cache_subdirs"]


def sh(container, script, check=True):
    run = subprocess.run(["docker", "exec", container, "sh", "-c", script], capture_output=True, text=True)
    if check:
        assert run.returncode == 0, f"{container}: {script}\n{run.stdout}\n{run.stderr}"
    return run


def playbook(*extra, env_drop=()):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    for key in env_drop:
        env.pop(key, None)
    exe = pathlib.Path(sys.executable).with_name("ansible-playbook")
    run = subprocess.run(
        [str(exe), "-i", str(ROOT / "inventory" / "lab"), str(ROOT / "playbooks" / "cache.yml"), *extra],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600,
    )
    return run.returncode, run.stdout + run.stderr


@pytest.fixture(scope="module")
def lab(request):
    inventory = request.config.option.ansible_inventory or str(ROOT / "inventory" / "lab")
    exe = pathlib.Path(sys.executable).with_name("ansible-inventory")
    data = json.loads(subprocess.run([str(exe), "-i", inventory, "--list"], capture_output=True, text=True, check=True, cwd=ROOT).stdout)
    hv = data["_meta"]["hostvars"]
    head = data["spark_head"]["hosts"][0]
    workers = data["spark_workers"]["hosts"]

    def rail0(name):
        return hv[name]["spark_rails"][0]

    return {
        "head": hv[head]["ansible_host"],
        "head_rail0": rail0(head)["address"].split("/")[0],
        "head_mgmt": hv[head]["spark_mgmt_address"],
        "workers": [(hv[w]["ansible_host"], rail0(w)["interface"]) for w in workers],
    }


def snapshot_sums(container):
    out = sh(container, f"cd {HUB}/{REPO_DIR}/snapshots && find . -type l -o -type f | sort | xargs sha256sum").stdout
    return out


def counters(container, iface):
    out = sh(container, f"cat /sys/class/net/{iface}/statistics/rx_bytes /sys/class/net/eth0/statistics/rx_bytes").stdout.split()
    return int(out[0]), int(out[1])


# ------------------------------------------------------------------ every node


def test_jit_dirs_are_node_local_with_the_seven_variables(host):
    jit = host.file(JIT)
    assert jit.is_directory and jit.uid == 1000 and jit.mode == 0o755  # the runtime image's uid
    fstype = host.check_output(f"stat -f -c %T {JIT}")
    assert "nfs" not in fstype
    env = host.file("/etc/spark-cluster/runtime.env").content_string
    for var, sub in JIT_VARS.items():
        assert host.file(f"{JIT}/{sub}").is_directory
        assert f"{var}=/var/cache/spark-jit/{sub}\n" in env, var


def test_hub_cache_holds_the_pinned_revision_without_refs_main(host, hostvars):
    """A pinned commit, as `hf download --revision <commit>` leaves it: no refs/main."""
    snap = hostvars["hf_cache_revision"]
    assert len(snap) == 40
    assert not host.file(f"{HUB}/{REPO_DIR}/refs/main").exists
    assert host.file(HUB).uid == 1000
    files = host.check_output(f"ls {HUB}/{REPO_DIR}/snapshots/{snap}").split()
    assert "config.json" in files and "model.safetensors.index.json" in files
    assert len([f for f in files if f.endswith(".safetensors")]) == 4


# ------------------------------------------------------------------ head and workers


def test_rsync_daemon_listens_on_rail0_only(lab):
    out = sh(lab["head"], "ss -H -ltn 'sport = :873'").stdout.split("\n")
    listening = {line.split()[3] for line in out if line.strip()}
    assert listening == {f"{lab['head_rail0']}:873"}
    conf = sh(lab["head"], "cat /etc/spark-cluster/rsyncd-hf.conf").stdout
    assert "read only = yes" in conf and "hosts deny = *" in conf
    for worker, _ in lab["workers"]:
        refused = sh(worker, f"rsync --contimeout=5 rsync://{lab['head_mgmt']}/hf-hub/", check=False)
        assert refused.returncode != 0  # the management address does not serve the cache


def test_only_the_workers_may_pull(lab):
    # the head itself is not in "hosts allow" (connecting from its own rail-0 address)
    denied = sh(lab["head"], f"rsync rsync://{lab['head_rail0']}/hf-hub/", check=False)
    assert denied.returncode != 0 and "@ERROR" in denied.stderr


def test_worker_copy_is_identical_and_a_second_pull_copies_nothing(lab):
    head_sums = snapshot_sums(lab["head"])
    for worker, _ in lab["workers"]:
        assert snapshot_sums(worker) == head_sums
        again = sh(worker, f"rsync -a --itemize-changes --exclude=.locks/ --exclude='*.incomplete' rsync://{lab['head_rail0']}/hf-hub/ {HUB}/")
        assert again.stdout == ""


def test_a_truncated_and_a_silently_corrupted_blob_are_fetched_again(lab):
    head_sums = snapshot_sums(lab["head"])
    for worker, _ in lab["workers"]:
        truncated, corrupted = sh(worker, f"cd {HUB}/{REPO_DIR}/snapshots/* && readlink -f *.safetensors").stdout.split()[:2]
        sh(worker, f"truncate -s 1000 {truncated}")
        # one byte flipped, size and mtime kept: a pull's quick check alone would keep it
        sh(worker, f"cp -p {corrupted} /tmp/ref && printf '\\377' | dd of={corrupted} bs=1 seek=100 conv=notrunc 2>/dev/null "
                   f"&& touch -r /tmp/ref {corrupted} && rm /tmp/ref")
        assert snapshot_sums(worker) != head_sums
    rc, out = playbook("-e", "hf_cache_verify=always")
    assert rc == 0, out[-3000:]
    assert "1 file(s) did not match their hash and were fetched again" in out
    for worker, _ in lab["workers"]:
        assert snapshot_sums(worker) == head_sums


def test_fan_out_crosses_rail0_not_the_management_network(lab):
    """The role's own run (playbooks/cache.yml) re-fills a worker whose copy was removed:
    the byte counters around that run show the model crossed rail 0, not eth0."""
    for worker, iface in lab["workers"]:
        sh(worker, f"rm -rf {HUB}/{REPO_DIR}")
    before = {worker: counters(worker, iface) for worker, iface in lab["workers"]}
    t0 = time.monotonic()
    rc, out = playbook()
    seconds = time.monotonic() - t0
    assert rc == 0, out[-3000:]
    head_sums = snapshot_sums(lab["head"])
    for worker, iface in lab["workers"]:
        rail_after, mgmt_after = counters(worker, iface)
        rail, mgmt = rail_after - before[worker][0], mgmt_after - before[worker][1]
        size = int(sh(worker, f"du -sb {HUB}/{REPO_DIR}/blobs | cut -f1").stdout.split()[0])
        print(f"{worker}: role run {seconds:.1f} s re-filled {size / 1e6:.1f} MB; "
              f"rx on {iface}: {rail / 1e6:.1f} MB, on eth0: {mgmt / 1e3:.1f} kB")
        assert snapshot_sums(worker) == head_sums
        assert rail >= size, f"only {rail} bytes crossed {iface} for {size} bytes copied by the role"
        assert mgmt < max(size // 100, 256 * 1024), f"{mgmt} bytes crossed eth0 during the role's run"


@pytest.mark.skipif(not os.environ.get("HF_CACHE_RATE_MB"), reason="rate probe: set HF_CACHE_RATE_MB")
def test_rsync_rate_over_rail0(lab):
    """Rate of the rail-0 rsync with a bigger fake model (docs/hf-cache.md)."""
    rate_mb = int(os.environ["HF_CACHE_RATE_MB"])
    seed = (
        "import sys; sys.path.insert(0, '/opt/spark-lab/hub-seed'); import hub_seed as s; "
        f"print(s.seed_fake_repo('{HUB}', 'spark-lab/rate-probe', shards=10, shard_bytes={rate_mb} * 100000))"
    )
    sh(lab["head"], f"python3 -c {shlex.quote(seed)}")
    repo = "models--spark-lab--rate-probe"
    try:
        for worker, iface in lab["workers"]:
            dest = "/var/tmp/hf-cache-probe"
            sh(worker, f"rm -rf {dest}")
            rail_before, _ = counters(worker, iface)
            out = sh(worker, (
                f"t0=$(date +%s.%N); rsync -a --stats rsync://{lab['head_rail0']}/hf-hub/{repo}/ {dest}/ >/dev/null; "
                f"t1=$(date +%s.%N); du -sb {dest}/blobs | cut -f1; echo \"$t1 - $t0\" | bc -l || python3 -c \"print($t1 - $t0)\""
            )).stdout.split()
            rail_after, _ = counters(worker, iface)
            size, seconds = int(out[0]), float(out[1])
            print(f"{worker}: {size / 1e6:.1f} MB in {seconds:.2f} s = {size * 8 / seconds / 1e9:.2f} Gb/s")
            assert rail_after - rail_before >= size
            sh(worker, f"rm -rf {dest}")
    finally:
        sh(lab["head"], f"rm -rf {HUB}/{repo}")


# ------------------------------------------------------------------ nfs mode (rendered, not started)


@pytest.fixture(scope="module")
def nfs_rendered(lab):
    rc, out = playbook("-e", "hf_cache_mode=nfs")
    yield rc, out
    rc_back, out_back = playbook()
    assert rc_back == 0, out_back[-3000:]


def test_nfs_mode_renders_and_checks_without_starting(lab, nfs_rendered):
    rc, out = nfs_rendered
    assert rc == 0, out[-3000:]
    assert "NOT started (no NFS in this kernel)" in out
    exports = sh(lab["head"], "cat /etc/exports.d/spark-hf.exports").stdout
    line = [x for x in exports.splitlines() if x and not x.startswith("#")]
    workers_rail0 = []
    for worker, iface in lab["workers"]:
        address = sh(worker, f"ip -4 -o addr show dev {iface} | awk '{{print $4}}' | cut -d/ -f1").stdout.strip()
        workers_rail0.append(address)
    assert line == [f"{HUB} " + " ".join(f"{a}(ro,root_squash,sync,no_subtree_check,sec=sys)" for a in workers_rail0)]
    check = sh(lab["head"], "PYTHONPATH=/usr/local/lib/spark-cluster python3 -m spark_cluster.node.cache check-exports /etc/exports.d/spark-hf.exports", check=False)
    assert check.returncode == 0, check.stderr
    assert sh(lab["head"], "systemctl is-active nfs-server", check=False).stdout.strip() != "active"
    for worker, iface in lab["workers"]:
        unit = "var-lib-spark\\x2dhf-hub"
        mount = sh(worker, f"cat '/etc/systemd/system/{unit}.mount'").stdout
        assert f"What={lab['head_rail0']}:{HUB}\n" in mount and f"Where={HUB}\n" in mount
        assert "Requires=spark-hf-rail-wait.service" in mount and "ro," in mount
        wait = sh(worker, "cat /etc/systemd/system/spark-hf-rail-wait.service").stdout
        assert f"dev {iface}" in wait and lab["head_rail0"] in wait
        verify = sh(worker, f"systemd-analyze verify '/etc/systemd/system/{unit}.mount' '/etc/systemd/system/{unit}.automount' "
                            "/etc/systemd/system/spark-hf-rail-wait.service 2>&1")
        assert verify.stdout.strip() == ""
        assert sh(worker, f"systemctl is-enabled '{unit}.automount'", check=False).stdout.strip() != "enabled"
        assert "nfs" not in sh(worker, "cat /proc/mounts").stdout.split()


# ------------------------------------------------------------------ bad input


def worker_hub_state(lab):
    return {w: sh(w, f"find {HUB} {JIT} -printf '%p %s %T@\\n' | sort").stdout for w, _ in lab["workers"]}


@pytest.mark.parametrize(
    "extra,message",
    [
        (["-e", "jit_cache_dir=/var/lib/spark-hf/hub/jit"], "is inside the shared hub cache"),
        (["-e", "hf_cache_mode=nfs", "-e", "jit_cache_dir=/mnt/hf/jit", "-e", "hf_cache_nfs_mount_point=/mnt/hf"], "is inside the shared hub cache /mnt/hf"),
        (["-e", "hf_cache_download=true", "-e", "hf_cache_token_required=true", "-e", "hf_cache_token="], "hf_cache_token is empty"),
        (["-e", "hf_cache_model_size_gb=100000"], "not enough free disk for the model"),
        (["-e", "hf_cache_mode=smb"], "value of hf_cache_mode must be one of: nfs, rsync"),
    ],
    ids=["jit-in-hub", "jit-in-nfs-mount", "no-token", "disk", "mode"],
)
def test_bad_input_fails_before_any_copy(lab, extra, message):
    before = worker_hub_state(lab)
    rc, out = playbook(*extra, env_drop=("HF_TOKEN",))
    assert rc != 0
    assert message in " ".join(out.split()), out[-3000:]
    assert "PLAY [Hugging Face cache - download once" not in out
    assert worker_hub_state(lab) == before
