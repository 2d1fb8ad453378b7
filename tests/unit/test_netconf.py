"""module_utils/spark_cluster/link/netconf.py: what configures the rails, on DGX OS-shaped readings."""

import json
import pathlib

import pytest
import yaml

from spark_cluster.link import netconf as nc

FIX = pathlib.Path(__file__).parent / "fixtures" / "netconf"
RAILS = [
    {"interface": "enp1s0f1np1", "address": "198.18.100.10/24"},
    {"interface": "enP2p1s0f1np1", "address": "198.18.101.10/24"},
]
OWN = "/etc/netplan/40-cx7.yaml"

NM_ALL = "network:\n  version: 2\n  renderer: NetworkManager\n"
NVIDIA_40 = """network:
  version: 2
  ethernets:
    enp1s0f1np1:
      addresses: [192.168.100.10/24]
      mtu: 9000
      dhcp4: false
      link-local: []
    enP2p1s0f1np1:
      addresses: [192.168.101.10/24]
      mtu: 9000
"""
OLD_OWN = """# Ansible managed
# QSFP rails of spark-head (qsfp_link role). Only the ConnectX-7 twins:
network:
  version: 2
  renderer: networkd
  ethernets:
    enp1s0f1np1:
      addresses: [198.18.100.10/24]
"""
MIXED = """network:
  version: 2
  ethernets:
    enP7s7:
      dhcp4: true
    enp1s0f1np1:
      addresses: [10.50.0.1/24]
"""


def files(*pairs):
    return [(path, text, yaml.safe_load(text)) for path, text in pairs]


def nm_readings():
    conns = nc.parse_nm_connections((FIX / "nm-connections.txt").read_text())
    details = {}
    for name in ("wired1", "wired2", "mgmt", "old"):
        d = nc.parse_nm_details((FIX / f"nm-detail-{name}.txt").read_text())
        details[d["connection.uuid"]] = d
    devices = nc.parse_nm_devices((FIX / "nm-devices.txt").read_text())
    return conns, details, devices


def links():
    return nc.parse_ip_addr(json.loads((FIX / "ip-addr.json").read_text()))


# Ubuntu 23.10+ (DGX OS): NetworkManager keeps its profiles in /etc/netplan/90-NM-<uuid>.yaml
# (shapes and sources: fixtures/netconf/ubuntu-nm/README.md)
UBUNTU = FIX / "ubuntu-nm"
BY_HAND = "5f2c8e1a-93d4-4b7e-a0c6-1e8d2f7b9a35"
WIRED2 = "0b5d7a3e-2222-4c2e-9a53-000000000002"
MGMT = "6c1d0f2a-3333-4a8e-8f00-000000000003"
BY_HAND_FILE = f"/etc/netplan/90-NM-{BY_HAND}.yaml"


def stage_files(stage):
    return [(f"/etc/netplan/{f.name}", f.read_text(), yaml.safe_load(f.read_text()))
            for f in sorted((UBUNTU / stage / "etc" / "netplan").glob("*.yaml"))]


def ubuntu_state(stage, takeover=True, netplan=None):
    base = UBUNTU / stage
    details = {}
    for f in sorted((base / "nmcli").glob("detail-*.txt")):
        d = nc.parse_nm_details(f.read_text())
        details[d["connection.uuid"]] = d
    return nc.build_state(
        RAILS, stage_files(stage) if netplan is None else netplan,
        nc.parse_ip_addr(json.loads((base / "ip-addr.json").read_text())), True,
        nc.parse_nm_connections((base / "nmcli" / "connections.txt").read_text()), details,
        nc.parse_nm_devices((base / "nmcli" / "devices.txt").read_text()), own_path=OWN, takeover=takeover)


def profile(rep, name):
    return next(p for p in rep["nm_profiles"] if p["name"] == name)


def test_netplan_files_read_order_and_shadowing():
    listing = {
        "/lib/netplan": ["00-base.yaml", "40-cx7.yaml"],
        "/etc/netplan": ["40-cx7.yaml", "01-network-manager-all.yaml", "README"],
        "/run/netplan": ["90-x.yaml"],
    }
    assert nc.netplan_files(listing) == [
        "/lib/netplan/00-base.yaml",
        "/etc/netplan/01-network-manager-all.yaml",
        "/etc/netplan/40-cx7.yaml",
        "/run/netplan/90-x.yaml",
    ]


