#!/usr/bin/python
"""Ansible module: run ONE link measurement on a node and return parsed results."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: link_probe
short_description: Run one link measurement (ping, iperf3, ib_write_bw) on a node
description:
  - Runs exactly one probe on the node it executes on and returns the parsed result
    under C(probe). Parsing and verdict logic live in C(module_utils/spark_cluster/link/linkprobe.py).
  - A failed measurement (no reply, no server, tool missing) is a result, not a module
    failure, so the role can run every check before it decides. The module fails only
    on bad parameters or when a server cannot be started.
  - It changes nothing persistent (C(changed=false)). Servers it starts
    (C(iperf3_servers), C(rdma_server)) are one-off processes; stop them with
    C(iperf3_stop) / C(rdma_stop).
  - In check mode nothing runs (result C(skipped=true)), except the read-only
    C(link) mode, which only reads sysfs.
version_added: "1.0.0"
author: spark-cluster project
options:
  mode:
    description:
      - C(link) reads sysfs facts of O(interface) (speed, MTU, state, RDMA twin, CPUs,
        tool versions).
      - C(ping) pings O(target) (O(dont_fragment) and O(payload) for the MTU check).
      - C(iperf3_servers) starts O(processes) daemonized one-off iperf3 servers on ports
        O(port) .. O(port)+O(processes)-1 and waits until they listen.
      - C(iperf3_stop) stops the servers started from O(state_dir) (all of them).
      - C(iperf3) runs O(processes) iperf3 clients concurrently, one per port, and sums.
      - C(rdma_server) starts one ib_write_bw server in the background.
      - C(rdma) runs the ib_write_bw client against O(target).
      - C(rdma_stop) stops a leftover ib_write_bw server.
    type: str
    required: true
    choices: [link, ping, iperf3_servers, iperf3_stop, iperf3, rdma_server, rdma, rdma_stop]
  interface:
    description: Netdev of the rail on this node (C(link), RDMA device lookup).
    type: str
  target:
    description: Peer address (C(ping), C(iperf3), C(rdma)).
    type: str
  source:
    description: Local address to bind to (ping C(-I), iperf3 C(-B)).
    type: str
  count:
    description: Ping count.
    type: int
    default: 10
  interval:
    description: Seconds between pings.
    type: float
    default: 0.2
  payload:
    description: ICMP payload bytes (C(-s)); for the MTU check use MTU-28.
    type: int
  dont_fragment:
    description: Set DF (C(-M do)).
    type: bool
    default: false
  port:
    description: First TCP port (iperf3) or the perftest port (rdma).
    type: int
    default: 5201
  processes:
    description: Number of iperf3 server/client processes (one port each).
    type: int
    default: 1
  streams:
    description: Parallel streams inside one iperf3 client process (C(-P)).
    type: int
    default: 1
  duration:
    description: Seconds per iperf3 / ib_write_bw run.
    type: int
    default: 10
  hca:
    description: RDMA device (C(-d)); default is the RDMA twin of O(interface).
    type: str
  gid_index:
    description: RoCE v2 GID index (C(-x)). Required for C(rdma_server) / C(rdma).
    type: int
  size:
    description: ib_write_bw message size in bytes.
    type: int
    default: 65536
  qps:
    description: ib_write_bw queue pairs (C(-q)).
    type: int
    default: 1
  state_dir:
    description: Node-side directory for server pidfiles and logs.
    type: path
    default: /tmp/spark-linkprobe
  start_timeout:
    description:
      - Seconds a server (C(iperf3_servers), C(rdma_server)) may take to listen before
        the module fails. A daemonized iperf3 that cannot bind its address (the rail's
        address gone) exits without a word, so this is how long such a rail costs.
    type: float
    default: 10
  sysfs:
    description: Root of sysfs (tests).
    type: path
    default: /sys
notes:
  - Needs iputils C(ping), C(iperf3) and, for RDMA, perftest C(ib_write_bw) on the node.
  - iperf3 < 3.16 runs all C(-P) streams of one process in one thread; that is why
    O(processes) exists.
"""

