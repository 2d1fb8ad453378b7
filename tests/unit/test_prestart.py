"""The node-side pre-start check (module_utils/spark_cluster/runtime/prestart.py): re-render at service
start, GID drift, interface pinning."""

import io
import os
import pathlib
import shutil
import stat
import subprocess
import sys

import pytest

from spark_cluster.runtime import prestart as spark_prestart
from spark_cluster.runtime.runtime_env import build_env, make_params, params_text, render
from spark_cluster.common.envfile import parse
from fakenetlink import FakeNetlink
from spark_cluster.link.roce import resolve
from sparkfs import ROCE_V1, ROCE_V2, SparkSysfs, ipv4_gid, link_local_gid, mac_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
RAIL0 = "enp1s0f1np1"
RAIL1 = "enP2p1s0f1np1"
ADDRESSES = {RAIL0: "192.168.100.10/24", RAIL1: "192.168.101.10/24"}
NODE = {
    "rank": 0,
    "nnodes": 2,
    "role": "head",
    "interface": RAIL0,
    "address": "192.168.100.10",
    "master_addr": "192.168.100.10",
    "master_port": 29501,
    "settings": {"NCCL_NVLS_ENABLE": "0"},
}
RAILS = [{"interface": RAIL0, "address": ADDRESSES[RAIL0]}, {"interface": RAIL1, "address": ADDRESSES[RAIL1]}]
PEERS = ["192.168.100.11"]


def drifted_table(netdev, mac_index, address):
    fe80 = link_local_gid(mac_for(mac_index))
    gid = ipv4_gid(address)
    return [(fe80, ROCE_V1, netdev), (fe80, ROCE_V2, netdev), None,
            (gid, ROCE_V1, netdev), (gid, ROCE_V2, netdev)]


def rail0_drifted(tmp_path):
    """The node after a reboot that reordered rail 0's GID table (drifted_table)."""
    return SparkSysfs(
        tmp_path / "sys-after-reboot",
        addresses=ADDRESSES,
        gid_tables={"rocep1s0f1": drifted_table(RAIL0, 1, "192.168.100.10")},
    ).build()


class Node:
    """A provisioned node: sysfs tree, params file and env file as the module leaves them."""

    def __init__(self, tmp_path, sysfs):
        self.tmp = tmp_path
        self.sysfs = sysfs
        self.env_path = tmp_path / "etc" / "runtime.env"
        self.params_path = tmp_path / "etc" / "runtime-env.json"
        self.env_path.parent.mkdir(parents=True, exist_ok=True)
        params = make_params(self.env_path, NODE, RAILS, peers=PEERS, sysfs_root=sysfs.root,
                             params_path=self.params_path)
        self.params_path.write_text(params_text(params))
        gid = resolve(sysfs.root, {RAIL0: "192.168.100.10", RAIL1: "192.168.101.10"})
        self.env_path.write_text(render(build_env(NODE, gid), params))
        os.chmod(self.env_path, 0o600)
        os.chmod(self.params_path, 0o600)

    def run(self, *extra, net=None, sysfs_root=None):
        out, err = io.StringIO(), io.StringIO()
        net = net if net is not None else FakeNetlink.from_sparkfs(self.sysfs)
        code = spark_prestart.main(["--params", str(self.params_path), *extra], net=net,
                                   sysfs_root=sysfs_root, out=out, err=err)
        return code, out.getvalue(), err.getvalue()


@pytest.fixture
def provisioned(tmp_path):
    sysfs = SparkSysfs(tmp_path / "sys", addresses=ADDRESSES).build()
    return Node(tmp_path, sysfs)


def test_all_good(provisioned):
    before = provisioned.env_path.read_text()
    mtime = provisioned.env_path.stat().st_mtime_ns
    code, out, err = provisioned.run()
    assert (code, err) == (0, "")
    assert out.strip().splitlines() == [
        "spark-prestart: ok: head rank 0/2, pinned to enp1s0f1np1 192.168.100.10, "
        "RoCE v2 GID 3 on rocep1s0f1,roceP2p1s0f1"
    ]
    assert provisioned.env_path.read_text() == before
    assert provisioned.env_path.stat().st_mtime_ns == mtime  # not rewritten


