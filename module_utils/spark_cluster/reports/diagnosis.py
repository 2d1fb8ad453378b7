"""Diagnostic bundle of a node (diagnose.yml): what a maintainer asks for, every secret
scrubbed. Plain functions (stdlib only), used by library/spark_diagnose.py.

Scrubbing, in order: every known secret value (the API key, the HF token, the watchdog
secret: passed by the playbook and read from the node's key files) is replaced wherever
it appears; then patterns catch what was not known: Hugging Face tokens (``hf_...``),
``Bearer ...``, and the values of ``*key*``/``*token*``/``*secret*``/``*password*``
settings (env files, YAML, JSON, command lines). Files that are nothing but a secret
(the key files) are never collected.
"""

from __future__ import annotations

import os
import re

from ..link.roce import ports, rdma_devices, read_gid_table

REDACTED = "***REDACTED***"
MIN_SECRET_LEN = 8
PATTERNS = (
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), "hf_" + REDACTED),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"), r"\1" + REDACTED),
    # NAME=value / name: value / "name": "value" where the name ends in a secret word
    (re.compile(r"(?i)([\"']?[\w.-]*(?:api[_-]?key|token|secret|passw(?:or)?d|psk)[\"']?\s*[=:]\s*[\"']?)"
                r"(?!\*\*\*)[^\s\"',}]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(--(?:api-key|hf-token|token)[= ])\S+"), r"\1" + REDACTED),
)


def scrub(text, secrets=()):
    """``text`` with every secret value and secret-looking setting replaced."""
    out = str(text)
    for secret in sorted({str(s).strip() for s in secrets if s}, key=len, reverse=True):
        if len(secret) >= MIN_SECRET_LEN:
            out = out.replace(secret, REDACTED)
    for pattern, replacement in PATTERNS:
        out = pattern.sub(replacement, out)
    return out


def is_secret_file(path):
    """Files that hold only a secret: never collected."""
    name = os.path.basename(path).lower()
    return name in ("api-key", "api_key", "token", "hf_token") or name.endswith((".key", ".pem", "-key"))


def gid_tables(sysfs_root="/sys"):
    """Text of every RDMA port's non-empty GID entries: index, GID, type, netdev."""
    base = os.path.join(sysfs_root, "class", "infiniband")
    if not os.path.isdir(base):
        return f"no {base}: no RDMA devices on this node\n"
    lines = [f"{hca} port {port} index {e['index']}: {e['gid']} {e['type'] or '?'} {e['ndev'] or '?'}"
             for hca in rdma_devices(sysfs_root)
             for port in ports(sysfs_root, hca)
             for e in read_gid_table(sysfs_root, hca, port)]
    return "\n".join(lines) + "\n" if lines else "no GID entries\n"


def commands(unit, container, rails, config_dir, watchdog_units=()):
    """(file name, argv) of what the bundle holds; commands that do not exist on the
    node leave a note in their file."""
    units = ["-u", unit] + [x for u in watchdog_units for x in ("-u", u)]
    # --all: docker compose writes terminal escapes into its lines, which journalctl would
    # otherwise print as "[238B blob data]" (the runtime's log lost from the bundle)
    journal = ["journalctl", "-b", "--no-pager", "--all"]
    out = [
        ("journal-serving.txt", [*journal, *units]),
        ("journal-spark-units.txt", [*journal, "-u", "spark-*"]),
        ("journal-network-docker.txt", [*journal, "-u", "systemd-networkd",
                                        "-u", "NetworkManager", "-u", "docker", "-n", "3000"]),
        ("runtime-log-tail.txt", ["docker", "logs", "--tail", "3000", "--timestamps", container]),
        ("docker-inspect-runtime.json", ["docker", "inspect", container]),
        ("docker-images.txt", ["docker", "images", "--digests", "--no-trunc"]),
        ("systemctl-status.txt", ["systemctl", "status", "--no-pager", "-l", "--all", "spark-*"]),
        ("ip-d-addr.txt", ["ip", "-d", "addr"]),
        ("ip-route.txt", ["ip", "route", "show", "table", "all"]),
        ("ip-rule.txt", ["ip", "rule"]),
        ("networkctl.txt", ["networkctl", "status", "--no-pager", *[r["interface"] for r in rails]]),
        ("nmcli-devices.txt", ["nmcli", "-f", "all", "device", "status"]),
        ("nmcli-connections.txt", ["nmcli", "-f", "all", "connection", "show"]),
        ("netplan-get.txt", ["netplan", "get"]),
        ("nft-spark.txt", ["nft", "list", "table", "inet", "spark_cluster"]),
        ("rdma-link.txt", ["rdma", "link"]),
        ("ibv-devinfo.txt", ["ibv_devinfo"]),
        ("nvidia-smi-q.txt", ["nvidia-smi", "-q"]),
        ("meminfo.txt", ["cat", "/proc/meminfo"]),
        ("df.txt", ["df", "-h"]),
        ("uname.txt", ["uname", "-a"]),
    ]
    for rail in rails:
        name = rail["interface"]
        out.append((f"ethtool-{name}.txt", ["ethtool", name]))
        out.append((f"ethtool-i-{name}.txt", ["ethtool", "-i", name]))
        out.append((f"nmcli-device-{name}.txt", ["nmcli", "-f", "all", "device", "show", name]))
    return out


def collected_files(config_dir, extra_globs=()):
    """Configuration files copied into the bundle (secret-only files left out)."""
    paths = []
    for root in [config_dir, "/etc/netplan", *extra_globs]:
        if os.path.isfile(root):
            paths.append(root)
            continue
        for dirpath, _dirs, files in os.walk(root):
            paths += [os.path.join(dirpath, f) for f in sorted(files)]
    return [p for p in paths if not is_secret_file(p)]
