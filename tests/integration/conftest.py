"""Integration tests: run by molecule's verify step against the live lab
(pytest --hosts=ansible://spark --ansible-inventory=inventory/lab)."""

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "inventory" / "lab"


@pytest.fixture(scope="session")
def lab_inventory():
    """The whole lab inventory, as Ansible merges it: groups and every host's vars."""
    tool = pathlib.Path(sys.executable).with_name("ansible-inventory")
    out = subprocess.run([str(tool), "-i", str(INVENTORY), "--list"], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    hostvars = data.get("_meta", {}).get("hostvars", {})

    def members(group):
        node = data.get(group, {})
        hosts = list(node.get("hosts", []))
        for child in node.get("children", []):
            hosts += [h for h in members(child) if h not in hosts]
        return hosts

    groups = {g: members(g) for g in ("spark", "spark_head", "spark_workers")}
    return {"groups": groups, "hostvars": hostvars}


@pytest.fixture
def hostvars(host, lab_inventory):
    """This host's vars, plus `groups`, `hostvars` and `inventory_hostname` as in a play."""
    name = host.backend.host
    merged = dict(lab_inventory["hostvars"][name])
    merged.update(groups=lab_inventory["groups"], hostvars=lab_inventory["hostvars"], inventory_hostname=name)
    return merged


@pytest.fixture
def rails(hostvars):
    return hostvars["spark_rails"]


def ip_json(host, *args):
    out = host.check_output("ip -j " + " ".join(args))
    return json.loads(out)