def test_last_global_renderer_wins_and_files_are_classified():
    view = nc.netplan_view(
        files(("/etc/netplan/01-network-manager-all.yaml", NM_ALL), (OWN, OLD_OWN),
              ("/etc/netplan/50-mixed.yaml", MIXED)),
        [{"interface": r["interface"], "mac": None} for r in RAILS], OWN)
    # the role's old file (a global renderer: networkd) moved the whole system's default
    assert view["default_renderer"] == "networkd"
    assert view["default_renderer_file"] == OWN
    actions = {f["path"]: f["action"] for f in view["files"]}
    assert actions == {"/etc/netplan/01-network-manager-all.yaml": "keep", OWN: "own",
                       "/etc/netplan/50-mixed.yaml": "strip"}
    defs = view["rails"]["enp1s0f1np1"]
    assert [d["file"] for d in defs] == [OWN, "/etc/netplan/50-mixed.yaml"]
    assert defs[1]["effective_renderer"] == "networkd"
    assert not view["problems"]


def test_nvidia_file_at_the_roles_path_is_moved_not_merged():
    view = nc.netplan_view(
        files(("/etc/netplan/01-network-manager-all.yaml", NM_ALL), (OWN, NVIDIA_40)),
        [{"interface": r["interface"], "mac": None} for r in RAILS], OWN)
    assert view["default_renderer"] == "NetworkManager"
    row = view["files"][1]
    assert row["own"] is False and row["action"] == "move"
    assert row["rail_ids"] == ["enp1s0f1np1", "enP2p1s0f1np1"]
    assert view["rails"]["enP2p1s0f1np1"][0]["effective_renderer"] == "NetworkManager"


def test_mixed_file_at_the_roles_path_is_refused():
    view = nc.netplan_view(files((OWN, MIXED)), [{"interface": "enp1s0f1np1", "mac": None}], OWN)
    assert any("qsfp_link_netplan_path" in p for p in view["problems"])


def test_match_pattern_and_bond_member_are_problems():
    text = """network:
  ethernets:
    all-en:
      match: {name: "en*"}
      dhcp4: true
  bonds:
    bond0:
      interfaces: [enP2p1s0f1np1]
"""
    view = nc.netplan_view(files(("/etc/netplan/10-cloud.yaml", text)),
                           [{"interface": r["interface"], "mac": None} for r in RAILS], OWN)
    joined = " ".join(view["problems"])
    assert "all-en matches a rail by a match: block" in joined
    assert "bond0 uses rail enP2p1s0f1np1 as a member" in joined


def test_match_by_mac_and_set_name():
    d = nc.definitions("/f", {"network": {"ethernets": {"x": {
        "match": {"macaddress": "02:42:C6:12:65:0B"}, "set-name": "enP2p1s0f1np1"}}}})[0]
    assert nc.matches(d, "enP2p1s0f1np1")
    assert nc.matches(dict(d, set_name=None), "whatever", "02:42:c6:12:65:0b")
    assert not nc.matches(dict(d, set_name=None), "whatever", "02:42:c6:12:65:0c")


def test_strip_rails_keeps_the_other_definitions():
    doc = nc.strip_rails(yaml.safe_load(MIXED), ["enp1s0f1np1"])
    assert doc["network"]["ethernets"] == {"enP7s7": {"dhcp4": True}}
    assert "ethernets" not in nc.strip_rails(yaml.safe_load(NVIDIA_40),
                                             ["enp1s0f1np1", "enP2p1s0f1np1"])["network"]


def test_nmcli_terse_escapes():
    assert nc.split_terse(r"rail static\: old:uuid:x\\y:") == ["rail static: old", "uuid", "x\\y", ""]
    conns = nc.parse_nm_connections((FIX / "nm-connections.txt").read_text())
    assert conns[3]["name"] == "rail static: old"
    assert conns[1]["device"] is None and conns[1]["autoconnect"] is True
    with pytest.raises(nc.NetconfError):
        nc.parse_nm_connections("broken line")


def test_profiles_touching_a_rail():
    conns, details, _devices = nm_readings()
    profiles = {c["name"]: nc.nm_profile(c, details.get(c["uuid"], {})) for c in conns}
    mac = "02:42:c6:12:65:0b"
    assert nc.profile_touches(profiles["Wired connection 1"], "enp1s0f1np1")
    assert nc.profile_touches(profiles["Wired connection 2"], "enP2p1s0f1np1", mac)
    assert not nc.profile_touches(profiles["Wired connection 2"], "enp1s0f1np1", "02:42:c6:12:64:0a")
    assert nc.profile_touches(profiles["rail static: old"], "enP2p1s0f1np1")
    assert not nc.profile_touches(profiles["spark-lab-mgmt"], "enp1s0f1np1")
    assert not nc.profile_touches(profiles["lo"], "enp1s0f1np1")
    assert profiles["rail static: old"]["ipv4_addresses"] == ["10.9.9.2/24", "10.9.8.2/24"]


