"""The lab's stand-in runtime keeps the real runtime's contract, so that the lab fails
where real Sparks would (tests/lab/standin/, docs/design.md). No Docker needed: the
server's checks run in-process, its ranks as processes on loopback, its build script
with stand-in docker/git/ssh commands on PATH."""

import argparse
import importlib.util
import os
import pathlib
import shlex
import shutil
import socket
import subprocess
import sys
import textwrap
import time

import jinja2
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
STANDIN = ROOT / "tests/lab/standin"
PINNED = "5f3c2a1e9d8b7c6a5f4e3d2c1b0a9f8e7d6c5b4a"
REPO = "deepseek-ai/DeepSeek-V4-Flash-DSpark"


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


server = load("standin_server_contract", STANDIN / "server.py")
# the lab seeder (lab/prepare.yml) imports the spark_cluster package copied beside it
sys.path[:0] = [str(ROOT / "module_utils"), str(ROOT / "tests/lab")]
import hub_seed  # noqa: E402
from spark_cluster.runtime import rendezvous as rdv  # noqa: E402  (the guard's own TCP-table parser)

SERVE = ["serve", REPO, "--tensor-parallel-size", "2", "--nnodes", "2", "--node-rank", "0",
         "--master-addr", "198.18.100.10", "--master-port", "29501"]


# --------------------------------------------------------------------------- arguments

def test_an_unknown_flag_is_an_error_like_vllms_cli(capsys):
    with pytest.raises(SystemExit) as exc:
        server.parse_args(SERVE + ["--max-num-seq", "1"])   # typo of --max-num-seqs
    assert exc.value.code == 2
    assert "unrecognized arguments: --max-num-seq" in capsys.readouterr().err


def test_the_seeds_launch_flags_parse():
    args = server.parse_args(SERVE + [
        "--revision", PINNED, "--tokenizer-revision", PINNED, "--max-num-seqs", "1",
        "--kv-cache-dtype", "fp8", "--enable-prefix-caching", "--enable-flashinfer-autotune",
        "--max-num-batched-tokens", "8192", "--block-size", "256", "--pipeline-parallel-size", "1",
        "--reasoning-config", '{"reasoning_parser":"deepseek_v4"}',
        "--default-chat-template-kwargs", '{"thinking":true}',
        "--speculative-config", '{"method":"dspark","num_speculative_tokens":5}'])
    assert args.max_num_seqs == 1 and args.revision == PINNED and args.enable_prefix_caching
    assert server.check_json_flags(args) is None


@pytest.mark.parametrize("change, message", [
    (["--tensor-parallel-size", "1"], "tensor_parallel_size (1) x pipeline_parallel_size (1) = 1 != nnodes (2)"),
    (["--node-rank", "2"], "node_rank 2 is not in [0, 2)"),
    (["--node-rank", "1"], "ranks > 0 run --headless"),
])
def test_parallel_layout_is_checked(change, message):
    args = server.parse_args(SERVE + change)
    assert message in server.check_topology(args, 1)


# --------------------------------------------------------------------------- environment

def test_without_the_opt_env_exports_the_jit_cannot_find_nvcc():
    """The old compose ran the image's PATH: /opt/env/bin (nvcc) was not on it."""
    image_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    which = lambda name, path: "/opt/env/bin/nvcc" if "/opt/env/bin" in path.split(":") else None  # noqa: E731
    problems = server.check_toolchain(image_env, which=which)
    assert any("nvcc not found" in p for p in problems) and len(problems) == 3
    exported = {"PATH": "/opt/env/bin:" + image_env["PATH"], "CUDA_HOME": "/opt/env/targets/sbsa-linux",
                "LD_LIBRARY_PATH": "/opt/env/lib:/opt/env/targets/sbsa-linux/lib"}
    assert server.check_toolchain(exported, which=which) == []


def test_a_cache_the_uid_cannot_write_stops_the_start():
    env = {"TRITON_CACHE_DIR": "/var/cache/spark-jit/triton", "HF_HUB_CACHE": "/cache/huggingface/hub"}
    problems = server.check_cache_access(env, access=lambda path, mode: False)
    assert any("Permission denied: '/var/cache/spark-jit/triton'" in p for p in problems)
    assert any("HF_HUB_CACHE" in p for p in problems)


