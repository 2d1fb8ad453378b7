"""The link report: one dict (JSON), its Markdown rendering and a PNG bar chart.

``build_report`` turns the raw probe results of ``library/link_probe.py`` (as the
role collected them) into the report dict, with all verdicts from
``link.linkprobe``. ``write_report`` writes ``link-<UTC stamp>.{json,md,png}`` and
points ``link-latest.*`` at them. Plain Python 3.11+; matplotlib only for the PNG
(imported lazily, Agg backend).
"""

from __future__ import annotations

import datetime
import textwrap

from ..link.linkprobe import (
    FAIL, NOT_MEASURED, PASS, STALE, ceiling_explanation, direction_verdict,
    mtu_check, ping_verdict, rail_verdict, rdma_verdict, tcp_verdict,
    thresholds_with_defaults,
)
from ..link.collective import (
    collective_section, expect_from_links, not_measured as collective_not_measured,
    render_markdown as render_collective_markdown,
)
from ..link.topology import draw as draw_triangle
from .output import (
    bullet_section, figure, fmt as _f, generated_line, label_bars, save_figure, table_head,
    write_report_files)

SCHEMA = "spark-link-report"
SCHEMA_VERSION = 2
PROBE_KINDS = ("ping", "ping_df", "tcp_single", "tcp_parallel", "rdma")


def _g(mapping, *keys):
    """Nested get that tolerates None on the way."""
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _link(links, host, rail):
    rails = (links or {}).get(host) or []
    return rails[rail] if rail < len(rails) else {}


def _end_rail(pair, host):
    """The rail index of ``host``'s end: a triangle's pair names each end's rail
    (``src_rail`` / ``dst_rail``, its ``rail`` is the link and twin); a switch's is
    ``rail`` on both ends."""
    if host == pair.get("src_host") and "src_rail" in pair:
        return int(pair["src_rail"])
    if host == pair.get("dst_host") and "dst_rail" in pair:
        return int(pair["dst_rail"])
    return int(pair["rail"])


def _line_rate(links, pair, override):
    """The link's ceiling: override (Gb/s) or the lower sysfs speed of both ends."""
    if override:
        return float(override), "variable link_validation_line_rate_gbps"
    speeds = []
    for host, rail in ((pair["src_host"], _end_rail(pair, pair["src_host"])),
                       (pair["dst_host"], _end_rail(pair, pair["dst_host"]))):
        mbps = _link(links, host, rail).get("speed_mbps")
        if isinstance(mbps, (int, float)) and mbps > 0:
            speeds.append(mbps / 1000.0)
    if speeds:
        return min(speeds), "sysfs /sys/class/net/<if>/speed"
    return None, "unknown (no sysfs speed; set link_validation_line_rate_gbps)"


def _rdma_not_measured_reason(links, pair, probe):
    if probe and probe.get("reason"):
        return probe["reason"]
    if pair.get("rdma_reason"):
        return pair["rdma_reason"]
    missing = [h for h in (pair["src_host"], pair["dst_host"])
               if not _link(links, h, _end_rail(pair, h)).get("rdma_device")]
    if missing:
        return "no RDMA device for this rail on %s (/sys/class/infiniband)" % ", ".join(missing)
    return "RDMA probe did not run"


def rdma_hosts(links):
    """Hosts with an RDMA device (behind a rail or anywhere in /sys/class/infiniband)."""
    return sorted(host for host, rails in (links or {}).items()
                  if any(isinstance(r, dict) and (r.get("rdma_device") or r.get("rdma_available"))
                         for r in rails or []))


def _unmeasured_is_failure(checks, hosts):
    """On nodes with RDMA devices only a measured pass is good enough: every check that
    could not be measured fails (and says why), instead of leaving the run "incomplete"."""
    for name, check in list(checks.items()):
        if check and check.get("status") == NOT_MEASURED:
            checks[name] = dict(check, status=FAIL, reason=(
                "not measured on nodes with RDMA devices (%s), where only a measured pass "
                "is enough: %s" % (", ".join(hosts), check.get("reason"))))