def dgx_state(takeover=False, renderer="auto", netplan=None, nm_running=True):
    conns, details, devices = nm_readings()
    netplan = netplan if netplan is not None else files(
        ("/etc/netplan/01-network-manager-all.yaml", NM_ALL), (OWN, NVIDIA_40))
    return nc.build_state(RAILS, netplan, links(), nm_running, conns if nm_running else [],
                          details, devices if nm_running else {}, requested_renderer=renderer,
                          own_path=OWN, takeover=takeover)


def test_dgx_os_as_shipped_report():
    state = dgx_state()
    assert state["default_renderer"] == "NetworkManager"
    assert state["renderer"] == "NetworkManager"
    r0, r1 = state["rails"]
    assert r0["managed_by"] == "NetworkManager"
    assert r0["nm_connection"] == "Wired connection 1"
    kinds = {(f["address"], f["kind"]) for f in r0["foreign"]}
    assert ("169.254.33.7/16", "link-local") in kinds
    assert ("192.168.100.10/24", "static") in kinds
    assert not [f for f in r0["foreign"] if f["address"].startswith("fe80")]
    # the old profile's 10.9.x and NVIDIA's 192.168.101.10 are static, other subnets
    assert {c["address"] for c in r1["conflicts"]} == {"192.168.101.10/24", "10.9.9.2/24", "10.9.8.2/24"}
    assert [p["name"] for p in r1["nm_profiles"]] == ["Wired connection 2", "rail static: old"]
    # refused without takeover, naming the rail, the address and the switch
    problems = " ".join(state["problems"])
    assert "enP2p1s0f1np1 holds a foreign static address 10.9.9.2/24" in problems
    assert "qsfp_link_takeover: true" in problems
    assert not dgx_state(takeover=True)["problems"]


def test_takeover_plan_moves_files_and_disables_autoconnect_only():
    plan = dgx_state(takeover=True)["plan"]
    assert plan["files"] == [{"path": OWN, "action": "move",
                              "rail_ids": ["enp1s0f1np1", "enP2p1s0f1np1"]}]
    assert [p["name"] for p in plan["nm_profiles"]] == [
        "Wired connection 1", "Wired connection 2", "rail static: old"]
    assert "spark-lab-mgmt" not in str(plan)


def test_nm_renderer_without_nm_running_is_a_clear_error():
    state = dgx_state(takeover=True, nm_running=False)
    assert state["renderer"] == "NetworkManager"
    (problem,) = state["problems"]
    assert "NetworkManager is not running" in problem
    assert "01-network-manager-all.yaml" in problem
    assert "qsfp_link_renderer: networkd" in problem


def test_apply_commands_touch_only_the_rails():
    names = [r["interface"] for r in RAILS]
    nm = nc.apply_commands("NetworkManager", names, True)
    argvs = [c["argv"] for c in nm]
    assert argvs[0] == ["netplan", "generate"]
    assert ["nmcli", "connection", "up", "netplan-enp1s0f1np1", "ifname", "enp1s0f1np1"] in argvs
    assert not any("apply" in a for a in argvs)
    nd = [c["argv"] for c in nc.apply_commands("networkd", names, True)]
    assert nd[-1] == ["networkctl", "reconfigure", *names]
    assert ["nmcli", "general", "reload", "conf"] in nd
    assert ["nmcli", "general", "reload", "conf"] not in [
        c["argv"] for c in nc.apply_commands("networkd", names, False)]
    assert not any("eth0" in " ".join(a) for a in argvs + nd)


def test_restore_uses_the_restored_files_renderer_and_tolerates_missing_profiles():
    # restored state: NVIDIA's file (no renderer of its own) under NM's global default
    state = dgx_state(takeover=True, renderer="networkd")
    assert state["renderer"] == "networkd"
    restore = state["restore"]
    assert ["networkctl", "reload"] not in [c["argv"] for c in restore]
    connects = [c for c in restore if c["argv"][:3] == ["nmcli", "device", "connect"]]
    assert len(connects) == 2 and all(c["may_fail"] for c in connects)
    # a restored file that renders a rail with networkd is re-applied with networkd
    nd = files(("/etc/netplan/01-network-manager-all.yaml", NM_ALL),
               ("/etc/netplan/30-rail.yaml",
                "network:\n  ethernets:\n    enp1s0f1np1:\n      renderer: networkd\n"
                "      addresses: [198.18.100.10/24]\n"))
    restore = dgx_state(takeover=True, netplan=nd)["restore"]
    assert ["networkctl", "reconfigure", "enp1s0f1np1"] in [c["argv"] for c in restore]
    assert ["nmcli", "device", "connect", "enP2p1s0f1np1"] in [c["argv"] for c in restore]