@pytest.mark.parametrize("env, message", [
    ({"GLOO_SOCKET_IFNAME": "enP7s7"}, "Unable to find address for: enP7s7"),
    ({"GLOO_SOCKET_IFNAME": "enp1s0f1np1", "NCCL_SOCKET_IFNAME": "enp1s0f1np1",
      "VLLM_HOST_IP": "198.18.100.10"}, "expected '=enp1s0f1np1'"),
    ({"GLOO_SOCKET_IFNAME": "enp1s0f1np1", "NCCL_SOCKET_IFNAME": "=enp1s0f1np1",
      "VLLM_HOST_IP": "198.19.0.10"}, "is not the address of enp1s0f1np1"),
])
def test_socket_pinning_is_checked_like_gloo_nccl_and_vllm(env, message):
    ifaddr = {"enp1s0f1np1": "198.18.100.10", "eth0": "198.19.0.10"}.get
    problem, _ = server.check_pinning(env, ifaddr=ifaddr)
    assert message in problem


def test_pinned_revision_offline_needs_the_revision(tmp_path):
    """What the lab seeds (a pinned commit, no refs/main) is what `hf download --revision
    <commit>` leaves: vLLM offline without --revision looks for refs/main and fails."""
    hub = tmp_path / "hub"
    hub_seed.seed_fake_repo(str(hub), REPO, shards=2, shard_bytes=64, branch=PINNED)
    assert not (hub / "models--deepseek-ai--DeepSeek-V4-Flash-DSpark/refs/main").exists()
    snapshot, error = server.resolve_offline(str(hub), REPO, None)
    assert snapshot is None and "no refs/main" in error
    snapshot, error = server.resolve_offline(str(hub), REPO, PINNED)
    assert error is None and snapshot.endswith(PINNED) and server.count_shards(snapshot) == 2


# --------------------------------------------------------------------------- ranks

def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


RANK = textwrap.dedent("""
    import argparse, importlib.util, os, sys
    spec = importlib.util.spec_from_file_location("standin", sys.argv[1])
    server = importlib.util.module_from_spec(spec); spec.loader.exec_module(server)
    rank, port = int(sys.argv[2]), int(sys.argv[3])
    args = argparse.Namespace(master_addr="127.0.0.1", master_port=port, node_rank=rank, nnodes=2,
                              tensor_parallel_size=2, pipeline_parallel_size=1, host="127.0.0.1", port=0, model="m",
                              served_model_name="m", max_model_len=1024)
    env = {"VLLM_HOST_IP": "127.0.0.1"}
    run = server.run_head if rank == 0 else server.run_worker
    sys.exit(run(args, env, 0.0, 2))
""")


