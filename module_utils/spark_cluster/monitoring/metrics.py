"""Metrics over time: the one table of metric names, formulas, recording and alert rules.

Everything Prometheus and Grafana see is generated from the tables below:

* the runtime's (vLLM's) series the project reads (``M_*``), also used by the benchmark;
* ``RATIOS``: acceptance rate and mean accepted length as ratios of counter increases.
  The benchmark computes them from ``/metrics`` deltas around one run
  (``reports.bench_data.spec_rates``), the recording rules from ``rate()`` over a window: the
  same numerator and denominator, from this table only;
* ``RECORDING_RULES`` and ``ALERTS`` (expressions with ``{placeholders}`` filled from
  ``DEFAULT_PARAMS`` or the role's variables), rendered by ``render_rules``;
* ``render_prometheus_config``: the scrape configuration (runtime, node exporters);
* ``render_dashboard``: a Grafana dashboard whose panels query the recording rules by
  name, so it cannot drift from them (``scripts/monitoring_files.py`` writes it and a
  unit test fails when the committed file differs).

The node-side series ``spark_*`` (firewall table present, unit restarts, which device is
which rail, the management interface) come from ``monitoring.node_check`` through node
exporter's textfile collector.

Plain Python 3.11+, stdlib only.
"""

from __future__ import annotations

import json
import re

# ---------------------------------------------------------------------- series

# vLLM (the runtime's /metrics on the head); counters without their _total suffix
M_DRAFTS = "vllm:spec_decode_num_drafts"
M_DRAFT_TOKENS = "vllm:spec_decode_num_draft_tokens"
M_ACCEPTED = "vllm:spec_decode_num_accepted_tokens"
M_PER_POS = "vllm:spec_decode_num_accepted_tokens_per_pos"
M_GENERATION = "vllm:generation_tokens"
M_TTFT = "vllm:time_to_first_token_seconds"                  # histogram, per request
M_TPOT = "vllm:request_time_per_output_token_seconds"         # histogram, per request mean
M_RUNNING = "vllm:num_requests_running"                       # gauge
M_WAITING = "vllm:num_requests_waiting"                       # gauge

# node exporter (every node)
N_UP = "node_network_up"
N_MTU = "node_network_mtu_bytes"
N_RX = "node_network_receive_bytes_total"
N_TX = "node_network_transmit_bytes_total"
N_MEM_AVAILABLE = "node_memory_MemAvailable_bytes"
N_MEM_TOTAL = "node_memory_MemTotal_bytes"

# monitoring.node_check (textfile collector, every node)
S_RAIL_INFO = "spark_rail_info"
S_MGMT_INFO = "spark_mgmt_interface_info"
S_FIREWALL = "spark_firewall_table_present"
S_RESTARTS = "spark_unit_restarts_total"
S_UNIT_ACTIVE = "spark_unit_active"
S_CHECK_TIME = "spark_node_check_timestamp_seconds"

# Scrape jobs
JOB_RUNTIME = "spark-runtime"
JOB_NODE = "node"
JOB_PROMETHEUS = "prometheus"

# ---------------------------------------------------------------------- formulas

# name: (numerator counter, denominator counter), over one window. One source for the
# benchmark (deltas around a run) and the recording rules (rates over a window).
RATIOS = {
    "acceptance_rate": (M_ACCEPTED, M_DRAFT_TOKENS),
    "mean_accepted_per_draft": (M_ACCEPTED, M_DRAFTS),
}
# per position: d(M_PER_POS{position}) / d(PER_POSITION_DENOMINATOR)
PER_POSITION_DENOMINATOR = M_DRAFTS


def ratio_formula(name):
    """The human-readable formula of a ratio (the benchmark report prints it)."""
    num, den = RATIOS[name]
    return "d(%s) / d(%s)" % (num, den)


def per_position_formula():
    return "d(%s{position}) / d(%s)" % (M_PER_POS, PER_POSITION_DENOMINATOR)


# ---------------------------------------------------------------------- parameters

