"""module_utils/spark_cluster/common/fileio.py (the shared file helpers) and the RDMA-twin
lookup in spark_cluster.link.roce. What a node gets of the package: test_node_package.py."""

import os

import pytest

from spark_cluster.common import fileio as sf
from spark_cluster.link.roce import rdma_devices, rdma_twins

# ------------------------------------------------------------------ read / write


def test_read_text_strips_and_defaults(tmp_path):
    path = tmp_path / "speed"
    path.write_text("200000\n")
    assert sf.read_text(path) == "200000"
    assert sf.read_text(path, strip=False) == "200000\n"
    assert sf.read_text(tmp_path / "missing") is None
    assert sf.read_text(tmp_path / "missing", default="") == ""
    assert sf.read_text(tmp_path) is None  # a directory: unreadable, not an exception
    (tmp_path / "bin").write_bytes(b"\xff\xfeok")
    assert sf.read_text(tmp_path / "bin").endswith("ok")  # undecodable bytes replaced


def test_read_bytes_and_listdir(tmp_path):
    (tmp_path / "a").write_bytes(b"x\n")
    assert sf.read_bytes(tmp_path / "a") == b"x\n"
    assert sf.read_bytes(tmp_path / "b") is None
    assert sf.listdir(tmp_path) == ["a"]
    assert sf.listdir(tmp_path / "b") == []
    assert sf.listdir(tmp_path / "a") == []


def test_write_atomic_new_file_gets_default_mode(tmp_path):
    path = tmp_path / "runtime.env"
    sf.write_atomic(str(path), "A=1\n")
    assert path.read_text() == "A=1\n"
    assert path.stat().st_mode & 0o7777 == 0o600
    sf.write_atomic(str(tmp_path / "blob"), b"\x00\x01", default_mode=0o644)
    assert (tmp_path / "blob").read_bytes() == b"\x00\x01"
    assert (tmp_path / "blob").stat().st_mode & 0o7777 == 0o644
    assert sorted(os.listdir(tmp_path)) == ["blob", "runtime.env"]  # no temporary left


def test_write_atomic_keeps_the_old_mode_unless_told(tmp_path):
    path = tmp_path / "f"
    path.write_text("old")
    path.chmod(0o640)
    sf.write_atomic(str(path), "new")
    assert (path.read_text(), path.stat().st_mode & 0o7777) == ("new", 0o640)
    sf.write_atomic(str(path), "newer", mode=0o644)
    assert (path.read_text(), path.stat().st_mode & 0o7777) == ("newer", 0o644)


def test_write_atomic_replaces_the_inode_and_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "f"
    path.write_text("old")
    before = path.stat().st_ino
    sf.write_atomic(str(path), "new")
    assert path.stat().st_ino != before  # renamed over it, not rewritten in place
    with pytest.raises(TypeError):
        sf.write_atomic(str(path), 42)  # not str or bytes: nothing written
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["f"]
    with pytest.raises(OSError):
        sf.write_atomic(str(tmp_path / "no" / "dir"), "x")


# ------------------------------------------------------------------ RDMA twins


def test_rdma_twins_and_devices(spark_sysfs):
    sysfs = spark_sysfs()
    root = str(sysfs.root)
    twins = rdma_twins(root)
    assert twins["enp1s0f1np1"] == "rocep1s0f1" and twins["enP2p1s0f1np1"] == "roceP2p1s0f1"
    assert rdma_devices(root) == sorted(set(twins.values()))
    assert rdma_devices(root, "enp1s0f1np1") == ["rocep1s0f1"]
    assert rdma_devices(root, "wlP9s9") == []


def test_no_rdma_class(tmp_path):
    assert rdma_twins(str(tmp_path)) == {} and rdma_devices(str(tmp_path)) == []
    assert rdma_devices(str(tmp_path), "enp1s0f1np1") == []