def test_target_renderer():
    assert nc.target_renderer("auto", "NetworkManager") == "NetworkManager"
    assert nc.target_renderer("auto", "weird") == "networkd"
    with pytest.raises(nc.NetconfError):
        nc.target_renderer("ifupdown", "networkd")


def test_summary_lines_name_everything():
    lines = nc.summary_lines(dgx_state(takeover=True))
    text = "\n".join(lines)
    assert "netplan renderer in force: NetworkManager (/etc/netplan/01-network-manager-all.yaml)" in text
    assert "/etc/netplan/40-cx7.yaml: defines enp1s0f1np1, enP2p1s0f1np1 -> move" in text
    assert "'Wired connection 1' (autoconnect, active)" in text
    assert "169.254.33.7/16 link-local" in text


def test_journal_takeover_and_restore_round_trip(tmp_path):
    netplan = tmp_path / "etc" / "netplan"
    netplan.mkdir(parents=True)
    (netplan / "40-cx7.yaml").write_text(NVIDIA_40)
    (netplan / "40-cx7.yaml").chmod(0o600)
    (netplan / "50-mixed.yaml").write_text(MIXED)
    (netplan / "50-mixed.yaml").chmod(0o644)
    plan = {"files": [{"path": OWN, "action": "move", "rail_ids": ["enp1s0f1np1", "enP2p1s0f1np1"]},
                      {"path": "/etc/netplan/50-mixed.yaml", "action": "strip", "rail_ids": ["enp1s0f1np1"]}],
            "nm_profiles": [{"uuid": "u1", "name": "Wired connection 1", "filename": None,
                             "interface": "enp1s0f1np1"}]}
    rails = ["enp1s0f1np1", "enP2p1s0f1np1"]
    journal = "/var/lib/spark-cluster/qsfp-journal"
    directory, manifest = nc.journal_takeover(plan, rails, journal, "20261129T230000Z", root=str(tmp_path),
                                              dump=yaml.safe_dump, load=yaml.safe_load)
    assert directory.endswith("qsfp-journal/20261129T230000Z")
    assert not (netplan / "40-cx7.yaml").exists()
    stripped = yaml.safe_load((netplan / "50-mixed.yaml").read_text())
    assert stripped["network"]["ethernets"] == {"enP7s7": {"dhcp4": True}}
    assert oct((netplan / "50-mixed.yaml").stat().st_mode & 0o777) == "0o644"
    assert manifest["nm_profiles"][0]["uuid"] == "u1"
    # a second takeover in the same second gets its own directory
    (netplan / "60-x.yaml").write_text(NVIDIA_40)
    second, _ = nc.journal_takeover({"files": [{"path": "/etc/netplan/60-x.yaml", "action": "move",
                                                "rail_ids": rails}], "nm_profiles": []},
                                    rails, journal, "20261129T230000Z", root=str(tmp_path),
                                    dump=yaml.safe_dump, load=yaml.safe_load)
    assert second.endswith("20261129T230000Z-1")
    assert nc.active_journals(journal, str(tmp_path)) == [second, directory]
    for d in nc.active_journals(journal, str(tmp_path)):
        nc.journal_restore(d, str(tmp_path))
    assert (netplan / "40-cx7.yaml").read_text() == NVIDIA_40
    assert (netplan / "40-cx7.yaml").stat().st_mode & 0o777 == 0o600
    assert (netplan / "50-mixed.yaml").read_text() == MIXED
    assert (netplan / "60-x.yaml").read_text() == NVIDIA_40
    assert nc.active_journals(journal, str(tmp_path)) == []
    assert pathlib.Path(directory + ".restored", "manifest.json").exists()


def test_nm_netplan_profile_on_a_rail_is_reported_as_a_profile_not_as_netplan():
    state = ubuntu_state("before", takeover=False)
    # NetworkManager's files are neither a match: problem nor netplan files to take over
    assert not [p for p in state["problems"] if "match: block" in p]
    assert {f["path"]: (f["action"], f["nm_uuids"]) for f in state["files"]} == {
        "/etc/netplan/01-network-manager-all.yaml": ("keep", []),
        BY_HAND_FILE: ("keep", [BY_HAND]),
        f"/etc/netplan/90-NM-{MGMT}.yaml": ("keep", [MGMT])}
    r0, r1 = state["rails"]
    assert r0["netplan"] == []
    by_hand = profile(r0, "rail0-by-hand")
    assert by_hand["netplan"] is False and by_hand["netplan_file"] == BY_HAND_FILE
    assert by_hand["active"] and by_hand["bound"] and by_hand["addresses"] == ["192.168.100.10/24"]
    (conflict,) = r0["conflicts"]
    assert conflict["address"] == "192.168.100.10/24"
    assert conflict["source"] == f"NetworkManager profile 'rail0-by-hand' ({BY_HAND}) in {BY_HAND_FILE}"
    assert profile(r1, "Wired connection 2")["netplan_file"] is None
    (problem,) = state["problems"]
    assert "enp1s0f1np1 holds a foreign static address 192.168.100.10/24" in problem
    assert "'rail0-by-hand' (autoconnect, active, in " + BY_HAND_FILE + ")" in "\n".join(nc.summary_lines(state))


