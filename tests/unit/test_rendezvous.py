"""The serving pair's watchdog (module_utils/spark_cluster/runtime/rendezvous.py): what it sees in the
kernel's TCP table and when it restarts the local unit, in the situations a real pair
goes through (vLLM's headless node does not exit when its head dies)."""

from spark_cluster.runtime import rendezvous as wd

HEAD, WORKER, PORT = "198.18.100.10", "198.18.100.11", 29501


def hexip(ip):
    return "".join(f"{int(p):02X}" for p in reversed(ip.split(".")))


def row(n, local, lport, remote, rport, state, hexer=hexip):
    return (f"  {n}: {hexer(local)}:{lport:04X} {hexer(remote)}:{rport:04X} {state} "
            "00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 20 4 30 10 -1")


def table(*rows, hexer=hexip):
    header = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
              "timeout inode")
    return "\n".join([header] + [row(i, *r, hexer=hexer) for i, r in enumerate(rows)]) + "\n"


LISTEN = (HEAD, PORT, "0.0.0.0", 0, "0A")


def test_parses_proc_net_tcp():
    rows = wd.parse_tcp_table(table((WORKER, 40000, HEAD, PORT, "01"), LISTEN))
    assert rows == [(WORKER, 40000, HEAD, PORT, "01"), (HEAD, PORT, "0.0.0.0", 0, "0A")]


STORE = f"{HEAD}:{PORT}"


def hexip6(ip):
    """The kernel's /proc/net/tcp6 text of an address: four little-endian 32-bit words."""
    import ipaddress
    raw = ipaddress.IPv6Address(ip).packed
    return "".join(raw[i:i + 4][::-1].hex().upper() for i in range(0, 16, 4))


def table6(*rows):
    return table(*rows, hexer=hexip6)


def test_parses_proc_net_tcp6_and_reads_v4_mapped_addresses_as_ipv4():
    """torch's TCPStore listens on :: dual-stack: its rows are in tcp6, mapped."""
    rows = wd.parse_tcp_table(table6(("::", PORT, "::", 0, "0A"),
                                     (f"::ffff:{HEAD}", PORT, f"::ffff:{WORKER}", 40000, "01"),
                                     ("fe80::1", 22, "fe80::2", 5000, "01")))
    assert rows == [("::", PORT, "::", 0, "0A"), (HEAD, PORT, WORKER, 40000, "01"),
                    ("fe80::1", 22, "fe80::2", 5000, "01")]


def test_both_sides_see_the_store_in_tcp6(tmp_path):
    """The head's accepted sockets and the worker's client socket, all in tcp6, v4-mapped:
    the pair counts as joined on both sides (before: no connection on either)."""
    head_rows = wd.parse_tcp_table(table6(("::", PORT, "::", 0, "0A"),
                                          (f"::ffff:{HEAD}", PORT, f"::ffff:{WORKER}", 40000, "01")))
    assert wd.observe(head_rows, "head", HEAD, PORT, [WORKER]) == {WORKER: {(PORT, 40000)}}
    worker_rows = wd.parse_tcp_table(table6((f"::ffff:{WORKER}", 40000, f"::ffff:{HEAD}", PORT, "01")))
    assert wd.observe(worker_rows, "worker", HEAD, PORT) == {STORE: {(40000, PORT)}}
    # read_tables takes both tables, and a missing tcp6 (IPv6 disabled) is no error
    (tmp_path / "tcp").write_text(table())
    (tmp_path / "tcp6").write_text(table6((f"::ffff:{WORKER}", 40000, f"::ffff:{HEAD}", PORT, "01")))
    assert wd.read_tables([str(tmp_path / "tcp"), str(tmp_path / "tcp6"), str(tmp_path / "nope")]) == [
        (WORKER, 40000, HEAD, PORT, "01")]


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


