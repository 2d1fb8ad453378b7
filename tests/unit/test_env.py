"""The runtime environment (module_utils/spark_cluster/runtime/runtime_env.py, library/spark_runtime_env.py)."""

import grp
import json
import os
import pwd
import stat

import pytest

from spark_cluster.runtime.runtime_env import (
    PINNED_KEYS,
    build_env,
    make_params,
    rail_interfaces,
    render,
)
from spark_cluster.common.envfile import parse
from spark_cluster.link.roce import resolve
from ansible.module_utils.testing import patch_module_args

RAIL0 = "enp1s0f1np1"
RAIL1 = "enP2p1s0f1np1"
SETTINGS = {"NCCL_NVLS_ENABLE": "0", "NCCL_CUMEM_ENABLE": "0", "VLLM_ENGINE_READY_TIMEOUT_S": "3600"}
GID = {
    "rdma_present": True,
    "devices": [],
    "nccl_env": {"NCCL_IB_HCA": "rocep1s0f1,roceP2p1s0f1", "NCCL_IB_GID_INDEX": "3"},
    "message": "",
}
NO_RDMA = {"rdma_present": False, "devices": [], "nccl_env": {"NCCL_IB_DISABLE": "1"}, "message": ""}


def node(role="head", **overrides):
    head = role == "head"
    value = {
        "rank": 0 if head else 1,
        "nnodes": 2,
        "role": role,
        "interface": RAIL0,
        "address": "192.168.100.10" if head else "192.168.100.11",
        "master_addr": "192.168.100.10",
        "master_port": 29501,
        "settings": dict(SETTINGS),
    }
    value.update(overrides)
    return value


def rails(role="head"):
    last = "10" if role == "head" else "11"
    return [
        {"interface": RAIL0, "address": f"192.168.100.{last}/24"},
        {"interface": RAIL1, "address": f"192.168.101.{last}/24"},
    ]


def test_head_env_in_order():
    env = build_env(node("head"), GID)
    assert list(env.items()) == [
        ("VLLM_HOST_IP", "192.168.100.10"),
        ("GLOO_SOCKET_IFNAME", RAIL0),
        ("NCCL_SOCKET_IFNAME", f"={RAIL0}"),
        ("TP_SOCKET_IFNAME", RAIL0),
        ("UCX_NET_DEVICES", RAIL0),
        ("OMPI_MCA_btl_tcp_if_include", RAIL0),
        ("MN_IF_NAME", RAIL0),
        ("NCCL_IB_HCA", "rocep1s0f1,roceP2p1s0f1"),
        ("NCCL_IB_GID_INDEX", "3"),
        ("MASTER_ADDR", "192.168.100.10"),
        ("MASTER_PORT", "29501"),
        ("NODE_RANK", "0"),
        ("NNODES", "2"),
        ("NCCL_CUMEM_ENABLE", "0"),  # settings come sorted by key
        ("NCCL_NVLS_ENABLE", "0"),
        ("VLLM_ENGINE_READY_TIMEOUT_S", "3600"),
    ]


def test_head_and_worker_differ_where_they_must():
    head = build_env(node("head"), GID)
    worker = build_env(node("worker"), GID)
    differ = {key for key in head if head[key] != worker[key]}
    assert differ == {"VLLM_HOST_IP", "NODE_RANK"}
    assert worker["VLLM_HOST_IP"] == "192.168.100.11"
    assert worker["NODE_RANK"] == "1"
    assert worker["MASTER_ADDR"] == "192.168.100.10"


def test_no_rdma_disables_ib():
    env = build_env(node(), NO_RDMA)
    assert env["NCCL_IB_DISABLE"] == "1"
    assert "NCCL_IB_HCA" not in env and "NCCL_IB_GID_INDEX" not in env


def test_per_device_gid_env():
    gid = {
        "nccl_env": {
            "NCCL_IB_HCA": "a,b",
            "NCCL_IB_ADDR_FAMILY": "AF_INET",
            "NCCL_IB_ROCE_VERSION_NUM": "2",
        }
    }
    env = build_env(node(), gid)
    assert env["NCCL_IB_ADDR_FAMILY"] == "AF_INET" and "NCCL_IB_GID_INDEX" not in env


def test_missing_gid_resolution_is_refused():
    with pytest.raises(ValueError, match="nccl_env"):
        build_env(node(), {"nccl_env": {}})


@pytest.mark.parametrize(
    "key",
    ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "hf_token", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY",
     "DB_PASSWORD", "PASSWORD_FILE", "MY_SECRET"],
)
def test_secret_settings_are_refused(key):
    with pytest.raises(ValueError, match=key):
        build_env(node(settings={key: "x"}), GID)