def test_takeover_disables_nm_netplan_profiles_and_leaves_their_files():
    state = ubuntu_state("before")
    assert state["problems"] == []
    plan = state["plan"]
    assert plan["files"] == []
    assert [(p["name"], p["interface"], p["netplan_file"]) for p in plan["nm_profiles"]] == [
        ("rail0-by-hand", "enp1s0f1np1", BY_HAND_FILE), ("Wired connection 2", "enP2p1s0f1np1", None)]
    assert "spark-lab-mgmt" not in str(plan) and MGMT not in str(plan)


def test_run_after_the_takeover_plans_nothing():
    # nmcli ... connection.autoconnect no rewrote rail0-by-hand's file (passthrough) and wrote
    # Wired connection 2's; the role's file is in place and netplan's profiles are up
    state = ubuntu_state("after")
    assert state["problems"] == []
    assert state["plan"] == {"files": [], "nm_profiles": []}
    assert {f["path"]: f["action"] for f in state["files"]}[OWN] == "own"
    assert all(f["action"] == "keep" for f in state["files"] if f["path"] != OWN)
    r0, r1 = state["rails"]
    assert [(d["file"], d["own"]) for d in r0["netplan"]] == [(OWN, True)]
    assert profile(r0, "rail0-by-hand")["autoconnect"] is False
    assert profile(r0, "netplan-enp1s0f1np1")["netplan"] is True
    assert profile(r1, "Wired connection 2")["autoconnect"] is False
    assert profile(r1, "Wired connection 2")["netplan_file"] == f"/etc/netplan/90-NM-{WIRED2}.yaml"
    # the disabled profile's address is reported, but is no conflict: a run without
    # qsfp_link_takeover after the takeover is not refused over what it disabled
    assert r0["nm_connection"] == "netplan-enp1s0f1np1" and r0["conflicts"] == []
    assert r0["foreign"] == [
        {"address": "192.168.100.10/24", "kind": "static", "other_subnet": True, "dormant": True,
         "source": f"NetworkManager profile 'rail0-by-hand' ({BY_HAND}) in {BY_HAND_FILE} (autoconnect off)"}]
    assert ubuntu_state("after", takeover=False)["problems"] == []
    view = nc.netplan_view(stage_files("after"), [{"interface": "enp1s0f1np1", "mac": None},
                                                  {"interface": "enP2p1s0f1np1", "mac": "02:42:c6:12:65:0b"}], OWN)
    assert view["nm_netplan"][BY_HAND] == {"file": BY_HAND_FILE, "id": f"NM-{BY_HAND}", "uuid": BY_HAND,
                                           "name": "rail0-by-hand", "autoconnect": False, "rails": ["enp1s0f1np1"]}
    assert view["nm_netplan"][WIRED2]["rails"] == ["enP2p1s0f1np1"]
    assert view["nm_netplan"][MGMT]["autoconnect"] is True and view["nm_netplan"][MGMT]["rails"] == []


def test_which_profiles_are_netplans_own():
    run = "/run/NetworkManager/system-connections/"

    def conn(name, uuid, filename):
        return {"name": name, "uuid": uuid, "type": "802-3-ethernet", "device": None,
                "autoconnect": True, "filename": run + filename}

    # NetworkManager's own, even named netplan-* (netplan's test_keyfile_ip4_linklocal_ip6_ignore)
    assert nc.nm_profile(conn("netplan-eth1", BY_HAND, f"netplan-NM-{BY_HAND}.nmconnection"), {})["netplan"] is False
    assert nc.nm_profile(conn("x", BY_HAND, f"netplan-NM-{BY_HAND}.nmconnection"), {})["netplan_file"] is None
    # netplan's own profile of a definition, and one of another uuid's NM- id
    assert nc.nm_profile(conn("netplan-enp1s0f1np1", WIRED2, "netplan-enp1s0f1np1.nmconnection"), {})["netplan"]
    assert nc.nm_profile(conn("y", WIRED2, f"netplan-NM-{BY_HAND}.nmconnection"), {})["netplan"]
    # known from the 90-NM file whatever its generated name
    nm_netplan = {WIRED2: {"file": "/etc/netplan/90-NM-x.yaml"}}
    assert nc.nm_profile(conn("netplan-z", WIRED2, "netplan-z.nmconnection"), {}, nm_netplan)["netplan"] is False


