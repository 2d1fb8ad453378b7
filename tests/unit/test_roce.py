"""RoCE v2 GID index resolution (module_utils/spark_cluster/link/roce.py, library/roce_gid.py)
on sysfs trees shaped like a real DGX Spark's."""

import json

import pytest

from spark_cluster.link.roce import GidError, resolve
from ansible.module_utils.testing import patch_module_args
from sparkfs import EMPTY_GID, ROCE_V1, ROCE_V2, ipv4_gid, link_local_gid, mac_for

RAIL0 = "enp1s0f1np1"
RAIL1 = "enP2p1s0f1np1"
ADDRESSES = {RAIL0: "192.168.100.10/24", RAIL1: "192.168.101.10/24"}
TWINS = {RAIL0: "192.168.100.10", RAIL1: "192.168.101.10"}


def drifted_table(netdev, mac_index, address):
    """fe80 v1/v2 at 0/1, an empty slot at 2 (a GID that went away), then
    ::ffff:ip v1/v2 at 3/4: the RoCE v2 IPv4 entry drifted from 3 to 4."""
    fe80 = link_local_gid(mac_for(mac_index))
    gid = ipv4_gid(address)
    return [
        (fe80, ROCE_V1, netdev),
        (fe80, ROCE_V2, netdev),
        None,
        (gid, ROCE_V1, netdev),
        (gid, ROCE_V2, netdev),
    ]


def test_usual_table_index_3_on_both_twins(spark_sysfs):
    sysfs = spark_sysfs(addresses=ADDRESSES)
    result = resolve(sysfs.root, TWINS)
    assert result["rdma_present"] is True
    assert result["nccl_env"] == {
        "NCCL_IB_HCA": "rocep1s0f1,roceP2p1s0f1",
        "NCCL_IB_GID_INDEX": "3",
    }
    assert result["devices"] == [
        {
            "netdev": RAIL0,
            "hca": "rocep1s0f1",
            "port": 1,
            "gid_index": 3,
            "gid": "0000:0000:0000:0000:0000:ffff:c0a8:640a",
            "address": "192.168.100.10",
        },
        {
            "netdev": RAIL1,
            "hca": "roceP2p1s0f1",
            "port": 1,
            "gid_index": 3,
            "gid": "0000:0000:0000:0000:0000:ffff:c0a8:650a",
            "address": "192.168.101.10",
        },
    ]
    assert "3" in result["message"]


def test_hca_order_follows_the_given_rail_order(spark_sysfs):
    sysfs = spark_sysfs(addresses=ADDRESSES)
    result = resolve(sysfs.root, {RAIL1: TWINS[RAIL1], RAIL0: TWINS[RAIL0]})
    assert result["nccl_env"]["NCCL_IB_HCA"] == "roceP2p1s0f1,rocep1s0f1"
    assert [d["netdev"] for d in result["devices"]] == [RAIL1, RAIL0]


def test_address_prefix_is_tolerated(spark_sysfs):
    sysfs = spark_sysfs(addresses=ADDRESSES)
    assert resolve(sysfs.root, ADDRESSES)["nccl_env"]["NCCL_IB_GID_INDEX"] == "3"


def test_drift_on_one_twin_lets_nccl_pick_per_device(spark_sysfs):
    # mac_for index 3: roceP2p1s0f1 is the 4th twin in SPARK_TWINS
    table = drifted_table(RAIL1, 3, "192.168.101.10")
    sysfs = spark_sysfs(addresses=ADDRESSES, gid_tables={"roceP2p1s0f1": table})
    result = resolve(sysfs.root, TWINS)
    assert [d["gid_index"] for d in result["devices"]] == [3, 4]
    assert result["nccl_env"] == {
        "NCCL_IB_HCA": "rocep1s0f1,roceP2p1s0f1",
        "NCCL_IB_ADDR_FAMILY": "AF_INET",
        "NCCL_IB_ROCE_VERSION_NUM": "2",
    }
    assert "NCCL_IB_GID_INDEX" not in result["nccl_env"]
    assert "rocep1s0f1: 3" in result["message"]
    assert "roceP2p1s0f1: 4" in result["message"]
    assert "per device" in result["message"]


def test_drift_on_both_twins_agrees_on_4(spark_sysfs):
    tables = {
        "rocep1s0f1": drifted_table(RAIL0, 1, "192.168.100.10"),
        "roceP2p1s0f1": drifted_table(RAIL1, 3, "192.168.101.10"),
    }
    sysfs = spark_sysfs(addresses=ADDRESSES, gid_tables=tables)
    result = resolve(sysfs.root, TWINS)
    assert result["nccl_env"] == {"NCCL_IB_HCA": "rocep1s0f1,roceP2p1s0f1", "NCCL_IB_GID_INDEX": "4"}


