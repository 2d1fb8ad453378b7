"""Parsers and verdicts of module_utils/spark_cluster/link/linkprobe.py on REAL captured outputs
(tests/unit/fixtures/linkprobe/README.md says how each was captured; the ib_write_bw
fixtures are hand-shaped from perftest's output format, since this kernel has no RDMA)."""

import pathlib

import pytest

from spark_cluster.link import linkprobe as lp

FIX = pathlib.Path(__file__).parent / "fixtures" / "linkprobe"


def text(name):
    """stdout + stderr of a captured run, joined as link_probe joins them."""
    out = (FIX / f"{name}.out").read_text()
    err = FIX / f"{name}.err"
    return out + "\n" + (err.read_text() if err.exists() else "")


# ----------------------------------------------------------------------- ping

def test_parse_ping_ok_exact_values():
    p = lp.parse_ping(text("ping_ok"))
    assert (p["transmitted"], p["received"], p["errors"]) == (10, 10, 0)
    assert p["loss_pct"] == 0.0
    assert (p["rtt_min_ms"], p["rtt_avg_ms"], p["rtt_max_ms"], p["rtt_mdev_ms"]) == (
        0.040, 0.052, 0.057, 0.005)
    assert (p["payload_bytes"], p["packet_bytes"]) == (56, 84)
    assert p["target"] == "198.18.100.11"
    assert lp.ping_verdict(p)["status"] == lp.PASS


def test_parse_ping_df_ok_and_mtu_check_passes():
    p = lp.parse_ping(text("ping_df_ok"))
    assert (p["payload_bytes"], p["packet_bytes"]) == (8972, 9000)
    assert (p["transmitted"], p["received"], p["loss_pct"]) == (5, 5, 0.0)
    assert (p["rtt_min_ms"], p["rtt_avg_ms"], p["rtt_max_ms"], p["rtt_mdev_ms"]) == (
        0.055, 0.070, 0.117, 0.023)
    check = lp.mtu_check(p, {"mtu": 9000}, local_mtu=9000, peer_mtu=9000)
    assert check["status"] == lp.PASS


def test_mtu_mismatch_silent_loss_fails():
    # worker MTU 1500: 9000-byte frames vanish, while a normal ping still passes
    df = lp.parse_ping(text("ping_df_mtu_mismatch"))
    assert (df["transmitted"], df["received"], df["loss_pct"]) == (5, 0, 100.0)
    assert df["rtt_avg_ms"] is None
    assert "ping: sendmsg: No buffer space available" in df["error_lines"]
    check = lp.mtu_check(df, {"mtu": 9000})
    assert check["status"] == lp.FAIL
    assert "MTU mismatch" in check["reason"]
    small = lp.parse_ping(text("ping_small_mtu_mismatch"))
    assert lp.ping_verdict(small)["status"] == lp.PASS


def test_mtu_mismatch_local_side_names_the_mtu():
    df = lp.parse_ping(text("ping_df_mtu_mismatch_local"))
    assert df["path_mtu"] == 1500
    assert (df["transmitted"], df["received"], df["errors"]) == (3, 0, 3)
    check = lp.mtu_check(df, {"mtu": 9000}, local_mtu=1500, peer_mtu=9000)
    assert check["status"] == lp.FAIL
    assert "mtu=1500" in check["reason"] and "sender interface MTU 1500" in check["reason"]


def test_payload_above_local_mtu():
    p = lp.parse_ping(text("ping_df_local_too_big"))
    assert p["path_mtu"] == 9000 and p["payload_bytes"] == 9000
    assert lp.mtu_check(p, {"mtu": 9000})["status"] == lp.FAIL  # no reply at all


def test_interface_mtu_mismatch_fails_even_if_ping_passed():
    p = lp.parse_ping(text("ping_df_ok"))
    check = lp.mtu_check(p, {"mtu": 9000}, local_mtu=9000, peer_mtu=1500)
    assert check["status"] == lp.FAIL and "receiver interface MTU 1500" in check["reason"]


def test_full_loss_ping_fails():
    p = lp.parse_ping(text("ping_unreachable"))
    assert (p["transmitted"], p["received"], p["loss_pct"]) == (5, 0, 100.0)
    verdict = lp.ping_verdict(p)
    assert verdict["status"] == lp.FAIL and "100" in verdict["reason"]


