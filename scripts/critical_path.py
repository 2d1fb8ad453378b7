#!/usr/bin/env python3
"""Print the critical-path table of docs/performance.md (a first run's sequential and
overlapped wall time on real Sparks, from the field's figures), or write it there with --write.

The model: module_utils/spark_cluster/reports/critical_path.py.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "module_utils"))

from spark_cluster.reports.critical_path import critical_path_markdown  # noqa: E402

DOC = ROOT / "docs" / "performance.md"
BEGIN = "<!-- critical-path table: scripts/critical_path.py writes it -->"
END = "<!-- end of the critical-path table -->"


def replace_table(text, table):
    """The document with the table between its markers replaced (ValueError when they are missing)."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"the markers {BEGIN!r} and {END!r} are missing")
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    return f"{before}{BEGIN}\n{table}{END}{after}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="write the table into docs/performance.md")
    args = parser.parse_args(argv)
    table = critical_path_markdown()
    if args.write:
        DOC.write_text(replace_table(DOC.read_text(), table))
    else:
        sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
