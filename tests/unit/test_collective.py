"""module_utils/spark_cluster/link/collective.py on what the probe really printed (fixtures/collective:
two H200, one network namespace per rank, NCCL 2.28.9), plus IB cases written in NCCL's own
line formats (no RDMA on that host: built-in IB, the external IBext plugin, Socket, with
NCCL_DEBUG_SUBSYS ENV; see fixtures/collective/README.md for the sources), and the probe
program's own helpers."""

import importlib.util
import pathlib

from spark_cluster.link import collective as sc

FIX = pathlib.Path(__file__).parent / "fixtures" / "collective"
ROOT = pathlib.Path(__file__).resolve().parents[2]
HOSTS = ["spark-head", "spark-worker"]


def runs(case):
    return {h: {"measured": True, "rc": 0, "output": (FIX / f"{case}-node{i}.log").read_text()}
            for i, h in enumerate(HOSTS)}


def expect(rdma=()):
    return {h: {"rail0_interface": "enp1s0f1np1", "rdma_devices": list(rdma)} for h in HOSTS}


def test_parse_real_pinned_run():
    p = sc.parse_log((FIX / "pinned-node0.log").read_text())
    assert p["start"]["world_size"] == 2 and p["start"]["nccl"] == "2.28.9"
    assert p["start"]["pins"]["NCCL_SOCKET_IFNAME"] == "=enp1s0f1np1"
    assert [r["size_bytes"] for r in p["results"]] == [1 << n for n in range(20, 31)]
    assert all(r["correct"] for r in p["results"])
    assert p["results"][-1] == {"algbw_gbs": 2.766, "busbw_gbs": 2.766, "correct": True,
                                "iterations": 5, "rank": 0, "size_bytes": 1 << 30,
                                "time_us": 388198.2}
    n = p["nccl"]
    assert n["version"] == "2.28.9+cuda13.0" and n["network"] == "Socket"
    assert n["socket_devices"] == [{"index": 0, "interface": "enp1s0f1np1",
                                    "address": "198.18.100.10"}]
    assert n["ib_failed"] and not n["ib_devices"]
    assert n["settings"]["NCCL_SOCKET_IFNAME"] == "=enp1s0f1np1"
    assert {c["transport"] for c in n["channels"]} == {"NET/Socket"}
    assert len(n["channels"]) == 4
    assert p["done"]["peak_busbw_gbs"] == 2.832


def test_pinned_run_passes_its_threshold_and_fails_the_rdma_one():
    s = sc.collective_section(runs("pinned"), expect(), threshold=2.0, order=HOSTS)
    assert s["status"] == "pass", s["reason"]
    assert s["reason"] == ("all-reduce over NET/Socket on 2 node(s), peak busbw 2.83 GB/s "
                           "at 128 MiB")
    assert s["nodes"]["spark-worker"]["bootstrap_interface"] == "enp1s0f1np1"
    assert s["nodes"]["spark-worker"]["bootstrap_address"] == "198.18.100.11"
    assert len(s["sizes"]) == 11 and s["world_size"] == 2
    s = sc.collective_section(runs("pinned"), expect(), order=HOSTS)  # default 10 GB/s
    assert s["status"] == "fail"
    assert "below 10.00 GB/s" in s["failures"][0] and "3 GB/s" in s["failures"][0]


def test_rdma_expected_but_sockets_fails_with_nccls_reason():
    """A real Spark's env (NCCL_IB_HCA, GID 3) on a host without RDMA: NCCL falls back."""
    p = sc.parse_log((FIX / "ibfallback-node1.log").read_text())
    assert p["nccl"]["ib_no_device"] and p["nccl"]["network"] == "Socket"
    assert p["nccl"]["oob"] == {"interface": "enp1s0f1np1", "address": "198.18.100.11"}
    assert p["nccl"]["settings"]["NCCL_IB_HCA"] == "rocep1s0f1,roceP2p1s0f1"
    s = sc.collective_section(runs("ibfallback"), expect(), threshold=2.0, order=HOSTS)
    assert s["status"] == "fail"
    assert s["failures"][0].startswith(
        "spark-head: RDMA expected (NCCL_IB_HCA=rocep1s0f1,roceP2p1s0f1, RDMA devices none) "
        "but NCCL used NET/Socket: NCCL said 'NET/IB : No device found'")
    head = s["nodes"]["spark-head"]
    assert head["gid_index_pinned"] == 3 and head["gid_index_used"] is None  # NCCL never said
    assert not head["rdma"] and head["gid_index_mismatch"] is None
    # RDMA devices seen on the rails also make RDMA expected (env without NCCL_IB_HCA)
    s = sc.collective_section(runs("pinned"), expect(["rocep1s0f1"]), threshold=2.0,
                              order=HOSTS)
    assert s["status"] == "fail" and "NCCL_IB_DISABLE=1" in s["failures"][0]