# Thresholds and durations the role may override (monitoring_alert_params). "for_<alert>"
# is the alert's `for:` duration.
DEFAULT_PARAMS = {
    "rate_window": "5m",              # ratios and quantiles
    "stall_window": "2m",             # no token generated for this long while requests run
    "mgmt_window": "2m",
    "acceptance_rate_min": 0.10,      # field: 24% thinking ON, 40% OFF
    "restarts_per_hour_max": 3,       # the unit allows 8 starts an hour (StartLimitBurst)
    "memory_available_ratio_min": 0.05,
    "rail_mtu": 9000,
    "mgmt_bytes_per_s_max": 10000000,  # 10 MB/s on the default-route interface
    "node_check_stale_s": 300,
    "for_SparkTargetDown": "5m",
    "for_SparkEngineStalled": "2m",
    "for_SparkAcceptanceCollapsed": "10m",
    "for_SparkRestartLoop": "0m",
    "for_SparkUnifiedMemoryLow": "5m",
    "for_SparkRailDown": "1m",
    "for_SparkRailMtuWrong": "1m",
    "for_SparkManagementTrafficWhileServing": "5m",
    "for_SparkFirewallTableMissing": "2m",
    "for_SparkNodeCheckStale": "5m",
}

DURATION_RE = re.compile(r"^(?:\d+(?:ms|[smhdwy]))+$")

# ---------------------------------------------------------------------- recording rules

# Each rule: record, expr (with {placeholders}), help, and its dashboard panel
# (panel title, Grafana unit, legend). Rules with the same record and different labels
# (the TTFT quantiles) share one panel.
RECORDING_RULES = [
    {"record": "spark:generation_tokens:rate1m",
     "expr": "sum by (model_name) (rate(%s_total[1m]))" % M_GENERATION,
     "help": "tokens generated per second, all requests together (the pair's output throughput)",
     "panel": ("Generated tokens/s (all requests)", "none", "{{model_name}}")},
    {"record": "spark:decode_tokens_per_second:per_request",
     "expr": ("sum by (model_name) (rate(%s_count[{rate_window}]))\n/\n"
              "(sum by (model_name) (rate(%s_sum[{rate_window}])) > 0)") % (M_TPOT, M_TPOT),
     "help": "decode tok/s of one request: 1 / mean time per output token (the benchmark's "
             "decode_tok_s, (output tokens - 1) / decode time, as vLLM records it per request)",
     "panel": ("Decode tok/s per request (1/TPOT)", "none", "{{model_name}}")},
    {"record": "spark:spec_decode_acceptance_rate:ratio",
     "ratio": "acceptance_rate",
     "help": "draft acceptance rate: accepted draft tokens / proposed draft tokens",
     "panel": ("Draft acceptance rate", "percentunit", "{{model_name}}")},
    {"record": "spark:spec_decode_mean_accepted_per_draft:ratio",
     "ratio": "mean_accepted_per_draft",
     "help": "mean accepted length: accepted draft tokens per draft",
     "panel": ("Mean accepted tokens per draft", "none", "{{model_name}}")},
    {"record": "spark:spec_decode_position_acceptance:ratio",
     "expr": ("sum by (model_name, position) (rate(%s_total[{rate_window}]))\n"
              "/ ignoring (position) group_left ()\n"
              "(sum by (model_name) (rate(%s_total[{rate_window}])) > 0)")
             % (M_PER_POS, PER_POSITION_DENOMINATOR),
     "help": "acceptance per draft position: accepted at this position / drafts",
     "panel": ("Acceptance per draft position", "percentunit", "position {{position}}")},
] + [
    {"record": "spark:time_to_first_token_seconds:quantile",
     "labels": {"quantile": q},
     "expr": ("histogram_quantile(%s, sum by (model_name, le) (rate(%s_bucket[{rate_window}])))"
              % (q, M_TTFT)),
     "help": "time to first token, quantile %s over the window" % q,
     "panel": ("Time to first token", "s", "p{{quantile}}")}
    for q in ("0.5", "0.9", "0.99")
] + [
    {"record": "spark:requests_running:sum",
     "expr": "sum by (model_name) (%s)" % M_RUNNING,
     "help": "requests running in the engine",
     "panel": ("Requests running / waiting", "none", "running")},
    {"record": "spark:requests_waiting:sum",
     "expr": "sum by (model_name) (%s)" % M_WAITING,
     "help": "requests waiting for the engine (queued)",
     "panel": ("Requests running / waiting", "none", "waiting")},
    {"record": "spark:memory_available:ratio",
     "expr": "%s / %s" % (N_MEM_AVAILABLE, N_MEM_TOTAL),
     "help": "available unified memory (CPU and GPU share it on a Spark) / total, per node",
     "panel": ("Unified memory available", "percentunit", "{{instance}}")},
    {"record": "spark:rail_bytes:rate1m",
     "expr": ("(rate(%s[1m]) + rate(%s[1m]))\n* on (instance, device) group_left (rail) %s")
             % (N_RX, N_TX, S_RAIL_INFO),
     "help": "bytes per second (received + sent) on each QSFP rail, per node",
     "panel": ("Rail throughput (rx + tx)", "Bps", "{{instance}} rail {{rail}} {{device}}")},
    {"record": "spark:mgmt_interface_bytes:rate",
     "expr": ("(rate(%s[{mgmt_window}]) + rate(%s[{mgmt_window}]))\n"
              "* on (instance, device) group_left %s") % (N_RX, N_TX, S_MGMT_INFO),
     "help": "bytes per second (received + sent) on the default-route (management) interface",
     "panel": ("Management interface throughput", "Bps", "{{instance}} {{device}}")},
    {"record": "spark:unit_restarts:increase1h",
     "expr": "increase(%s[1h])" % S_RESTARTS,
     "help": "automatic restarts of the serving unit in the last hour, per node",
     "panel": ("Serving unit restarts per hour", "none", "{{instance}} {{unit}}")},
]