def test_twin_without_ipv4_gid_raises_with_the_table(spark_sysfs):
    # rail 1 has no address yet: its table holds only the fe80 entries
    sysfs = spark_sysfs(addresses={RAIL0: ADDRESSES[RAIL0]})
    with pytest.raises(GidError) as info:
        resolve(sysfs.root, TWINS)
    text = str(info.value)
    assert "roceP2p1s0f1" in text and RAIL1 in text
    assert "192.168.101.10" in text
    assert "0000:0000:0000:0000:0000:ffff:c0a8:650a" in text  # what was wanted, as sysfs prints it
    fe80 = link_local_gid(mac_for(3))
    assert f"0  {fe80}  {ROCE_V1}  {RAIL1}" in text
    assert f"1  {fe80}  {ROCE_V2}  {RAIL1}" in text
    assert "not (yet) assigned" in text


def test_roce_v1_only_raises(spark_sysfs):
    sysfs = spark_sysfs(addresses=ADDRESSES, roce_v1_only=True)
    with pytest.raises(GidError) as info:
        resolve(sysfs.root, TWINS)
    text = str(info.value)
    assert "rocep1s0f1" in text
    assert "RoCE v1" in text
    assert "0000:0000:0000:0000:0000:ffff:c0a8:640a  IB/RoCE v1" in text


def test_port_down_without_address_names_the_port_state(spark_sysfs):
    sysfs = spark_sysfs(cabled_ports=(), addresses={})
    with pytest.raises(GidError) as info:
        resolve(sysfs.root, {RAIL0: "192.168.100.10"})
    assert "1: DOWN" in str(info.value)
    assert "not ACTIVE" in str(info.value)


def test_entry_of_another_netdev_does_not_count(spark_sysfs):
    gid = ipv4_gid("192.168.100.10")
    fe80 = link_local_gid(mac_for(1))
    table = [(fe80, ROCE_V1, RAIL0), (fe80, ROCE_V2, RAIL0), (gid, ROCE_V1, "br0"), (gid, ROCE_V2, "br0")]
    sysfs = spark_sysfs(addresses=ADDRESSES, gid_tables={"rocep1s0f1": table})
    with pytest.raises(GidError) as info:
        resolve(sysfs.root, TWINS)
    assert "another netdev" in str(info.value)


def test_link_local_only_is_never_defaulted_to_0(spark_sysfs):
    fe80 = link_local_gid(mac_for(1))
    table = [(fe80, ROCE_V1, RAIL0), (fe80, ROCE_V2, RAIL0)]
    sysfs = spark_sysfs(addresses=ADDRESSES, gid_tables={"rocep1s0f1": table})
    with pytest.raises(GidError):
        resolve(sysfs.root, TWINS)


def test_empty_table_says_so(spark_sysfs):
    sysfs = spark_sysfs(addresses=ADDRESSES, gid_tables={"rocep1s0f1": [None, None]})
    with pytest.raises(GidError) as info:
        resolve(sysfs.root, TWINS)
    assert "table is empty" in str(info.value)


def test_unreadable_attrs_of_a_slot_are_skipped(spark_sysfs):
    sysfs = spark_sysfs(addresses=ADDRESSES)
    port = sysfs.root / "class" / "infiniband" / "rocep1s0f1" / "ports" / "1"
    # slot 2 (v1): type file gone, as EINVAL would make it unreadable
    (port / "gid_attrs" / "types" / "2").unlink()
    assert (port / "gids" / "7").read_text().strip() == EMPTY_GID
    assert resolve(sysfs.root, TWINS)["nccl_env"]["NCCL_IB_GID_INDEX"] == "3"


def test_unused_port_0_twins_are_not_listed(spark_sysfs):
    # both ports cabled and addressed, but only the port-1 twins are the rails
    addresses = dict(ADDRESSES, enp1s0f0np0="192.168.102.10/24", enP2p1s0f0np0="192.168.103.10/24")
    sysfs = spark_sysfs(cabled_ports=(0, 1), addresses=addresses)
    result = resolve(sysfs.root, TWINS)
    assert result["nccl_env"]["NCCL_IB_HCA"] == "rocep1s0f1,roceP2p1s0f1"
    assert {d["hca"] for d in result["devices"]} == {"rocep1s0f1", "roceP2p1s0f1"}


def test_renamed_devices(spark_sysfs):
    renames = {"rocep1s0f0": "mlx5_0", "rocep1s0f1": "mlx5_1", "roceP2p1s0f0": "mlx5_2", "roceP2p1s0f1": "mlx5_3"}
    sysfs = spark_sysfs(addresses=ADDRESSES, renames=renames)
    result = resolve(sysfs.root, TWINS)
    assert result["nccl_env"] == {"NCCL_IB_HCA": "mlx5_1,mlx5_3", "NCCL_IB_GID_INDEX": "3"}


