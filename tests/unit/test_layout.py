"""module_utils/spark_cluster/runtime/layout.py: TP x PP from the model's config.json (the lab's seeded
DeepSeek-V4-Flash fields), choices for 1..6 nodes, and refusals that name the numbers."""

import pytest
from test_firewall import load_standin

import hub_seed  # tests/lab: the lab-only model seeder
from spark_cluster.runtime import layout as sl

REPO = "deepseek-ai/DeepSeek-V4-Flash-DSpark"


@pytest.fixture
def dims(tmp_path):
    """Read back from a hub cache seeded the way the lab seeds it."""
    hub_seed.seed_fake_repo(str(tmp_path), REPO, shards=1, shard_bytes=64)
    config, path = sl.read_config(str(tmp_path), REPO)
    assert path.endswith("config.json") and "/snapshots/" in path
    assert config["model_type"] == "deepseek_v4"
    return sl.model_dims(config)


def test_dims_from_the_seeded_config(dims):
    assert (dims["heads"], dims["kv_heads"], dims["layers"]) == (64, 1, 43)
    assert dims["fields"] == {"num_attention_heads": 64, "num_key_value_heads": 1,
                              "num_hidden_layers": 43}


@pytest.mark.parametrize("nodes,tp,pp", [(1, 1, 1), (2, 2, 1), (3, 1, 3), (4, 4, 1),
                                         (5, 1, 5), (6, 2, 3), (8, 8, 1)])
def test_chosen_layouts(dims, nodes, tp, pp):
    got = sl.choose_layout(nodes, 1, dims)
    assert (got["tp"], got["pp"], got["world"]) == (tp, pp, nodes) and got["chosen"]
    assert got["tp"] * got["pp"] == nodes
    assert 64 % got["tp"] == 0


def test_three_nodes_get_pipeline_stages_with_the_reason(dims):
    got = sl.choose_layout(3, 1, dims)
    assert got["reason"] == ("TP=1 x PP=3: TP=3 does not split the model (TP=3 does not divide "
                             "the 64 attention heads), so 3 pipeline stages of 1 GPU(s)")
    assert got["options"] == [[1, 3]]


def test_three_nodes_tp3_is_refused_naming_numbers_and_options(dims):
    with pytest.raises(sl.LayoutError) as err:
        sl.choose_layout(3, 1, dims, tp=3)
    msg = str(err.value)
    assert msg.startswith("TP=3 does not divide the 64 attention heads. The cluster has 3 "
                          "node(s) x 1 GPU(s) = 3 GPUs; the model has 64 attention heads, "
                          "1 key/value heads, 43 layers.")
    assert "TP=1 x PP=3 (serving_tensor_parallel_size: 1, serving_pipeline_parallel_size: 3" in msg
    assert msg.endswith("a cluster of 2, 4 or 8 nodes, whose 2/4/8 GPUs tensor parallelism "
                        "alone splits.")


def test_three_nodes_without_pipeline_is_refused(dims):
    with pytest.raises(sl.LayoutError, match=r"allow pipeline parallelism .*TP=1 x PP=3"):
        sl.choose_layout(3, 1, dims, allow_pipeline=False)


def test_requested_layouts_checked(dims):
    assert sl.choose_layout(4, 1, dims, tp=2)["pp"] == 2
    assert sl.choose_layout(4, 1, dims, pp=4)["tp"] == 1
    assert not sl.choose_layout(2, 1, dims, tp=2, pp=1)["chosen"]
    with pytest.raises(sl.LayoutError, match="TP=2 x PP=2 = 4 does not use the 3 GPUs"):
        sl.choose_layout(3, 1, dims, tp=2, pp=2)
    with pytest.raises(sl.LayoutError, match="PP=50 exceeds the 43 layers"):
        sl.choose_layout(50, 1, dims, tp=1)


def test_grouped_kv_heads_and_missing_fields():
    gqa = sl.model_dims({"num_attention_heads": 32, "num_key_value_heads": 8,
                         "num_hidden_layers": 32})
    assert sl.tp_fits(16, gqa) is None  # 16 is a multiple of 8: KV heads replicated
    assert sl.tp_fits(12, gqa) == "TP=12 does not divide the 32 attention heads"
    nested = sl.model_dims({"model_type": "x", "text_config": {"num_attention_heads": 8,
                                                               "num_hidden_layers": 4}})
    assert nested["heads"] == 8
    with pytest.raises(sl.LayoutError, match="no attention heads"):
        sl.model_dims({"num_hidden_layers": 4})


def test_missing_config_says_what_to_do(tmp_path):
    with pytest.raises(sl.LayoutError, match=r"not in the hub cache .* \(run site.yml"):
        sl.read_config(str(tmp_path), REPO)