def _ratio_expr(name):
    num, den = RATIOS[name]
    return ("sum by (model_name) (rate(%s_total[{rate_window}]))\n/\n"
            "(sum by (model_name) (rate(%s_total[{rate_window}])) > 0)") % (num, den)


# ---------------------------------------------------------------------- alerts

ALERTS = [
    {"alert": "SparkTargetDown", "severity": "warning",
     "expr": 'up{job=~"%s|%s"} == 0' % (JOB_RUNTIME, JOB_NODE),
     "summary": "{{ $labels.job }} target {{ $labels.instance }} is not answering",
     "action": "The runtime's /metrics or a node exporter does not answer. During the first "
               "start (up to ~20 min) the runtime is expected to be down; otherwise check "
               "`systemctl status spark-runtime` / `prometheus-node-exporter` on that node and "
               "rail 0."},
    {"alert": "SparkEngineStalled", "severity": "critical",
     "expr": ("spark:requests_running:sum > 0\nand on (model_name)\n"
              "sum by (model_name) (rate(%s_total[{stall_window}])) == 0") % M_GENERATION,
     "summary": "requests are running but no token was generated for {stall_window}",
     "action": "The engine holds requests and produces nothing: typically a collective stuck "
               "on a dead or half-connected peer (NCCL waits up to its timeout). Check "
               "`journalctl -u spark-runtime` on every node; restart the pair (workers, then "
               "the head) if one rank is gone."},
    {"alert": "SparkAcceptanceCollapsed", "severity": "warning",
     "expr": "spark:spec_decode_acceptance_rate:ratio < {acceptance_rate_min}",
     "summary": "draft acceptance is {{ $value | humanizePercentage }} (minimum {acceptance_rate_min})",
     "action": "Speculative decoding accepts almost nothing: decode is slower than without "
               "it. The field saw 24% (thinking ON) and 40% (OFF). Check the speculative "
               "config (method dspark, num_speculative_tokens 5), the draft weights and the "
               "image; compare with `ansible-playbook bench.yml`."},
    {"alert": "SparkRestartLoop", "severity": "critical",
     "expr": "spark:unit_restarts:increase1h >= {restarts_per_hour_max}",
     "summary": "{{ $labels.unit }} on {{ $labels.instance }} restarted {{ $value }} times in an hour",
     "action": "The serving unit keeps failing and restarting; on a Spark a restart loop "
               "leaks unified memory until sshd stops answering. Stop it "
               "(`systemctl stop spark-runtime` on every node), read `journalctl -u "
               "spark-runtime`, fix, start again."},
    {"alert": "SparkUnifiedMemoryLow", "severity": "critical",
     "expr": "spark:memory_available:ratio < {memory_available_ratio_min}",
     "summary": "{{ $labels.instance }} has {{ $value | humanizePercentage }} of its unified memory available",
     "action": "CPU and GPU share the 128 GB: with little left the node swaps or the OOM "
               "killer takes the engine or sshd. Look for leaked processes from earlier "
               "starts (`nvidia-smi`, `ps`), lower serving_gpu_memory_utilization, or reboot."},
    {"alert": "SparkRailDown", "severity": "critical",
     "expr": "%s unless on (instance, device) (%s == 1)" % (S_RAIL_INFO, N_UP),
     "summary": "rail {{ $labels.rail }} ({{ $labels.device }}) on {{ $labels.instance }} is down",
     "action": "A QSFP rail is down or gone: the cable, the port, or the interface was set "
               "down. Check `ip -br link` on both nodes and the cable; networkd brings the "
               "address back when the link returns. Rail 0 down stops the engine."},
    {"alert": "SparkRailMtuWrong", "severity": "critical",
     "expr": "%s * on (instance, device) group_left (rail) %s != {rail_mtu}" % (N_MTU, S_RAIL_INFO),
     "summary": "rail {{ $labels.rail }} ({{ $labels.device }}) on {{ $labels.instance }} has MTU {{ $value }}, not {rail_mtu}",
     "action": "An MTU mismatch shows up as IBV_WC_RETRY_EXC_ERR or stalls. Re-run site.yml "
               "(qsfp_link writes MTU 9000 on both ends); a firmware update can reset it."},
    {"alert": "SparkManagementTrafficWhileServing", "severity": "warning",
     "expr": ("spark:mgmt_interface_bytes:rate > {mgmt_bytes_per_s_max}\n"
              "and on () (sum(spark:requests_running:sum) > 0)"),
     "summary": "{{ $labels.instance }} moves {{ $value | humanize }}B/s on {{ $labels.device }} (management) while serving",
     "action": "The pinning trap: tensor-parallel traffic on the default-route interface "
               "instead of the rail, silent and slow. Check VLLM_HOST_IP and the *_SOCKET_IFNAME "
               "pins (`ansible-playbook validate-link.yml` reports them)."},
    {"alert": "SparkFirewallTableMissing", "severity": "critical",
     "expr": "%s == 0" % S_FIREWALL,
     "summary": "table {{ $labels.table }} is missing on {{ $labels.instance }}",
     "action": "The cluster ports are open to every network (someone flushed the ruleset or "
               "restarted nftables.service). `systemctl restart spark-firewall` reloads it; "
               "site.yml does too."},
    {"alert": "SparkNodeCheckStale", "severity": "warning",
     "expr": ("time() - %s > {node_check_stale_s}\nor\n"
              "(up{job=\"%s\"} == 1 unless on (instance) %s)") % (S_CHECK_TIME, JOB_NODE, S_CHECK_TIME),
     "summary": "the node check on {{ $labels.instance }} has not written its metrics recently",
     "action": "spark-node-check.timer feeds the firewall, rail and restart alerts: without it "
               "they stay silent. Check `systemctl status spark-node-check.timer` and "
               "`journalctl -u spark-node-check`."},
]


