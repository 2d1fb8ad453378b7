"""Scrubbing and collection helpers of the diagnostic bundle (module_utils/spark_cluster/reports/diagnosis.py)."""

import pytest

from spark_cluster.reports import diagnosis as dg

KEY = "Zq3kP9mW2xR7tY5uV8nB4cD6fG1hJ0aL"
HF = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


@pytest.mark.parametrize("text", [
    f"client sent {KEY} as a header",
    f"VLLM_API_KEY={KEY}",
    f'{{"api_key": "{KEY}"}}',
    f"Authorization: Bearer {KEY}",
    f"HF_TOKEN={HF}",
    f"downloading with {HF}",
    f"  password: {KEY}",
    f"vllm serve m --api-key {KEY}",
])
def test_scrub_removes_secrets(text):
    out = dg.scrub(text, [KEY])
    assert KEY not in out and HF not in out
    assert dg.REDACTED in out


def test_scrub_unknown_hf_token_by_pattern():
    assert HF not in dg.scrub(f"token {HF} seen", [])


@pytest.mark.parametrize("text", [
    '"max_tokens": 64',
    "vllm:generation_tokens_total{model_name=\"m\"} 12.0",
    "--tokenizer-mode deepseek_v4",
    '"api_key_path": "/etc/spark-cluster/api-key"',
    "NCCL_IB_GID_INDEX=3",
])
def test_scrub_keeps_ordinary_text(text):
    assert dg.scrub(text, [KEY]) == text


def test_short_secret_values_are_not_replaced_everywhere():
    assert dg.scrub("a b c", ["a"]) == "a b c"


def test_secret_files_never_collected(tmp_path):
    (tmp_path / "api-key").write_text(KEY)
    (tmp_path / "watchdog.key").write_text("x" * 64)
    (tmp_path / "runtime.env").write_text("A=1\n")
    files = dg.collected_files(str(tmp_path))
    names = sorted(p.rsplit("/", 1)[1] for p in files if p.startswith(str(tmp_path)))
    assert names == ["runtime.env"]


def test_gid_tables(tmp_path):
    port = tmp_path / "class" / "infiniband" / "rocep1s0f1" / "ports" / "1"
    for sub in ("gids", "gid_attrs/types", "gid_attrs/ndevs"):
        (port / sub).mkdir(parents=True)
    (port / "gids" / "0").write_text("fe80:0000:0000:0000:0000:0000:0000:0001\n")
    (port / "gids" / "1").write_text("0000:0000:0000:0000:0000:0000:0000:0000\n")
    (port / "gid_attrs" / "types" / "0").write_text("RoCE v2\n")
    (port / "gid_attrs" / "ndevs" / "0").write_text("enp1s0f1np1\n")
    text = dg.gid_tables(str(tmp_path))
    assert "rocep1s0f1 port 1 index 0: fe80" in text and "RoCE v2 enp1s0f1np1" in text
    assert "index 1" not in text
    assert "no RDMA" in dg.gid_tables(str(tmp_path / "none"))


def test_commands_cover_the_rails():
    names = [n for n, _ in dg.commands("u", "c", [{"interface": "enp1s0f1np1"}], "/etc/x")]
    assert "ethtool-enp1s0f1np1.txt" in names and "nvidia-smi-q.txt" in names
    assert "docker-inspect-runtime.json" in names and "journal-serving.txt" in names


def test_journals_keep_lines_with_terminal_escapes():
    """docker compose's lines carry escapes; without --all journalctl prints '[238B blob data]'."""
    journals = [argv for _, argv in dg.commands("u", "c", [], "/etc/x") if argv[0] == "journalctl"]
    assert len(journals) == 3 and all("--all" in argv for argv in journals)
