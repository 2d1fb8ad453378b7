"""The unified-memory guard (module_utils/spark_cluster/runtime/memory.py) and its use in the pre-start check."""

import io
import os
import time

import pytest

from spark_cluster.runtime import memory as spark_memory
from spark_cluster.runtime import prestart as spark_prestart
from fakenetlink import FakeNetlink

GIB_KB = 1024 * 1024


def meminfo(total=120, available=110, free=100, cached=5, shmem=0, sreclaim=0):
    return (f"MemTotal:       {total * GIB_KB} kB\nMemFree:        {free * GIB_KB} kB\n"
            f"MemAvailable:   {available * GIB_KB} kB\nBuffers:        0 kB\n"
            f"Cached:         {cached * GIB_KB} kB\nShmem:          {shmem * GIB_KB} kB\n"
            f"SReclaimable:   {sreclaim * GIB_KB} kB\n")


def test_parse_meminfo_bytes():
    info = spark_memory.parse_meminfo(meminfo() + "HugePages_Total:       0\n")
    assert info["MemTotal"] == 120 * 1024 ** 3
    assert info["HugePages_Total"] == 0


def test_budget_numbers():
    b = spark_memory.budget(spark_memory.parse_meminfo(meminfo(total=100, available=90, free=50, cached=45, shmem=5)),
                            0.82, 4 * 1024 ** 3)
    assert b["need"] == int(0.82 * 100 * 1024 ** 3) + 4 * 1024 ** 3
    assert b["fits"] and b["page_cache"] == 40 * 1024 ** 3
    assert "need 86.0 GiB (0.82 x 100.0 GiB total = 82.0 GiB for the runtime + 4.0 GiB margin)" in spark_memory.describe(b)


@pytest.mark.parametrize("bad", [0, 1.5, -0.1])
def test_budget_refuses_bad_utilization(bad):
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        spark_memory.budget(spark_memory.parse_meminfo(meminfo()), bad, 0)


def test_budget_needs_memavailable():
    with pytest.raises(ValueError, match="MemAvailable"):
        spark_memory.budget({"MemTotal": 1, "MemFree": 1}, 0.5, 0)


def test_guard_fits_no_drop(tmp_path):
    drops = []
    ok, lines = spark_memory.guard(0.82, 4, read_meminfo=lambda: meminfo(), drop=lambda: drops.append(1) or "")
    assert ok and not drops
    assert lines[-1].startswith("memory: ok: need 102.4 GiB")


def test_guard_refuses_with_numbers():
    ok, lines = spark_memory.guard(0.82, 4, read_meminfo=lambda: meminfo(available=60, free=55, cached=2),
                                   drop=lambda: pytest.fail("nothing to gain from a drop"))
    assert not ok
    assert "refusing to start: need 102.4 GiB" in lines[0]
    assert "available 60.0 GiB" in lines[0] and "short by 42.4 GiB" in lines[0]
    assert "serving_memory_margin_gib" in lines[-1]


def test_guard_drops_page_cache_when_it_makes_room():
    state = {"dropped": False}

    def read():
        return meminfo(available=110, free=110, cached=1) if state["dropped"] else meminfo(available=80, free=20, cached=90)

    def drop():
        state["dropped"] = True
        return ""
    ok, lines = spark_memory.guard(0.82, 4, read_meminfo=read, drop=drop)
    assert ok and state["dropped"]
    assert "dropped the page cache (only the page cache stands" in lines[0]
    assert "80.0 GiB -> 110.0 GiB" in lines[0]


def test_guard_drops_after_fresh_weights_and_stamps(tmp_path):
    weights = tmp_path / "hub" / "blobs"
    weights.mkdir(parents=True)
    (weights / "shard-1").write_bytes(b"x")
    stamp = tmp_path / "state" / "weights-seen"
    drops = []
    ok, lines = spark_memory.guard(0.5, 1, tmp_path / "hub", str(stamp), read_meminfo=lambda: meminfo(),
                                   drop=lambda: drops.append(1) or "")
    assert ok and drops == [1] and stamp.exists()
    assert "weights were written since the last start" in lines[0]
    # second start: weights older than the stamp, no drop
    old = time.time() - 100
    os.utime(weights / "shard-1", (old, old))
    ok, _ = spark_memory.guard(0.5, 1, tmp_path / "hub", str(stamp), read_meminfo=lambda: meminfo(),
                               drop=lambda: drops.append(2) or "")
    assert ok and drops == [1]


def test_guard_drop_failure_is_reported_not_fatal(tmp_path):
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "w").write_text("x")
    ok, lines = spark_memory.guard(0.5, 1, tmp_path / "hub", str(tmp_path / "stamp"),
                                   read_meminfo=lambda: meminfo(available=70, free=10, cached=100),
                                   drop=lambda: "Read-only file system (/proc/sys/vm/drop_caches)")
    assert ok
    assert "could not drop the page cache" in lines[0] and "Read-only" in lines[0]


def test_guard_check_only_changes_nothing(tmp_path):
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "w").write_text("x")
    stamp = tmp_path / "stamp"
    ok, lines = spark_memory.guard(0.5, 1, tmp_path / "hub", str(stamp), read_meminfo=lambda: meminfo(),
                                   drop=lambda: pytest.fail("check-only drops nothing"), check_only=True)
    assert ok and not stamp.exists()
    assert "--check-only: not dropped" in lines[0]


def test_prestart_refuses_start_with_numbers(tmp_path):
    from test_prestart import Node  # the provisioned node of the pre-start tests
    from sparkfs import SparkSysfs
    from test_prestart import ADDRESSES
    node = Node(tmp_path, SparkSysfs(tmp_path / "sys", addresses=ADDRESSES).build())
    out, err = io.StringIO(), io.StringIO()
    code = spark_prestart.main(
        ["--params", str(node.params_path), "--gpu-memory-utilization", "0.82", "--memory-margin-gib", "4"],
        net=FakeNetlink.from_sparkfs(node.sysfs), out=out, err=err,
        meminfo=lambda: meminfo(available=60, free=55, cached=2))
    assert code == 1
    assert "spark-prestart: memory: refusing to start: need 102.4 GiB" in err.getvalue()
    out, err = io.StringIO(), io.StringIO()
    code = spark_prestart.main(
        ["--params", str(node.params_path), "--gpu-memory-utilization", "0.82"],
        net=FakeNetlink.from_sparkfs(node.sysfs), out=out, err=err, meminfo=lambda: meminfo())
    assert code == 0, err.getvalue()
    assert "spark-prestart: memory: ok" in out.getvalue()
