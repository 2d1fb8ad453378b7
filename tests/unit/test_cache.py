"""module_utils/spark_cluster/cache/rules.py and the hf_cache_* modules' logic: snapshot completeness and
verification, settings checks, the NFS export check (the JIT cache keys and plans:
test_jit_cache.py)."""

import json
import os
import pathlib
import subprocess

import pytest
import yaml

import hub_seed  # tests/lab: the lab-only model seeder
from conftest import spark_common_defaults
from spark_cluster.cache import rules as sc

ROOT = pathlib.Path(__file__).resolve().parents[2]
REPO = "deepseek-ai/DeepSeek-V4-Flash-DSpark"


@pytest.fixture
def hub(tmp_path):
    hub_dir = tmp_path / "hub"
    changed, commit = hub_seed.seed_fake_repo(str(hub_dir), REPO, shards=3, shard_bytes=4096)
    assert changed
    return hub_dir, commit


# ------------------------------------------------------------------ snapshot


def test_seeded_repo_has_hub_layout_and_is_complete(hub):
    hub_dir, commit = hub
    rdir = hub_dir / "models--deepseek-ai--DeepSeek-V4-Flash-DSpark"
    assert (rdir / "refs" / "main").read_text() == commit
    snap = rdir / "snapshots" / commit
    assert os.readlink(snap / "config.json").startswith("../../blobs/")
    status = sc.snapshot_status(str(hub_dir), REPO, "main", expected_shards=3)
    assert status["complete"], status
    assert status["shards"] == 3 and status["commit"] == commit


def test_seed_is_idempotent_and_shards_are_valid_safetensors(hub):
    hub_dir, commit = hub
    assert hub_seed.seed_fake_repo(str(hub_dir), REPO, shards=3, shard_bytes=4096) == (False, commit)
    shard = hub_dir / "models--deepseek-ai--DeepSeek-V4-Flash-DSpark" / "snapshots" / commit / "model-00001-of-00003.safetensors"
    data = shard.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    (tensor,) = [k for k in header if k != "__metadata__"]
    assert header[tensor]["data_offsets"] == [0, 4096]
    assert len(data) == 8 + header_len + 4096


def test_missing_shard_makes_the_snapshot_incomplete(hub):
    hub_dir, commit = hub
    snap = hub_dir / "models--deepseek-ai--DeepSeek-V4-Flash-DSpark" / "snapshots" / commit
    (snap / "model-00002-of-00003.safetensors").unlink()
    status = sc.snapshot_status(str(hub_dir), REPO, "main")
    assert not status["complete"]
    assert "model-00002-of-00003.safetensors" in status["missing"]


def test_interrupted_download_and_expected_shards(hub):
    hub_dir, _ = hub
    rdir = hub_dir / "models--deepseek-ai--DeepSeek-V4-Flash-DSpark"
    assert not sc.snapshot_status(str(hub_dir), REPO, "main", expected_shards=48)["complete"]
    (rdir / "blobs" / "abc.incomplete").write_bytes(b"x")
    status = sc.snapshot_status(str(hub_dir), REPO, "main")
    assert not status["complete"] and status["incomplete_blobs"] == ["abc.incomplete"]


def test_unknown_revision_and_commit_revision(hub):
    hub_dir, commit = hub
    assert sc.snapshot_status(str(hub_dir), REPO, "v2")["missing"] == ["refs/v2"]
    assert sc.snapshot_status(str(hub_dir), REPO, commit)["complete"]
    with pytest.raises(sc.CacheError, match="org/name"):
        sc.repo_dir(str(hub_dir), "no-slash")


