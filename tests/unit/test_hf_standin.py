"""The lab's stand-in of `hf download` (tests/lab/hf_standin.py): it takes its time, then
leaves a snapshot hf_cache finds complete."""

import hf_standin

from spark_cluster.cache import rules


def test_standin_download_waits_then_leaves_a_complete_snapshot(tmp_path, capsys):
    slept = []
    rc = hf_standin.main(["--seconds", "3", "--shards", "2", "--shard-mb", "1", "download", "org/model",
                          "--revision", "a" * 40, "--cache-dir", str(tmp_path / "hub")], sleep=slept.append)
    assert rc == 0 and slept == [1, 1, 1]
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "stand-in download of org/model: 0/3 s" and out[-1].startswith("changed ")
    snapshot = rules.snapshot_status(str(tmp_path / "hub"), "org/model", "a" * 40, expected_shards=2)
    assert snapshot["complete"], snapshot


def test_prepare_installs_a_wrapper_that_runs_the_standin_as_hf(tmp_path):
    """lab/prepare.yml's /usr/local/bin/hf, rendered and run as hf_cache runs the CLI."""
    import pathlib
    import shutil
    import subprocess

    import jinja2
    import yaml

    root = pathlib.Path(__file__).resolve().parents[2]
    tasks = yaml.safe_load((root / "lab" / "prepare.yml").read_text())[0]["tasks"]
    install = next(t for t in tasks if t.get("ansible.builtin.copy", {}).get("dest") == "/usr/local/bin/hf")
    assert install["when"] == "spark_lab_hub_download | default(false) | bool"
    seed = next(t for t in tasks if t["name"].startswith("Seed a small fake model"))
    assert seed["when"] == "not spark_lab_hub_download | default(false) | bool"
    seed_dir = tmp_path / "seed"
    shutil.copytree(root / "module_utils" / "spark_cluster", seed_dir / "spark_cluster")
    for name in ("hub_seed.py", "hf_standin.py"):
        shutil.copy(root / "tests" / "lab" / name, seed_dir / name)
    wrapper = tmp_path / "hf"
    wrapper.write_text(jinja2.Template(install["ansible.builtin.copy"]["content"]).render(
        spark_lab_seed_dir=str(seed_dir), spark_lab_hub_download_seconds=1, spark_lab_seed_shards=2,
        spark_lab_seed_shard_mb=1).replace("/usr/bin/python3", shutil.which("python3")))
    wrapper.chmod(0o755)
    proc = subprocess.run([str(wrapper), "download", "org/model", "--revision", "b" * 40,
                           "--cache-dir", str(tmp_path / "hub")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "stand-in download of org/model: 0/1 s"
    assert rules.snapshot_status(str(tmp_path / "hub"), "org/model", "b" * 40, expected_shards=2)["complete"]