def test_a_worker_whose_head_died_never_restarts_itself_but_records_that_it_joined():
    """The head crashed: the worker's connection is gone (CLOSE_WAIT). A worker acting on
    its own chased the head's own restarts (issue: the pair did not converge); it only
    says what it sees, and its record tells the agent's prepare (the head's next start)
    that this run of its runtime joined a head and must be restarted."""
    watch = wd.Watch("worker", misses=3)
    assert watch.step("inv-1", True, joined((40000, PORT))) == ("none", "joined")
    assert watch.step("inv-1", True, joined((40000, PORT))) == ("none", "ok")
    for _ in range(6):
        action, reason = watch.step("inv-1", True, joined())
        assert action == "none"
    assert "waiting for the head's next start" in reason
    assert watch.record("spark-runtime.service", True, reason, 5.0)["joined"] is True
    # restarted by its agent (a new invocation): fresh, not joined, until it joins the new head
    assert watch.step("inv-2", True, joined()) == ("none", "waiting for the first join")
    assert watch.record("spark-runtime.service", True, "", 6.0) == {
        "unit": "spark-runtime.service", "role": "worker", "invocation": "inv-2", "active": True,
        "joined": False, "status": "", "at": 6.0}


def test_the_head_restarts_itself_when_a_worker_of_the_joined_pair_is_gone():
    watch = wd.Watch("head", misses=3)
    assert watch.step("inv-1", True, {WORKER: {(PORT, 40000)}}) == ("none", "joined")
    assert watch.step("inv-1", True, {WORKER: set()})[0] == "none"
    assert watch.step("inv-1", True, {WORKER: set()})[0] == "none"
    assert watch.step("inv-1", True, {WORKER: set()}) == ("restart", "the rendezvous connection is gone")
    # after the restart (a new invocation) it waits for the next join: no second restart
    assert watch.step("inv-2", True, {WORKER: set()}) == ("none", "waiting for the first join")


def test_a_new_connection_from_a_restarted_worker_does_not_hide_the_lost_one():
    """A worker restarted alone knocks at the old head again (a new connection from the
    same address): the head's watchdog still sees the joined connection gone."""
    watch = wd.Watch(misses=2)
    watch.step("inv", True, {WORKER: {(PORT, 40000)}})
    assert watch.lost({WORKER: {(PORT, 41234)}}) == [WORKER]
    assert watch.step("inv", True, {WORKER: {(PORT, 41234)}})[0] == "none"
    assert watch.step("inv", True, {WORKER: {(PORT, 41235)}})[0] == "restart"


def test_a_head_that_vanished_without_closing_is_reported_by_the_worker_not_acted_on():
    watch = wd.Watch("worker", misses=2, probe_misses=3)
    watch.step("inv", True, joined((1, PORT)))
    assert watch.step("inv", True, joined((1, PORT)), master_reachable=False)[0] == "none"
    assert watch.step("inv", True, joined((1, PORT)), master_reachable=False)[0] == "none"
    action, reason = watch.step("inv", True, joined((1, PORT)), master_reachable=False)
    assert action == "none" and reason.startswith("the head does not answer on its rendezvous port")


def test_a_rail_flapping_for_a_few_seconds_restarts_nothing():
    """The connection survives a short rail flap (TCP retransmits); probes fail meanwhile."""
    watch = wd.Watch("worker", misses=3, probe_misses=30)
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


def test_held_connections_are_the_established_and_close_wait_ones_to_the_store():
    rows = wd.parse_tcp_table(table6((f"::ffff:{WORKER}", 40000, f"::ffff:{HEAD}", PORT, "08"),   # CLOSE_WAIT
                                     (f"::ffff:{WORKER}", 40001, f"::ffff:{HEAD}", PORT, "01"),   # ESTABLISHED
                                     (f"::ffff:{WORKER}", 40002, f"::ffff:{HEAD}", PORT, "06"),   # TIME_WAIT
                                     (f"::ffff:{WORKER}", 40003, f"::ffff:{HEAD}", PORT, "02"),   # SYN_SENT
                                     (f"::ffff:{WORKER}", 40004, f"::ffff:{HEAD}", 8888, "01")))  # not the store
    assert wd.held_connections(rows, HEAD, PORT) == [(40000, PORT), (40001, PORT)]