def build_direction(pair, probes, links, thresholds, rdma_nodes=()):
    """One direction of one rail: measurements, per-check verdicts, verdict.

    rdma_nodes: hosts with RDMA devices; when there are any, a check that was not
    measured fails the direction (only the lab, without RDMA, may end "incomplete")."""
    th = thresholds_with_defaults(thresholds)
    pid = pair["id"]
    ping = probes.get("ping", {}).get(pid)
    ping_df = probes.get("ping_df", {}).get(pid)
    single = _g(probes.get("tcp_single", {}).get(pid), "sum")
    parallel = _g(probes.get("tcp_parallel", {}).get(pid), "sum")
    rdma_probe = probes.get("rdma", {}).get(pid)
    src_link = _link(links, pair["src_host"], _end_rail(pair, pair["src_host"]))
    dst_link = _link(links, pair["dst_host"], _end_rail(pair, pair["dst_host"]))

    rdma_gbps = rdma_probe.get("gbps") if rdma_probe and rdma_probe.get("ok") else None
    if rdma_probe and rdma_probe.get("measured") and not rdma_probe.get("ok"):
        rdma_check = {"status": FAIL, "gbps": None, "remedy": None,
                      "reason": "ib_write_bw failed: %s" % rdma_probe.get("error")}
    elif rdma_probe and not rdma_probe.get("measured") and rdma_probe.get("rdma_hardware"):
        rdma_check = {"status": FAIL, "gbps": None, "remedy": None,
                      "reason": "RDMA devices present but not measured: %s"
                      % rdma_probe.get("reason")}
    elif not rdma_probe and pair.get("rdma_status") == FAIL:
        rdma_check = {"status": FAIL, "gbps": None, "remedy": None,
                      "reason": pair.get("rdma_reason") or "RDMA could not be set up"}
    else:
        rdma_check = rdma_verdict(rdma_gbps, th,
                                  reason=None if rdma_gbps is not None
                                  else _rdma_not_measured_reason(links, pair, rdma_probe))
    checks = {
        "ping": ping_verdict(_g(ping, "parsed"), th) if ping else
        {"status": NOT_MEASURED, "reason": "ping did not run"},
        "mtu": mtu_check(_g(ping_df, "parsed"), th, local_mtu=src_link.get("mtu"),
                         peer_mtu=dst_link.get("mtu")),
        "tcp": tcp_verdict(single, parallel, th),
        "rdma": rdma_check,
    }
    if rdma_nodes:
        _unmeasured_is_failure(checks, rdma_nodes)
        rdma_check = checks["rdma"]
    verdict = direction_verdict(checks)
    ping_p = _g(ping, "parsed") or {}
    return {
        "id": pid,
        "direction": "%s -> %s" % (pair["src_host"], pair["dst_host"]),
        "src_host": pair["src_host"], "dst_host": pair["dst_host"],
        "src_interface": pair.get("src_interface"), "dst_interface": pair.get("dst_interface"),
        "src_address": pair.get("src_address"), "dst_address": pair.get("dst_address"),
        "ping": {
            "loss_pct": ping_p.get("loss_pct"), "transmitted": ping_p.get("transmitted"),
            "received": ping_p.get("received"), "rtt_min_ms": ping_p.get("rtt_min_ms"),
            "rtt_avg_ms": ping_p.get("rtt_avg_ms"), "rtt_max_ms": ping_p.get("rtt_max_ms"),
            "rtt_mdev_ms": ping_p.get("rtt_mdev_ms"),
        },
        "mtu": {
            "expected": th["mtu"], "payload_bytes": _g(ping_df, "parsed", "payload_bytes"),
            "loss_pct": _g(ping_df, "parsed", "loss_pct"),
            "path_mtu": _g(ping_df, "parsed", "path_mtu"),
            "src_interface_mtu": src_link.get("mtu"), "dst_interface_mtu": dst_link.get("mtu"),
        },
        "tcp": {
            "single_gbps": _g(single, "gbps"),
            "parallel_gbps": _g(parallel, "gbps"),
            "parallel_processes": _g(parallel, "processes"),
            "parallel_streams": _g(parallel, "streams_per_process"),
            "parallel_per_process_gbps": _g(parallel, "per_process_gbps"),
            "single_retransmits": _g(single, "retransmits"),
            "parallel_retransmits": _g(parallel, "retransmits"),
            "iperf3_version": _g(probes.get("tcp_single", {}).get(pid), "iperf3_version"),
            "errors": (_g(single, "errors") or []) + (_g(parallel, "errors") or []),
        },
        "rdma": {
            "gbps": rdma_gbps,
            "src_device": _g(rdma_probe, "hca") or src_link.get("rdma_device"),
            "dst_device": dst_link.get("rdma_device"),
            "gid_index": _g(rdma_probe, "gid_index"),
            "status": rdma_check["status"], "reason": rdma_check["reason"],
            "remedy": rdma_check.get("remedy"),
        },
        "checks": checks,
        "verdict": verdict["status"],
        "failures": verdict["failures"],
        "not_measured": verdict["not_measured"],
    }