@pytest.mark.parametrize("key", ["TOKENIZERS_PARALLELISM", "VLLM_CACHE_ROOT", "KEYBOARD"])
def test_ordinary_settings_pass(key):
    assert build_env(node(settings={key: "x"}), GID)[key] == "x"


@pytest.mark.parametrize("key", sorted(PINNED_KEYS))
def test_pinned_keys_cannot_be_overridden(key):
    with pytest.raises(ValueError, match=key):
        build_env(node(settings={key: "x"}), GID)


def test_pinned_gid_key_refused_even_when_resolution_does_not_set_it():
    # NCCL_IB_GID_INDEX in settings would defeat per-device selection / TCP fallback
    with pytest.raises(ValueError, match="NCCL_IB_GID_INDEX"):
        build_env(node(settings={"NCCL_IB_GID_INDEX": "3"}), NO_RDMA)


@pytest.mark.parametrize(
    "overrides, word",
    [
        ({"rank": 1}, "rank"),  # the head must be rank 0
        ({"rank": 2}, "rank"),  # out of range for nnodes 2
        ({"role": "boss"}, "role"),
        ({"master_addr": "192.168.100.11"}, "master_addr"),  # head must be its own master
        ({"address": "192.168.100.10/24"}, "address"),
        ({"master_port": 70000}, "master_port"),
        ({"interface": None}, "interface"),
        ({"settings": {"NCCL_NVLS_ENABLE": True}}, "NCCL_NVLS_ENABLE"),
        ({"settings": {"A": "x\ny"}}, "A"),
        ({"settings": {"1BAD": "x"}}, "1BAD"),
    ],
)
def test_bad_node_inputs_are_refused(overrides, word):
    with pytest.raises(ValueError, match=word):
        build_env(node(**overrides), GID)


def test_worker_cannot_be_rank_0():
    with pytest.raises(ValueError, match="rank 0"):
        build_env(node("worker", rank=0), GID)


def test_rail_interfaces_keep_rail_order_and_drop_the_prefix():
    assert list(rail_interfaces(rails()).items()) == [(RAIL0, "192.168.100.10"), (RAIL1, "192.168.101.10")]
    with pytest.raises(ValueError, match="rail 1 needs interface and address"):
        rail_interfaces([rails()[0], {"interface": RAIL1}])
    with pytest.raises(ValueError, match="no rails"):
        rail_interfaces([])


def test_render_has_header_and_round_trips():
    env = build_env(node(), GID)
    params = make_params("/etc/spark-cluster/runtime.env", node(), rails(),
                         params_path="/etc/spark-cluster/runtime-env.json")
    text = render(env, params)
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert header and text.startswith("# Generated by")
    joined = " ".join(header)
    assert "spark_env.py" in joined
    assert "re-rendered at every service start" in joined
    assert "/etc/spark-cluster/runtime-env.json" in joined
    assert parse(text) == env
    assert render(env, params) == text  # deterministic


# ---------------------------------------------------------------- the module

def me():
    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


def module_args(tmp_path, sysfs, role="head", **extra):
    owner, group = me()
    args = {
        "path": str(tmp_path / "runtime.env"),
        "params_path": str(tmp_path / "runtime-env.json"),
        "node": node(role),
        "rails": rails(role),
        "peers": ["192.168.100.11" if role == "head" else "192.168.100.10"],
        "sysfs_root": str(sysfs.root),
        "owner": owner,
        "group": group,
    }
    args.update(extra)
    return args


def run_module(capsys, args):
    import spark_runtime_env

    with patch_module_args(args), pytest.raises(SystemExit) as info:
        spark_runtime_env.main()
    result = json.loads(capsys.readouterr().out)
    return info.value.code, result


@pytest.fixture
def head_sysfs(spark_sysfs):
    return spark_sysfs(addresses={RAIL0: "192.168.100.10/24", RAIL1: "192.168.101.10/24"})