def test_socket_pinned_to_the_wifi_fails():
    s = sc.collective_section(runs("wifi"), expect(), threshold=2.0, order=HOSTS)
    assert s["status"] == "fail"
    assert s["failures"][0] == ("spark-head: NCCL's bootstrap/socket interface is wlP9s9 "
                                "(198.19.0.10), not rail 0 enp1s0f1np1: "
                                "NCCL_SOCKET_IFNAME==wlP9s9 pins the wrong interface")


def test_not_measured_is_never_pass():
    lab = {h: {"measured": False, "reason": "no NVIDIA GPU (/dev/nvidiactl missing)"}
           for h in HOSTS}
    s = sc.collective_section(lab, expect(), order=HOSTS)
    assert s["status"] == "not_measured" and "spark-head: no NVIDIA GPU" in s["reason"]
    assert sc.collective_section({}, expect())["status"] == "not_measured"


def test_failed_rank_and_missing_node_fail():
    r = runs("pinned")
    r["spark-worker"] = {"measured": True, "rc": 3, "output": (
        'SPARK_COLLECTIVE {"kind": "error", "rank": 1, "stage": "init", '
        '"error": "DistStoreError: Timed out after 121 seconds"}\n')}
    s = sc.collective_section(r, expect(), threshold=2.0, order=HOSTS)
    assert s["status"] == "fail"
    assert s["failures"] == ["spark-worker: the probe failed (exit 3): init: DistStoreError: "
                             "Timed out after 121 seconds"]


IB_LOG = """\
spark-head:100:100 [0] NCCL INFO Bootstrap: Using enp1s0f1np1:192.168.100.10<0>
spark-head:100:100 [0] NCCL INFO NCCL version 2.28.9+cuda13.0
spark-head:100:200 [0] NCCL INFO NCCL_IB_HCA set to rocep1s0f1,roceP2p1s0f1
spark-head:100:200 [0] NCCL INFO NCCL_IB_GID_INDEX set by environment to 3.
spark-head:100:200 [0] NCCL INFO NET/IB : Using {using} [RO]; OOB enp1s0f1np1:192.168.100.10<0>
spark-head:100:200 [0] NCCL INFO Using network IB
spark-head:100:100 [0] NCCL INFO Channel 00/0 : 1[0] -> 0[0] [receive] via NET/IB/0
spark-head:100:100 [0] NCCL INFO Channel 01/0 : 1[0] -> 0[0] [receive] via NET/IB/{second}
spark-head:100:100 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[0] [send] via NET/IB/0
spark-head:100:100 [0] NCCL INFO Channel 01/0 : 0[0] -> 1[0] [send] via NET/IB/{second}
SPARK_COLLECTIVE {{"kind": "start", "rank": 0, "world_size": 2, "pins": {{"NCCL_IB_HCA": "rocep1s0f1,roceP2p1s0f1", "NCCL_IB_GID_INDEX": "3", "NCCL_SOCKET_IFNAME": "=enp1s0f1np1"}}}}
SPARK_COLLECTIVE {{"kind": "result", "rank": 0, "size_bytes": 1073741824, "iterations": 5, "time_us": 90000.0, "algbw_gbs": 11.93, "busbw_gbs": 11.93, "correct": true}}
SPARK_COLLECTIVE {{"kind": "done", "rank": 0, "seconds": 9.0, "peak_busbw_gbs": 11.93}}
"""
BOTH = "[0]rocep1s0f1:1/RoCE [1]roceP2p1s0f1:1/RoCE"


def ib_runs(using=BOTH, second=1):
    text = IB_LOG.format(using=using, second=second)
    return {h: {"measured": True, "rc": 0, "output": text} for h in HOSTS}