def build_report(pairs, probes, links=None, pinning=None, thresholds=None,
                 line_rate_gbps=None, generated_at=None, env_file_present=None,
                 collective=None):
    """The report dict (see SCHEMA_VERSION); keys are always present (None if unknown).

    pairs: [{id, rail, src_host, dst_host, src_interface, dst_interface,
             src_address, dst_address}]
    probes: {kind: {pair id: probe dict from link_probe}} for PROBE_KINDS
    links: {host: [link_probe mode=link result per rail]}
    pinning: {host: qsfp_pinning result ({problems, would_pick, ...})}
    env_file_present: {host: bool}; pinning problems fail the run only for hosts
    whose runtime env file exists (the deployed configuration is wrong).
    collective: {runs: {host: probe module result}, expect: {host: {rail0_interface,
    rdma_devices}}, order: [hosts]} for link.collective.collective_section; None =
    the probe did not run (reported "not measured": the verdict can then not be pass).

    Where any host has an RDMA device the verdict is pass or fail, never "incomplete":
    "incomplete" is for nodes without RDMA (the lab), where RDMA cannot be measured
    (and the collective, without GPUs, neither).
    """
    th = thresholds_with_defaults(thresholds)
    links = links or {}
    probes = {kind: dict((probes or {}).get(kind) or {}) for kind in PROBE_KINDS}
    generated_at = generated_at or datetime.datetime.now(datetime.timezone.utc)
    rails = {}
    for pair in pairs:
        rails.setdefault(int(pair["rail"]), []).append(pair)
    rail_out, failures, warnings = [], [], []
    with_rdma = rdma_hosts(links)
    if with_rdma and not rails:
        failures.append("no rail measured, and the nodes have RDMA devices (%s)"
                        % ", ".join(with_rdma))
    for index in sorted(rails):
        directions = [build_direction(p, probes, links, th, with_rdma) for p in rails[index]]
        rate, rate_source = _line_rate(links, rails[index][0], line_rate_gbps)
        verdict = rail_verdict([{"status": d["verdict"]} for d in directions])
        for d in directions:
            failures += ["rail %d %s: %s" % (index, d["direction"], f) for f in d["failures"]]
            if d["rdma"]["remedy"]:
                warnings.append("rail %d %s: %s" % (index, d["direction"], d["rdma"]["remedy"]))
        first = directions[0] if directions else {}
        singles = [d["tcp"]["single_gbps"] for d in directions if d["tcp"]["single_gbps"]]
        paras = [d["tcp"]["parallel_gbps"] for d in directions if d["tcp"]["parallel_gbps"]]
        procs = max([d["tcp"]["parallel_processes"] or 0 for d in directions] or [0])
        rdmas = [d["rdma"]["gbps"] for d in directions if d["rdma"]["gbps"] is not None]
        triangle = {"link": rails[index][0]["link"], "twin": rails[index][0].get("twin")} \
            if rails[index][0].get("link") else {}
        rail_out.append({
            **triangle,
            "index": index,
            "interface": rails[index][0].get("src_interface"),
            "interfaces": sorted({p.get("src_interface") for p in rails[index]} |
                                 {p.get("dst_interface") for p in rails[index]} - {None}),
            "line_rate_gbps": rate,
            "line_rate_source": rate_source,
            "directions": directions,
            "verdict": verdict["status"],
            "reason": verdict["reason"],
            "ceilings": ceiling_explanation(
                max(singles) if singles else None, max(paras) if paras else None, procs,
                rate, first.get("tcp", {}).get("iperf3_version"),
                min(rdmas) if rdmas else None),
        })
    nodes = {}
    hosts = sorted(set(links) | set(pinning or {}))
    for host in hosts:
        pin = (pinning or {}).get(host) or {}
        problems = pin.get("problems") or []
        would = pin.get("would_pick") or {}
        deployed = bool((env_file_present or {}).get(host))
        pin_failed = bool(pin) and "problems" not in pin
        if pin_failed:
            warnings.append("%s pinning check could not run: %s" % (host, pin.get("msg")))
        nodes[host] = {
            "rails": links.get(host) or [],
            "pinning": {
                "checked": bool(pin) and not pin_failed,
                "env_file_present": deployed,
                "problems": problems,
                "would_pick": would or None,
                "note": ("vLLM would take %s (%s) if VLLM_HOST_IP were unset"
                         % (would.get("address"), would.get("interface"))) if would else None,
            },
        }
        for prob in problems:
            line = "%s pinning: %s" % (host, prob.get("message") or prob)
            (failures if deployed else warnings).append(
                line if deployed else line + " (runtime env not deployed yet)")
    threshold = th.get("collective_min_busbw_gbs")
    if collective is None:
        coll = collective_not_measured(
            "the collective probe did not run (tag 'collective' skipped or "
            "link_validation_collective: false)", threshold)
    else:
        coll = collective_section(collective.get("runs"),
                                  collective.get("expect") or expect_from_links(links),
                                  threshold, collective.get("order"))
    failures += ["collective: " + f for f in coll["failures"]]
    warnings += ["collective: " + w for w in coll["warnings"]]
    if with_rdma and coll["status"] == NOT_MEASURED:
        failures.append("collective: not measured on nodes with RDMA devices (%s): %s" % (
            ", ".join(with_rdma), coll["reason"]))
    if len(rail_out) < 2:
        warnings.append("only %d rail(s) in the inventory: full bandwidth needs both "
                        "twins, each on its own /24" % len(rail_out))
    statuses = [r["verdict"] for r in rail_out]
    if failures:
        overall = FAIL
    elif not rail_out or any(s != PASS for s in statuses) or coll["status"] != PASS:
        overall = "incomplete"
    else:
        overall = PASS
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "generated_at": generated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "verdict": overall,
        "fit_for_tensor_parallel": {PASS: True, FAIL: False}.get(overall),
        "summary": _summary(overall, failures, rail_out, coll),
        "failures": failures,
        "warnings": warnings,
        "thresholds": th,
        "rails": rail_out,
        "pairs": pairs_view(rail_out),
        "collective": coll,
        "nodes": nodes,
    }