def test_drift_rewrites_the_file_and_says_so(provisioned, tmp_path):
    drifted = rail0_drifted(tmp_path)
    code, out, err = provisioned.run(sysfs_root=drifted.root, net=FakeNetlink.from_sparkfs(drifted))
    assert code == 0, err
    assert "spark-prestart: GID index drifted 3 -> 4 on rocep1s0f1" in out.splitlines()
    assert "roceP2p1s0f1" not in [line for line in out.splitlines() if "drifted" in line][0]
    assert f"spark-prestart: rewrote {provisioned.env_path}" in out
    env = parse(provisioned.env_path.read_text())
    # one twin at 3, one at 4: NCCL picks per device
    assert "NCCL_IB_GID_INDEX" not in env
    assert env["NCCL_IB_ADDR_FAMILY"] == "AF_INET"
    assert env["NCCL_IB_ROCE_VERSION_NUM"] == "2"
    assert env["NCCL_IB_HCA"] == "rocep1s0f1,roceP2p1s0f1"
    assert stat.S_IMODE(provisioned.env_path.stat().st_mode) == 0o600
    assert "GID per device" in out.splitlines()[-1]

    # the next start with the same tables changes nothing
    code, out, err = provisioned.run(sysfs_root=drifted.root, net=FakeNetlink.from_sparkfs(drifted))
    assert code == 0 and "rewrote" not in out and "drifted" not in out


def test_drift_on_both_twins(provisioned, tmp_path):
    drifted = SparkSysfs(
        tmp_path / "sys-after-reboot",
        addresses=ADDRESSES,
        gid_tables={
            "rocep1s0f1": drifted_table(RAIL0, 1, "192.168.100.10"),
            "roceP2p1s0f1": drifted_table(RAIL1, 3, "192.168.101.10"),
        },
    ).build()
    code, out, _ = provisioned.run(sysfs_root=drifted.root, net=FakeNetlink.from_sparkfs(drifted))
    assert code == 0
    assert "GID index drifted 3 -> 4 on rocep1s0f1" in out
    assert "GID index drifted 3 -> 4 on roceP2p1s0f1" in out
    assert parse(provisioned.env_path.read_text())["NCCL_IB_GID_INDEX"] == "4"


def test_check_only_writes_nothing(provisioned, tmp_path):
    drifted = rail0_drifted(tmp_path)
    before = provisioned.env_path.read_text()
    code, out, _ = provisioned.run("--check-only", sysfs_root=drifted.root,
                                   net=FakeNetlink.from_sparkfs(drifted))
    assert code == 0
    assert "drifted 3 -> 4" in out and "not rewritten" in out
    assert provisioned.env_path.read_text() == before


def test_missing_env_file_is_rendered(provisioned):
    provisioned.env_path.unlink()
    code, out, _ = provisioned.run()
    assert code == 0
    assert "is missing" in out
    assert stat.S_IMODE(provisioned.env_path.stat().st_mode) == 0o600
    assert parse(provisioned.env_path.read_text())["VLLM_HOST_IP"] == "192.168.100.10"


def test_address_missing_on_the_interface_fails(provisioned, tmp_path):
    # the kernel's view: rail 0 lost its address (netplan not applied)
    kernel = SparkSysfs(tmp_path / "sys-kernel", addresses={RAIL1: ADDRESSES[RAIL1]}).build()
    code, out, err = provisioned.run(net=FakeNetlink.from_sparkfs(kernel))
    assert code == 1
    lines = err.strip().splitlines()
    assert lines and all(line.startswith("spark-prestart: pinning: ") for line in lines)
    assert any(f"interface {RAIL0} does not hold 192.168.100.10" in line for line in lines)
    assert "ok:" not in out


def test_peer_behind_the_default_route_fails(provisioned, tmp_path):
    # the peer is in another subnet: its route leaves over the Wi-Fi default route
    params = provisioned.params_path.read_text().replace("192.168.100.11", "192.168.200.11")
    provisioned.params_path.write_text(params)
    code, _, err = provisioned.run()
    assert code == 1
    assert "192.168.200.11" in err and "wlP9s9" in err