def test_module_writes_0600_and_is_idempotent(tmp_path, head_sysfs, capsys):
    args = module_args(tmp_path, head_sysfs)
    code, result = run_module(capsys, args)
    assert code == 0, result
    assert result["changed"] is True
    env_file = tmp_path / "runtime.env"
    params_file = tmp_path / "runtime-env.json"
    for path in (env_file, params_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    env = parse(env_file.read_text())
    assert env == result["env"]
    assert env["NCCL_IB_GID_INDEX"] == "3"
    assert env["NCCL_IB_HCA"] == "rocep1s0f1,roceP2p1s0f1"
    assert result["roce"]["rdma_present"] is True
    saved = json.loads(params_file.read_text())
    assert saved["node"]["rank"] == 0 and saved["peers"] == ["192.168.100.11"]
    assert saved["path"] == str(env_file)
    assert saved["sysfs_root"] == str(head_sysfs.root)
    # no temp files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runtime-env.json", "runtime.env", "sys"]

    code, again = run_module(capsys, args)
    assert code == 0 and again["changed"] is False


def test_module_check_mode_writes_nothing(tmp_path, head_sysfs, capsys):
    args = module_args(tmp_path, head_sysfs, _ansible_check_mode=True, _ansible_diff=True)
    code, result = run_module(capsys, args)
    assert code == 0
    assert result["changed"] is True
    assert not (tmp_path / "runtime.env").exists()
    assert not (tmp_path / "runtime-env.json").exists()
    after = {d["after_header"]: d["after"] for d in result["diff"]}
    assert "VLLM_HOST_IP=192.168.100.10" in after[str(tmp_path / "runtime.env")]


def test_module_diff_shows_the_change(tmp_path, head_sysfs, capsys):
    run_module(capsys, module_args(tmp_path, head_sysfs))
    args = module_args(tmp_path, head_sysfs, _ansible_diff=True)
    args["node"]["master_port"] = 25000
    code, result = run_module(capsys, args)
    assert code == 0 and result["changed"] is True
    env_diff = [d for d in result["diff"] if d["before_header"].endswith("runtime.env")][0]
    assert "MASTER_PORT=29501" in env_diff["before"]
    assert "MASTER_PORT=25000" in env_diff["after"]
    assert "MASTER_PORT=25000" in (tmp_path / "runtime.env").read_text()


def test_module_fixes_mode_only(tmp_path, head_sysfs, capsys):
    args = module_args(tmp_path, head_sysfs)
    run_module(capsys, args)
    os.chmod(tmp_path / "runtime.env", 0o644)
    code, result = run_module(capsys, args)
    assert result["changed"] is True
    assert stat.S_IMODE((tmp_path / "runtime.env").stat().st_mode) == 0o600


def test_module_worker(tmp_path, spark_sysfs, capsys):
    sysfs = spark_sysfs(addresses={RAIL0: "192.168.100.11/24", RAIL1: "192.168.101.11/24"})
    code, result = run_module(capsys, module_args(tmp_path, sysfs, role="worker"))
    assert code == 0, result
    assert result["env"]["VLLM_HOST_IP"] == "192.168.100.11"
    assert result["env"]["NODE_RANK"] == "1"
    assert result["env"]["MASTER_ADDR"] == "192.168.100.10"


def test_module_fails_on_gid_error_and_writes_nothing(tmp_path, spark_sysfs, capsys):
    sysfs = spark_sysfs(addresses={RAIL0: "192.168.100.10/24"})  # rail 1 unaddressed
    code, result = run_module(capsys, module_args(tmp_path, sysfs))
    assert code == 1 and result["failed"] is True
    assert "roceP2p1s0f1" in result["msg"]
    assert not (tmp_path / "runtime.env").exists()


def test_module_refuses_secrets(tmp_path, head_sysfs, capsys):
    args = module_args(tmp_path, head_sysfs)
    args["node"]["settings"]["HF_TOKEN"] = "hf_xxx"
    code, result = run_module(capsys, args)
    assert code == 1 and "HF_TOKEN" in result["msg"]
    assert "hf_xxx" not in result["msg"]
    assert not (tmp_path / "runtime.env").exists()


def test_module_no_rdma(tmp_path, spark_sysfs, capsys):
    sysfs = spark_sysfs(addresses={RAIL0: "198.18.100.10/24", RAIL1: "198.18.101.10/24"}, rdma=False)
    args = module_args(tmp_path, sysfs)
    args["node"].update(address="198.18.100.10", master_addr="198.18.100.10")
    args["rails"] = [{"interface": RAIL0, "address": "198.18.100.10/24"},
                     {"interface": RAIL1, "address": "198.18.101.10/24"}]
    code, result = run_module(capsys, args)
    assert code == 0, result
    assert result["env"]["NCCL_IB_DISABLE"] == "1"
    assert "TCP sockets" in result["message"]


def test_module_missing_directory_fails(tmp_path, head_sysfs, capsys):
    args = module_args(tmp_path, head_sysfs, path=str(tmp_path / "nope" / "runtime.env"))
    code, result = run_module(capsys, args)
    assert code == 1 and "does not exist" in result["msg"]


def test_settings_order_does_not_change_the_rendered_file():
    """Ansible passes settings in YAML order, the pre-start reads them back from JSON
    with sorted keys: both must render the same bytes (else every run 'changes')."""
    from spark_cluster.runtime import runtime_env as spark_env

    a = spark_env.check_settings({"B_SETTING": "1", "A_SETTING": "2"})
    b = spark_env.check_settings({"A_SETTING": "2", "B_SETTING": "1"})
    assert list(a.items()) == list(b.items()) == [("A_SETTING", "2"), ("B_SETTING", "1")]
