"""The serving pair's watchdog (module_utils/spark_rendezvous.py): what it sees in the
kernel's TCP table and when it restarts the local unit, in the situations a real pair
goes through (vLLM's headless node does not exit when its head dies)."""

from ansible.module_utils import spark_rendezvous as wd

HEAD, WORKER, PORT = "198.18.100.10", "198.18.100.11", 29501


def hexip(ip):
    return "".join(f"{int(p):02X}" for p in reversed(ip.split(".")))


def row(n, local, lport, remote, rport, state):
    return (f"  {n}: {hexip(local)}:{lport:04X} {hexip(remote)}:{rport:04X} {state} "
            "00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 20 4 30 10 -1")


def table(*rows):
    header = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
              "timeout inode")
    return "\n".join([header] + [row(i, *r) for i, r in enumerate(rows)]) + "\n"


LISTEN = (HEAD, PORT, "0.0.0.0", 0, "0A")


def test_parses_proc_net_tcp():
    rows = wd.parse_tcp_table(table((WORKER, 40000, HEAD, PORT, "01"), LISTEN))
    assert rows == [(WORKER, 40000, HEAD, PORT, "01"), (HEAD, PORT, "0.0.0.0", 0, "0A")]


STORE = f"{HEAD}:{PORT}"


def test_worker_sees_its_established_connection_to_the_store():
    joined = wd.parse_tcp_table(table((WORKER, 40000, HEAD, PORT, "01")))
    assert wd.observe(joined, "worker", HEAD, PORT) == {STORE: {(40000, PORT)}}
    # the head died: the worker's socket waits in CLOSE_WAIT (08), the process lives on
    stale = wd.parse_tcp_table(table((WORKER, 40000, HEAD, PORT, "08")))
    assert wd.observe(stale, "worker", HEAD, PORT) == {STORE: set()}


def test_head_sees_each_workers_connections_to_its_store_only():
    peers = [WORKER, "198.18.100.12"]
    rows = wd.parse_tcp_table(table(LISTEN, (HEAD, PORT, WORKER, 40000, "01"),
                                    (HEAD, 8888, "198.18.100.12", 40001, "01")))  # the API: not the store
    assert wd.observe(rows, "head", HEAD, PORT, peers) == {WORKER: {(PORT, 40000)}, "198.18.100.12": set()}


def joined(*ids):
    return {STORE: set(ids)}


def test_no_action_before_the_pair_first_joins():
    watch = wd.Watch(misses=1)
    for _ in range(5):
        assert watch.step("inv", True, joined()) == ("none", "waiting for the first join")
    assert watch.step("inv", True, joined((1, PORT))) == ("none", "joined")


def test_head_restarted_alone_meets_a_stale_worker_which_the_watchdog_restarts():
    """The head crashed and systemd restarted it within seconds: its port answers again,
    but the worker's own connection is gone (CLOSE_WAIT). Without the watchdog the worker
    would stay half-connected and the new head would never complete its rendezvous."""
    watch = wd.Watch(misses=3)
    assert watch.step("inv-1", True, joined((40000, PORT))) == ("none", "joined")
    assert watch.step("inv-1", True, joined((40000, PORT))) == ("none", "ok")
    assert watch.step("inv-1", True, joined())[0] == "none"
    assert watch.step("inv-1", True, joined())[0] == "none"
    assert watch.step("inv-1", True, joined()) == ("restart", "the rendezvous connection is gone")
    # after the restart (a new invocation) it waits for the next join: no second restart
    assert watch.step("inv-2", True, joined()) == ("none", "waiting for the first join")


def test_a_new_connection_from_a_restarted_worker_does_not_hide_the_lost_one():
    """A worker restarted alone knocks at the old head again (a new connection from the
    same address): the head's watchdog still sees the joined connection gone."""
    watch = wd.Watch(misses=2)
    watch.step("inv", True, {WORKER: {(PORT, 40000)}})
    assert watch.lost({WORKER: {(PORT, 41234)}}) == [WORKER]
    assert watch.step("inv", True, {WORKER: {(PORT, 41234)}})[0] == "none"
    assert watch.step("inv", True, {WORKER: {(PORT, 41235)}})[0] == "restart"


def test_a_head_that_vanished_without_closing_is_seen_by_the_connect_probe():
    watch = wd.Watch(misses=2, probe_misses=3)
    watch.step("inv", True, joined((1, PORT)))
    assert watch.step("inv", True, joined((1, PORT)), master_reachable=False)[0] == "none"
    assert watch.step("inv", True, joined((1, PORT)), master_reachable=False)[0] == "none"
    assert watch.step("inv", True, joined((1, PORT)), master_reachable=False) == (
        "restart", "the head does not answer on its rendezvous port")


def test_a_rail_flapping_for_a_few_seconds_restarts_nothing():
    """The connection survives a short rail flap (TCP retransmits); probes fail meanwhile."""
    watch = wd.Watch(misses=3, probe_misses=30)
    watch.step("inv", True, joined((1, PORT)))
    for _ in range(5):  # 10 s down at a 2 s interval
        assert watch.step("inv", True, joined((1, PORT)), master_reachable=False)[0] == "none"
    assert watch.step("inv", True, joined((1, PORT))) == ("none", "ok")


def test_one_lost_probe_is_not_a_restart():
    watch = wd.Watch(misses=3)
    watch.step("inv", True, joined((1, PORT)))
    watch.step("inv", True, joined())
    assert watch.step("inv", True, joined((1, PORT))) == ("none", "ok")
    watch.step("inv", True, joined())
    watch.step("inv", True, joined())
    assert watch.step("inv", True, joined((1, PORT)))[0] == "none"  # the count started again


def test_a_stopped_unit_is_left_alone():
    watch = wd.Watch(misses=1)
    watch.step("inv", True, joined((1, PORT)))
    assert watch.step("inv", False, joined()) == ("none", "unit not active")
    assert watch.step("inv", True, joined()) == ("none", "waiting for the first join")


def test_unit_state_reads_systemctl_show():
    class Done:
        stdout = "InvocationID=abc\nActiveState=active\n"
    assert wd.unit_state("spark-runtime.service", run=lambda *a, **k: Done()) == ("abc", True)
