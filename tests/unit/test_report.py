"""module_utils/spark_cluster/reports/link_report.py: stable JSON keys, Markdown table rows, PNG written,
built from the real captured probe outputs (fixtures/linkprobe)."""

import datetime
import json
import os
import pathlib

from spark_cluster.link import linkprobe as lp
from spark_cluster.reports import link_report as rep

FIX = pathlib.Path(__file__).parent / "fixtures" / "linkprobe"
COLL_FIX = pathlib.Path(__file__).parent / "fixtures" / "collective"
WHEN = datetime.datetime(2026, 11, 29, 10, 57, 50, tzinfo=datetime.timezone.utc)


def ping(name):
    err = FIX / f"{name}.err"
    txt = (FIX / f"{name}.out").read_text() + "\n" + (err.read_text() if err.exists() else "")
    return {"kind": "ping", "parsed": lp.parse_ping(txt)}


def tcp(*names):
    results = [lp.parse_iperf3((FIX / f"{n}.out").read_text()) for n in names]
    return {"kind": "iperf3", "iperf3_version": "iperf 3.12 (cJSON 1.7.15)",
            "results": results, "sum": lp.sum_parallel(results)}


def rdma(name):
    r = lp.parse_ib_write_bw((FIX / name).read_text())
    r.update(kind="rdma", measured=True, rdma_hardware=True, hca=r["device"], gid_index=3)
    return r


def pair(rail, src, dst):
    iface = ["enp1s0f1np1", "enP2p1s0f1np1"][rail]
    return {"id": f"r{rail}:{src}>{dst}", "rail": rail, "src_host": src, "dst_host": dst,
            "src_interface": iface, "dst_interface": iface,
            "src_address": f"198.18.10{rail}.{10 if src == 'spark-head' else 11}",
            "dst_address": f"198.18.10{rail}.{10 if dst == 'spark-head' else 11}"}


PAIRS = [pair(0, "spark-head", "spark-worker"), pair(0, "spark-worker", "spark-head"),
         pair(1, "spark-head", "spark-worker"), pair(1, "spark-worker", "spark-head")]


def links(rdma_dev=True, mtu=9000):
    def rail(i):
        return {"interface": ["enp1s0f1np1", "enP2p1s0f1np1"][i], "speed_mbps": 200000,
                "mtu": mtu, "rdma_device": ["rocep1s0f1", "roceP2p1s0f1"][i] if rdma_dev
                else None, "cpus": 20}
    return {"spark-head": [rail(0), rail(1)], "spark-worker": [rail(0), rail(1)]}


def all_probes(rdma_file="ib_write_bw_pass.txt", df="ping_df_ok"):
    ids = [p["id"] for p in PAIRS]
    return {
        "ping": {i: ping("ping_ok") for i in ids},
        "ping_df": {i: ping(df) for i in ids},
        "tcp_single": {i: tcp("iperf3_single") for i in ids},
        "tcp_parallel": {i: tcp("iperf3_parallel_0", "iperf3_parallel_1") for i in ids},
        "rdma": {i: rdma(rdma_file) for i in ids} if rdma_file else {},
    }


def collective(case="pinned"):
    """The collective probe's real output (two H200 through gpu-netns, NET/Socket)."""
    hosts = ["spark-head", "spark-worker"]
    return {"runs": {h: {"measured": True, "rc": 0,
                         "output": (COLL_FIX / f"{case}-node{i}.log").read_text()}
                     for i, h in enumerate(hosts)},
            "expect": {h: {"rail0_interface": "enp1s0f1np1", "rdma_devices": []}
                       for h in hosts},
            "order": hosts}


# The harness' socket transport peaks near 2.8 GB/s: below the RDMA default of 10.
SOCKET_TH = {"collective_min_busbw_gbs": 2.0}
TOP_KEYS = {"schema", "schema_version", "generated_at", "verdict", "fit_for_tensor_parallel",
            "summary", "failures", "warnings", "thresholds", "rails", "pairs", "collective", "nodes"}