def test_gid_error_fails_with_the_table(provisioned, tmp_path):
    unassigned = SparkSysfs(tmp_path / "sys-unassigned", addresses={RAIL0: ADDRESSES[RAIL0]}).build()
    before = provisioned.env_path.read_text()
    code, out, err = provisioned.run(sysfs_root=unassigned.root)
    assert code == 1
    assert "roceP2p1s0f1" in err and "192.168.101.10" in err
    assert "RoCE v2" in err
    assert provisioned.env_path.read_text() == before  # left as it was


def test_no_rdma_is_tcp(tmp_path):
    lab = {RAIL0: "192.168.100.10/24", RAIL1: "192.168.101.10/24"}
    sysfs = SparkSysfs(tmp_path / "sys", addresses=lab, rdma=False).build()
    node = Node(tmp_path, sysfs)
    code, out, err = node.run()
    assert code == 0, err
    assert out.strip().endswith("TCP sockets (no RDMA)")
    assert parse(node.env_path.read_text())["NCCL_IB_DISABLE"] == "1"


def test_rdma_driver_gone_after_reboot(provisioned, tmp_path):
    no_rdma = SparkSysfs(tmp_path / "sys-no-rdma", addresses=ADDRESSES, rdma=False).build()
    code, out, _ = provisioned.run(sysfs_root=no_rdma.root)
    assert code == 0
    assert "RDMA gone" in out
    assert parse(provisioned.env_path.read_text())["NCCL_IB_DISABLE"] == "1"


def test_unreadable_params_fail(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    code = spark_prestart.main(["--params", str(tmp_path / "missing.json")],
                               net=FakeNetlink(), out=out, err=err)
    assert code == 1 and "missing.json" in err.getvalue()


def test_runs_standalone_from_the_installed_files(provisioned, tmp_path):
    """Installed like the role does: the spark_cluster package in spark_lib_dir, run with
    python3 -m outside Ansible. The real netlink reader sees this machine, which has
    no enp1s0f1np1: the check must fail cleanly with a pinning message (no traceback)."""
    lib = tmp_path / "lib"
    shutil.copytree(ROOT / "module_utils" / "spark_cluster", lib / "spark_cluster",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(lib))
    run = subprocess.run(
        [sys.executable, "-m", "spark_cluster.node.prestart", "--params", str(provisioned.params_path),
         "--check-only"],
        capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=60,
    )
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 1
    assert "spark-prestart: " in run.stderr
    assert RAIL0 in run.stderr


def test_rail_mtu_and_address_drift_stop_the_start_and_say_what_to_run(tmp_path):
    sysfs = SparkSysfs(tmp_path / "sys", addresses=ADDRESSES).build()
    node = Node(tmp_path, sysfs)
    params = make_params(node.env_path, NODE, RAILS, peers=PEERS, sysfs_root=sysfs.root,
                         params_path=node.params_path, mtu=9000)
    node.params_path.write_text(params_text(params))
    code, out, err = node.run()
    assert (code, err) == (0, ""), err
    # a firmware update reset one twin's MTU
    drifted = SparkSysfs(tmp_path / "sys-fw", addresses=ADDRESSES, mtu={RAIL1: 1500}).build()
    code, out, err = node.run(net=FakeNetlink.from_sparkfs(drifted))
    assert code == 1
    assert f"{RAIL1}: MTU 1500, expected 9000" in err
    assert f"nmcli connection up netplan-{RAIL1}" in err and f"networkctl reconfigure {RAIL1}" in err
    assert RAIL0 + ":" not in err
    # rail 1 lost its address (rail 0 is pinned and fine)
    gone = SparkSysfs(tmp_path / "sys-gone", addresses={RAIL0: ADDRESSES[RAIL0]}).build()
    code, out, err = node.run(net=FakeNetlink.from_sparkfs(gone))
    assert code == 1
    assert f"{RAIL1}: address {ADDRESSES[RAIL1]} missing (found none)" in err
