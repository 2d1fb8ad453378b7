"""One preflight names every problem (issue 27): the lab inventory with only its connection
settings (hosts.yml and group_vars/spark/main.yml, none of the lab's other group_vars) fails
preflight once, listing every remaining problem, and changes nothing. Runs against the live
lab after converge (the lead's `make lab`), like test_preflight_refuses_bad_input.py."""

import os
import pathlib
import shutil
import subprocess
import sys

from test_preflight_refuses_bad_input import RECAP_RE, node_state

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAB = ROOT / "inventory" / "lab"


def test_connection_settings_only_fail_once_with_the_whole_list(tmp_path):
    inv = tmp_path / "inventory"
    (inv / "group_vars" / "spark").mkdir(parents=True)
    shutil.copy(LAB / "hosts.yml", inv / "hosts.yml")
    shutil.copy(LAB / "group_vars" / "spark" / "main.yml", inv / "group_vars" / "spark" / "main.yml")
    before = {c: node_state(c) for c in ("spark-head", "spark-worker")}
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_API_KEY", "HF_TOKEN")}
    # molecule exports ANSIBLE_FORCE_COLOR: plain text here, the recap is parsed below
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    run = subprocess.run([str(pathlib.Path(sys.executable).with_name("ansible-playbook")), "-i", str(inv),
                          str(ROOT / "site.yml")], capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    out = run.stdout + run.stderr
    flat = " ".join(out.split())
    assert run.returncode != 0, out[-3000:]
    assert "PLAY [QSFP link" not in out, "a play after preflight ran"
    # one failure, once (ansible-core prints a failed task's message twice: [ERROR] and fatal)
    assert out.count("FAILED! =>") == 1 and "preflight found " in flat, out[-5000:]
    # what a user still owes with production defaults: the key; and what the lab's nodes lack
    # (disk for 168 GB, no way out to ghcr.io)
    for needle in ("serving_api_key is empty", "GB needed", "ghcr.io"):
        assert needle in flat, (needle, out[-5000:])
    recap = out[out.rindex("PLAY RECAP"):]
    assert set(dict(RECAP_RE.findall(recap)).values()) == {"0"}, recap
    assert {c: node_state(c) for c in before} == before