DIRECTION_KEYS = {"id", "direction", "src_host", "dst_host", "src_interface", "dst_interface",
                  "src_address", "dst_address", "ping", "mtu", "tcp", "rdma", "checks",
                  "verdict", "failures", "not_measured"}


def test_all_pass_and_stable_keys():
    r = rep.build_report(PAIRS, all_probes(), links(), generated_at=WHEN,
                         collective=collective(), thresholds=SOCKET_TH)
    assert set(r) == TOP_KEYS
    assert (r["schema"], r["schema_version"]) == ("spark-link-report", 2)
    assert r["generated_at"] == "2026-11-29T10:57:50Z"
    assert r["verdict"] == "pass" and r["fit_for_tensor_parallel"] is True
    assert r["failures"] == []
    assert [x["index"] for x in r["rails"]] == [0, 1]
    rail = r["rails"][0]
    assert {"index", "interface", "interfaces", "line_rate_gbps", "line_rate_source",
            "directions", "verdict", "reason", "ceilings"} == set(rail)
    assert rail["line_rate_gbps"] == 200.0
    d = rail["directions"][0]
    assert set(d) == DIRECTION_KEYS
    assert set(d["ping"]) == {"loss_pct", "transmitted", "received", "rtt_min_ms",
                              "rtt_avg_ms", "rtt_max_ms", "rtt_mdev_ms"}
    assert set(d["tcp"]) == {"single_gbps", "parallel_gbps", "parallel_processes", "parallel_streams",
                             "parallel_per_process_gbps", "single_retransmits",
                             "parallel_retransmits", "iperf3_version", "errors"}
    assert set(d["rdma"]) == {"gbps", "src_device", "dst_device", "gid_index", "status",
                              "reason", "remedy"}
    assert d["tcp"]["single_gbps"] == 17.771 and d["tcp"]["parallel_processes"] == 2
    assert d["rdma"]["gbps"] == 92.58
    assert r["collective"]["status"] == "pass" and r["collective"]["peak_busbw_gbs"] == 2.832
    json.dumps(r)  # serialisable


def test_collective_not_run_or_below_threshold_is_never_pass():
    # the lab: no RDMA, no GPU: incomplete, the all-reduce named as not measured
    r = rep.build_report(PAIRS, all_probes(rdma_file=None), links(rdma_dev=False),
                         generated_at=WHEN)
    assert r["verdict"] == "incomplete" and r["collective"]["status"] == "not_measured"
    assert "the NCCL all-reduce" in r["summary"]
    # real Sparks (RDMA devices) where the collective did not run: fail, never incomplete
    r = rep.build_report(PAIRS, all_probes(), links(), generated_at=WHEN)
    assert r["verdict"] == "fail"
    assert r["failures"] == ["collective: not measured on nodes with RDMA devices (spark-head, "
                             "spark-worker): the collective probe did not run (tag 'collective' "
                             "skipped or link_validation_collective: false)"]
    # the same real run against the default (RDMA) threshold of 10 GB/s
    r = rep.build_report(PAIRS, all_probes(), links(), generated_at=WHEN,
                         collective=collective())
    assert r["verdict"] == "fail"
    assert any(f.startswith("collective: peak bus bandwidth 2.83 GB/s (at 128 MiB) is below "
                            "10.00 GB/s") for f in r["failures"])
    md = rep.render_markdown(r)
    assert "## Collective (NCCL all-reduce)" in md
    assert "| 1 GiB | 5 | 388198.2 | 2.77 | 2.77 | yes |" in md
    assert "| spark-head | NET/Socket | - / - | - | enp1s0f1np1 (198.18.100.10) | 2.28.9+cuda13.0 |" in md


def test_lab_without_rdma_is_not_measured_never_pass():
    pairs = [dict(p, rdma_status="not_measured",
                  rdma_reason="no RDMA device for this rail on spark-head, spark-worker")
             for p in PAIRS]
    r = rep.build_report(pairs, all_probes(rdma_file=None), links(rdma_dev=False),
                         generated_at=WHEN)
    assert r["verdict"] == "incomplete" and r["fit_for_tensor_parallel"] is None
    assert r["failures"] == []
    d = r["rails"][1]["directions"][1]
    assert d["rdma"]["status"] == "not_measured" and "no RDMA device" in d["rdma"]["reason"]
    assert d["verdict"] == "incomplete"