def test_ping_thresholds():
    p = lp.parse_ping(text("ping_ok"))
    assert lp.ping_verdict(p, {"ping_max_rtt_avg_ms": 0.01})["status"] == lp.FAIL
    assert lp.ping_verdict(lp.parse_ping(""))["status"] == lp.FAIL


def test_ping_argv():
    assert lp.ping_argv("198.18.100.11", 5, 0.2, payload=8972, dont_fragment=True,
                        source="198.18.100.10") == [
        "ping", "-n", "-c", "5", "-i", "0.2", "-W", "1", "-M", "do", "-s", "8972",
        "-I", "198.18.100.10", "198.18.100.11"]


# --------------------------------------------------------------------- iperf3

def test_parse_iperf3_single_exact():
    r = lp.parse_iperf3((FIX / "iperf3_single.out").read_text())
    assert r["ok"] and r["error"] is None
    assert r["gbps"] == 17.771  # end.sum_received.bits_per_second 17770622904.4
    assert r["sent_gbps"] == 17.773
    assert r["retransmits"] == 4418
    assert (r["streams"], r["port"], r["version"]) == (1, 5201, "iperf 3.12")
    assert r["cpu_sender_pct"] == 98.9


def test_parse_iperf3_no_server_is_an_error_despite_rc0():
    assert (FIX / "iperf3_no_server.rc").read_text().strip() == "0"
    r = lp.parse_iperf3((FIX / "iperf3_no_server.out").read_text())
    assert not r["ok"] and r["gbps"] is None
    assert r["error"] == "unable to connect to server: Connection refused"


def test_parse_iperf3_garbage():
    r = lp.parse_iperf3("iperf3: error - unable to connect")
    assert not r["ok"] and "not JSON" in r["error"]


def test_sum_parallel_of_concurrent_processes():
    runs = [lp.parse_iperf3((FIX / f"iperf3_parallel_{i}.out").read_text()) for i in (0, 1)]
    assert [r["port"] for r in runs] == [5201, 5202]
    total = lp.sum_parallel(runs)
    assert total["ok"] and total["processes"] == 2 and total["ok_processes"] == 2
    assert total["per_process_gbps"] == [runs[0]["gbps"], runs[1]["gbps"]]
    assert total["gbps"] == pytest.approx(runs[0]["gbps"] + runs[1]["gbps"], abs=0.002)
    assert total["gbps"] == pytest.approx(29.078, abs=0.002)


def test_sum_parallel_with_a_failed_process():
    good = lp.parse_iperf3((FIX / "iperf3_parallel_0.out").read_text())
    bad = lp.parse_iperf3((FIX / "iperf3_no_server.out").read_text())
    total = lp.sum_parallel([good, bad])
    assert not total["ok"] and total["gbps"] == good["gbps"]
    assert total["errors"] == ["unable to connect to server: Connection refused"]
    assert lp.tcp_verdict(None, total)["status"] == lp.FAIL
    assert lp.sum_parallel([])["gbps"] is None


def test_one_process_many_streams_is_still_one_thread():
    r = lp.parse_iperf3((FIX / "iperf3_one_process_P4.out").read_text())
    assert r["ok"] and r["streams"] == 4
    assert r["gbps"] == pytest.approx(13.833, abs=0.001)


def test_tcp_verdict_and_ceilings():
    single = lp.sum_parallel([lp.parse_iperf3((FIX / "iperf3_single.out").read_text())])
    para = lp.sum_parallel([lp.parse_iperf3((FIX / f"iperf3_parallel_{i}.out").read_text())
                            for i in (0, 1)])
    assert lp.tcp_verdict(single, para, {"tcp_min_gbps": 10})["status"] == lp.PASS
    low = lp.tcp_verdict(single, para, {"tcp_min_gbps": 40})
    assert low["status"] == lp.FAIL and low["best_gbps"] == para["gbps"]
    # the field numbers: 14.9 single, 16.4 with 4 streams, 200 Gb/s link
    text_ = lp.ceiling_explanation(14.9, 16.4, 4, 200, "iperf 3.12")
    assert "one thread" in text_ and "no real gain" in text_ and "the link's ceiling) is 200 Gb/s" in text_
    assert "RDMA" in text_


# ----------------------------------------------------------------------- rdma