def test_renamed_netdevs(spark_sysfs):
    renames = {RAIL0: "ens1f1np1", RAIL1: "ens2f1np1"}
    addresses = {"ens1f1np1": ADDRESSES[RAIL0], "ens2f1np1": ADDRESSES[RAIL1]}
    sysfs = spark_sysfs(addresses=addresses, renames=renames)
    result = resolve(sysfs.root, {"ens1f1np1": "192.168.100.10", "ens2f1np1": "192.168.101.10"})
    assert result["nccl_env"]["NCCL_IB_HCA"] == "rocep1s0f1,roceP2p1s0f1"


def test_no_rdma_falls_back_to_tcp(spark_sysfs):
    sysfs = spark_sysfs(addresses=ADDRESSES, rdma=False)
    result = resolve(sysfs.root, TWINS)
    assert result["rdma_present"] is False
    assert result["devices"] == []
    assert result["nccl_env"] == {"NCCL_IB_DISABLE": "1"}
    assert result["message"] == (
        f"no RDMA device for {RAIL0}, {RAIL1}: NCCL falls back to TCP sockets over {RAIL0}"
    )


def test_lab_veth_without_sysfs_device_is_no_rdma(tmp_path):
    (tmp_path / "class" / "net").mkdir(parents=True)
    result = resolve(tmp_path, {"enp1s0f1np1": "198.18.100.10"})
    assert result["nccl_env"] == {"NCCL_IB_DISABLE": "1"}


def test_bad_address_is_an_error(spark_sysfs):
    sysfs = spark_sysfs(addresses=ADDRESSES)
    with pytest.raises(GidError):
        resolve(sysfs.root, {RAIL0: "not-an-ip"})


# ---------------------------------------------------------------- the module

def run_module(capsys, args):
    import roce_gid

    with patch_module_args(args), pytest.raises(SystemExit) as info:
        roce_gid.main()
    return info.value.code, json.loads(capsys.readouterr().out)


def test_module_returns_the_resolution(spark_sysfs, capsys):
    sysfs = spark_sysfs(addresses=ADDRESSES)
    code, result = run_module(capsys, {"sysfs_root": str(sysfs.root), "interfaces": TWINS, "_ansible_check_mode": True})
    assert code == 0
    assert result["changed"] is False
    assert result["nccl_env"]["NCCL_IB_GID_INDEX"] == "3"
    assert result["devices"][1]["hca"] == "roceP2p1s0f1"


def test_module_fails_with_the_table(spark_sysfs, capsys):
    sysfs = spark_sysfs(addresses={RAIL0: ADDRESSES[RAIL0]})
    code, result = run_module(capsys, {"sysfs_root": str(sysfs.root), "interfaces": TWINS})
    assert code == 1
    assert result["failed"] is True
    assert "roceP2p1s0f1" in result["msg"] and "192.168.101.10" in result["msg"]


# ------------------------------- twins that disagree: one with RDMA, the other without

def without_hca(sysfs, hca):
    """The RDMA device of one twin is gone (mlx5_ib did not bind on that PCI function)."""
    (sysfs.root / "class" / "infiniband" / hca).unlink()
    return sysfs


def test_rail1_twin_lost_its_rdma_device_rail0_keeps_ib(spark_sysfs):
    """Rail 0's twin has its RDMA device (index 3), rail 1's has none: NCCL must still
    use RDMA on rail 0's HCA only, never fall back to TCP for both, never list the
    HCA-less twin."""
    sysfs = without_hca(spark_sysfs(addresses=ADDRESSES), "roceP2p1s0f1")
    result = resolve(sysfs.root, TWINS)
    assert result["rdma_present"] is True
    assert result["nccl_env"] == {"NCCL_IB_HCA": "rocep1s0f1", "NCCL_IB_GID_INDEX": "3"}
    assert [d["netdev"] for d in result["devices"]] == [RAIL0]
    assert result["message"] == (
        f"RoCE v2 GID index 3 on rocep1s0f1; no RDMA device for {RAIL1} (not in NCCL_IB_HCA)")


def test_rail0_twin_without_rdma_rail1_with_drifted_index(spark_sysfs):
    """The other way round, and the remaining twin drifted to 4: its own index is used."""
    sysfs = spark_sysfs(addresses=ADDRESSES,
                        gid_tables={"roceP2p1s0f1": drifted_table(RAIL1, 3, "192.168.101.10")})
    without_hca(sysfs, "rocep1s0f1")
    result = resolve(sysfs.root, TWINS)
    assert result["rdma_present"] is True
    assert result["nccl_env"] == {"NCCL_IB_HCA": "roceP2p1s0f1", "NCCL_IB_GID_INDEX": "4"}
    assert result["devices"][0]["gid_index"] == 4 and result["devices"][0]["hca"] == "roceP2p1s0f1"
    assert f"no RDMA device for {RAIL0}" in result["message"]