def test_a_head_stuck_in_its_rendezvous_prepares_the_workers_then_restarts_itself():
    """Found by the lab's back-to-back kills: a worker joined and died within one probe
    interval, so the head's guard never saw the pair joined while the head's world was
    formed; the worker's new run was fresh and kept, the head refused it forever. First
    the workers are prepared (a stale one restarted into the waiting rendezvous); still
    waiting a join timeout later, the head restarts (only a new store admits a worker)."""
    watch = wd.Watch("head", misses=3, join_probes=3)
    assert watch.step("inv", True, {WORKER: set()}) == ("none", "waiting for the first join")
    assert watch.step("inv", True, {WORKER: set()})[0] == "none"
    assert watch.step("inv", True, {WORKER: set()}) == ("prepare", "the rendezvous waits too long for a worker")
    assert [watch.step("inv", True, {WORKER: set()})[0] for _ in range(3)] == ["none", "none", "restart"]
    # the restart is a new run: prepare first again
    assert [watch.step("inv-2", True, {WORKER: set()})[0] for _ in range(3)] == ["none", "none", "prepare"]
    assert watch.step("inv-2", True, {WORKER: {(PORT, 1)}}) == ("none", "joined")
    # a worker never asks anyone; without a join timeout the head never does either
    assert {wd.Watch("worker", join_probes=1).step("i", True, joined())[0] for _ in range(3)} == {"none"}
    assert {wd.Watch("head").step("i", True, {WORKER: set()})[0] for _ in range(3)} == {"none"}


def test_prepare_runs_the_watchdog_beside_the_guard_or_says_why_not(tmp_path, capsys):
    ran = []

    class Done:
        returncode = 0
    assert wd.prepare_workers(str(tmp_path / "watchdog.json"), "stuck",
                              run=lambda argv, check, env: ran.append((argv, env)) or Done(), exists=lambda p: True) == 0
    argv, env = ran[0]
    assert argv[1:] == ["-m", "spark_cluster.node.watchdog", "prepare", "--config", str(tmp_path / "watchdog.json")]
    # the package this guard was imported from, whatever PYTHONPATH the guard itself had
    assert pathlib.Path(env["PYTHONPATH"], "spark_cluster", "node", "watchdog.py").is_file()
    assert wd.prepare_workers(None, "stuck", run=None) is None
    assert "a person or start.yml must restart them" in capsys.readouterr().out


# ------------------------------------------------------------------ rows of a real TCPStore
# tests/unit/fixtures/rendezvous: torch's TCPStore (libuv backend and the legacy one),
# master in one network namespace, a client in another, captured by
# scripts/capture_rendezvous.py (its README says how and with which torch).

import pathlib  # noqa: E402

REAL = pathlib.Path(__file__).parent / "fixtures" / "rendezvous"


def real_rows(name, tables=("tcp", "tcp6")):
    return wd.read_tables([str(REAL / f"{name}.{t}") for t in tables])


def test_a_real_store_puts_every_row_in_tcp6_and_the_guard_sees_both_sides_joined():
    for prefix in ("", "legacy-"):
        assert wd.read_tables([str(REAL / f"{prefix}head.tcp"), str(REAL / f"{prefix}worker.tcp")]) == []
        head = wd.observe(real_rows(f"{prefix}head"), "head", HEAD, PORT, [WORKER])
        worker = wd.observe(real_rows(f"{prefix}worker"), "worker", HEAD, PORT)
        assert len(head[WORKER]) == 1 and len(worker[STORE]) == 1, (prefix, head, worker)
        # what the code before read (/proc/net/tcp alone) saw: nobody joined, on either side
        assert wd.observe(real_rows(f"{prefix}head", ("tcp",)), "head", HEAD, PORT, [WORKER]) == {WORKER: set()}
        assert wd.observe(real_rows(f"{prefix}worker", ("tcp",)), "worker", HEAD, PORT) == {STORE: set()}


def test_a_real_store_after_a_kill_the_head_sees_the_worker_gone_and_the_worker_holds_close_wait():
    watch = wd.Watch("head", misses=1)
    assert watch.step("inv", True, wd.observe(real_rows("head"), "head", HEAD, PORT, [WORKER])) == ("none", "joined")
    after = wd.observe(real_rows("head-after-worker-killed"), "head", HEAD, PORT, [WORKER])
    assert watch.step("inv", True, after) == ("restart", "the rendezvous connection is gone")
    # the head's own rank-0 client to its store is not a worker
    assert all(peer == WORKER for peer in after)
    # the worker whose head died keeps its socket, in CLOSE_WAIT: the agent's prepare sees it
    rows = real_rows("worker-after-head-killed")
    assert wd.observe(rows, "worker", HEAD, PORT) == {STORE: set()}
    assert len(wd.held_connections(rows, HEAD, PORT)) == 1
    assert wd.held_connections(real_rows("worker"), HEAD, PORT)  # and while joined, of course
