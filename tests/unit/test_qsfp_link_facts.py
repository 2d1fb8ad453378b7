"""qsfp_link_facts: everything the qsfp_link role reads before a change in one call, through
the same readings as cx7_facts and qsfp_netstate (spark_cluster.link.readings); the
management side from captured `ip -j` and nmcli output of a lab node."""

import base64
import json
import pathlib

import pytest
from test_cx7 import LAB, REASON, lab_net, veth_sysfs
from test_netconf import RAILS, dgx_root, fake_commands

from spark_cluster.link import readings

MGMT = pathlib.Path(__file__).parent / "fixtures" / "netconf" / "mgmt"


def run_module(module, args, capsys):
    from ansible.module_utils.testing import patch_module_args

    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        module.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def with_management(monkeypatch, calls, default_route=True):
    """Answer the management readings from the captured files, the rest as fake_commands does."""
    from ansible.module_utils.basic import AnsibleModule

    other = AnsibleModule.run_command

    def run_command(self, argv, **kwargs):
        if argv[:5] == ["ip", "-j", "-4", "route", "get"]:
            calls.append(list(argv))
            return (0, (MGMT / "route-get.json").read_text(), "") if default_route else (2, "", "Network is unreachable")
        if argv[:5] == ["ip", "-j", "-4", "addr", "show"]:
            calls.append(list(argv))
            return 0, (MGMT / "addr-show.json").read_text() if argv[-1] == "eth0" else "[]", ""
        if argv[-3:-1] == ["device", "show"]:
            calls.append(list(argv))
            return (0, (MGMT / "nmcli-connection.txt").read_text(), "") if argv[-1] == "eth0" else (10, "", "no device")
        return other(self, argv, **kwargs)

    monkeypatch.setattr(AnsibleModule, "run_command", run_command)


def test_management_side_from_the_lab_nodes_readings():
    route = json.loads((MGMT / "route-get.json").read_text())[0]
    addr = json.loads((MGMT / "addr-show.json").read_text())[0]
    side = readings.management_side(route, addr["addr_info"], "spark-lab-mgmt\n".strip())
    assert side == {"interface": "eth0", "gateway": "198.19.0.1", "addresses": ["198.19.0.10"],
                    "nm_connection": "spark-lab-mgmt"}
    assert readings.management_side({}, [], "") == {"interface": "", "gateway": "", "addresses": [], "nm_connection": ""}


def test_rollback_files_hold_the_bytes_or_say_absent(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "40-cx7.yaml").write_bytes(b"network: {}\n\x00")
    (tmp_path / "etc" / "dir").mkdir()
    got = readings.read_files(["/etc/40-cx7.yaml", "/etc/none.conf", "/etc/dir"], root=str(tmp_path))
    assert base64.b64decode(got["/etc/40-cx7.yaml"]["content"]) == b"network: {}\n\x00"
    assert got["/etc/40-cx7.yaml"]["exists"] is True
    assert got["/etc/none.conf"] == {"exists": False, "content": None}
    assert got["/etc/dir"] == {"exists": True, "content": None}


def test_one_call_reads_the_twins_the_netstate_the_management_side_and_the_rollback(tmp_path, monkeypatch, capsys):
    import qsfp_link_facts

    calls = fake_commands(monkeypatch)
    with_management(monkeypatch, calls)
    monkeypatch.setattr(qsfp_link_facts, "make_netlink", lambda: lab_net(LAB))
    root = dgx_root(tmp_path / "root")
    sysfs = veth_sysfs(tmp_path / "sys", LAB)
    rails = [dict(r, interface=name) for r, name in zip(RAILS, LAB)]
    rc, out = run_module(qsfp_link_facts, {
        "rails": rails, "root": str(root), "sysfs_root": str(sysfs), "fallback_reason": REASON, "takeover": True,
        "rollback_paths": ["/etc/netplan/40-cx7.yaml", "/etc/NetworkManager/conf.d/90-spark-qsfp-unmanaged.conf"],
        "_ansible_check_mode": True}, capsys)
    assert rc == 0 and out["changed"] is False, out
    facts = out["ansible_facts"]
    assert facts["cx7"]["source"] == "fallback" and sorted(facts["cx7"]["by_name"]) == sorted(LAB)
    assert facts["qsfp_netstate"]["renderer"] == "NetworkManager" and facts["qsfp_netstate"]["summary"]
    assert facts["qsfp_mgmt"] == {"interface": "eth0", "gateway": "198.19.0.1", "addresses": ["198.19.0.10"],
                                  "nm_connection": "spark-lab-mgmt"}
    previous = out["rollback"]["/etc/netplan/40-cx7.yaml"]
    assert base64.b64decode(previous["content"]) == (root / "etc/netplan/40-cx7.yaml").read_bytes()
    assert out["rollback"]["/etc/NetworkManager/conf.d/90-spark-qsfp-unmanaged.conf"] == {"exists": False, "content": None}


def test_gather_mgmt_alone_reads_nothing_else(tmp_path, monkeypatch, capsys):
    import qsfp_link_facts

    calls = fake_commands(monkeypatch)
    with_management(monkeypatch, calls)

    def no_netlink():
        raise AssertionError("the twins were read")

    monkeypatch.setattr(qsfp_link_facts, "make_netlink", no_netlink)
    rc, out = run_module(qsfp_link_facts, {"gather": ["mgmt"]}, capsys)
    assert rc == 0 and set(out["ansible_facts"]) == {"qsfp_mgmt"} and "rollback" not in out
    assert [c[:3] for c in calls] == [["ip", "-j", "-4"], ["ip", "-j", "-4"], ["nmcli", "-t", "-g"]]


def test_no_default_route_reads_as_an_empty_management_side(monkeypatch, capsys):
    import qsfp_link_facts

    calls = fake_commands(monkeypatch)
    with_management(monkeypatch, calls, default_route=False)
    rc, out = run_module(qsfp_link_facts, {"gather": ["mgmt"]}, capsys)
    assert rc == 0 and out["ansible_facts"]["qsfp_mgmt"]["interface"] == ""


def test_netstate_without_rails_is_refused(monkeypatch, capsys):
    import qsfp_link_facts

    fake_commands(monkeypatch)
    rc, out = run_module(qsfp_link_facts, {"gather": ["netstate"]}, capsys)
    assert rc == 1 and "needs rails" in out["msg"]
