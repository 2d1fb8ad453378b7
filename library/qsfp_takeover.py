#!/usr/bin/python
"""Take the QSFP rails over from other netplan files and NetworkManager profiles, or restore them."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: qsfp_takeover
short_description: Take the QSFP rails over (journaled) or restore what was there
description:
  - C(state=takeover) applies the plan of M(qsfp_netstate) (RV(ansible_facts.qsfp_netstate.plan)), in which
    netplan files that define only rails are moved away, files that define rails and
    other interfaces get the rails' definitions taken out, and NetworkManager profiles
    on the rails get C(connection.autoconnect no) (never deleted). The originals go to
    one timestamped directory under O(journal_root) first (C(files/) and C(manifest.json)).
  - A profile NetworkManager stores as a netplan file (C(90-NM-<uuid>.yaml)) is disabled
    through nmcli like any other, which rewrites that file; the file is never moved or
    stripped, only copied into the journal for the record.
  - C(state=restore) puts the files of the journals back, newest first (or only
    O(journal)), turns the recorded profiles' autoconnect back on (a profile that no
    longer exists is reported, not fatal) and removes the role's own netplan file when
    O(remove_own) is set and the file is still the role's.
  - Applying the result to the interfaces is the caller's job (the renderer's commands
    from M(qsfp_netstate)). Logic in C(module_utils/spark_cluster/link/netconf.py).
options:
  state:
    description: What to do.
    type: str
    choices: [takeover, restore]
    default: takeover
  plan:
    description: RV(ansible_facts.qsfp_netstate.plan) (C(state=takeover)).
    type: dict
    default: {}
  rails:
    description: The rail interface names.
    type: list
    elements: str
    default: []
  journal_root:
    description: Where the journal directories live.
    type: path
    default: /var/lib/spark-cluster/qsfp-journal
  journal:
    description: Restore only this journal directory (C(state=restore)).
    type: path
  remove_own:
    description: With C(state=restore), remove O(netplan_path) when it is the role's file.
    type: bool
    default: false
  netplan_path:
    description: The role's own netplan file.
    type: path
    default: /etc/netplan/40-cx7.yaml
  root:
    description: Root the paths are under (tests only).
    type: path
    default: /
author:
  - Spark cluster maintainers
"""

EXAMPLES = r"""
- name: Take the rails over
  qsfp_takeover:
    plan: "{{ ansible_facts.qsfp_netstate.plan }}"
    rails: "{{ spark_rails | map(attribute='interface') | list }}"

- name: Put everything back
  qsfp_takeover:
    state: restore
    remove_own: true
"""

RETURN = r"""
journal:
  description: The journal directory written by a takeover (null when nothing was to do).
  returned: always
  type: str
  sample: /var/lib/spark-cluster/qsfp-journal/20261129T231500Z
restored:
  description: Journal directories restored (C(state=restore)).
  returned: always
  type: list
  elements: str
files:
  description: Netplan files moved, stripped or put back.
  returned: always
  type: list
  elements: str
profiles:
  description: NetworkManager profiles whose autoconnect was changed.
  returned: always
  type: list
  elements: str
warnings_seen:
  description: Profiles that could not be changed (for example no longer there).
  returned: always
  type: list
  elements: str
"""

import datetime
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.spark_cluster.link.netconf import (
    active_journals,
    is_own,
    journal_restore,
    journal_takeover,
)


def set_autoconnect(module, profile, value, seen):
    if not module.get_bin_path("nmcli"):
        seen.append(f"profile '{profile['name']}' ({profile['uuid']}): nmcli not found, autoconnect not changed")
        return False
    rc, _out, err = module.run_command(
        ["nmcli", "connection", "modify", "uuid", profile["uuid"], "connection.autoconnect", value])
    if rc != 0:
        seen.append(f"profile '{profile['name']}' ({profile['uuid']}): autoconnect not set to "
                    f"{value}: {err.strip() or rc}")
        return False
    return True


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="takeover", choices=["takeover", "restore"]),
            plan=dict(type="dict", default={}),
            rails=dict(type="list", elements="str", default=[]),
            journal_root=dict(type="path", default="/var/lib/spark-cluster/qsfp-journal"),
            journal=dict(type="path"),
            remove_own=dict(type="bool", default=False),
            netplan_path=dict(type="path", default="/etc/netplan/40-cx7.yaml"),
            root=dict(type="path", default="/"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = dict(changed=False, journal=None, restored=[], files=[], profiles=[], warnings_seen=[])

    if p["state"] == "takeover":
        plan = {"files": p["plan"].get("files") or [], "nm_profiles": p["plan"].get("nm_profiles") or []}
        if not plan["files"] and not plan["nm_profiles"]:
            module.exit_json(**result)
        result["changed"] = True
        result["files"] = [f["path"] for f in plan["files"]]
        result["profiles"] = [f"{x['name']} ({x['uuid']})" for x in plan["nm_profiles"]]
        if module.check_mode:
            module.exit_json(**result)
        import yaml

        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        try:
            directory, _manifest = journal_takeover(plan, p["rails"], p["journal_root"], stamp,
                                                    root=p["root"], dump=yaml.safe_dump, load=yaml.safe_load)
        except (OSError, yaml.YAMLError) as exc:
            module.fail_json(msg=f"takeover of the rails failed: {exc}", **result)
        result["journal"] = directory
        for profile in plan["nm_profiles"]:
            set_autoconnect(module, profile, "no", result["warnings_seen"])
        if result["warnings_seen"]:
            module.fail_json(msg="could not turn autoconnect off: " + "; ".join(result["warnings_seen"])
                             + f". Originals are in {directory}.", **result)
        module.exit_json(**result)

    journals = [p["journal"]] if p["journal"] else active_journals(p["journal_root"], p["root"])
    journals = [j for j in journals if j and os.path.isdir(j)]
    own = os.path.join(p["root"], p["netplan_path"].lstrip("/"))
    own_present = False
    if p["remove_own"] and os.path.exists(own):
        with open(own, encoding="utf-8") as handle:
            own_present = is_own(handle.read())
    if not journals and not own_present:
        module.exit_json(**result)
    result["changed"] = True
    result["restored"] = journals
    if module.check_mode:
        module.exit_json(**result)
    if own_present:  # first: a journaled foreign file at the same path comes back below
        os.unlink(own)
        result["files"].append(p["netplan_path"])
    for directory in journals:
        try:
            manifest = journal_restore(directory, p["root"])
        except (OSError, ValueError, KeyError) as exc:
            module.fail_json(msg=f"cannot restore {directory}: {exc}", **result)
        result["files"] += [f["path"] for f in manifest["files"]]
        for profile in manifest["nm_profiles"]:
            if set_autoconnect(module, profile, "yes", result["warnings_seen"]):
                result["profiles"].append(f"{profile['name']} ({profile['uuid']})")
    for line in result["warnings_seen"]:
        module.warn(line)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