WRITEBACK = """network:
  version: 2
  ethernets:
    enp1s0f1np1:
      renderer: NetworkManager
      match: {}
      addresses:
      - "198.18.100.10/24"
      - "10.0.0.5/24"
      networkmanager:
        uuid: "8d3e6f0a-1b2c-3d4e-8f5a-6b7c8d9e0f11"
        name: "netplan-enp1s0f1np1"
"""


@pytest.mark.parametrize("with_own", [True, False])
def test_nm_write_back_of_a_rails_netplan_definition_stays_netplan(with_own):
    # `nmcli connection modify netplan-enp1s0f1np1 +ipv4.addresses 10.0.0.5/24` writes this
    # under netplan's id (netplan's test_keyfile_existing_id): it overrides the rail's
    # definition, so it is moved away (journaled) like any netplan definition of a rail, and
    # netplan's profile is never disabled
    own = [(OWN, (UBUNTU / "after" / "etc" / "netplan" / "40-cx7.yaml").read_text())] if with_own else []
    path = "/etc/netplan/90-NM-8d3e6f0a-1b2c-3d4e-8f5a-6b7c8d9e0f11.yaml"
    view = nc.netplan_view(files(("/etc/netplan/01-network-manager-all.yaml", NM_ALL), *own, (path, WRITEBACK)),
                           [{"interface": r["interface"], "mac": None} for r in RAILS], OWN)
    assert view["problems"] == [] and view["nm_netplan"] == {}
    row = view["files"][-1]
    assert (row["action"], row["rail_ids"], row["nm_uuids"]) == ("move", ["enp1s0f1np1"], [])
    assert view["rails"]["enp1s0f1np1"][-1]["file"] == path
    assert view["rails"]["enp1s0f1np1"][-1]["addresses"] == ["198.18.100.10/24", "10.0.0.5/24"]


def test_restore_renders_a_rail_of_an_nm_netplan_profile_with_networkmanager():
    # default renderer networkd, no netplan definition of rail 0, rail0-by-hand bound to it
    netplan = [f for f in stage_files("before") if "01-network-manager" not in f[0]]
    restore = [c["argv"] for c in ubuntu_state("before", netplan=netplan)["restore"]]
    assert ["nmcli", "device", "connect", "enp1s0f1np1"] in restore
    assert ["networkctl", "reconfigure", "enP2p1s0f1np1"] in restore


def test_journal_keeps_a_copy_of_an_nm_netplan_profile_and_restore_leaves_it_to_nm(tmp_path):
    netplan = tmp_path / "etc" / "netplan"
    netplan.mkdir(parents=True)
    before = (UBUNTU / "before" / "etc" / "netplan" / f"90-NM-{BY_HAND}.yaml").read_text()
    after = (UBUNTU / "after" / "etc" / "netplan" / f"90-NM-{BY_HAND}.yaml").read_text()
    (netplan / f"90-NM-{BY_HAND}.yaml").write_text(before)
    plan = {"files": [], "nm_profiles": [{"uuid": BY_HAND, "name": "rail0-by-hand", "filename": None,
                                          "interface": "enp1s0f1np1", "netplan_file": BY_HAND_FILE}]}
    journal = "/var/lib/spark-cluster/qsfp-journal"
    directory, manifest = nc.journal_takeover(plan, ["enp1s0f1np1"], journal, "20261129T230000Z",
                                              root=str(tmp_path), dump=yaml.safe_dump, load=yaml.safe_load)
    assert (netplan / f"90-NM-{BY_HAND}.yaml").read_text() == before  # left in place
    stored = manifest["nm_profiles"][0]["stored"]
    assert pathlib.Path(directory, stored).read_text() == before and manifest["files"] == []
    assert "stored" not in plan["nm_profiles"][0]
    (netplan / f"90-NM-{BY_HAND}.yaml").write_text(after)  # NetworkManager's autoconnect no
    assert nc.journal_restore(directory, str(tmp_path))["nm_profiles"][0]["uuid"] == BY_HAND
    assert (netplan / f"90-NM-{BY_HAND}.yaml").read_text() == after  # nmcli turns it back on


# ---------------------------------------------------------------- modules