def test_parse_ib_write_bw_pass():
    r = lp.parse_ib_write_bw((FIX / "ib_write_bw_pass.txt").read_text())
    assert r["ok"] and r["gbps"] == 92.58
    assert (r["device"], r["gid_index"], r["mtu"], r["link_type"], r["qps"]) == (
        "rocep1s0f1", 3, 4096, "Ethernet", 1)
    assert r["rows"] == [{"bytes": 65536, "iterations": 883264, "peak_gbps": 0.0,
                          "gbps": 92.58, "msg_rate_mpps": 0.176584}]
    assert lp.rdma_verdict(r["gbps"])["status"] == lp.PASS


def test_parse_ib_write_bw_stale_and_mbytes_and_error():
    stale = lp.parse_ib_write_bw((FIX / "ib_write_bw_stale.txt").read_text())
    assert stale["gbps"] == 16.57
    mb = lp.parse_ib_write_bw((FIX / "ib_write_bw_mbytes.txt").read_text())
    assert mb["device"] == "roceP2p1s0f1"
    assert mb["gbps"] == pytest.approx(97.3, abs=0.05)  # 11599.70 MiB/s
    err = lp.parse_ib_write_bw((FIX / "ib_write_bw_no_server.txt").read_text())
    assert not err["ok"] and err["gbps"] is None
    assert "Couldn't connect to 192.168.100.11:18515" in err["error"]


@pytest.mark.parametrize("gbps,status", [
    (92.58, lp.PASS), (80.0, lp.PASS), (79.9, lp.FAIL), (25.0, lp.STALE),
    (16.57, lp.STALE), (8.0, lp.STALE), (7.9, lp.FAIL), (40.0, lp.FAIL),
    (None, lp.NOT_MEASURED)])
def test_rdma_verdict_bands(gbps, status):
    v = lp.rdma_verdict(gbps, lp.DEFAULT_THRESHOLDS, reason="no RDMA device")
    assert v["status"] == status
    if status == lp.STALE:
        assert v["remedy"] == lp.STALE_REMEDY
        assert "reboot both" in v["remedy"] and "AC power for 60 s" in v["remedy"]
    else:
        assert v["remedy"] is None
    if status == lp.NOT_MEASURED:
        assert v["reason"] == "no RDMA device"


def test_rdma_thresholds_are_variables():
    assert lp.rdma_verdict(50, {"rdma_pass_gbps": 40})["status"] == lp.PASS


def test_ib_write_bw_argv():
    assert lp.ib_write_bw_argv("rocep1s0f1", 3, 18515, 65536, 5, target="192.168.100.11") == [
        "ib_write_bw", "-d", "rocep1s0f1", "-x", "3", "-p", "18515", "-s", "65536",
        "-D", "5", "-q", "1", "-F", "--report_gbits", "192.168.100.11"]


# ------------------------------------------------------------------- verdicts

def test_direction_and_rail_verdicts():
    ok = {"status": lp.PASS, "reason": "ok"}
    nm = {"status": lp.NOT_MEASURED, "reason": "no RDMA"}
    stale = lp.rdma_verdict(16.57)
    d_pass = lp.direction_verdict({"ping": ok, "rdma": ok})
    d_inc = lp.direction_verdict({"ping": ok, "rdma": nm})
    d_fail = lp.direction_verdict({"ping": ok, "rdma": stale})
    assert d_pass["status"] == lp.PASS
    assert d_inc["status"] == "incomplete" and d_inc["not_measured"] == ["rdma"]
    assert d_fail["status"] == lp.FAIL and d_fail["failures"][0].startswith("rdma: 16.6")
    assert lp.rail_verdict([d_pass, d_pass])["status"] == lp.PASS
    assert lp.rail_verdict([d_pass, d_inc])["status"] == "incomplete"
    assert lp.rail_verdict([d_inc, d_fail])["status"] == lp.FAIL
    assert lp.rail_verdict([])["status"] == lp.NOT_MEASURED


def test_tcp_listening_reads_proc(tmp_path):
    tcp = tmp_path / "tcp"
    tcp.write_text(
        "  sl  local_address rem_address   st\n"
        "   0: 0B6412C6:1451 00000000:0000 0A 00000000:00000000\n")
    assert lp.tcp_listening(5201, proc_net=(str(tcp),))
    assert not lp.tcp_listening(5202, proc_net=(str(tcp),))
