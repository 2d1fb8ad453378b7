"""spark_envfile: Docker env-file format."""

import pytest

from spark_cluster.common.envfile import parse, read, render


def test_parse_basic():
    text = ("# runtime env of spark-head\n"
            "\n"
            "VLLM_HOST_IP=192.168.100.10\n"
            "   NCCL_SOCKET_IFNAME==enp1s0f1np1\n"
            "  # indented comment\n"
            "EMPTY=\n"
            "SPEC={\"method\":\"dspark\", \"n\": 5}\n"
            "QUOTED='kept as is'\n")
    assert parse(text) == {
        "VLLM_HOST_IP": "192.168.100.10",
        "NCCL_SOCKET_IFNAME": "=enp1s0f1np1",  # value may start with / contain '='
        "EMPTY": "",
        "SPEC": '{"method":"dspark", "n": 5}',
        "QUOTED": "'kept as is'",
    }


def test_parse_keeps_order_and_last_duplicate_wins():
    parsed = parse("B=1\nA=2\nB=3\n")
    assert list(parsed) == ["B", "A"] and parsed["B"] == "3"


def test_parse_crlf_and_bom():
    assert parse("\ufeffA=1\r\nB=x=y\r\n") == {"A": "1", "B": "x=y"}


@pytest.mark.parametrize("text, needle", [
    ("export A=1\n", "export A"),
    ("1A=1\n", "1A"),
    ("A-B=1\n", "A-B"),
    ("JUST_A_NAME\n", "line 1"),
    ("=value\n", "''"),
])
def test_parse_rejects(text, needle):
    with pytest.raises(ValueError) as exc:
        parse(text)
    assert needle in str(exc.value)


def test_render_keeps_insertion_order_with_header():
    text = render({"Z": "1", "A": "x=y", "N": 3}, header="managed by ansible\ndo not edit")
    assert text == "# managed by ansible\n# do not edit\nZ=1\nA=x=y\nN=3\n"


def test_render_round_trip():
    env = {"VLLM_HOST_IP": "192.168.100.10", "NCCL_SOCKET_IFNAME": "=enp1s0f1np1",
           "ARGS": "--a 'b c' --d=\"e\"", "EMPTY": "", "_X": " spaced "}
    assert parse(render(env, header="h")) == env


def test_render_empty():
    assert render({}) == ""


@pytest.mark.parametrize("mapping, needle", [
    ({"GOOD": "a", "BAD": "two\nlines"}, "BAD"),
    ({"CR": "a\rb"}, "CR"),
    ({"bad key": "x"}, "bad key"),
    ({"9LIVES": "x"}, "9LIVES"),
    ({"NONE": None}, "NONE"),
    ({"FLAG": True}, "FLAG"),
])
def test_render_rejects(mapping, needle):
    with pytest.raises(ValueError) as exc:
        render(mapping)
    assert needle in str(exc.value)


def test_read(tmp_path):
    path = tmp_path / "runtime.env"
    path.write_text("# c\nA=1\n")
    assert read(path) == {"A": "1"}
    assert read(str(path)) == {"A": "1"}