def start_rank(rank, port, timeout_s="60"):
    env = dict(os.environ, STANDIN_PHASE_DELAY_S="0", STANDIN_RENDEZVOUS_TIMEOUT_S=timeout_s,
               PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", RANK, str(STANDIN / "server.py"), str(rank), str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def wait_line(proc, needle, timeout=20):
    deadline = time.monotonic() + timeout
    seen = []
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            seen.append(line)
            if needle in line:
                return seen
        else:
            time.sleep(0.05)
    raise AssertionError(f"{needle!r} not seen: {''.join(seen)}")


def test_worker_outlives_its_head_and_a_new_head_cannot_complete_its_rendezvous():
    """vLLM's headless node does not exit when the master dies: it stays half-connected,
    and a head restarted alone waits for a worker that never joins again (only the
    project's watchdog, restarting the worker, brings the pair back)."""
    port = free_port()
    head, worker = start_rank(0, port), start_rank(1, port)
    procs = [head, worker]
    try:
        wait_line(head, "Application startup complete.")
        wait_line(worker, "executor running (headless)")
        head.kill()
        head.wait(5)
        wait_line(worker, "went away")
        time.sleep(2)  # two heartbeats: a write to the dead head would reset the socket
        assert worker.poll() is None, "the headless worker exited when its master went away"
        # it keeps its store socket, idle, in CLOSE_WAIT (what the agent's prepare reads)
        held = rdv.held_connections(rdv.read_tables(), "127.0.0.1", port)
        assert held and all(r[4] == rdv.CLOSE_WAIT for r in rdv.read_tables() if (r[1], r[3]) in held), held
        new_head = start_rank(0, port, timeout_s="3")
        procs.append(new_head)
        lines = wait_line(new_head, "DistStoreError", timeout=15)
        assert new_head.wait(5) == 1, "".join(lines)
        assert worker.poll() is None
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(5)


@pytest.mark.skipif(not pathlib.Path("/proc/net/tcp6").exists(), reason="no IPv6 in this kernel")
def test_the_rendezvous_sits_in_tcp6_v4_mapped_like_torchs_store():
    """torch's TCPStore listens on :: dual-stack and its client connects to the v4-mapped
    master (tests/unit/fixtures/rendezvous): every row is in /proc/net/tcp6, none in
    /proc/net/tcp. The stand-in must agree, so that the lab fails a guard that reads tcp
    alone; the guard's own parser finds both sides."""
    port = free_port()
    head, worker = start_rank(0, port), start_rank(1, port)
    try:
        wait_line(head, "Application startup complete.")
        wait_line(worker, "executor running (headless)")
        v4 = [r for r in rdv.read_tables(["/proc/net/tcp"]) if port in (r[1], r[3])]
        v6 = [r for r in rdv.read_tables(["/proc/net/tcp6"]) if port in (r[1], r[3])]
        assert v4 == [], v4
        assert ("::", port, "::", 0, "0A") in v6, v6
        head_side = rdv.observe(v6, "head", "127.0.0.1", port, ["127.0.0.1"])
        worker_side = rdv.observe(v6, "worker", "127.0.0.1", port)
        assert head_side["127.0.0.1"] and worker_side[f"127.0.0.1:{port}"], v6
    finally:
        for proc in (head, worker):
            proc.kill()
            proc.wait(5)


def test_head_refuses_a_late_join_and_degrades_when_its_worker_goes_away():
    port = free_port()
    head, worker = start_rank(0, port), start_rank(1, port)
    late = None
    try:
        wait_line(head, "Application startup complete.")
        late = start_rank(1, port)
        wait_line(head, "refusing rank 1")
        wait_line(late, "refused: its rendezvous is complete")
        worker.kill()
        wait_line(head, "went away")
        time.sleep(0.5)
        assert head.poll() is None, "the head exited when a worker went away"
    finally:
        for proc in (head, worker, late):
            if proc:
                proc.kill()
                proc.wait(5)


# --------------------------------------------------------------------------- the build

STUBS = {
    "docker": """#!/bin/sh
echo "docker $*" >> "$CALLS"
case "$1 $2" in "image inspect") [ "$3" = "-f" ] && echo sha256:0123 ; exit 0 ;; esac
exit 0
""",
    "ssh": """#!/bin/sh
echo "ssh $*" >> "$CALLS"
exit 0
""",
    "rsync": """#!/bin/sh
echo "rsync $*" >> "$CALLS"
exit 0
""",
}


def recipe_checkout(tmp_path):
    """The stand-in recipe as publish.yml lays it out on the head (overlay files in recipe/overlay)."""
    checkout = tmp_path / "recipe"
    shutil.copytree(STANDIN, checkout, ignore=shutil.ignore_patterns("__pycache__"))
    (checkout / "recipe/overlay").mkdir(exist_ok=True)
    for name in ("server.py", "nvcc"):
        shutil.copy(STANDIN / name, checkout / "recipe/overlay" / name)
    return checkout


def run_build(tmp_path, env_file=None, checkout=None):
    checkout = checkout or recipe_checkout(tmp_path)
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for name, text in STUBS.items():
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    calls = tmp_path / "calls"
    calls.write_text("")
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path), "CALLS": str(calls)}
    if env_file:
        env["ENV_FILE"] = str(env_file)
    run = subprocess.run(["bash", str(checkout / "build-dspark-vllm-runtime.sh")], capture_output=True,
                         text=True, env=env, timeout=60)
    return run, calls.read_text()


def test_the_recipe_build_stops_after_a_good_build_without_worker_host(tmp_path):
    """Run as the recipe's default (WORKER_BUILD=1, no WORKER_HOST): exit 1 after the build."""
    run, calls = run_build(tmp_path)
    assert "built vllm-dspark-runtime:dspark-nvfp4-stage-c" in run.stdout, run.stderr
    assert run.returncode == 1
    assert "WORKER_HOST must be set" in run.stderr


def test_the_build_refuses_an_overlay_whose_sources_are_missing(tmp_path):
    checkout = recipe_checkout(tmp_path)
    (checkout / "recipe/overlay/server.py").unlink()
    run, calls = run_build(tmp_path, checkout=checkout)
    assert run.returncode == 1 and "Missing overlay source" in run.stderr and "docker build" not in calls


def render_build_env(**values):
    """roles/runtime_image/templates/recipe-build.env.j2 as the role renders it."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROOT / "roles/runtime_image/templates")),
                             keep_trailing_newline=True)
    env.filters["quote"] = shlex.quote
    build_vars = dict(values)
    build_vars.update(WORKER_BUILD="0")  # runtime_image_head_only_switch (the profiles' value at 489af95)
    return env.get_template("recipe-build.env.j2").render(
        ansible_managed="managed", inventory_hostname="spark-head",
        runtime_image_build_command="./build-dspark-vllm-runtime.sh", __runtime_image_build_vars=build_vars)


def test_the_roles_rendered_variables_build_head_only_through_the_stages(tmp_path):
    env_file = tmp_path / "recipe-build.env"
    env_file.write_text(render_build_env(DSPARK_BASE_IMAGE="vllm-dspark-runtime:mia-raf-pr1",
                                         DSPARK_VLLM_IMAGE="vllm-dspark-runtime:dspark-nvfp4-stage-c"))
    run, calls = run_build(tmp_path, env_file)
    assert run.returncode == 0, run.stderr
    assert "ssh" not in calls and "rsync" not in calls
    assert "-t vllm-dspark-runtime:mia-raf-pr1 " in calls
    for stage, base in (("a", "mia-raf-pr1"), ("b", "mia-raf-pr1-nvfp4-a"), ("c", "mia-raf-pr1-nvfp4-b")):
        assert f"--build-arg BASE_IMAGE=vllm-dspark-runtime:{base} -f " in calls and f"Dockerfile.stage-{stage}" in calls
    assert "-t vllm-dspark-runtime:dspark-nvfp4-stage-c " in calls


# --------------------------------------------------------------------------- each profile on each image

import render_launch  # noqa: E402  (tests/lab on sys.path)


def accepted(argv, image):
    """The stand-in's start-up checks of one launch on one image: None or the refusal."""
    args = server.parse_args(argv[1:], image)
    return server.check_json_flags(args) or server.check_image_features(args, image) or server.check_topology(args, 1)


