"""Production paths hold only what runs on real Sparks; test doubles live in tests/
(FakeNetlink: tests/unit/fakenetlink.py)."""
from __future__ import annotations

import re

from conftest import ROOT

PRODUCTION = ["playbooks", "roles", "library", "module_utils"]
TEST_CODE = re.compile(r"\bFake[A-Z]\w*|from_sparkfs")


def production_files():
    for top in PRODUCTION:
        for f in sorted((ROOT / top).rglob("*")):
            if f.is_file() and f.suffix in (".py", ".yml", ".yaml", ".j2"):
                yield f
    yield from sorted(ROOT.glob("*.yml"))


def test_production_paths_reference_no_test_code():
    found = [f"{f.relative_to(ROOT)}:{n}: {line.strip()}"
             for f in production_files()
             for n, line in enumerate(f.read_text().splitlines(), 1)
             if TEST_CODE.search(line)]
    assert found == []


def test_every_entry_point_runs_the_controller_preflight_first():
    import yaml

    for entry in ("preflight.yml", "validate-link.yml", "bench.yml"):
        plays = yaml.safe_load((ROOT / "playbooks" / entry).read_text())
        assert plays[0].get("ansible.builtin.import_playbook") == "preflight-controller.yml", entry
    site = yaml.safe_load((ROOT / "playbooks/site.yml").read_text())
    assert site[0]["ansible.builtin.import_playbook"] == "preflight.yml"
