#!/usr/bin/python
"""Find out what configures the QSFP rails: renderer, netplan files, NetworkManager profiles."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: qsfp_netstate
short_description: What configures the QSFP rails (renderer, netplan files, NetworkManager profiles)
description:
  - Reads the netplan files (C(/lib/netplan), C(/etc/netplan), C(/run/netplan)) in the
    order netplan does, the NetworkManager profiles and devices (C(nmcli -t)) and the
    addresses on each rail (C(ip -j addr)).
  - Reports the renderer in force (the last top-level C(network.renderer) read), the
    netplan definitions and NetworkManager profiles that touch each rail and the
    addresses they put there, which of them are foreign, and what a takeover would
    change (files to move or strip, profiles whose autoconnect to turn off).
  - A profile NetworkManager stores as a netplan file (C(/etc/netplan/90-NM-<uuid>.yaml), Ubuntu
    23.10 and later, DGX OS) counts as a NetworkManager profile, not as netplan configuration.
  - Logic in C(module_utils/spark_cluster/link/netconf.py). Changes nothing; runs in check mode.
options:
  rails:
    description: This node's rails, C({interface, address}) each.
    type: list
    elements: dict
    required: true
  renderer:
    description:
      - Renderer wanted for the rails; C(auto) takes the one in force.
    type: str
    choices: [auto, networkd, NetworkManager]
    default: auto
  netplan_path:
    description: The role's own netplan file.
    type: path
    default: /etc/netplan/40-cx7.yaml
  takeover:
    description: Whether foreign static addresses in another subnet may be replaced.
    type: bool
    default: false
  root:
    description: Root the netplan directories are read under (tests only).
    type: path
    default: /
author:
  - Spark cluster maintainers
"""

EXAMPLES = r"""
- name: What configures the rails
  qsfp_netstate:
    rails: "{{ spark_rails }}"
    renderer: auto

- name: Show it
  ansible.builtin.debug:
    msg: "{{ ansible_facts.qsfp_netstate.summary }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts set by the module.
  returned: always
  type: dict
  contains:
    qsfp_netstate:
      description: The readings and what follows from them.
      returned: always
      type: dict
      contains:
        default_renderer:
          description: The netplan renderer in force (C(networkd) when no file sets one).
          type: str
          sample: NetworkManager
        default_renderer_file:
          description: The file whose top-level renderer is in force, or null.
          type: str
          sample: /etc/netplan/01-network-manager-all.yaml
        renderer:
          description: The renderer the rails will get.
          type: str
        nm_running:
          description: Whether NetworkManager answers.
          type: bool
        networkd_running:
          description: Whether systemd-networkd is active.
          type: bool
        files:
          description: Netplan files in read order with C(path), C(own), C(global_renderer),
            C(rail_ids), C(other_ids), C(action) (C(keep), C(own), C(move), C(strip)) and
            C(nm_uuids), the NetworkManager profiles the file stores (C(90-NM-<uuid>.yaml) on
            Ubuntu 23.10 and later; such a file is kept, its profile handled as a profile).
          type: list
          elements: dict
        rails:
          description: Per rail C(interface), C(wanted), C(managed_by), C(nm_state),
            C(nm_connection), C(addresses), C(netplan), C(nm_profiles), C(foreign),
            C(conflicts).
          type: list
          elements: dict
        problems:
          description: What stops the role before any change, each with what to do.
          type: list
          elements: str
        plan:
          description: What a takeover changes (C(files), C(nm_profiles)).
          type: dict
        apply:
          description: The renderer's commands for the rails only (C({argv, may_fail})).
          type: list
          elements: dict
        restore:
          description: Commands that re-apply the rails with the renderer of the files as they are.
          type: list
          elements: dict
        summary:
          description: Human lines for the preflight report.
          type: list
          elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.link.readings import read_netstate


def main():
    module = AnsibleModule(
        argument_spec=dict(
            rails=dict(type="list", elements="dict", required=True),
            renderer=dict(type="str", default="auto", choices=["auto", "networkd", "NetworkManager"]),
            netplan_path=dict(type="path", default="/etc/netplan/40-cx7.yaml"),
            takeover=dict(type="bool", default=False),
            root=dict(type="path", default="/"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    state = read_netstate(module, p["rails"], p["renderer"], p["netplan_path"], p["takeover"], p["root"])
    module.exit_json(changed=False, ansible_facts={"qsfp_netstate": state})


if __name__ == "__main__":
    main()
