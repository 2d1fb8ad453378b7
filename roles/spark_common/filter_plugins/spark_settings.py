"""Renamed and removed settings, refused with the new name or the reason (one wording for
the preflight, which lists them with every other problem, and for roles/spark_common's
facts, which refuse them when an entry point runs without the preflight).

    {{ hosts | spark_stale_settings(hostvars, renamed, removed) }}   -> [lines]

renamed: {old: new}; removed: {old: why} (roles/spark_common/vars/main.yml). A line per old
name set for any of the hosts (the command line's extra vars are set for every host).
"""

from __future__ import annotations


def spark_stale_settings(hosts, hostvars, renamed, removed):
    renamed, removed = dict(renamed or {}), dict(removed or {})
    names = sorted(set(renamed) | set(removed))
    # hostvars[h] computes the host's variables each time: once per host, not once per name
    seen = {}
    for h in hosts:
        host_vars = hostvars[h]
        seen[str(h)] = {old for old in names if old in host_vars}
    lines = []
    for old in names:
        where = [h for h in seen if old in seen[h]]
        if not where:
            continue
        hosts_text = ", ".join(where)
        if old in renamed:
            lines.append(f"{old} is now {renamed[old]} (set for {hosts_text}): set the new name (the argument "
                         "spec of its role describes it) and remove the old one from the inventory or the command line")
        else:
            lines.append(f"{old} is gone (set for {hosts_text}): {removed[old]}. Remove it from the inventory "
                         "or the command line")
    return lines


class FilterModule:
    def filters(self):
        return {"spark_stale_settings": spark_stale_settings}