@pytest.mark.parametrize("profile, source, image, binary", [
    ("current", "pull", "anemll-0.1.1", "/usr/local/bin/vllm"),
    ("current", "build", "dspark-stage-c", "/opt/env/bin/vllm"),
    ("seed", "build", "dspark-stage-c", "/opt/env/bin/vllm"),
])
def test_each_profiles_rendered_launch_starts_on_its_image(profile, source, image, binary):
    """roles/serving's compose file, rendered from the real defaults for the profile, is
    accepted by the stand-in of the image that source gives (every flag known, the KV dtype
    the image takes, nothing it refuses at start)."""
    argv = render_launch.command(profile, source)
    assert argv[0] == binary and argv[1] == "serve"
    assert accepted(argv, image) is None


def test_the_current_launch_has_the_recipes_shape():
    argv = render_launch.command("current")
    joined = " ".join(argv)
    for flag in ("--kv-cache-dtype nvfp4_ds_mla", "--max-model-len 1048576", "--max-num-seqs 6",
                 "--long-prefill-token-threshold 1024", "--max-cudagraph-capture-size 36", "--master-port 25000",
                 "--async-scheduling", "--enable-chunked-prefill", "--moe-backend flashinfer_b12x",
                 '--default-chat-template-kwargs {"thinking":true,"reasoning_effort":"max"}'):
        assert flag in joined, flag
    # an override of one setting follows through (the capture size is computed from it)
    joined = " ".join(render_launch.command("current", serving_max_num_seqs=4))
    assert "--max-num-seqs 4" in joined and "--max-cudagraph-capture-size 24" in joined


def test_the_seed_launch_is_the_field_reports():
    joined = " ".join(render_launch.command("seed"))
    for flag in ("--kv-cache-dtype fp8", "--max-model-len 262144", "--max-num-seqs 1", "--master-port 29501",
                 '--default-chat-template-kwargs {"thinking":true}', "--tokenizer-revision main"):
        assert flag in joined, flag
    for flag in ("--async-scheduling", "--long-prefill-token-threshold", "--moe-backend"):
        assert flag not in joined, flag


def test_an_image_refuses_what_the_real_one_refuses(capsys):
    current = render_launch.command("current")
    # the overlay image (the seed's lineage before stage-a) lacks nvfp4_ds_mla: vLLM's choices, exit 2
    with pytest.raises(SystemExit) as exc:
        server.parse_args(current[1:], "dspark-overlay")
    assert exc.value.code == 2 and "invalid choice: 'nvfp4_ds_mla'" in capsys.readouterr().err
    # the Anemll image rejects concurrent partial prefill at start (.env.dspark.example)
    assert "Concurrent Partial Prefill" in accepted(current + ["--max-num-partial-prefills", "2"], "anemll-0.1.1")
    assert accepted(current + ["--max-num-partial-prefills", "2"], "dspark-stage-c") is None
    # and its toolchain is /usr/local/cuda, not /opt/env
    which = lambda name, path: "/opt/env/bin/nvcc" if "/opt/env/bin" in path.split(":") else None  # noqa: E731
    opt_env = {"PATH": "/opt/env/bin:/usr/bin", "CUDA_HOME": "/opt/env", "LD_LIBRARY_PATH": "/opt/env/lib"}
    assert server.check_toolchain(opt_env, which=which, image="dspark-stage-c") == []
    assert len(server.check_toolchain(opt_env, which=which, image="anemll-0.1.1")) == 2


def test_an_unknown_image_name_is_refused():
    with pytest.raises(SystemExit, match="not one of dspark-overlay, dspark-stage-c, anemll-0.1.1"):
        server.image_of({"SPARK_STANDIN_RUNTIME": "vllm-latest"})
    assert server.image_of({}) == "dspark-stage-c"