# ---------------------------------------------------------------------- rendering

class MonitoringError(ValueError):
    """A parameter the rules refuse (message names it)."""


def merge_params(overrides=None):
    """DEFAULT_PARAMS with overrides; unknown names and bad values are refused."""
    params = dict(DEFAULT_PARAMS)
    for key, value in (overrides or {}).items():
        if key not in DEFAULT_PARAMS:
            raise MonitoringError(
                "monitoring_alert_params: unknown key %r; known: %s"
                % (key, ", ".join(sorted(DEFAULT_PARAMS))))
        default = DEFAULT_PARAMS[key]
        if isinstance(default, str):
            value = str(value).strip()
            if not DURATION_RE.match(value):
                raise MonitoringError(
                    "monitoring_alert_params.%s: %r is not a Prometheus duration (e.g. 30s, 5m, 1h)"
                    % (key, value))
        else:
            try:
                value = type(default)(value)
            except (TypeError, ValueError) as exc:
                raise MonitoringError("monitoring_alert_params.%s: %r is not a number"
                                      % (key, value)) from exc
            if value < 0:
                raise MonitoringError("monitoring_alert_params.%s: %r is negative" % (key, value))
        params[key] = value
    return params


def _fill(text, params):
    """Replace {name} placeholders; Prometheus' own {{ }} templates and label matchers stay."""
    def sub(match):
        key = match.group(1)
        if key not in params:
            raise MonitoringError("rule text refers to unknown parameter {%s}" % key)
        value = params[key]
        return "%g" % value if isinstance(value, float) else str(value)
    return re.sub(r"(?<!\{)\{([a-z_][a-z0-9_]*)\}(?!\})", sub, text)