def test_verify_catches_a_corrupted_copy(hub):
    hub_dir, commit = hub
    snap = hub_dir / "models--deepseek-ai--DeepSeek-V4-Flash-DSpark" / "snapshots" / commit
    good = sc.verify_snapshot(str(snap))
    assert good["bad"] == [] and good["verified"] == 5 and good["unverifiable"] == []
    blob = (snap / "model-00003-of-00003.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    bad = sc.verify_snapshot(str(snap))
    assert len(bad["bad"]) == 1 and bad["bad"][0].startswith("model-00003-of-00003.safetensors")
    assert bad["bad_paths"] == [str(blob)]  # the blob itself, not the snapshot's link to it


# ------------------------------------------------------------------ settings checks


def base(**kw):
    args = dict(mode="rsync", role="worker", jit_dir="/var/cache/spark-jit", hub_dir="/var/lib/spark-hf/hub")
    args.update(kw)
    return args


def test_good_settings_have_no_problems():
    assert sc.validate(**base(free=10**12, model_size_gb=168)) == []


@pytest.mark.parametrize(
    "jit,hub,mode,mount",
    [
        ("/var/lib/spark-hf/hub/jit", "/var/lib/spark-hf/hub", "rsync", None),
        ("/var/lib/spark-hf/hub", "/var/lib/spark-hf/hub", "rsync", None),
        ("/mnt/share/jit", "/var/lib/spark-hf/hub", "nfs", "/mnt/share"),
        ("/var/lib", "/var/lib/spark-hf/hub", "rsync", None),
    ],
)
def test_jit_dir_on_the_share_is_refused(jit, hub, mode, mount):
    problems = sc.validate(**base(jit_dir=jit, hub_dir=hub, mode=mode, nfs_mount_point=mount))
    assert problems and "jit_cache_dir" in problems[0]


def test_jit_dir_on_a_network_filesystem_is_refused():
    mounts = "/dev/sda1 / ext4 rw 0 0\n10.0.0.1:/export /var/cache nfs4 rw 0 0\n"
    problems = sc.validate(**base(mounts_text=mounts))
    assert problems == ["jit_cache_dir /var/cache/spark-jit is on a nfs4 filesystem mounted at /var/cache: JIT caches must be node-local"]


def test_nfs_mount_point_only_counts_in_nfs_mode():
    assert sc.validate(**base(jit_dir="/mnt/x/jit", nfs_mount_point="/mnt/x")) == []


def test_missing_token_is_refused_only_when_needed():
    head = base(role="head", download=True, token_required=True)
    assert "hf_cache_token is empty" in sc.validate(**head)[0]
    assert sc.validate(**dict(head, token_present=True)) == []
    assert sc.validate(**dict(head, download=False)) == []
    assert sc.validate(**dict(head, role="worker")) == []
    assert sc.validate(**dict(head, token_required=False)) == []


def test_free_disk_counts_what_is_already_there():
    gb = sc.GB
    short = sc.validate(**base(role="head", model_size_gb=168, free=100 * gb))
    assert len(short) == 1 and "100.0 GB free, 168.0 GB needed" in short[0]
    assert sc.validate(**base(role="head", model_size_gb=168, free=100 * gb, bytes_present=100 * gb)) == []
    # nfs workers store nothing
    assert sc.validate(**base(mode="nfs", model_size_gb=168, free=0)) == []


def test_unknown_mode():
    problems = sc.validate(**base(mode="smb"))
    assert any("hf_cache_mode" in p for p in problems)


def test_free_bytes_of_a_missing_dir_uses_its_existing_parent(tmp_path):
    assert sc.free_bytes(str(tmp_path / "a" / "b")) == sc.free_bytes(str(tmp_path))


# ------------------------------------------------------------------ systemd and NFS


@pytest.mark.parametrize(
    "path,unit",
    [
        ("/var/lib/spark-hf/hub", "var-lib-spark\\x2dhf-hub"),
        ("/mnt/hf hub/", "mnt-hf\\x20hub"),
        ("/", "-"),
        ("/srv/.hidden/x.y", "srv-.hidden-x.y"),
        ("/.x", "\\x2ex"),
    ],
)
def test_systemd_escape_path(path, unit):
    assert sc.systemd_escape_path(path) == unit


def test_systemd_escape_matches_systemd_when_present():
    try:
        out = subprocess.run(["systemd-escape", "--path", "/var/lib/spark-hf/hub"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("systemd-escape not available")
    assert sc.systemd_escape_path("/var/lib/spark-hf/hub") == out.stdout.strip()


def test_good_export_line():
    text = "# c\n/var/lib/spark-hf/hub 192.168.100.11(ro,root_squash,sync,no_subtree_check,sec=sys) 192.168.100.12(ro,root_squash)\n"
    assert sc.check_exports(text) == []


@pytest.mark.parametrize(
    "line,fragment",
    [
        ("/hub 192.168.100.11 (ro)", "not host(options)"),
        ("/hub 192.168.100.11(rw,root_squash)", "read-only"),
        ("/hub 192.168.100.11(ro,no_root_squash)", "no_root_squash"),
        ("/hub 192.168.100.11(ro,bogus)", "unknown export option"),
        ("/hub", "no client"),
        ("hub 192.168.100.11(ro)", "not absolute"),
        ("/hub *(ro)", "not an IPv4"),
    ],
)
def test_bad_export_lines(line, fragment):
    problems = sc.check_exports(line + "\n")
    assert any(fragment in p for p in problems), problems


def test_check_exports_cli(tmp_path):
    good = tmp_path / "good.exports"
    good.write_text("/hub 10.0.0.2(ro,root_squash)\n")
    bad = tmp_path / "bad.exports"
    bad.write_text("/hub 10.0.0.2(rw)\n")
    assert sc.main(["check-exports", str(good)]) == 0
    assert sc.main(["check-exports", str(bad)]) == 1
    assert sc.main([]) == 2


def test_rendered_export_template_passes_the_check():
    template = (ROOT / "roles/hf_cache/templates/spark-hf.exports.j2").read_text()
    import jinja2

    text = jinja2.Template(template).render(
        ansible_managed="managed",
        hf_cache_hub_dir="/var/lib/spark-hf/hub",
        __hf_cache_worker_rail0s=["192.168.100.11", "192.168.100.12"],
        hf_cache_nfs_export_options=yaml.safe_load((ROOT / "roles/hf_cache/defaults/main.yml").read_text())["hf_cache_nfs_export_options"],
    )
    assert sc.check_exports(text) == []
    assert "192.168.100.11(ro,root_squash" in text and "192.168.100.12(ro" in text


# ------------------------------------------------------------------ role defaults


def test_hf_cache_defaults_hold_no_lab_switch():
    assert spark_common_defaults()["jit_cache_dir"] == "/var/cache/spark-jit"
    defaults = yaml.safe_load((ROOT / "roles/hf_cache/defaults/main.yml").read_text())
    assert "hf_cache_lab_seed" not in defaults and defaults["hf_cache_nfs_start"] is True
