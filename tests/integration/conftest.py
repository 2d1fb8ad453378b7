"""Integration tests: run by molecule's verify step against the live lab
(pytest --hosts=ansible://spark --ansible-inventory=inventory/lab)."""

import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def hostvars(host):
    return host.ansible.get_variables()


@pytest.fixture
def rails(hostvars):
    return hostvars["spark_rails"]


def ip_json(host, *args):
    out = host.check_output("ip -j " + " ".join(args))
    return json.loads(out)
