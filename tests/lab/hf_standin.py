#!/usr/bin/env python3
"""Lab only: a stand-in of the Hugging Face CLI's download (the lab has no hub access), so
that a lab run downloads the model the way a Spark does - in the background, for a while -
and the download can be seen overlapping the runtime image's pull or build in
reports/steps-latest.md.

    hf_standin.py [--seconds 60] [--shards 4] [--shard-mb 2] download REPO --revision REV --cache-dir DIR

Prints a line a second for --seconds (what hf_cache's wait shows as the CLI's last line),
then writes the fake model with hub_seed.py (beside this file) and exits 0. lab/prepare.yml
installs it as /usr/local/bin/hf on the lab head when spark_lab_hub_download is true (and
then seeds nothing). Test code: never installed on a real Spark. Python 3.11+, stdlib only.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import hub_seed  # noqa: E402


def parse(argv):
    p = argparse.ArgumentParser(prog="hf", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--shard-mb", type=int, default=2)
    sub = p.add_subparsers(dest="command", required=True)
    download = sub.add_parser("download")
    download.add_argument("repo")
    download.add_argument("--revision", default="main")
    download.add_argument("--cache-dir", required=True)
    return p.parse_args(argv)


def main(argv=None, sleep=time.sleep):
    args = parse(argv)
    whole = max(0, int(args.seconds))
    for second in range(whole):
        print(f"stand-in download of {args.repo}: {second}/{whole} s", flush=True)
        sleep(1)
    return hub_seed.main(["--hub-dir", args.cache_dir, "--repo", args.repo, "--revision", args.revision,
                          "--shards", str(args.shards), "--shard-mb", str(args.shard_mb)])


if __name__ == "__main__":
    sys.exit(main())