def run_module(module, args, capsys):
    from ansible.module_utils.testing import patch_module_args

    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        module.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def fake_commands(monkeypatch, nm_running=True, stage=None):
    """AnsibleModule.run_command answering like a DGX OS node (fixtures, or the readings of
    one stage of ubuntu-nm/); records calls."""
    from ansible.module_utils.basic import AnsibleModule

    calls = []
    if stage:
        base = UBUNTU / stage
        readings = {"ip": base / "ip-addr.json", "connections": base / "nmcli" / "connections.txt",
                    "devices": base / "nmcli" / "devices.txt"}
        details = {nc.parse_nm_details(f.read_text())["connection.uuid"]: f
                   for f in (base / "nmcli").glob("detail-*.txt")}
    else:
        readings = {"ip": FIX / "ip-addr.json", "connections": FIX / "nm-connections.txt",
                    "devices": FIX / "nm-devices.txt"}
        details = {uuid: FIX / f"nm-detail-{name}.txt" for uuid, name in (
            ("0b5d7a3e-1111-4c2e-9a53-000000000001", "wired1"), ("0b5d7a3e-2222-4c2e-9a53-000000000002", "wired2"),
            ("6c1d0f2a-3333-4a8e-8f00-000000000003", "mgmt"), ("7f00aa11-4444-4b00-8c00-000000000004", "old"))}

    def run_command(self, argv, **kwargs):
        calls.append(list(argv))
        if argv[:2] == ["ip", "-j"]:
            return 0, readings["ip"].read_text(), ""
        if argv[:3] == ["nmcli", "-t", "-f"] and argv[3] == "RUNNING":
            return (0, "running\n", "") if nm_running else (8, "", "Error: NetworkManager is not running.")
        if argv[:2] == ["nmcli", "-t"] and argv[-2:] == ["connection", "show"]:
            return 0, readings["connections"].read_text(), ""
        if argv[:2] == ["nmcli", "-t"] and "uuid" in argv:
            found = details.get(argv[-1])
            return (0, found.read_text(), "") if found else (10, "", "no such connection")
        if argv[:2] == ["nmcli", "-t"] and argv[-1] == "device":
            return 0, readings["devices"].read_text(), ""
        if argv[:3] == ["nmcli", "connection", "modify"]:
            return (0, "", "") if argv[4] in details else (10, "", "Error: unknown connection")
        if argv[0] == "systemctl":
            return 3, "inactive\n", ""
        return 127, "", f"unexpected {argv}"

    monkeypatch.setattr(AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda self, name, *a, **k: f"/usr/bin/{name}")
    return calls


def dgx_root(tmp_path):
    netplan = tmp_path / "etc" / "netplan"
    netplan.mkdir(parents=True)
    (netplan / "01-network-manager-all.yaml").write_text(NM_ALL)
    (netplan / "40-cx7.yaml").write_text(NVIDIA_40)
    return tmp_path


def test_module_qsfp_netstate_on_dgx_os(tmp_path, monkeypatch, capsys):
    import qsfp_netstate

    fake_commands(monkeypatch)
    root = dgx_root(tmp_path)
    rc, out = run_module(qsfp_netstate, {"rails": RAILS, "root": str(root), "takeover": True,
                                         "_ansible_check_mode": True}, capsys)
    assert rc == 0 and out["changed"] is False, out
    state = out["ansible_facts"]["qsfp_netstate"]
    assert state["renderer"] == "NetworkManager" and state["nm_running"] is True
    assert state["problems"] == []
    assert [f["action"] for f in state["files"]] == ["keep", "move"]
    assert any("managed by NetworkManager" in line for line in state["summary"])


def test_module_qsfp_netstate_refuses_nm_renderer_without_nm(tmp_path, monkeypatch, capsys):
    import qsfp_netstate

    fake_commands(monkeypatch, nm_running=False)
    rc, out = run_module(qsfp_netstate, {"rails": RAILS, "root": str(dgx_root(tmp_path))}, capsys)
    state = out["ansible_facts"]["qsfp_netstate"]
    assert any("NetworkManager is not running" in p for p in state["problems"])