def pair_key(a, b):
    return "%s <-> %s" % (a, b)


def pairs_view(rails):
    """The same measurements keyed by node pair ("a <-> b", in plan order), then rail:
    with more than two nodes every pair is measured on every rail (worker-to-worker
    traffic is as real in a ring all-reduce as head-to-worker)."""
    out = {}
    for rail in rails:
        for d in rail["directions"]:
            a, b = d["src_host"], d["dst_host"]
            key = pair_key(b, a) if pair_key(b, a) in out else pair_key(a, b)
            entry = out.setdefault(key, {"nodes": [a, b], "rails": {}, "verdict": PASS})
            per_rail = entry["rails"].setdefault(str(rail["index"]), {"directions": []})
            per_rail["directions"].append({
                "direction": d["direction"], "verdict": d["verdict"],
                "tcp_best_gbps": max([v for v in (d["tcp"]["single_gbps"], d["tcp"]["parallel_gbps"])
                                      if v is not None] or [None], key=lambda v: v or 0),
                "rdma_gbps": d["rdma"]["gbps"], "rtt_avg_ms": d["ping"]["rtt_avg_ms"],
                "failures": d["failures"]})
    for entry in out.values():
        verdicts = [x["verdict"] for r in entry["rails"].values() for x in r["directions"]]
        entry["verdict"] = (FAIL if FAIL in verdicts else PASS if verdicts and
                            all(v == PASS for v in verdicts) else "incomplete")
    return out


def _summary(overall, failures, rails, coll):
    if overall == PASS:
        return "The cable is fit for tensor parallelism: every check passed on every rail."
    if overall == FAIL:
        return "Not fit for tensor parallelism: %d check(s) failed." % len(failures)
    missing = sorted({n for r in rails for d in r["directions"] for n in d["not_measured"]}
                     | ({"the NCCL all-reduce"} if coll["status"] == NOT_MEASURED else set()))
    return ("No check failed, but %s could not be measured, so fitness for tensor "
            "parallelism is not proven." % (", ".join(missing) or "nothing"))


