#!/usr/bin/env python3
"""Files generated from module_utils/spark_cluster/monitoring/metrics.py, and their promtool checks.

    monitoring_files.py dashboard [--check]  write (or compare) docs/grafana/spark-cluster.json
    monitoring_files.py rules OUT            write the rule file (default parameters) to OUT
    monitoring_files.py test                 promtool check rules / test rules / check config

``test`` renders the rules with the default parameters into a temporary directory next
to a copy of tests/promtool/*_test.yml, runs ``promtool check rules``, ``promtool test
rules`` and ``promtool check config`` on a configuration shaped like the role's, and
exits non-zero on any failure (promtool: PROMTOOL or PATH; scripts/ensure-promtool.sh
installs it).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "module_utils"))

from spark_cluster.monitoring import metrics as sm  # noqa: E402  (module_utils, plain Python)

DASHBOARD = ROOT / "docs" / "grafana" / "spark-cluster.json"
TESTS = ROOT / "tests" / "promtool"
RULES_NAME = "spark.rules.yml"


def rules_yaml(overrides=None, rules=None):
    rules = rules if rules is not None else sm.render_rules(overrides)
    return yaml.safe_dump(rules, sort_keys=False, width=1000, allow_unicode=True)


def promtool():
    tool = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not tool:
        raise SystemExit("promtool not found: run scripts/ensure-promtool.sh (Debian's "
                         "prometheus package ships it) or set PROMTOOL=<path>")
    return tool


CHECKS = ("check rules", "test rules", "check config")


def run_promtool(workdir, rules_text=None, checks=CHECKS):
    """Write the rules and the tests into workdir and run the checks (all three by
    default). Returns [(what, returncode, output)]."""
    workdir = pathlib.Path(workdir)
    (workdir / RULES_NAME).write_text(rules_text if rules_text is not None else rules_yaml())
    tests = sorted(TESTS.glob("*_test.yml"))
    for test in tests:
        shutil.copy(test, workdir / test.name)
    config = sm.render_prometheus_config(
        runtime_targets=[{"target": "127.0.0.1:8888", "node": "spark-head"}],
        node_targets=[{"target": "192.168.100.10:9100", "node": "spark-head"},
                      {"target": "192.168.100.11:9100", "node": "spark-worker"}],
        rule_files=[str(workdir / RULES_NAME)],
        prometheus_target="127.0.0.1:9090")
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    tool = promtool()
    results = []
    for what, argv in (
            ("check rules", [tool, "check", "rules", RULES_NAME]),
            ("test rules", [tool, "test", "rules"] + [t.name for t in tests]),
            ("check config", [tool, "check", "config", "prometheus.yml"])):
        if what not in checks:
            continue
        proc = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, check=False)
        results.append((what, proc.returncode, proc.stdout + proc.stderr))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    dash = sub.add_parser("dashboard")
    dash.add_argument("--check", action="store_true", help="fail if the committed file differs")
    rules = sub.add_parser("rules")
    rules.add_argument("out")
    sub.add_parser("test")
    args = parser.parse_args(argv)

    if args.cmd == "dashboard":
        text = sm.dashboard_json()
        if args.check:
            if not DASHBOARD.exists() or DASHBOARD.read_text() != text:
                print(f"{DASHBOARD.relative_to(ROOT)} differs from the rules: run "
                      "scripts/monitoring_files.py dashboard", file=sys.stderr)
                return 1
            return 0
        DASHBOARD.parent.mkdir(parents=True, exist_ok=True)
        DASHBOARD.write_text(text)
        print(f"wrote {DASHBOARD.relative_to(ROOT)}")
        return 0
    if args.cmd == "rules":
        pathlib.Path(args.out).write_text(rules_yaml())
        return 0
    with tempfile.TemporaryDirectory(prefix="spark-promtool-") as tmp:
        failed = 0
        for what, rc, out in run_promtool(tmp):
            print(f"==> promtool {what}: {'ok' if rc == 0 else 'FAILED'}")
            if rc != 0:
                print(out)
                failed += 1
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