def recording_expr(rule):
    return rule["expr"] if "expr" in rule else _ratio_expr(rule["ratio"])


def _one_line(expr):
    """Rule expressions on one line (the table spells them on several for reading)."""
    return " ".join(line.strip() for line in expr.splitlines() if line.strip())


def render_rules(overrides=None):
    """The rule file as a dict (YAML/JSON-serialisable): one group of recording rules,
    one of alerts."""
    params = merge_params(overrides)
    records = []
    for rule in RECORDING_RULES:
        out = {"record": rule["record"], "expr": _one_line(_fill(recording_expr(rule), params))}
        if rule.get("labels"):
            out["labels"] = dict(rule["labels"])
        records.append(out)
    alerts = []
    for alert in ALERTS:
        alerts.append({
            "alert": alert["alert"],
            "expr": _one_line(_fill(alert["expr"], params)),
            "for": params["for_" + alert["alert"]],
            "labels": {"severity": alert["severity"]},
            "annotations": {"summary": _fill(alert["summary"], params),
                            "description": _fill(alert["action"], params)},
        })
    return {"groups": [
        {"name": "spark-recording", "rules": records},
        {"name": "spark-alerts", "rules": alerts},
    ]}


def alert_table(overrides=None):
    """[(alert, severity, for, what it means / what to do)] for docs/monitoring.md and reports."""
    params = merge_params(overrides)
    return [(a["alert"], a["severity"], params["for_" + a["alert"]], _fill(a["action"], params))
            for a in ALERTS]


# ---------------------------------------------------------------------- current values

# One instant query returns every recorded series (status.yml shows them)
RECORDED_SELECTOR = '{__name__=~"spark:.+"}'


def _labels_text(metric):
    return ",".join("%s=%s" % (k, v) for k, v in sorted(metric.items())
                    if k not in ("__name__", "job", "model_name", "instance"))


def recorded_values(result):
    """Prometheus instant-query ``data.result`` (a vector) for RECORDED_SELECTOR ->
    [{"record", "labels", "value"}] ordered as RECORDING_RULES (then by labels); series of
    names not in the table are left out, NaN stays None (no data in the window)."""
    order = {}
    for rule in RECORDING_RULES:
        order.setdefault(rule["record"], len(order))
    rows = []
    for sample in result or []:
        metric = sample.get("metric") or {}
        name = metric.get("__name__")
        if name not in order:
            continue
        try:
            value = float((sample.get("value") or [None, None])[1])
        except (TypeError, ValueError):
            value = None
        if value is not None and value != value:  # NaN
            value = None
        rows.append({"record": name, "labels": _labels_text(metric), "value": value})
    rows.sort(key=lambda r: (order[r["record"]], r["labels"]))
    return rows