EXAMPLES = r"""
- name: Don't-fragment ping at MTU 9000
  link_probe:
    mode: ping
    target: 192.168.100.11
    dont_fragment: true
    payload: 8972

- name: Four iperf3 servers on 5211-5214
  link_probe:
    mode: iperf3_servers
    port: 5211
    processes: 4
    source: 192.168.100.11

- name: Four concurrent iperf3 clients, summed
  link_probe:
    mode: iperf3
    target: 192.168.100.11
    port: 5211
    processes: 4
    duration: 10

- name: ib_write_bw client on the rail's RDMA twin
  link_probe:
    mode: rdma
    interface: enp1s0f1np1
    target: 192.168.100.11
    gid_index: 3
    port: 18515
"""

RETURN = r"""
probe:
  description: The parsed measurement. Keys depend on O(mode).
  returned: always (except check mode)
  type: dict
  contains:
    kind:
      description: The mode that ran.
      type: str
    parsed:
      description: C(ping) - parse_ping() of the output (loss_pct, rtt_*_ms, path_mtu ...).
      type: dict
    results:
      description: C(iperf3) - parse_iperf3() of each client process.
      type: list
      elements: dict
    sum:
      description: C(iperf3) - sum_parallel() of the processes (gbps, ok, errors).
      type: dict
    gbps:
      description: C(rdma) - ib_write_bw BW average in Gb/s (None if not measured).
      type: float
    measured:
      description: C(rdma) - whether ib_write_bw ran at all.
      type: bool
    rdma_hardware:
      description: C(rdma) when not measured - whether the node has RDMA devices (then
        not measuring is a failure, not "not_measured").
      type: bool
    reason:
      description: Why a probe was not measured.
      type: str
    speed_mbps:
      description: C(link) - sysfs speed of the interface (Mb/s), None if unknown.
      type: int
    rdma_device:
      description: C(link) - the RDMA twin of the interface, None without RDMA.
      type: str
  sample:
    kind: ping
    parsed: {loss_pct: 0.0, rtt_avg_ms: 0.052, transmitted: 10, received: 10}
skipped:
  description: True in check mode (nothing ran).
  returned: check mode
  type: bool
"""

import glob
import os
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.link.cx7 import sysfs_count
from ansible.module_utils.spark_cluster.common.fileio import read_text
from ansible.module_utils.spark_cluster.link.linkprobe import (
    ib_write_bw_argv, iperf3_client_argv, iperf3_server_argv, parse_ib_write_bw,
    parse_iperf3, parse_ping, ping_argv, run_concurrently, stop_pidfiles,
    sum_parallel, tcp_listening,
)
from ansible.module_utils.spark_cluster.link.roce import rdma_devices


def _rdma_twin(sysfs, interface):
    """(RDMA device whose device/net/ holds ``interface`` or None, all RDMA devices)."""
    twins = rdma_devices(sysfs, interface) if interface else []
    return (twins[0] if twins else None), rdma_devices(sysfs)


def _version(module, argv):
    path = module.get_bin_path(argv[0])
    if not path:
        return None
    rc, out, err = module.run_command([path] + argv[1:])
    text = (out or err or "").strip().splitlines()
    return text[0] if text else None


def mode_link(module, p):
    base = os.path.join(p["sysfs"], "class/net", p["interface"] or "")
    hca, hcas = _rdma_twin(p["sysfs"], p["interface"])
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count()
    return {
        "kind": "link",
        "interface": p["interface"],
        "exists": bool(p["interface"]) and os.path.isdir(base),
        "speed_mbps": sysfs_count(read_text(os.path.join(base, "speed"))),
        "mtu": sysfs_count(read_text(os.path.join(base, "mtu"))),
        "operstate": read_text(os.path.join(base, "operstate")),
        "rdma_available": bool(hcas),
        "rdma_devices": hcas,
        "rdma_device": hca,
        "cpus": cpus,
        "ping": module.get_bin_path("ping"),
        "iperf3": module.get_bin_path("iperf3"),
        "iperf3_version": _version(module, ["iperf3", "--version"]),
        "ib_write_bw": module.get_bin_path("ib_write_bw"),
    }