def test_ib_both_twins_pass_and_report_hcas_gid_bootstrap():
    p = sc.parse_log(IB_LOG.format(using=BOTH, second=1))
    assert p["nccl"]["bootstrap"]["interface"] == "enp1s0f1np1"
    assert [d["name"] for d in p["nccl"]["ib_devices"]] == ["rocep1s0f1", "roceP2p1s0f1"]
    s = sc.collective_section(ib_runs(), expect(["rocep1s0f1", "roceP2p1s0f1"]), order=HOSTS)
    assert s["status"] == "pass" and s["warnings"] == []
    n = s["nodes"]["spark-head"]
    assert n["transport"] == "NET/IB" and n["rdma"] and n["gid_index_used"] == 3
    assert n["gid_index_source"] == "NCCL's 'NCCL_IB_GID_INDEX set by environment to 3.' line"
    assert n["ib_devices_used"] == ["roceP2p1s0f1", "rocep1s0f1"]
    assert n["bootstrap_source"] == "Bootstrap line"


def test_one_twin_unused_is_a_warning():
    s = sc.collective_section(ib_runs(second=0), expect(["rocep1s0f1", "roceP2p1s0f1"]),
                              order=HOSTS)
    assert s["status"] == "pass"
    assert s["warnings"][0].startswith("spark-head: one twin unused: no channel ran over "
                                       "roceP2p1s0f1")
    s = sc.collective_section(ib_runs(using="[0]rocep1s0f1:1/RoCE", second=0),
                              expect(["rocep1s0f1", "roceP2p1s0f1"]), order=HOSTS)
    assert "NCCL found rocep1s0f1 of NCCL_IB_HCA=rocep1s0f1,roceP2p1s0f1" in s["warnings"][0]


def test_merged_virtual_device_counts_both_twins():
    text = IB_LOG.format(using=BOTH, second=2).replace(
        "NCCL INFO Using network IB",
        "NCCL INFO NET/IB : Made virtual device [2] name=rocep1s0f1+roceP2p1s0f1 speed=200000 "
        "ndevs=2\nspark-head:100:200 [0] NCCL INFO Using network IB")
    text = text.replace("via NET/IB/0", "via NET/IB/2")
    r = {h: {"measured": True, "rc": 0, "output": text} for h in HOSTS}
    s = sc.collective_section(r, expect(["rocep1s0f1", "roceP2p1s0f1"]), order=HOSTS)
    assert s["warnings"] == [] and s["nodes"]["spark-head"]["ib_devices_used"] == [
        "roceP2p1s0f1", "rocep1s0f1"]


# ------------------------------------------- ENV lines, the GID index NCCL used, plugins

RDMA = ["rocep1s0f1", "roceP2p1s0f1"]


def text_runs(texts):
    return {h: {"measured": True, "rc": 0, "output": t} for h, t in zip(HOSTS, texts)}


def edited(case, *pairs):
    """Both nodes' logs of a fixture with (old, new) replacements."""
    texts = []
    for i in range(2):
        text = (FIX / f"{case}-node{i}.log").read_text()
        for old, new in pairs:
            text = text.replace(old, new)
        texts.append(text)
    return text_runs(texts)