def firing_alerts(alerts):
    """Prometheus ``/api/v1/alerts`` ``data.alerts`` -> sorted names of the project's alerts
    that are firing, with their node where they have one ("SparkRailDown (spark-worker)")."""
    known = {a["alert"] for a in ALERTS}
    out = set()
    for alert in alerts or []:
        labels = alert.get("labels") or {}
        if alert.get("state") == "firing" and labels.get("alertname") in known:
            node = labels.get("node") or labels.get("instance")
            out.add(labels["alertname"] + (" (%s)" % node if node else ""))
    return sorted(out)


# ---------------------------------------------------------------------- scrape config

def node_targets(nodes, port):
    """{inventory name: rail-0 address} -> [{"target": "addr:port", "node": name}] (inventory order)."""
    out = []
    for name, address in nodes.items():
        address = str(address or "").split("/")[0].strip()
        if not address:
            raise MonitoringError("node %s has no rail-0 address (spark_rails[0].address)" % name)
        host = "[%s]" % address if ":" in address else address
        out.append({"target": "%s:%d" % (host, int(port)), "node": str(name)})
    return out


def render_prometheus_config(runtime_targets, node_targets, rule_files, scrape_interval="15s",
                             evaluation_interval="15s", prometheus_target=None):
    """prometheus.yml as a dict.

    runtime_targets / node_targets: [{"target": "host:port", "node": inventory name}].
    """
    for what, value in (("scrape_interval", scrape_interval),
                        ("evaluation_interval", evaluation_interval)):
        if not DURATION_RE.match(str(value)):
            raise MonitoringError("monitoring_%s: %r is not a Prometheus duration" % (what, value))
    if not node_targets:
        raise MonitoringError("no node exporter target: the inventory lists no node")

    def static(targets):
        return [{"targets": [t["target"]], "labels": {"node": t["node"]}} for t in targets]

    scrape = [
        {"job_name": JOB_RUNTIME, "metrics_path": "/metrics",
         "static_configs": static(runtime_targets)},
        {"job_name": JOB_NODE, "static_configs": static(node_targets)},
    ]
    if prometheus_target:
        scrape.append({"job_name": JOB_PROMETHEUS,
                       "static_configs": [{"targets": [prometheus_target]}]})
    return {
        "global": {"scrape_interval": str(scrape_interval),
                   "evaluation_interval": str(evaluation_interval)},
        "rule_files": list(rule_files),
        "scrape_configs": scrape,
    }


# ---------------------------------------------------------------------- dashboard

DASHBOARD_UID = "spark-cluster"


def render_dashboard():
    """A Grafana dashboard (dict) with one panel per recorded series, queried by rule name."""
    panels, by_title = [], {}
    for rule in RECORDING_RULES:
        title, unit, legend = rule["panel"]
        expr = rule["record"]
        if rule.get("labels"):
            expr += "{%s}" % ",".join('%s="%s"' % kv for kv in sorted(rule["labels"].items()))
        if title not in by_title:
            n = len(panels)
            panel = {
                "id": n + 1,
                "type": "timeseries",
                "title": title,
                "description": rule["help"],
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (n % 2), "y": 8 * (n // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [],
            }
            by_title[title] = panel
            panels.append(panel)
        panel = by_title[title]
        panel["targets"].append({
            "refId": chr(ord("A") + len(panel["targets"])),
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "expr": expr,
            "legendFormat": legend,
        })
    return {
        "uid": DASHBOARD_UID,
        "title": "Spark cluster: serving and rails",
        "description": "Generated by scripts/monitoring_files.py from "
                       "module_utils/spark_cluster/monitoring/metrics.py: do not edit by hand.",
        "tags": ["spark-cluster", "vllm"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{
            "name": "datasource", "label": "Prometheus", "type": "datasource",
            "query": "prometheus", "current": {}, "hide": 0}]},
        "panels": panels,
    }


def dashboard_json():
    """The dashboard file's exact bytes (stable: the committed file must equal this)."""
    return json.dumps(render_dashboard(), indent=2, sort_keys=True) + "\n"
