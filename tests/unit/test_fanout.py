"""spark_fanout: the plan from a dry run, the split over streams and rails, the check of
each blob as it arrives (a corrupt one fetched again, then refused), progress lines;
end to end with the real rsync between two local directories."""

import json
import os
import shutil

import pytest

import hub_seed  # tests/lab: the lab-only model seeder
from spark_cluster.cache import fanout as fo

needs_rsync = pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync not installed")
REPO = "models--deepseek-ai--DeepSeek-V4-Flash-DSpark"


def test_plan_keeps_only_received_files_with_their_sizes():
    out = "\n".join([
        "cd+++++++++ 4096 models--x/",
        ">f+++++++++ 1048576 models--x/blobs/" + "a" * 64,
        "cL+++++++++ 13 models--x/snapshots/c/config.json",
        ">f.st...... 20 models--x/refs/main",
        "",
    ])
    assert fo.parse_plan(out) == [("models--x/blobs/" + "a" * 64, 1048576), ("models--x/refs/main", 20)]


def test_largest_first_round_robin_over_the_rails():
    files = [("s", 1), ("l", 300), ("m", 20), ("m2", 20)]
    plan = fo.assign(files, ["rail0/", "rail1/"])
    assert plan == [("l", 300, "rail0/"), ("m", 20, "rail1/"), ("m2", 20, "rail0/"), ("s", 1, "rail1/")]


def test_blob_names_promise_a_hash_other_files_do_not(tmp_path):
    data = b"weights"
    good = tmp_path / "blobs" / __import__("hashlib").sha256(data).hexdigest()
    good.parent.mkdir()
    good.write_bytes(data)
    assert fo.check_blob(str(good), "m/blobs/" + good.name)
    good.write_bytes(b"weightz")
    assert not fo.check_blob(str(good), "m/blobs/" + good.name)
    assert fo.expected_hash("m/refs/main") is None and fo.check_blob(str(good), "m/refs/main")


def test_progress_line_has_bytes_rate_and_eta():
    assert fo.progress_line(1e9, 4e9, 2.0) == "spark-fanout: 1.00 of 4.00 GB (25%), 4.00 Gb/s, ETA 6 s"
    assert fo.progress_line(0, 4e9, 0) == "spark-fanout: 0.00 of 4.00 GB (0%), 0.00 Gb/s, ETA unknown"


def sums(hub):
    out = {}
    for root, _dirs, files in os.walk(hub):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, hub)] = open(path, "rb").read()
    return out


@needs_rsync
def test_pull_copies_checks_and_a_second_pull_copies_nothing(tmp_path):
    src, dest = tmp_path / "head", tmp_path / "worker"
    hub_seed.seed_fake_repo(str(src), "deepseek-ai/DeepSeek-V4-Flash-DSpark", shards=3, shard_bytes=1 << 16)
    lines = []
    summary = fo.pull([f"{src}/", f"{src}/"], str(dest), 2, ["--archive", "--itemize-changes"], 0.05, say=lines.append)
    assert summary["ok"] and summary["files"] == 6 and summary["changed"] and summary["refetched"] == []
    assert sums(dest) == sums(src)
    assert lines[0].startswith("spark-fanout: 6 file(s), 0.00 GB to copy, 2 stream(s)")
    assert any(line.startswith("spark-fanout: 0.00 of 0.00 GB (100%)") for line in lines)
    assert any(line.startswith("cL") for line in lines)  # the final pass made the snapshot links
    again = fo.pull([f"{src}/"], str(dest), 2, ["--archive", "--itemize-changes"], 0.05, say=lines.append)
    assert again["ok"] and again["files"] == 0 and not again["changed"]


@needs_rsync
def test_a_blob_that_arrives_corrupt_is_fetched_again_then_refused(tmp_path):
    src, dest = tmp_path / "head", tmp_path / "worker"
    _, commit = hub_seed.seed_fake_repo(str(src), "deepseek-ai/DeepSeek-V4-Flash-DSpark", shards=2, shard_bytes=4096)
    blob = (src / REPO / "snapshots" / commit / "model-00001-of-00002.safetensors").resolve()
    blob.write_bytes(blob.read_bytes()[:-1] + b"\0")  # the source itself is bad: both tries fail
    summary = fo.pull([f"{src}/"], str(dest), 2, ["--archive"], 5, say=lambda line: None)
    name = f"{REPO}/blobs/{blob.name}"
    assert not summary["ok"] and summary["refetched"] == [name] and summary["bad"] == [name]


@needs_rsync
def test_main_prints_a_json_summary_and_fails_on_an_unreachable_source(tmp_path, capsys):
    assert fo.main(["--source", str(tmp_path / "nowhere") + "/", "--dest", str(tmp_path / "d"), "--", "--archive"]) == 1
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert not summary["ok"] and "dry run against" in summary["error"]