def test_builtin_ib_with_env_lines_reports_the_gid_index_nccl_used():
    p = sc.parse_log((FIX / "ib-node0.log").read_text())
    n = p["nccl"]
    assert n["env_settings"]["NCCL_IB_GID_INDEX"] == "3"
    assert n["env_settings"]["NCCL_SOCKET_IFNAME"] == "=enp1s0f1np1"
    assert n["ib_connections"] == [
        {"net_device": 0, "ib_device": 0, "port": 1, "qpn": 1172, "mtu": 5, "gid_index": 3,
         "gid_address": "192.168.100.10"},
        {"net_device": 1, "ib_device": 1, "port": 1, "qpn": 1175, "mtu": 5, "gid_index": 3,
         "gid_address": "192.168.101.10"}]
    assert p["start"]["nccl_debug_subsys"] == "INIT,NET,BOOTSTRAP,ENV"
    s = sc.collective_section(runs("ib"), expect(RDMA), order=HOSTS)
    assert s["status"] == "pass" and s["warnings"] == [], s["failures"]
    assert s["reason"] == "all-reduce over NET/IB on 2 node(s), peak busbw 23.74 GB/s at 1 GiB"
    w = s["nodes"]["spark-worker"]
    assert w["rdma"] and w["rdma_reason"] == "NCCL's built-in IB transport"
    assert (w["gid_index_pinned"], w["gid_index_used"], w["gid_index_nccl_env"]) == (3, 3, "3")
    assert w["gid_index_source"] == "NCCL's per-connection 'NET/IB: ... GID n' lines"
    assert w["gid_by_device"] == {"roceP2p1s0f1": {"gid_index": 3, "address": "192.168.101.11"},
                                  "rocep1s0f1": {"gid_index": 3, "address": "192.168.100.11"}}
    assert w["gid_index_mismatch"] is None and w["bootstrap_source"] == "Bootstrap line"
    md = "\n".join(sc.render_markdown(s))
    assert ("| spark-head | NET/IB (RDMA) | rocep1s0f1,roceP2p1s0f1 / roceP2p1s0f1,rocep1s0f1 "
            "| pinned 3 / NCCL 3 | enp1s0f1np1 (192.168.100.10) | 2.28.9+cuda13.0 |") in md


def test_gid_index_from_nccls_env_line_alone():
    """No per-connection line (e.g. NET left out): NCCL's ENV line is what it read."""
    r = {h: {"measured": True, "rc": 0, "output": "\n".join(
        line for line in run["output"].splitlines() if " GID 3 (" not in line)}
        for h, run in runs("ib").items()}
    n = sc.collective_section(r, expect(RDMA), order=HOSTS)["nodes"]["spark-head"]
    assert n["gid_index_used"] == 3 and n["gid_by_device"] == {}
    assert n["gid_index_source"] == ("NCCL's 'NCCL_IB_GID_INDEX set by environment to 3.' "
                                     "line")


def test_gid_index_mismatch_fails():
    s = sc.collective_section(edited("ib", ("set by environment to 3.", "set by environment "
                                            "to 1."), (" GID 3 (", " GID 1 (")),
                              expect(RDMA), order=HOSTS)
    assert s["status"] == "fail"
    assert s["failures"][0].startswith(
        "spark-head: GID index mismatch: NCCL read NCCL_IB_GID_INDEX=1 from its environment, "
        "the env file pins 3. The pin is not what NCCL runs with")
    n = s["nodes"]["spark-head"]
    assert n["gid_index_used"] == 1 and n["gid_index_pinned"] == 3
    assert "| pinned 3 / NCCL 1 (MISMATCH) |" in "\n".join(sc.render_markdown(s))
    # the connections alone disagree with the pin
    s = sc.collective_section(edited("ib", (" GID 3 (0/A65A8C0", " GID 5 (0/A65A8C0"),
                                     (" GID 3 (0/B65A8C0", " GID 5 (0/B65A8C0")),
                              expect(RDMA), order=HOSTS)
    assert s["failures"][0].startswith("spark-head: GID index mismatch: NCCL's connections "
                                       "used GID index 3,5, the env file pins 3")
    assert s["nodes"]["spark-head"]["gid_index_used"] == [3, 5]
    assert s["nodes"]["spark-head"]["gid_by_device"]["roceP2p1s0f1"]["gid_index"] == 5


def test_gid_index_nccl_rejected_is_a_mismatch():
    big = "99999999999999999999"
    s = sc.collective_section(edited(
        "ib", ('"NCCL_IB_GID_INDEX": "3"', '"NCCL_IB_GID_INDEX": "%s"' % big),
        ("NCCL_IB_GID_INDEX set by environment to 3.",
         "Invalid value %s for NCCL_IB_GID_INDEX, using default -1." % big)),
        expect(RDMA), order=HOSTS)
    assert s["status"] == "fail"
    assert ("NCCL rejected NCCL_IB_GID_INDEX=%s and used its default -1 (auto-selection)"
            % big) in s["failures"][0]