# ---------------------------------------------------------------------- rendering

def _triangle_markdown(rails):
    """A triangle's report opens with the triangle, each side labelled with its twins'
    verdicts ([] for a switch, whose rails carry no ``link``)."""
    links = []
    for rail in rails:
        if rail.get("link") and rail["link"] not in links:
            links.append(rail["link"])
    if len(links) != 3:
        return []
    ends = [tuple(name.split(" <-> ")) for name in links]
    order = []
    for a, b in ends:
        order += [n for n in (a, b) if n not in order]
    if len(order) != 3:
        return []
    labels = {}
    for (a, b), name in zip(ends, links):
        labels[(a, b)] = "/".join(r["verdict"] for r in rails if r.get("link") == name)
    return ["## Triangle", "", "```", draw_triangle(order, labels), "```", "",
            "Each side: one cable, its twins' verdicts (twin 0/twin 1).", ""]


def render_markdown(report):
    """Markdown: summary, one table per rail, ceilings, failures/warnings, pinning."""
    lines = ["# QSFP link report", "",
             generated_line(report), "",
             "**Verdict: %s.** %s" % (report["verdict"].upper(), report["summary"]), ""]
    lines += _triangle_markdown(report["rails"])
    for rail in report["rails"]:
        title = ("Link %s, twin %s" % (rail["link"], rail.get("twin")) if rail.get("link")
                 else "Rail %d" % rail["index"])
        lines += ["## %s (%s)" % (title, ", ".join(rail["interfaces"])), "",
                  "Line rate: %s Gb/s (%s). Rail verdict: **%s** (%s)." % (
                      _f(rail["line_rate_gbps"], "%g"), rail["line_rate_source"],
                      rail["verdict"], rail["reason"]), ""]
        lines += table_head("direction", "loss", "RTT min/avg/max/mdev ms", "MTU check",
                            "TCP single Gb/s", "TCP parallel Gb/s", "RDMA Gb/s", "verdict")
        for d in rail["directions"]:
            p, t, r = d["ping"], d["tcp"], d["rdma"]
            rtt = "/".join(_f(p[k], "%.3f") for k in
                           ("rtt_min_ms", "rtt_avg_ms", "rtt_max_ms", "rtt_mdev_ms"))
            par = _f(t["parallel_gbps"])
            if t["parallel_processes"]:
                par += " (x%d)" % t["parallel_processes"]
            rdma = _f(r["gbps"]) if r["gbps"] is not None else r["status"].replace("_", " ")
            if r["status"] == STALE:
                rdma += " (stale init)"
            mtu = d["checks"]["mtu"]["status"]
            if mtu != PASS:
                mtu += ": " + d["checks"]["mtu"]["reason"]
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                d["direction"], _f(p["loss_pct"], "%g%%"), rtt, mtu,
                _f(t["single_gbps"]), par, rdma, d["verdict"]))
        lines += ["", "Ceilings: " + (rail["ceilings"] or "n/a"), ""]
        for d in rail["directions"]:
            if d["rdma"]["status"] == NOT_MEASURED:
                lines.append("- RDMA %s: not measured: %s" % (d["direction"], d["rdma"]["reason"]))
        lines.append("")
    if len(report["pairs"]) > 1:
        lines += ["## Node pairs", ""] + table_head(
            "pair", "rail", "direction", "RTT avg ms", "TCP best Gb/s", "RDMA Gb/s", "verdict")
        for key, entry in report["pairs"].items():
            for index, per_rail in sorted(entry["rails"].items()):
                for x in per_rail["directions"]:
                    lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                        key, index, x["direction"], _f(x["rtt_avg_ms"], "%.3f"),
                        _f(x["tcp_best_gbps"]), _f(x["rdma_gbps"]), x["verdict"]))
        lines.append("")
    lines += render_collective_markdown(report["collective"])
    lines += bullet_section("Failures", report["failures"])
    lines += bullet_section("Warnings", report["warnings"])
    pin_lines = []
    for host, node in sorted(report["nodes"].items()):
        pin = node["pinning"]
        if not pin["checked"]:
            continue
        pin_lines.append("- %s: %d problem(s)%s" % (
            host, len(pin["problems"]), ("; " + pin["note"]) if pin["note"] else ""))
        pin_lines += ["  - %s" % (pr.get("message") or pr) for pr in pin["problems"]]
    if pin_lines:
        lines += ["## Interface pinning", ""] + pin_lines + [""]
    th = report["thresholds"]
    lines += ["## Thresholds", "",
              "ping loss <= %g%%, RTT avg <= %g ms, MTU %d, TCP best >= %g Gb/s, "
              "RDMA pass >= %g Gb/s, stale-init band %g-%g Gb/s." % (
                  th["ping_max_loss_pct"], th["ping_max_rtt_avg_ms"], th["mtu"],
                  th["tcp_min_gbps"], th["rdma_pass_gbps"], th["rdma_stale_min_gbps"],
                  th["rdma_stale_max_gbps"]), ""]
    return "\n".join(lines)


