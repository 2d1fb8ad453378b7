#!/usr/bin/env python3
"""docs/serving.md's launch table, rendered from the serving profiles (roles/spark_common/profiles).

    profile_table.py            print the table
    profile_table.py --write    replace docs/serving.md's block between its markers
    profile_table.py --check    exit 1 when docs/serving.md's block differs (tests/unit/test_profiles.py does the same)
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "module_utils"))

from spark_cluster.runtime import profiles as sp  # noqa: E402  (module_utils, plain Python)

DOC = ROOT / "docs" / "serving.md"
ORDER = ("seed", "current")


def table():
    return sp.launch_table([sp.load(name) for name in ORDER])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    rendered = table()
    if args.write:
        DOC.write_text(sp.replace_block(DOC.read_text(), rendered))
        return 0
    if args.check:
        if sp.block(DOC.read_text()) != rendered:
            print("docs/serving.md's launch table differs from the profiles: run scripts/profile_table.py --write",
                  file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