def test_unpinned_gid_index_reports_what_nccl_chose_per_device():
    """No NCCL_IB_GID_INDEX (spark_roce pins family/version instead): NCCL's own choice."""
    s = sc.collective_section(edited(
        "ib", ('"NCCL_IB_GID_INDEX": "3", ', ""),
        ("NCCL INFO NCCL_IB_GID_INDEX set by environment to 3.", "NCCL INFO "
         "NCCL_IB_ADDR_FAMILY set by environment to AF_INET")), expect(RDMA), order=HOSTS)
    n = s["nodes"]["spark-head"]
    assert s["status"] == "pass" and s["warnings"] == []
    assert n["gid_index_pinned"] is None and n["gid_index_used"] == 3
    assert n["gid_index_mismatch"] is None
    assert "| pinned - / NCCL 3 |" in "\n".join(sc.render_markdown(s))


def test_rdma_without_any_gid_line_warns_and_names_the_missing_subsystem():
    r = {h: {"measured": True, "rc": 0, "output": "\n".join(
        line.replace("INIT,NET,BOOTSTRAP,ENV", "INIT,BOOTSTRAP")
        for line in run["output"].splitlines()
        if " GID 3 (" not in line and "NCCL_IB_GID_INDEX set by" not in line)}
        for h, run in runs("ib").items()}
    s = sc.collective_section(r, expect(RDMA), order=HOSTS)
    assert s["status"] == "pass"
    assert s["warnings"][0] == (
        "spark-head: NCCL did not say which GID index it used (no per-connection 'GID n' "
        "line, no 'NCCL_IB_GID_INDEX set by environment' line); NCCL_DEBUG_SUBSYS="
        "INIT,BOOTSTRAP lacks NET/ENV")


def test_external_ibext_plugin_counts_as_rdma():
    p = sc.parse_log((FIX / "ibext-node0.log").read_text())
    assert p["nccl"]["network"] == "IBext_v11"
    assert p["nccl"]["net_plugin"] == {"name": "NCCL RDMA Plugin v11", "api": 11}
    assert p["nccl"]["net_plugins"]["IBext_v11"]["initialized"]
    s = sc.collective_section(runs("ibext"), expect(RDMA), order=HOSTS)
    assert s["status"] == "pass" and s["warnings"] == [], s["failures"]
    n = s["nodes"]["spark-head"]
    assert n["transport"] == "NET/IBext_v11" and n["rdma"]
    assert n["rdma_reason"] == "NVIDIA's external IB plugin IBext_v11"
    assert n["ib_devices_used"] == ["roceP2p1s0f1", "rocep1s0f1"]
    assert (n["gid_index_used"], n["gid_index_pinned"], n["gid_index_mismatch"]) == (3, 3, None)
    assert s["reason"].startswith("all-reduce over NET/IBext_v11 on 2 node(s)")
    # older plugin builds call themselves plain "IBext"
    s = sc.collective_section(edited("ibext", ("IBext_v11", "IBext")), expect(RDMA),
                              order=HOSTS)
    assert s["status"] == "pass" and s["nodes"]["spark-head"]["transport"] == "NET/IBext"


def test_a_plugin_by_another_name_counts_when_its_own_lines_use_roce():
    """NCCL's v10 wrapper keeps the name the plugin exported at load ("NCCL RDMA Plugin
    v10"), spaces and all: RDMA because its own NET/IB line lists the RoCE devices."""
    s = sc.collective_section(edited("ibext", ("(v11)", "(v10)"),
                                     ("NCCL RDMA Plugin v11", "NCCL RDMA Plugin v10"),
                                     ("IBext_v11", "NCCL RDMA Plugin v10")),
                              expect(RDMA), order=HOSTS)
    assert s["status"] == "pass", s["failures"]
    n = s["nodes"]["spark-head"]
    assert n["transport"] == "NET/NCCL RDMA Plugin v10" and n["rdma"]
    assert n["rdma_reason"] == ("external net plugin NCCL RDMA Plugin v10 on "
                                "rocep1s0f1/RoCE,roceP2p1s0f1/RoCE")
    assert n["ib_devices_used"] == ["roceP2p1s0f1", "rocep1s0f1"]


