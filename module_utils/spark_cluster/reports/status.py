"""Status of the cluster (status.yml): per-node readings into one table, Markdown and
JSON. Plain functions (stdlib only), used by library/spark_node_status.py (on each
node) and library/spark_status_report.py (on the controller)."""

from __future__ import annotations

import datetime
import re

from ..common.envfile import parse as parse_env
from ..runtime.memory import GIB, parse_meminfo

SCHEMA = "spark-status-report"
SCHEMA_VERSION = 1


def rails_state(ip_addr_json, rails):
    """[{interface, expected, addresses, mtu, state, ok}] of the inventory's rails from
    ``ip -j addr`` (a list of links)."""
    by_name = {link.get("ifname"): link for link in ip_addr_json or []}
    out = []
    for rail in rails:
        link = by_name.get(rail["interface"])
        expected = str(rail["address"])
        if link is None:
            out.append({"interface": rail["interface"], "expected": expected, "addresses": [],
                        "mtu": None, "state": "missing", "ok": False})
            continue
        addresses = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info") or []
                     if a.get("family") == "inet"]
        state = link.get("operstate", "UNKNOWN")
        up = state == "UP" or "UP" in (link.get("flags") or []) and "LOWER_UP" in (link.get("flags") or [])
        out.append({"interface": rail["interface"], "expected": expected, "addresses": addresses,
                    "mtu": link.get("mtu"), "state": state, "ok": bool(up and expected in addresses)})
    return out


def gid_in_force(env_text):
    """The GID index of the runtime env file: the index, per device, or no RDMA."""
    if env_text is None:
        return "no env file"
    try:
        env = parse_env(env_text)
    except ValueError as exc:
        return f"unreadable env file ({exc})"
    if env.get("NCCL_IB_DISABLE") == "1":
        return "none (no RDMA: TCP sockets)"
    if env.get("NCCL_IB_GID_INDEX"):
        return env["NCCL_IB_GID_INDEX"]
    if env.get("NCCL_IB_HCA"):
        return "per device (NCCL picks)"
    return "unset"



def starts_last_hour(journal_text):
    """Starts of the unit in a journal excerpt (``journalctl -u UNIT --since -1h -o cat``)."""
    return sum(1 for line in str(journal_text or "").splitlines() if line.startswith("Started "))


def memory(meminfo_text):
    info = parse_meminfo(meminfo_text)
    total, available = info.get("MemTotal"), info.get("MemAvailable")
    if not total or available is None:
        return {"total_gib": None, "available_gib": None}
    return {"total_gib": round(total / GIB, 1), "available_gib": round(available / GIB, 1)}


def bench_figure(report):
    """One line from a bench report (reports/bench-latest.json), or 'none': per thinking
    mode, the shortest prompt's per-stream tok/s at the lowest concurrency and the
    aggregate at the highest."""
    if not isinstance(report, dict):
        return "none"
    parts = []
    for mode in ("off", "on"):
        cells = [c for c in report.get("cells") or []
                 if c.get("thinking") == mode and c.get("per_stream_tok_s") is not None]
        if not cells:
            continue
        shortest = min(c["prompt_tokens"] for c in cells)
        row = sorted((c for c in cells if c["prompt_tokens"] == shortest),
                     key=lambda c: c["concurrency"])
        part = (f"thinking {mode.upper()} {shortest} tok c={row[0]['concurrency']} "
                f"{row[0]['per_stream_tok_s']:.1f} tok/s")
        if len(row) > 1 and row[-1].get("aggregate_tok_s") is not None:
            part += f", c={row[-1]['concurrency']} aggregate {row[-1]['aggregate_tok_s']:.0f} tok/s"
        parts.append(part)
    when = report.get("generated_at", "?")
    return ("; ".join(parts) or f"verdict {report.get('verdict', '?')}") + f" ({when})"


def link_figure(report):
    if not isinstance(report, dict):
        return "none"
    return f"{report.get('verdict', '?')} ({report.get('generated_at', '?')})"


def build_report(nodes, bench=None, link=None, generated_at=None):
    """The report dict: nodes (as spark_node_status returned them, head first), the
    head's API, the last bench figure and link verdict, and an overall verdict."""
    generated_at = generated_at or datetime.datetime.now(datetime.timezone.utc)
    stamp = generated_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    problems = []
    for node in nodes:
        for rail in node.get("rails") or []:
            if not rail["ok"]:
                problems.append(f"{node['host']}: rail {rail['interface']} {rail['state']}, "
                                f"addresses {rail['addresses'] or 'none'} (expected {rail['expected']})")
        if node.get("unit_state") != "active/running":
            problems.append(f"{node['host']}: {node.get('unit')} is {node.get('unit_state')}")
    head = next((n for n in nodes if n.get("role") == "head"), {})
    api = head.get("api") or {}
    if api and api.get("health") != 200:
        problems.append(f"head /health answered {api.get('health') or 'nothing'}")
    metrics = head.get("metrics") or {}
    problems += [f"alert firing: {name}" for name in metrics.get("alerts") or []]
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "generated_at": stamp,
        "verdict": "serving" if not problems else "degraded",
        "problems": problems,
        "nodes": nodes,
        "api": api,
        "metrics": metrics,
        "bench": bench_figure(bench),
        "link": link_figure(link),
    }


def _rails_cell(rails):
    return "<br>".join(f"{r['interface']} {r['state']} {','.join(r['addresses']) or '-'} mtu {r['mtu']}"
                       for r in rails) or "-"


def render_markdown(report):
    lines = [f"# Cluster status {report['generated_at']}", "",
             f"**{report['verdict'].upper()}**" + (": " + "; ".join(report["problems"]) if report["problems"] else ""),
             "",
             "| node | role | rails (state, address, MTU) | GID index | image | unit | starts last hour | memory available / total | watchdog |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n in report["nodes"]:
        mem = n.get("memory") or {}
        lines.append(
            f"| {n['host']} | {n.get('role')} | {_rails_cell(n.get('rails') or [])} | {n.get('gid_index')} | "
            f"{(n.get('image_id') or '-')[:19]} | {n.get('unit_state')} | {n.get('starts_last_hour')} | "
            f"{mem.get('available_gib')} / {mem.get('total_gib')} GiB | {n.get('watchdog') or '-'} |")
    api = report.get("api") or {}
    lines += ["", f"- head `/health`: {api.get('health') or 'no answer'}",
              f"- head `/v1/models`: {', '.join(api.get('models') or []) or api.get('models_error') or 'none'}",
              f"- last bench: {report['bench']}",
              f"- last link report: {report['link']}", ""]
    lines += _metrics_lines(report.get("metrics") or {})
    return "\n".join(lines)


def _value_cell(value):
    if value is None:
        return "no data"
    return f"{value:.4g}"


def _metrics_lines(metrics):
    """The recording rules' current values from the head's Prometheus (monitoring on)."""
    if not metrics:
        return []
    lines = [f"## Recorded metrics (Prometheus {metrics.get('prometheus')})", ""]
    if metrics.get("error"):
        return lines + [f"Prometheus did not answer: {metrics['error']}", ""]
    lines += [f"Alerts firing: {', '.join(metrics.get('alerts') or []) or 'none'}", "",
              "| recording rule | labels | value |", "|---|---|---|"]
    lines += [f"| `{row['record']}` | {row['labels'] or '-'} | {_value_cell(row['value'])} |"
              for row in metrics.get("values") or []] or ["| (no series yet) | - | - |"]
    return lines + [""]