def test_module_qsfp_takeover_round_trip_survives_a_missing_profile(tmp_path, monkeypatch, capsys):
    import qsfp_takeover

    from ansible.module_utils.basic import AnsibleModule

    calls = fake_commands(monkeypatch)
    warned = []  # module warnings are process-global: keep them out of later module tests
    monkeypatch.setattr(AnsibleModule, "warn", lambda self, msg: warned.append(msg))
    root = dgx_root(tmp_path)
    plan = {"files": [{"path": OWN, "action": "move", "rail_ids": ["enp1s0f1np1"]}],
            "nm_profiles": [{"uuid": "0b5d7a3e-1111-4c2e-9a53-000000000001", "name": "Wired connection 1",
                             "filename": None, "interface": "enp1s0f1np1"}]}
    journal = "/var/lib/spark-cluster/qsfp-journal"
    rc, out = run_module(qsfp_takeover, {"plan": plan, "rails": ["enp1s0f1np1"], "root": str(root),
                                         "journal_root": journal}, capsys)
    assert rc == 0 and out["changed"] is True, out
    assert not (root / "etc" / "netplan" / "40-cx7.yaml").exists()
    assert ["nmcli", "connection", "modify", "uuid", "0b5d7a3e-1111-4c2e-9a53-000000000001",
            "connection.autoconnect", "no"] in calls
    # nothing to do: unchanged
    rc, out = run_module(qsfp_takeover, {"plan": {"files": [], "nm_profiles": []}, "root": str(root)}, capsys)
    assert out["changed"] is False
    # our file in place, then the profile vanishes before the restore
    (root / "etc" / "netplan" / "40-cx7.yaml").write_text("# x\n# QSFP rails (qsfp_link role)\nnetwork: {}\n")
    manifest = pathlib.Path(out_dir := next((root / journal.lstrip("/")).iterdir())) / "manifest.json"
    data = json.loads(manifest.read_text())
    data["nm_profiles"][0]["uuid"] = "gone"
    manifest.write_text(json.dumps(data))
    rc, out = run_module(qsfp_takeover, {"state": "restore", "remove_own": True, "root": str(root),
                                         "journal_root": journal}, capsys)
    assert rc == 0 and out["changed"] is True, out
    assert (root / "etc" / "netplan" / "40-cx7.yaml").read_text() == NVIDIA_40
    assert out["restored"] == [str(out_dir)]
    assert "Wired connection 1" in out["warnings_seen"][0]
    assert warned == out["warnings_seen"]


def test_modules_take_nm_netplan_profiles_over_once_and_restore_them(tmp_path, monkeypatch, capsys):
    import shutil

    import qsfp_netstate
    import qsfp_takeover
    from ansible.module_utils.basic import AnsibleModule

    monkeypatch.setattr(AnsibleModule, "warn", lambda self, msg: None)
    root = tmp_path / "root"
    shutil.copytree(UBUNTU / "before" / "etc", root / "etc")
    nm_file = root / BY_HAND_FILE.lstrip("/")
    journal = "/var/lib/spark-cluster/qsfp-journal"
    calls = fake_commands(monkeypatch, stage="before")
    _rc, out = run_module(qsfp_netstate, {"rails": RAILS, "root": str(root), "takeover": True,
                                          "_ansible_check_mode": True}, capsys)
    plan = out["ansible_facts"]["qsfp_netstate"]["plan"]
    rc, out = run_module(qsfp_takeover, {"plan": plan, "rails": [r["interface"] for r in RAILS],
                                         "root": str(root), "journal_root": journal}, capsys)
    assert rc == 0 and out["changed"] is True, out
    modified = [c[4] for c in calls if c[:3] == ["nmcli", "connection", "modify"]]
    assert modified == [BY_HAND, WIRED2]
    assert out["files"] == [] and nm_file.read_text() == (UBUNTU / "before" / BY_HAND_FILE.lstrip("/")).read_text()
    # what NetworkManager and the role's apply leave: the second run changes nothing
    shutil.rmtree(root / "etc")
    shutil.copytree(UBUNTU / "after" / "etc", root / "etc")
    calls = fake_commands(monkeypatch, stage="after")
    _rc, out = run_module(qsfp_netstate, {"rails": RAILS, "root": str(root), "takeover": True,
                                          "_ansible_check_mode": True}, capsys)
    state = out["ansible_facts"]["qsfp_netstate"]
    assert state["problems"] == [] and state["plan"] == {"files": [], "nm_profiles": []}
    rc, out = run_module(qsfp_takeover, {"plan": state["plan"], "root": str(root), "journal_root": journal}, capsys)
    assert rc == 0 and out["changed"] is False
    assert not [c for c in calls if c[:3] == ["nmcli", "connection", "modify"]]
    # restore: autoconnect back on through NetworkManager, its files not overwritten
    rc, out = run_module(qsfp_takeover, {"state": "restore", "remove_own": True, "root": str(root),
                                         "journal_root": journal}, capsys)
    assert rc == 0 and out["changed"] is True and out["warnings_seen"] == [], out
    assert [c[4:] for c in calls if c[:3] == ["nmcli", "connection", "modify"]] == [
        [BY_HAND, "connection.autoconnect", "yes"], [WIRED2, "connection.autoconnect", "yes"]]
    assert nm_file.read_text() == (UBUNTU / "after" / BY_HAND_FILE.lstrip("/")).read_text()
    assert not (root / OWN.lstrip("/")).exists()