def test_a_non_rdma_plugin_fails_where_rdma_is_expected():
    """AWS-OFI ("AWS Libfabric") prints no NET/IB line of its own; an IB plugin that failed
    before it does not lend it its devices."""
    s = sc.collective_section(edited(
        "ibext", ("IBext_v11", "AWS Libfabric"),
        ("Initialized NET plugin AWS Libfabric", "Failed to initialize NET plugin IBext_v11"
         "\nx:1:1 [0] NCCL INFO Initialized NET plugin AWS Libfabric")),
        expect(RDMA), order=HOSTS)
    assert s["status"] == "fail"
    n = s["nodes"]["spark-head"]
    assert not n["rdma"] and n["transport"] == "NET/AWS Libfabric" and n["ib_devices_used"] == []
    assert "but NCCL used NET/AWS Libfabric" in s["failures"][0]
    assert "NCCL said 'NET/IB : No device found' / could not initialize IB" in s["failures"][0]
    s = sc.collective_section(edited("ibext", ("NET/IB : Using [0]rocep1s0f1:1/RoCE "
                                               "[1]roceP2p1s0f1:1/RoCE", "NET/OFI Using"),
                                     ("IBext_v11", "AWS Libfabric")),
                              expect(RDMA), order=HOSTS)
    assert ("the external net plugin AWS Libfabric is not an IB/RoCE transport"
            in s["failures"][0])


def test_socket_with_env_lines_stays_non_rdma():
    p = sc.parse_log((FIX / "socket-node0.log").read_text())
    assert p["nccl"]["env_settings"]["NCCL_IB_DISABLE"] == "1"
    assert p["nccl"]["network"] == "Socket" and p["nccl"]["ib_failed"]
    s = sc.collective_section(runs("socket"), expect(), threshold=2.0, order=HOSTS)
    assert s["status"] == "pass" and s["warnings"] == []
    n = s["nodes"]["spark-head"]
    assert not n["rdma"] and n["gid_index_used"] is None and n["gid_index_pinned"] is None
    s = sc.collective_section(runs("socket"), expect(RDMA), threshold=2.0, order=HOSTS)
    assert s["status"] == "fail" and "NCCL_IB_DISABLE=1" in s["failures"][0]


def test_nccl_line_formats_of_other_versions():
    """master (v2.29.7+: '__func__: ... qp_num'), v2.18 ('Dev n Port'), master's
    rail/plane device suffixes."""
    text = "\n".join("h:1:2 [0] NCCL INFO " + m for m in (
        "NET/IB : Using [0]mlx5_0:1:0/RoCE [1]mlx5_1:1::2/RoCE [RO]; OOB eth0:10.0.0.1<0>",
        "NET/IB: ncclIbConnect: NCCL Dev 1 IbDev 1 Port 1 qp_num 77 mtu 5 GID 3 "
        "(0/100000AFFFF0000) ctsFifoRkey=0x1 ctsFifoLkey=0x1",
        "NET/IB: Dev 0 Port 1 qpn 76 mtu 4 GID 3 (0/100000AFFFF0000)",
        "NET/IB: NCCL Dev 0 IbDev 0 Port 1 qpn 9 mtu 5 LID 0 subnet-prefix 0  FLID 0 "
        "fifoRkey=0x1 fifoLkey=0x1"))
    n = sc.parse_log(text)["nccl"]
    assert [(d["name"], d["link_layer"]) for d in n["ib_devices"]] == [("mlx5_0", "RoCE"),
                                                                        ("mlx5_1", "RoCE")]
    assert [(c["ib_device"], c["qpn"], c["gid_index"], c["gid_address"])
            for c in n["ib_connections"]] == [(1, 77, 3, "10.0.0.1"), (0, 76, 3, "10.0.0.1")]


def test_c_int_reads_like_strtoll_base_0():
    assert [sc._c_int(v) for v in ("3", "0x3", "03", "010", " 7", "-1", "", None, "x", 5)] == [
        3, 3, 3, 8, 7, -1, None, None, None, 5]
    assert sc._gid_address("80FE", "0") == "fe80::"  # raw bytes fe 80 .. read little-endian