def mode_ping(module, p):
    ping = module.get_bin_path("ping")
    if not ping:
        return {"kind": "ping", "rc": None, "parsed": parse_ping("ping: command not found"),
                "error": "ping not installed"}
    argv = ping_argv(p["target"], p["count"], p["interval"], payload=p["payload"],
                     dont_fragment=p["dont_fragment"], source=p["source"], ping=ping)
    rc, out, err = module.run_command(argv)
    return {"kind": "ping", "rc": rc, "argv": argv, "parsed": parse_ping(out + "\n" + err)}


def _ports(p):
    return [p["port"] + i for i in range(p["processes"])]


def mode_iperf3_servers(module, p):
    iperf3 = module.get_bin_path("iperf3", required=True)
    os.makedirs(p["state_dir"], mode=0o700, exist_ok=True)
    started = []
    for port in _ports(p):
        pidfile = os.path.join(p["state_dir"], "iperf3-%d.pid" % port)
        stop_pidfiles([pidfile])
        argv = iperf3_server_argv(port, bind=p["source"], pidfile=pidfile, iperf3=iperf3)
        rc, out, err = module.run_command(argv)
        if rc != 0:
            module.fail_json(msg="iperf3 server on port %d did not start: %s"
                             % (port, (err or out).strip()), argv=argv, rc=rc)
        started.append(port)
    deadline = time.monotonic() + p["start_timeout"]
    waiting = list(started)
    while waiting and time.monotonic() < deadline:
        waiting = [port for port in waiting if not tcp_listening(port)]
        if waiting:
            time.sleep(0.1)
    if waiting:
        module.fail_json(msg="iperf3 servers not listening on %s after %g s" % (waiting, p["start_timeout"]))
    return {"kind": "iperf3_servers", "ports": started}


def mode_iperf3_stop(module, p):
    files = sorted(glob.glob(os.path.join(p["state_dir"], "iperf3-*.pid")))
    return {"kind": "iperf3_stop", "stopped_pids": stop_pidfiles(files)}


def mode_iperf3(module, p):
    iperf3 = module.get_bin_path("iperf3")
    version = _version(module, ["iperf3", "--version"])
    if not iperf3:
        results = [{"ok": False, "error": "iperf3 not installed"}] * p["processes"]
    else:
        argvs = [iperf3_client_argv(p["target"], port, p["duration"], p["streams"],
                                    bind=p["source"], iperf3=iperf3) for port in _ports(p)]
        runs = run_concurrently(argvs, timeout=p["duration"] + 30)
        results = []
        for (rc, out, err) in runs:
            parsed = parse_iperf3(out)
            if not parsed["ok"] and err.strip():
                parsed["error"] = "%s (%s)" % (parsed["error"], err.strip().splitlines()[-1])
            parsed["rc"] = rc
            results.append(parsed)
    return {"kind": "iperf3", "processes": p["processes"], "streams": p["streams"],
            "ports": _ports(p), "iperf3_version": version,
            "results": results, "sum": sum_parallel(results)}


def _rdma_params(module, p, kind):
    """(tool, hca) or a not-measured probe dict."""
    hca = p["hca"]
    twin, hcas = _rdma_twin(p["sysfs"], p["interface"])
    if not hcas:
        return None, {"kind": kind, "measured": False, "ok": False, "gbps": None,
                      "rdma_hardware": False,
                      "reason": "no RDMA device on this node (%s/class/infiniband is "
                      "empty or missing)" % p["sysfs"]}
    hca = hca or twin
    if not hca:
        return None, {"kind": kind, "measured": False, "ok": False, "gbps": None,
                      "rdma_hardware": True,
                      "reason": "no RDMA device behind %s" % p["interface"]}
    tool = module.get_bin_path("ib_write_bw")
    if not tool:
        return None, {"kind": kind, "measured": False, "ok": False, "gbps": None,
                      "rdma_hardware": True, "hca": hca,
                      "reason": "ib_write_bw (perftest) not installed"}
    if p["gid_index"] is None:
        module.fail_json(msg="gid_index is required for mode=%s" % kind)
    return (tool, hca), None


