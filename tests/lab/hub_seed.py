#!/usr/bin/env python3
"""Lab only: a small fake model in Hugging Face hub layout (the lab has no hub access).

    hub_seed.py --hub-dir DIR --repo ORG/NAME [--revision main] [--shards 4] [--shard-mb 1]

Prints ``changed <commit>`` or ``unchanged <commit>``. lab/prepare.yml copies this file
and the spark_cluster package (module_utils/spark_cluster: its cache rules and file
helpers) side by side to the lab head and runs it before site.yml, so the hf_cache role finds a complete snapshot there, as on a Spark after a download.
Test code: never installed on a real Spark. Python 3.11+, stdlib only.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys

from spark_cluster.cache.rules import HEX40, repo_dir, resolve_revision
from spark_cluster.common.fileio import write_atomic

# What the lab's seeded model carries in config.json: DeepSeek-V4-Flash's architecture
# fields (the DSpark build keeps them), so the parallel-layout check
# (module_utils/spark_cluster/runtime/layout.py) and anything else reading config.json see real numbers.
LAB_MODEL_CONFIG = {
    "architectures": ["DeepseekV4ForCausalLM"],
    "model_type": "deepseek_v4",
    "vocab_size": 129280,
    "hidden_size": 4096,
    "num_hidden_layers": 43,
    "num_attention_heads": 64,
    "num_key_value_heads": 1,
    "head_dim": 512,
    "q_lora_rank": 1024,
    "o_lora_rank": 1024,
    "o_groups": 8,
    "qk_rope_head_dim": 64,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_experts_per_tok": 6,
    "moe_intermediate_size": 2048,
    "index_n_heads": 64,
    "index_head_dim": 128,
    "index_topk": 512,
    "num_nextn_predict_layers": 1,
    "max_position_embeddings": 1048576,
    "sliding_window": 128,
    "hc_mult": 4,
    "torch_dtype": "bfloat16",
}




def seed_fake_repo(hub_dir, repo, shards=4, shard_bytes=1 << 20, branch="main"):
    """Write a small fake model in hub layout.

    Deterministic (same arguments, same bytes and commit), shards are valid
    safetensors files (one U8 tensor each), blobs are named by their real hashes,
    so ``verify_snapshot`` and ``snapshot_status`` treat it like a real download.
    ``branch`` a branch or tag: the snapshot gets a derived commit and ``refs/<branch>``;
    a commit hash (40 hex): the snapshot is that commit and no ref is written, exactly
    what ``hf download --revision <commit>`` leaves (no ``refs/main``).
    Returns (changed, commit).
    """
    rdir = repo_dir(hub_dir, repo)
    pinned = bool(HEX40.match(branch or ""))
    commit = branch if pinned else hashlib.sha1(
        f"spark-lab-fake:{repo}:{shards}:{shard_bytes}".encode(), usedforsecurity=False).hexdigest()
    files = {}
    weight_map = {}
    for i in range(1, shards + 1):
        name = f"model-{i:05d}-of-{shards:05d}.safetensors"
        tensor = f"model.layers.{i - 1}.fake.weight"
        header = json.dumps({"__metadata__": {"format": "pt"}, tensor: {"dtype": "U8", "shape": [shard_bytes], "data_offsets": [0, shard_bytes]}})
        header_bytes = header.encode()
        header_bytes += b" " * (-len(header_bytes) % 8)
        body = random.Random(f"{commit}:{i}").randbytes(shard_bytes)  # noqa: S311 (fake data, not crypto)
        files[name] = (len(header_bytes).to_bytes(8, "little") + header_bytes + body, "sha256")
        weight_map[tensor] = name
    index = {"metadata": {"total_size": shards * shard_bytes}, "weight_map": weight_map}
    config = dict(LAB_MODEL_CONFIG, _spark_lab="fake weights, not a model: the config fields are the real model's")
    files["model.safetensors.index.json"] = (json.dumps(index, indent=2, sort_keys=True).encode() + b"\n", "git")
    files["config.json"] = (json.dumps(config, indent=2, sort_keys=True).encode() + b"\n", "git")
    changed = False
    snap = os.path.join(rdir, "snapshots", commit)
    for sub in ("blobs", "refs", snap):
        os.makedirs(os.path.join(rdir, sub), exist_ok=True)
    for name, (data, kind) in files.items():
        if kind == "sha256":
            blob = hashlib.sha256(data).hexdigest()
        else:
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
        blob_path = os.path.join(rdir, "blobs", blob)
        if not os.path.isfile(blob_path) or os.path.getsize(blob_path) != len(data):
            write_atomic(blob_path, data, mode=0o644, keep_owner=False)
            changed = True
        link = os.path.join(snap, name)
        target = os.path.join("..", "..", "blobs", blob)
        if not os.path.islink(link) or os.readlink(link) != target:
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(target, link)
            changed = True
    ref = os.path.join(rdir, "refs", branch)
    if not pinned and resolve_revision(rdir, branch) != commit:
        write_atomic(ref, commit.encode(), mode=0o644, keep_owner=False)
        changed = True
    return changed, commit


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hub_seed.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--hub-dir", required=True)
    p.add_argument("--repo", required=True)
    p.add_argument("--revision", default="main")
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--shard-mb", type=int, default=1)
    args = p.parse_args(argv)
    changed, commit = seed_fake_repo(args.hub_dir, args.repo, args.shards, args.shard_mb << 20, args.revision)
    print(f"{'changed' if changed else 'unchanged'} {commit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
