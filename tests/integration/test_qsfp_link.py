"""The QSFP rails are addressed, at full MTU, routed directly, and nothing else moved."""

import ipaddress

import yaml
from conftest import ip_json, lab_flavour


def peers_of(host, hostvars, index):
    groups = hostvars["groups"]
    me = hostvars["inventory_hostname"]
    return [h for h in groups["spark"] if h != me]


def test_netplan_file_is_private_and_lists_the_rails(host, rails):
    f = host.file("/etc/netplan/40-cx7.yaml")
    assert f.exists
    assert f.user == "root"
    assert f.mode == 0o600
    for rail in rails:
        assert rail["interface"] in f.content_string
        assert rail["address"] in f.content_string
    assert "routes:" not in f.content_string
    assert "dhcp4: false" in f.content_string


def test_rails_are_up_with_their_address_and_mtu(host, rails):
    for rail in rails:
        (link,) = ip_json(host, "addr", "show", "dev", rail["interface"])
        assert link["mtu"] == 9000
        assert "UP" in link["flags"]
        v4 = [f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"] if a["family"] == "inet"]
        assert v4 == [rail["address"]], f"{rail['interface']} holds {v4}"
        assert not [a for a in link["addr_info"] if a.get("scope") == "link" and a["family"] == "inet"]


def test_route_to_each_peer_leaves_through_its_rail(host, hostvars, rails):
    for index, rail in enumerate(rails):
        for peer in peers_of(host, hostvars, index):
            address = hostvars["hostvars"][peer]["spark_rails"][index]["address"].split("/")[0]
            (route,) = ip_json(host, "route", "get", address)
            assert route["dev"] == rail["interface"]
            assert "gateway" not in route
            assert route["prefsrc"] == rail["address"].split("/")[0]


def test_default_route_and_management_interface_untouched(host, hostvars):
    routes = ip_json(host, "route", "show", "default")
    assert len(routes) == 1
    assert routes[0]["dev"] == "eth0"
    assert routes[0]["gateway"] == "198.19.0.1"
    (eth0,) = ip_json(host, "addr", "show", "dev", "eth0")
    v4 = [a["local"] for a in eth0["addr_info"] if a["family"] == "inet"]
    assert v4 == [hostvars["spark_mgmt_address"]]
    rail_nets = [ipaddress.ip_interface(r["address"]).network for r in hostvars["spark_rails"]]
    for route in ip_json(host, "route", "show"):
        if route.get("dev") in [r["interface"] for r in hostvars["spark_rails"]]:
            assert route["dst"] != "default"
            assert ipaddress.ip_network(route["dst"]) in rail_nets


def test_peers_answer_full_mtu_by_name(host, hostvars, rails):
    for index, _rail in enumerate(rails):
        for peer in peers_of(host, hostvars, index):
            name = f"{peer}-qsfp{index}"
            cmd = host.run(f"ping -c 2 -i 0.2 -W 2 -M do -s 8972 {name}")
            assert cmd.rc == 0, cmd.stdout + cmd.stderr


def test_netplan_file_sets_the_renderer_per_rail_never_globally(host, rails):
    doc = yaml.safe_load(host.file("/etc/netplan/40-cx7.yaml").content_string)
    assert "renderer" not in doc["network"]
    want = "NetworkManager" if lab_flavour(host.backend.host) == "networkmanager" else "networkd"
    for rail in rails:
        assert doc["network"]["ethernets"][rail["interface"]]["renderer"] == want


def test_renderer_service_enabled_for_reboots(host):
    flavour = lab_flavour(host.backend.host)
    svc = host.service("NetworkManager" if flavour == "networkmanager" else "systemd-networkd")
    assert svc.is_running
    assert svc.is_enabled
    if flavour == "networkmanager":
        # DGX OS as shipped: the global renderer stays NetworkManager's
        nm_all = host.file("/etc/netplan/01-network-manager-all.yaml")
        assert "renderer: NetworkManager" in nm_all.content_string
