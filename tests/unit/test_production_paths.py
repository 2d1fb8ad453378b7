"""Production paths hold only what runs on real Sparks; test doubles and lab stand-ins
live in tests/ and lab/ (FakeNetlink: tests/unit/fakenetlink.py; the fake model:
tests/lab/hub_seed.py; the stand-in recipe: tests/lab/standin), wired in by
lab/prepare.yml, which `make lab` and molecule's prepare step run before site.yml."""
from __future__ import annotations

import re

from conftest import ROOT

PRODUCTION = ["playbooks", "roles", "library", "module_utils"]
# (detecting a stand-in image by its label is production logic: "standin" itself is allowed)
TEST_CODE = re.compile(r"tests/|\bFake[A-Z]\w*|from_sparkfs|seed_fake|lab_seed|LAB_MODEL")


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


def test_the_lab_stages_its_stand_ins_before_site_yml():
    makefile = (ROOT / "Makefile").read_text()
    lab = makefile[makefile.index("\nlab:"):]
    assert lab.index("lab/prepare.yml") < lab.index("LAB_INVENTORY) site.yml")
    prepare = (ROOT / "lab/prepare.yml").read_text()
    assert "tests/lab/standin/publish.yml" in prepare and "tests/lab/hub_seed.py" in prepare
    molecule = (ROOT / "molecule/default/molecule.yml").read_text()
    assert "prepare: prepare.yml" in molecule
    assert molecule.index("- prepare") < molecule.index("- converge")
    assert "lab/prepare.yml" in (ROOT / "molecule/default/prepare.yml").read_text()


def test_the_networkd_scenario_seeds_the_rails_only_and_its_preflight_says_so():
    """networkd's prepare is the default's rail seeding alone (no stand-ins); its preflight
    runs whole with the extra vars of vars/preflight.yml, given to its converge and (through
    SPARK_LAB_EXTRA_VARS) to the verify's site.yml runs. Only these two values may differ."""
    import yaml

    default = yaml.safe_load((ROOT / "molecule/default/prepare.yml").read_text())
    assert [p["ansible.builtin.import_playbook"] for p in default] == ["seed_rails.yml", "../../lab/prepare.yml"]
    seed = (ROOT / "molecule/default/seed_rails.yml").read_text()
    assert "import_playbook" not in seed and "40-cx7.yaml" in seed
    networkd = yaml.safe_load((ROOT / "molecule/networkd/molecule.yml").read_text())["ansible"]
    assert networkd["playbooks"]["prepare"] == "../default/seed_rails.yml"
    prefix = "${MOLECULE_PROJECT_DIRECTORY}/"
    extra = [a.split("@", 1)[1] for a in networkd["executor"]["args"]["ansible_playbook"] if a.startswith("--extra-vars=@")]
    assert extra == [networkd["env"]["SPARK_LAB_EXTRA_VARS"]]
    assert extra[0].startswith(prefix)
    values = yaml.safe_load((ROOT / extra[0][len(prefix):]).read_text())
    assert values == {"hf_cache_download": True, "spark_lab_runtime_ref": ""}
