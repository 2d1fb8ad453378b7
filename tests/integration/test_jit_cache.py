"""roles/jit_cache in the lab (after site.yml): its two steps, as the serving play runs
them around a start. publish copies the head's tuned caches to every worker over rail 0
and keys them by the image; a second publish copies nothing; align brings a differing
worker back to the head's caches (copy) or clears every node's (clear); without a runtime
image both steps are skipped and say why."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from conftest import ROOT, docker_sh as sh

JIT = "/var/cache/spark-jit"


@pytest.fixture(scope="module")
def nodes(lab_inventory):
    """The head's container and the workers' (ansible_host of each)."""
    hv = lab_inventory["hostvars"]
    groups = lab_inventory["groups"]
    return hv[groups["spark_head"][0]]["ansible_host"], [hv[w]["ansible_host"] for w in groups["spark_workers"]]


JIT_PLAY = """---
- name: JIT step
  hosts: spark
  gather_facts: false
  tasks:
    - name: Step
      ansible.builtin.include_role:
        name: jit_cache
        tasks_from: "{{ step }}"
"""


def run_step(tmp_path, step, *extra, image="sha256:feedbeef"):
    """One entry point of roles/jit_cache on every lab node, keyed by image (none: no image id)."""
    play = tmp_path / "jit.yml"
    play.write_text(JIT_PLAY)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    exe = pathlib.Path(sys.executable).with_name("ansible-playbook")
    key = ["-e", f"runtime_image_id={image}"] if image else []
    return subprocess.run(
        [str(exe), "-i", str(ROOT / "inventory" / "lab"), str(play), "-e", f"step={step}", *key, *extra],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )


def jit_step(tmp_path, step, *extra):
    run = run_step(tmp_path, step, *extra)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    return run.stdout


def jit_files(container):
    return sh(container, f"cd {JIT} && find . -type f ! -name .spark-cache-key -printf '%p %s %T@\\n' | sort").stdout


def test_jit_publish_then_align_keep_nodes_identical_or_empty(nodes, tmp_path):
    head, workers = nodes
    for node in [head] + workers:
        sh(node, f"find {JIT} -mindepth 2 -delete; rm -f {JIT}/.spark-cache-key")
    sh(head, f"mkdir -p {JIT}/triton/ab && head -c 200000 /dev/urandom > {JIT}/triton/ab/k.cubin && echo '{{}}' > {JIT}/flashinfer/tune.json")
    try:
        out = jit_step(tmp_path, "publish")
        for worker in workers:
            assert jit_files(worker) == jit_files(head)
            key = json.loads(sh(worker, f"cat {JIT}/.spark-cache-key").stdout)
            assert key["image_id"] == "sha256:feedbeef" and key["files"] == 2
        out = jit_step(tmp_path, "publish")
        assert "changed=0" in out and "changed=1" not in out  # a second publish copies nothing
        for worker in workers:
            sh(worker, f"echo stray > {JIT}/vllm/worker-only")
        out = jit_step(tmp_path, "align")
        assert "copying the head's caches (action: copy)" in out
        for worker in workers:
            assert jit_files(worker) == jit_files(head)
            sh(worker, f"echo stray > {JIT}/vllm/worker-only")
        out = jit_step(tmp_path, "align", "-e", "jit_cache_mismatch=clear")
        assert "clearing it on every node (action: clear)" in out
        for node in [head] + workers:
            assert jit_files(node) == ""
            assert sh(node, f"ls {JIT}/triton").stdout == ""  # the seven dirs stay, empty
        out = jit_step(tmp_path, "align")
        assert "matches the head's (empty on both)" in out
    finally:
        for node in [head] + workers:
            sh(node, f"find {JIT} -mindepth 2 -delete; rm -f {JIT}/.spark-cache-key")


def test_jit_steps_skip_without_an_image(nodes, tmp_path):
    run = run_step(tmp_path, "align", "-e", "serving_image=spark-lab/none:0", image=None)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "JIT cache alignment skipped: no runtime image ID (runtime_image_id is not set and the image spark-lab/none:0 is not on the head)" in run.stdout


def test_the_old_names_are_refused_with_the_new_ones(nodes, tmp_path):
    before = {node: jit_files(node) for node in [nodes[0]] + nodes[1]}
    run = run_step(tmp_path, "align", "-e", "hf_cache_jit_mismatch=clear")
    assert run.returncode != 0
    assert "hf_cache_jit_mismatch is now jit_cache_mismatch" in " ".join(run.stdout.split()), run.stdout[-3000:]
    assert {node: jit_files(node) for node in before} == before