def mode_rdma_server(module, p):
    found, probe = _rdma_params(module, p, "rdma_server")
    if probe:
        return probe
    tool, hca = found
    os.makedirs(p["state_dir"], mode=0o700, exist_ok=True)
    log = os.path.join(p["state_dir"], "ib_write_bw-%d.log" % p["port"])
    argv = ib_write_bw_argv(hca, p["gid_index"], p["port"], p["size"], p["duration"],
                            qps=p["qps"], tool=tool)
    with open(log, "w", encoding="utf-8") as handle:
        proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    with open(os.path.join(p["state_dir"], "ib_write_bw-%d.pid" % p["port"]), "w",
              encoding="ascii") as handle:
        handle.write(str(proc.pid))
    deadline = time.monotonic() + p["start_timeout"]
    while time.monotonic() < deadline and proc.poll() is None and not tcp_listening(p["port"]):
        time.sleep(0.1)
    if proc.poll() is not None:
        module.fail_json(msg="ib_write_bw server exited at once: %s" % read_text(log), argv=argv)
    return {"kind": "rdma_server", "measured": True, "hca": hca, "pid": proc.pid,
            "log": log, "argv": argv}


def mode_rdma(module, p):
    found, probe = _rdma_params(module, p, "rdma")
    if probe:
        return probe
    tool, hca = found
    argv = ib_write_bw_argv(hca, p["gid_index"], p["port"], p["size"], p["duration"],
                            target=p["target"], qps=p["qps"], tool=tool)
    rc, out, err = module.run_command(argv)
    parsed = parse_ib_write_bw(out + "\n" + err)
    parsed.update(kind="rdma", measured=True, rdma_hardware=True, hca=hca, rc=rc, argv=argv,
                  gid_index=p["gid_index"])
    return parsed


def mode_rdma_stop(module, p):
    files = sorted(glob.glob(os.path.join(p["state_dir"], "ib_write_bw-*.pid")))
    return {"kind": "rdma_stop", "stopped_pids": stop_pidfiles(files)}


MODES = {
    "link": mode_link, "ping": mode_ping, "iperf3_servers": mode_iperf3_servers,
    "iperf3_stop": mode_iperf3_stop, "iperf3": mode_iperf3,
    "rdma_server": mode_rdma_server, "rdma": mode_rdma, "rdma_stop": mode_rdma_stop,
}
NEEDS_TARGET = ("ping", "iperf3", "rdma")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            mode=dict(type="str", required=True, choices=list(MODES)),
            interface=dict(type="str"),
            target=dict(type="str"),
            source=dict(type="str"),
            count=dict(type="int", default=10),
            interval=dict(type="float", default=0.2),
            payload=dict(type="int"),
            dont_fragment=dict(type="bool", default=False),
            port=dict(type="int", default=5201),
            processes=dict(type="int", default=1),
            streams=dict(type="int", default=1),
            duration=dict(type="int", default=10),
            hca=dict(type="str"),
            gid_index=dict(type="int"),
            size=dict(type="int", default=65536),
            qps=dict(type="int", default=1),
            state_dir=dict(type="path", default="/tmp/spark-linkprobe"),
            start_timeout=dict(type="float", default=10),
            sysfs=dict(type="path", default="/sys"),
        ),
        required_if=[("mode", m, ("target",)) for m in NEEDS_TARGET]
        + [("mode", "link", ("interface",))],
        supports_check_mode=True,
    )
    p = module.params
    if p["processes"] < 1 or p["streams"] < 1:
        module.fail_json(msg="processes and streams must be >= 1")
    if p["start_timeout"] <= 0:
        module.fail_json(msg="start_timeout must be > 0")
    if module.check_mode and p["mode"] != "link":
        module.exit_json(changed=False, skipped=True,
                         msg="check mode: link_probe mode=%s not run" % p["mode"])
    probe = MODES[p["mode"]](module, p)
    module.exit_json(changed=False, probe=probe)


if __name__ == "__main__":
    main()