def render_png(report, path):
    """Two panels: throughput per rail/direction and method (line rate dashed), and the
    NCCL all-reduce bus bandwidth by message size (threshold dashed)."""
    methods = (("TCP single", lambda d: d["tcp"]["single_gbps"]),
               ("TCP parallel", lambda d: d["tcp"]["parallel_gbps"]),
               ("RDMA", lambda d: d["rdma"]["gbps"]))
    groups = [(rail, d) for rail in report["rails"] for d in rail["directions"]]
    fig, (ax, cax) = figure([max(2.0, len(groups)), 2.5],
                            (max(6.0, 2.2 * len(groups) + 2) + 5.5, 4.8))
    width = 0.8 / len(methods)
    for m_index, (name, getter) in enumerate(methods):
        xs = [g + (m_index - 1) * width for g in range(len(groups))]
        vals = [getter(d) or 0.0 for _, d in groups]
        bars = ax.bar(xs, vals, width, label=name)
        label_bars(ax, bars, ["n/m" if getter(d) is None else "%.1f" % getter(d)
                              for _, d in groups])
    for g_index, (rail, _) in enumerate(groups):
        if rail["line_rate_gbps"]:
            ax.hlines(rail["line_rate_gbps"], g_index - 0.45, g_index + 0.45,
                      colors="black", linestyles="dashed",
                      label="line rate" if g_index == 0 else None)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(["rail %d\n%s" % (rail["index"], d["direction"].replace(" -> ", "\n-> "))
                        for rail, d in groups], fontsize=8)
    ax.set_ylabel("Gb/s")
    ax.set_title("QSFP link throughput (%s) - verdict: %s" % (report["generated_at"],
                                                               report["verdict"]), fontsize=9)
    ax.legend(fontsize=8)
    _collective_panel(cax, report.get("collective") or {})
    return save_figure(fig, path)


def _collective_panel(ax, coll):
    """Bus bandwidth (GB/s) by all-reduce size, log2 x axis; or why it is missing."""
    sizes = coll.get("sizes") or []
    ax.set_title("NCCL all-reduce busbw by size - %s"
                 % (coll.get("status") or "not measured").replace("_", " "), fontsize=9)
    if not sizes:
        ax.axis("off")
        ax.text(0.5, 0.5, "not measured:\n" + "\n".join(
            textwrap.wrap(coll.get("reason") or "no result", 40)[:8]),
            ha="center", va="center", fontsize=8, transform=ax.transAxes)
        return
    xs = [r["size_bytes"] / float(1 << 20) for r in sizes]
    ax.plot(xs, [r["busbw_gbs"] for r in sizes], marker="o", label="busbw")
    ax.plot(xs, [r["algbw_gbs"] for r in sizes], marker=".", linestyle=":", label="algbw")
    ax.axhline(coll.get("threshold_busbw_gbs") or 0, color="red", linestyle="dashed",
               label="threshold %.1f" % (coll.get("threshold_busbw_gbs") or 0))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("message size (MiB)")
    ax.set_ylabel("GB/s")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)


def write_report(report, report_dir, formats=("json", "md", "png"), prefix="link"):
    """Write link-<stamp>.<ext> per format and link-latest.<ext>; returns the paths."""
    return write_report_files(report, report_dir, formats, prefix, render_markdown, render_png)