def test_standin_refuses_like_vllm(tmp_path):
    server = load_standin()
    hub_seed.seed_fake_repo(str(tmp_path), REPO, shards=1, shard_bytes=64)
    snapshot, error = server.resolve_offline(str(tmp_path), REPO, None)
    assert error is None
    args = server.parse_args(["serve", REPO, "--nnodes", "3", "--tensor-parallel-size", "3"])
    assert server.heads_problem(args, snapshot) == (
        "ValueError: Total number of attention heads (64) must be divisible by tensor parallel size (3).")
    args = server.parse_args(["serve", REPO, "--nnodes", "3", "--tensor-parallel-size", "1",
                              "--pipeline-parallel-size", "3"])
    assert server.heads_problem(args, snapshot) is None
    assert server.check_topology(args, 1) is None
    args = server.parse_args(["serve", REPO, "--nnodes", "3", "--tensor-parallel-size", "2"])
    assert "= 2 != nnodes (3)" in server.check_topology(args, 1)


def test_module_refuses_three_nodes_tp3_through_ansible(tmp_path):
    """The module as a play runs it: 3 nodes, TP=3 forced, a seeded hub cache."""
    import json
    import os
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[2]
    hub_seed.seed_fake_repo(str(tmp_path), REPO, shards=1, shard_bytes=64)
    env = dict(os.environ, ANSIBLE_LIBRARY=str(root / "library"),
               ANSIBLE_MODULE_UTILS=str(root / "module_utils"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json")
    ansible = str(pathlib.Path(sys.executable).with_name("ansible"))

    def run(**args):
        module_args = json.dumps(dict(hub_dir=str(tmp_path), repo=REPO, nodes=3, **args))
        out = subprocess.run([ansible, "localhost", "-c", "local", "-m", "serving_layout",
                              "-a", module_args, "-e", f"ansible_python_interpreter={sys.executable}"],
                             capture_output=True, text=True, env=env, check=False)
        text = out.stdout[out.stdout.index("{"):]  # after any timing callback's line
        result = json.JSONDecoder().raw_decode(text)[0]["plays"][0]["tasks"][0]["hosts"]["localhost"]
        return out.returncode, result

    rc, result = run(tensor_parallel_size=3)
    assert rc != 0 and result["failed"]
    assert result["msg"].startswith(f"{REPO}: TP=3 does not divide the 64 attention heads.")
    rc, result = run()
    assert rc == 0 and (result["tp"], result["pp"]) == (1, 3) and not result["changed"]


def test_module_in_process(tmp_path, capsys):
    import serving_layout
    from test_cx7 import run_module

    hub_seed.seed_fake_repo(str(tmp_path), REPO, shards=1, shard_bytes=64)
    rc, out = run_module(serving_layout, {"hub_dir": str(tmp_path), "repo": REPO, "nodes": 4},
                         capsys)
    assert rc == 0 and (out["tp"], out["pp"]) == (4, 1)
    assert out["fields"]["num_attention_heads"] == 64
    rc, out = run_module(serving_layout, {"hub_dir": str(tmp_path), "repo": REPO, "nodes": 3,
                                          "allow_pipeline": False}, capsys)
    assert rc == 1 and out["failed"] and "allow pipeline parallelism" in out["msg"]
    model_dir = tmp_path / "local-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"num_attention_heads": 6, "num_hidden_layers": 2}')
    rc, out = run_module(serving_layout, {"hub_dir": str(tmp_path), "repo": str(model_dir),
                                          "nodes": 4}, capsys)
    assert rc == 0 and (out["tp"], out["pp"]) == (2, 2)  # 6 heads: TP 4 cannot, 2 x 2 can
    rc, out = run_module(serving_layout, {"hub_dir": str(tmp_path), "repo": str(model_dir),
                                          "nodes": 5}, capsys)
    assert rc == 1 and "no tensor x pipeline split of 5 GPUs fits the model" in out["msg"]


@pytest.mark.parametrize("check", [True, False])
def test_module_main_chooses_and_checks_read_only(run_main, tmp_path, check):
    """main() in-process: sizes 0 choose TP=1 x PP=3 for three nodes; a forced TP that
    does not divide the heads fails with the numbers; never a change, in either mode."""
    import serving_layout
    hub_seed.seed_fake_repo(str(tmp_path), REPO, shards=1, shard_bytes=64)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, out = run_main(serving_layout, {"hub_dir": str(tmp_path), "repo": REPO, "nodes": 3},
                         check=check)
    assert code == 0, out
    assert (out["tp"], out["pp"], out["world"], out["chosen"]) == (1, 3, 3, True)
    assert out["changed"] is False and out["config_path"].endswith("/config.json")
    assert out["fields"]["num_attention_heads"] == 64
    code, out = run_main(serving_layout, {"hub_dir": str(tmp_path), "repo": REPO, "nodes": 3,
                                          "tensor_parallel_size": 3}, check=check)
    assert code == 1 and out["failed"]
    assert out["msg"].startswith(f"{REPO}: TP=3 does not divide the 64 attention heads.")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