def test_probe_adds_env_to_nccl_debug_subsys():
    probe = _probe_module()
    assert probe.debug_subsys("INIT,NET,BOOTSTRAP") == "INIT,NET,BOOTSTRAP,ENV"
    assert probe.debug_subsys("INIT,NET") == "INIT,NET,ENV"
    assert probe.debug_subsys(None) == "INIT,NET,BOOTSTRAP,ENV"
    assert probe.debug_subsys("init,env") == "init,env"
    assert probe.debug_subsys("ALL") == "ALL"
    assert probe.debug_subsys("^COLL,ENV") == "^COLL"
    assert probe.debug_subsys("^ENV") == "ALL"
    assert probe.debug_subsys("^ALL") == "ENV"
    for value in ("INIT,NET", None, "^COLL,ENV", "ALL", "^ALL"):
        assert sc.subsys_logs(probe.debug_subsys(value), "ENV"), value
    assert not sc.subsys_logs("INIT,NET", "ENV") and sc.subsys_logs(None, "ENV")
    assert not sc.subsys_logs(None, "NET") and not sc.subsys_logs("^NET", "NET")


def test_probe_sets_nccl_debug_subsys_before_nccl_loads(capsys, monkeypatch):
    probe = _probe_module()
    monkeypatch.setenv("NCCL_DEBUG_SUBSYS", "INIT,NET,BOOTSTRAP")
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    assert probe.main(["--sizes", "1M"]) == 3  # stops at 'import torch', after the env
    import os
    assert os.environ["NCCL_DEBUG_SUBSYS"] == "INIT,NET,BOOTSTRAP,ENV"


