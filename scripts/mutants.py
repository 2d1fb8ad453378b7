#!/usr/bin/env python3
"""`make mutants`: mutation testing (mutmut) of the pure module_utils files.

For each target file, a scratch copy of the repository is made under
.cache/mutants/<file>/ and mutmut mutates that file only, running only the unit
tests that belong to it (tests/unit/test_<x>.py), each mutant bounded in time. The
repository itself is never touched. The last result is written between the markers
in docs/testing.md (a table per file, and the surviving mutants).

Not in CI: a run takes minutes per file on two cores. Usage:
    scripts/mutants.py                       # the default targets below
    scripts/mutants.py runtime.inventory ... # chosen modules of module_utils/spark_cluster/
    MUTANTS_BUDGET_S=900 scripts/mutants.py  # stop starting new files after this
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORK = ROOT / ".cache" / "mutants"
DOC = ROOT / "docs" / "testing.md"
BEGIN, END = "<!-- mutants:begin -->", "<!-- mutants:end -->"
# module_utils file -> the unit tests that own it. Pure files: no network, no
# subprocess in the mutated paths (sysfs trees and captured outputs as inputs).
TESTS = {
    "runtime.inventory": ["tests/unit/test_inventory.py"],
    "common.envfile": ["tests/unit/test_envfile.py"],
    "link.roce": ["tests/unit/test_roce.py"],
    "link.linkprobe": ["tests/unit/test_linkprobe.py", "tests/unit/test_report.py"],
    "reports.link_report": ["tests/unit/test_report.py"],
    "runtime.runtime_env": ["tests/unit/test_env.py", "tests/unit/test_envfile.py"],
    "link.firewall": ["tests/unit/test_firewall.py"],
    "link.pinning": ["tests/unit/test_pinning.py"],
}
DEFAULT = ["runtime.inventory", "common.envfile", "link.roce"]
SHOWN = 20  # surviving mutants listed per file in docs/testing.md


def source(target: str) -> str:
    """The file of a target module, below module_utils/ (runtime.inventory ->
    spark_cluster/runtime/inventory.py)."""
    return "spark_cluster/" + target.replace(".", "/") + ".py"


def scratch(target: str) -> pathlib.Path:
    """A copy mutmut can work in: module_utils/ as src/ (so the mutants' module names
    are the spark_cluster.* names the tests import), module_utils -> src inside mutants/."""
    work = WORK / target
    shutil.rmtree(work, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "module_utils", work / "src", ignore=ignore)
    shutil.copytree(ROOT / "library", work / "library", ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    shutil.copy2(ROOT / "ansible.cfg", work / "ansible.cfg")
    (work / "mutants").mkdir()
    (work / "mutants" / "module_utils").symlink_to("src")
    tests = "\n    ".join(TESTS[target])
    (work / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths = src\n"
        f"only_mutate = src/{source(target)}\n"
        "also_copy =\n    library\n    ansible.cfg\n"
        f"pytest_add_cli_args_test_selection =\n    {tests}\n"
        "pytest_add_cli_args = -p no:cacheprovider -q\n"
    )
    return work


def run(target: str, children: int) -> dict:
    work = scratch(target)
    mutmut = pathlib.Path(sys.executable).with_name("mutmut")
    t0 = time.monotonic()
    proc = subprocess.run([str(mutmut), "run", "--max-children", str(children)], cwd=work,
                          capture_output=True, text=True)
    seconds = round(time.monotonic() - t0)
    subprocess.run([str(mutmut), "export-cicd-stats"], cwd=work, capture_output=True, text=True)
    stats_file = work / "mutants" / "mutmut-cicd-stats.json"
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    results = subprocess.run([str(mutmut), "results"], cwd=work, capture_output=True, text=True)
    names = [line.split(":")[0].strip() for line in results.stdout.splitlines()
             if line.strip().endswith(": survived")]
    survivors = [(name, show(mutmut, work, name) if i < SHOWN else "") for i, name in enumerate(names)]
    if proc.returncode != 0 and not stats:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
    return {"file": f"module_utils/{source(target)}", "tests": TESTS[target], "seconds": seconds,
            "stats": stats, "survived": survivors, "rc": proc.returncode}


def show(mutmut: pathlib.Path, work: pathlib.Path, name: str) -> str:
    """The mutated line of one mutant, as 'old -> new'."""
    out = subprocess.run([str(mutmut), "show", name], cwd=work, capture_output=True, text=True).stdout
    old = [ln[1:].strip() for ln in out.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    new = [ln[1:].strip() for ln in out.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return f"`{' '.join(old)[:120]}` -> `{' '.join(new)[:120]}`" if old or new else ""


def table(results: list[dict]) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Last run: {stamp}, mutmut {mutmut_version()}, "
             f"`make mutants` on {os.cpu_count()} cores.", "",
             "| file | tests run | mutants | killed | survived | timeout | no tests | score | time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["stats"]
        total = s.get("total", 0)
        killed = s.get("killed", 0)
        relevant = total - s.get("skipped", 0) - s.get("no_tests", 0)
        score = f"{100.0 * (killed + s.get('timeout', 0)) / relevant:.0f}%" if relevant else "n/a"
        lines.append(
            f"| `{r['file']}` | {', '.join('`%s`' % t.split('/')[-1] for t in r['tests'])} | {total} | "
            f"{killed} | {s.get('survived', 0)} | {s.get('timeout', 0)} | {s.get('no_tests', 0)} | "
            f"{score} | {r['seconds']} s |")
    for r in results:
        if r["survived"]:
            lines += ["", f"Surviving mutants of `{r['file']}` (see them with `cd .cache/mutants/"
                      f"{r['file'].split('/')[-1][:-3]} && mutmut show <name>`):", ""]
            lines += [f"- `{name}`: {diff}" for name, diff in r["survived"][:SHOWN]]
            if len(r["survived"]) > SHOWN:
                lines.append(f"- ... and {len(r['survived']) - SHOWN} more (`mutmut results` there)")
    return "\n".join(lines)


def mutmut_version() -> str:
    from importlib.metadata import version
    return version("mutmut")


def main(argv: list[str]) -> int:
    try:
        mutmut_version()
    except Exception:  # noqa: BLE001 - not installed
        print("mutmut is not installed: pip install -r requirements-mutants.txt", file=sys.stderr)
        return 2
    targets = argv or DEFAULT
    unknown = [t for t in targets if t not in TESTS]
    if unknown:
        print(f"unknown target(s) {unknown}; known: {sorted(TESTS)}", file=sys.stderr)
        return 2
    budget = int(os.environ.get("MUTANTS_BUDGET_S", "1800"))
    children = int(os.environ.get("MUTANTS_CHILDREN", str(max(1, (os.cpu_count() or 2) - 1))))
    t0, results = time.monotonic(), []
    for target in targets:
        if time.monotonic() - t0 > budget:
            print(f"budget of {budget} s spent: {target} and later not run")
            break
        print(f"==> mutmut on module_utils/{source(target)} ({', '.join(TESTS[target])})", flush=True)
        result = run(target, children)
        print(f"    {result['stats']} in {result['seconds']} s", flush=True)
        results.append(result)
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        print(f"{DOC} lacks the {BEGIN} / {END} markers", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    DOC.write_text(head + BEGIN + "\n" + table(results) + "\n" + END + rest.split(END, 1)[1])
    print(f"==> result written to {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