def test_stale_rdma_and_mtu_mismatch_fail_with_remedy():
    r = rep.build_report(PAIRS, all_probes("ib_write_bw_stale.txt", df="ping_df_mtu_mismatch"),
                         links(), generated_at=WHEN)
    assert r["verdict"] == "fail" and r["fit_for_tensor_parallel"] is False
    assert any("rail 0 spark-head -> spark-worker: mtu:" in f for f in r["failures"])
    assert any("stale-initialization" in f for f in r["failures"])
    assert any("AC power for 60 s" in w for w in r["warnings"])
    assert r["rails"][0]["directions"][0]["rdma"]["status"] == "stale_init"


def test_rdma_hardware_but_tool_missing_fails():
    probes = all_probes(rdma_file=None)
    probes["rdma"] = {p["id"]: {"kind": "rdma", "measured": False, "rdma_hardware": True,
                                "ok": False, "reason": "ib_write_bw (perftest) not installed"}
                      for p in PAIRS}
    r = rep.build_report(PAIRS, probes, links(), generated_at=WHEN)
    assert r["verdict"] == "fail"
    assert any("not installed" in f for f in r["failures"])


def test_pinning_problems_fail_only_when_deployed():
    pin = {"spark-head": {"problems": [{"variable": "VLLM_HOST_IP", "found": None,
                                        "expected": "198.18.100.10",
                                        "message": "VLLM_HOST_IP is not set"}],
                          "would_pick": {"interface": "wlP9s9", "address": "198.19.0.10"}}}
    r = rep.build_report(PAIRS, all_probes(), links(), pinning=pin, generated_at=WHEN,
                         env_file_present={"spark-head": False}, collective=collective(),
                         thresholds=SOCKET_TH)
    assert r["verdict"] == "pass" and any("VLLM_HOST_IP" in w for w in r["warnings"])
    assert r["nodes"]["spark-head"]["pinning"]["note"] == (
        "vLLM would take 198.19.0.10 (wlP9s9) if VLLM_HOST_IP were unset")
    r = rep.build_report(PAIRS, all_probes(), links(), pinning=pin, generated_at=WHEN,
                         env_file_present={"spark-head": True}, collective=collective(),
                         thresholds=SOCKET_TH)
    assert r["verdict"] == "fail"
    assert r["failures"] == ["spark-head pinning: VLLM_HOST_IP is not set"]


def test_markdown_has_a_table_per_rail():
    r = rep.build_report(PAIRS, all_probes(), links(), generated_at=WHEN)
    md = rep.render_markdown(r)
    assert "## Rail 0 (enp1s0f1np1)" in md and "## Rail 1 (enP2p1s0f1np1)" in md
    assert md.count("| direction | loss | RTT min/avg/max/mdev ms | MTU check | TCP single Gb/s"
                    " | TCP parallel Gb/s | RDMA Gb/s | verdict |") == 2
    assert ("| spark-head -> spark-worker | 0% | 0.040/0.052/0.057/0.005 | pass | 17.77 | "
            "29.08 (x2) | 92.58 | pass |") in md
    assert "Ceilings: " in md and "Line rate: 200 Gb/s" in md