def _probe_module():
    path = ROOT / "roles" / "link_validation" / "files" / "spark_collective_probe.py"
    spec = importlib.util.spec_from_file_location("spark_collective_probe", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_probe_sizes_and_iterations():
    probe = _probe_module()
    assert probe.MARK == sc.MARK
    assert probe.size_list("1M:1G") == [1 << n for n in range(20, 31)]
    assert probe.size_list("1M,64M") == [1 << 20, 64 << 20]
    assert probe.iterations(1 << 30, 4 << 30, 5, 50) == 5
    assert probe.iterations(1 << 20, 4 << 30, 5, 50) == 50


def test_probe_without_torch_reports_an_error_line(capsys, monkeypatch):
    probe = _probe_module()
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    monkeypatch.setenv("NCCL_DEBUG_SUBSYS", "INIT,NET")  # main() sets it: restored after
    assert probe.main(["--sizes", "1M"]) == 3
    parsed = sc.parse_log(capsys.readouterr().out)
    assert parsed["errors"][0]["stage"] == "import"


def test_readiness_stops_at_the_first_missing_thing(tmp_path):
    env = tmp_path / "runtime.env"
    gpu = tmp_path / "nvidiactl"
    r = sc.readiness(str(env), "img", gpu_device=str(gpu), docker="/usr/bin/docker")
    assert not r["ready"] and r["reason"].startswith("no NVIDIA GPU")
    gpu.write_text("")
    r = sc.readiness(str(env), "img", gpu_device=str(gpu), docker="/usr/bin/docker")
    assert r["reason"] == f"runtime env file {env} missing: run site.yml first"
    env.write_text("# head\nMASTER_ADDR=192.168.100.10\nMASTER_PORT=29501\nNODE_RANK=0\n"
                   "NNODES=3\nNCCL_SOCKET_IFNAME==enp1s0f1np1\n")
    r = sc.readiness(str(env), "img", gpu_device=str(gpu), docker=None)
    assert r["reason"] == "docker not found on this node" and r["node_rank"] == 0
    r = sc.readiness(str(env), "img", gpu_device=str(gpu), docker="d",
                     image_present=lambda image: False)
    assert r["reason"] == "runtime image img not on this node: run site.yml first"
    r = sc.readiness(str(env), "img", gpu_device=str(gpu), docker="d",
                     image_present=lambda image: True, port_check=lambda a, p: True)
    assert "master port 192.168.100.10:29501 is in use" in r["reason"]
    r = sc.readiness(str(env), "img", gpu_device=str(gpu), docker="d",
                     image_present=lambda image: True, port_check=lambda a, p: False)
    assert r["ready"] and r["master"] == "192.168.100.10:29501"


def test_port_in_use_sees_a_listener():
    import socket
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        assert sc.port_in_use("127.0.0.1", port)
    assert not sc.port_in_use("127.0.0.1", port)


def test_probe_argv_runs_the_image_with_the_env_file_and_host_network():
    argv = sc.probe_argv("vllm-dspark-runtime:clean", "/etc/spark-cluster/runtime.env",
                         "/tmp/p.py", python="/opt/env/bin/python", sizes="1M:1G",
                         timeout=300, extra_env={"NCCL_DEBUG": "INFO"}, infiniband=True)
    assert argv[:2] == ["docker", "run"]
    joined = " ".join(argv)
    for part in ("--network host", "--ipc host", "--gpus all",
                 "--env-file /etc/spark-cluster/runtime.env", "-e NCCL_DEBUG=INFO",
                 "--device /dev/infiniband", "-v /tmp/p.py:/opt/spark-collective-probe.py:ro",
                 "--entrypoint /opt/env/bin/python vllm-dspark-runtime:clean "
                 "/opt/spark-collective-probe.py --sizes 1M:1G --timeout 300"):
        assert part in joined
    assert "/dev/infiniband" not in " ".join(sc.probe_argv("i", "e", "p"))


def test_registered_results_to_runs_in_rank_order():
    out = (FIX / "pinned-node1.log").read_text()
    raw = {
        "spark-worker": {"check": {"ready": True, "node_rank": 1},
                         "run": {"finished": 1, "measured": True, "rc": 0, "output": out}},
        "spark-head": {"check": {"ready": True, "node_rank": 0},
                       "run": {"finished": 1, "measured": True, "rc": 0,
                               "output": (FIX / "pinned-node0.log").read_text()}},
    }
    got = sc.runs_from_registered(raw)
    assert got["order"] == ["spark-head", "spark-worker"]
    assert got["runs"]["spark-worker"]["output"] == out
    lab = {h: {"check": {"ready": False, "reason": "no NVIDIA GPU (/dev/nvidiactl missing)",
                         "node_rank": i}, "run": {"skipped": True}}
           for i, h in enumerate(HOSTS)}
    got = sc.runs_from_registered(lab)
    assert got["runs"]["spark-head"] == {"measured": False,
                                         "reason": "no NVIDIA GPU (/dev/nvidiactl missing)"}
    assert sc.runs_from_registered({}) is None
    links = {"spark-head": [{"interface": "enp1s0f1np1", "rdma_device": "rocep1s0f1"},
                            {"interface": "enP2p1s0f1np1", "rdma_device": None}]}
    assert sc.expect_from_links(links) == {
        "spark-head": {"rail0_interface": "enp1s0f1np1", "rdma_devices": ["rocep1s0f1"]}}


# ---------------------------------------------------------------- the module, in-process

def test_module_check_and_run_with_a_stand_in_docker(tmp_path, monkeypatch, capsys):
    """library/collective_probe.py: readiness, then a run whose docker prints what the
    real probe printed on the H200 host (the fixture), as the role's async task gets it."""
    import collective_probe
    from test_cx7 import run_module

    gpu = tmp_path / "nvidiactl"
    env = tmp_path / "runtime.env"
    env.write_text("MASTER_ADDR=127.0.0.1\nMASTER_PORT=1\nNODE_RANK=1\nNNODES=2\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    docker = bindir / "docker"
    docker.write_text("#!/bin/sh\n[ \"$1\" = run ] && cat %s\nexit 0\n"
                      % (FIX / "pinned-node1.log"))
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    args = {"image": "img", "env_file": str(env), "gpu_device": str(gpu)}
    rc, out = run_module(collective_probe, dict(args, mode="check"), capsys)
    assert rc == 0 and not out["ready"] and out["reason"].startswith("no NVIDIA GPU")
    gpu.write_text("")
    rc, out = run_module(collective_probe, dict(args, mode="check"), capsys)
    assert rc == 0 and out["ready"] and out["node_rank"] == 1 and not out["changed"]
    rc, out = run_module(collective_probe, dict(args, mode="run", probe="/p.py",
                                                _ansible_check_mode=True), capsys)
    assert out["measured"] is False and out["reason"] == "check mode: not run"
    rc, out = run_module(collective_probe, dict(args, mode="run", probe="/p.py"), capsys)
    assert rc == 0 and out["measured"] and out["rc"] == 0
    assert out["command"][-4:] == ["--sizes", "1M:1G", "--timeout", "300"]
    assert sc.parse_log(out["output"])["done"]["peak_busbw_gbs"] == 2.832