def test_write_report_files_and_latest(tmp_path):
    r = rep.build_report(PAIRS, all_probes("ib_write_bw_stale.txt"), links(), generated_at=WHEN)
    paths = rep.write_report(r, str(tmp_path / "sub" / ".." / "reports"))
    stamp = "20261129T105750Z"
    for ext in ("json", "md", "png"):
        path = pathlib.Path(paths[ext])
        assert path.name == f"link-{stamp}.{ext}" and path.parent == tmp_path / "reports"
        assert path.stat().st_size > 0
        latest = pathlib.Path(paths["latest_" + ext])
        assert latest.name == f"link-latest.{ext}"
        assert os.path.realpath(latest) == str(path)
    assert pathlib.Path(paths["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(pathlib.Path(paths["latest_json"]).read_text())["verdict"] == "fail"


# --------------------------------------------- nodes with RDMA: only a measured pass passes

def test_worker_driver_lost_its_rdma_twin_fails_not_incomplete():
    """The head's rail-0 twin has its RDMA device, the worker's does not (mlx5_ib did not
    bind there): the pairs template cannot run ib_write_bw and says "no RDMA device on
    spark-worker". On a real cluster that is a broken RDMA path, not a lab."""
    lk = links()
    for rail in lk["spark-worker"]:
        rail["rdma_device"] = None
    pairs = [dict(p, rdma_status="not_measured",
                  rdma_reason="no RDMA device for this rail on spark-worker") for p in PAIRS]
    r = rep.build_report(pairs, all_probes(rdma_file=None), lk, generated_at=WHEN)
    assert r["verdict"] == "fail" and r["fit_for_tensor_parallel"] is False
    d = r["rails"][0]["directions"][0]
    assert d["rdma"]["status"] == "fail" and d["verdict"] == "fail"
    assert "nodes with RDMA devices (spark-head)" in d["rdma"]["reason"]
    assert "no RDMA device for this rail on spark-worker" in d["rdma"]["reason"]
    assert len([f for f in r["failures"] if f.startswith("rail ")]) == 4
    assert r["rails"][1]["verdict"] == "fail"


def test_rdma_switched_off_on_nodes_with_rdma_fails():
    """link_validation_rdma: false on real Sparks: the run cannot prove the link."""
    pairs = [dict(p, rdma_status="not_measured", rdma_reason="disabled (link_validation_rdma: false)")
             for p in PAIRS]
    r = rep.build_report(pairs, all_probes(rdma_file=None), links(), generated_at=WHEN)
    assert r["verdict"] == "fail"
    assert all("disabled (link_validation_rdma: false)" in f for f in r["failures"]
               if f.startswith("rail "))


def test_rdma_device_elsewhere_on_the_node_counts_as_rdma():
    """The rail netdevs have no RDMA twin but the node lists RDMA devices (a port's
    driver half-bound): still a node with RDMA, so "not measured" fails."""
    lk = links(rdma_dev=False)
    lk["spark-worker"][0]["rdma_available"] = True
    r = rep.build_report(PAIRS, all_probes(rdma_file=None), lk, generated_at=WHEN)
    assert r["verdict"] == "fail" and rep.rdma_hosts(lk) == ["spark-worker"]


def test_ping_that_did_not_run_fails_on_nodes_with_rdma():
    probes = all_probes()
    probes["ping"] = {}
    r = rep.build_report(PAIRS, probes, links(), generated_at=WHEN)
    assert r["verdict"] == "fail"
    assert any("ping: not measured on nodes with RDMA devices" in f for f in r["failures"])


def test_no_pair_at_all_on_nodes_with_rdma_fails():
    r = rep.build_report([], {}, links(), generated_at=WHEN)
    assert r["verdict"] == "fail"
    assert r["failures"][0] == "no rail measured, and the nodes have RDMA devices (spark-head, spark-worker)"
    # the collective did not run either: on nodes with RDMA that fails too, never "incomplete"
    assert r["failures"][1].startswith("collective: not measured on nodes with RDMA devices")


def test_ib_write_bw_that_ran_and_failed_is_a_failure_with_its_error():
    """ib_write_bw ran on real Sparks and could not reach the server (the captured
    "Couldn't connect" output): a failed measurement, not a missing one."""
    probes = all_probes(rdma_file="ib_write_bw_no_server.txt")
    for probe in probes["rdma"].values():
        assert probe["ok"] is False
    r = rep.build_report(PAIRS, probes, links(), generated_at=WHEN)
    d = r["rails"][0]["directions"][0]
    assert d["rdma"]["status"] == "fail"
    assert d["rdma"]["reason"].startswith("ib_write_bw failed: ")
    assert d["checks"]["rdma"]["reason"] == d["rdma"]["reason"]
    assert r["verdict"] == "fail" and len([f for f in r["failures"] if f.startswith("rail ")]) == 4


def test_rdma_device_without_a_resolved_gid_is_a_failure():
    """Both ends have RDMA devices but the worker's RoCE v2 GID could not be resolved
    (address not on the twin yet): ib_write_bw is not run (no probe), the pair says why."""
    reason = ("RDMA device present but no RoCE v2 GID resolved: no RoCE v2 GID for "
              "198.18.100.11 on RDMA device rocep1s0f1")
    pairs = [dict(p, rdma_status="fail", rdma_reason=reason) for p in PAIRS]
    r = rep.build_report(pairs, all_probes(rdma_file=None), links(), generated_at=WHEN)
    d = r["rails"][1]["directions"][1]
    assert d["rdma"]["status"] == "fail" and d["rdma"]["reason"] == reason
    assert r["verdict"] == "fail"


def test_perftest_missing_on_a_node_with_rdma_is_a_failure():
    probes = all_probes(rdma_file=None)
    probes["rdma"] = {p["id"]: {"kind": "rdma", "measured": False, "rdma_hardware": True,
                                "ok": False, "hca": "rocep1s0f1",
                                "reason": "ib_write_bw (perftest) not installed"}
                      for p in PAIRS}
    r = rep.build_report(PAIRS, probes, links(), generated_at=WHEN)
    d = r["rails"][0]["directions"][1]
    assert d["rdma"]["status"] == "fail"
    assert d["rdma"]["reason"] == "RDMA devices present but not measured: ib_write_bw (perftest) not installed"


def three_node_report():
    """Three nodes, both rails, every ordered pair measured (all passing)."""
    hosts = ["spark-head", "spark-worker", "spark-worker2"]
    pairs = []
    for rail in (0, 1):
        for i, a in enumerate(hosts):
            for b in hosts[i + 1:]:
                for src, dst in ((a, b), (b, a)):
                    p = pair(rail, src, dst)
                    p["src_address"] = f"198.18.10{rail}.{10 + hosts.index(src)}"
                    p["dst_address"] = f"198.18.10{rail}.{10 + hosts.index(dst)}"
                    pairs.append(p)
    ids = [p["id"] for p in pairs]
    probes = {"ping": {i: ping("ping_ok") for i in ids},
              "ping_df": {i: ping("ping_df_ok") for i in ids},
              "tcp_single": {i: tcp("iperf3_single") for i in ids},
              "tcp_parallel": {i: tcp("iperf3_parallel_0", "iperf3_parallel_1") for i in ids},
              "rdma": {i: rdma("ib_write_bw_pass.txt") for i in ids}}
    lk = links()
    lk["spark-worker2"] = lk["spark-worker"]
    return rep.build_report(pairs, probes, lk, generated_at=WHEN)


def test_three_nodes_every_pair_on_every_rail_keyed_by_pair():
    r = three_node_report()
    assert list(r["pairs"]) == ["spark-head <-> spark-worker", "spark-head <-> spark-worker2",
                                "spark-worker <-> spark-worker2"]
    ww = r["pairs"]["spark-worker <-> spark-worker2"]
    assert ww["nodes"] == ["spark-worker", "spark-worker2"] and ww["verdict"] == "pass"
    assert sorted(ww["rails"]) == ["0", "1"]
    assert [d["direction"] for d in ww["rails"]["1"]["directions"]] == [
        "spark-worker -> spark-worker2", "spark-worker2 -> spark-worker"]
    assert ww["rails"]["0"]["directions"][0]["tcp_best_gbps"] == 29.078
    assert len(r["rails"][0]["directions"]) == 6
    md = rep.render_markdown(r)
    assert "## Node pairs" in md
    assert ("| spark-worker <-> spark-worker2 | 1 | spark-worker2 -> spark-worker | 0.052 | "
            "29.08 | 92.58 | pass |") in md
