"""The runtime environment of a node: the one place it is rendered.

``build_env`` turns a node's inputs (rank, rail-0 interface and address, rendezvous)
and the GID resolution of ``link.roce`` into the ordered environment the serving
container gets; ``render`` writes it as a docker env file. Both the Ansible module
(``spark_runtime_env``) and the node-side pre-start check (``runtime.prestart``) call
these functions, so a file rendered at provisioning and one re-rendered at service
start are byte-identical when nothing changed.

Who reads what (see docs/field-notes): VLLM_HOST_IP (vLLM's get_ip(), else it picks the
default-route interface: the Wi-Fi trap), GLOO_SOCKET_IFNAME (gloo, one exact name),
NCCL_SOCKET_IFNAME (NCCL, "=name" is an exact match, a bare name a prefix),
TP_SOCKET_IFNAME (TensorPipe), UCX_NET_DEVICES (UCX), OMPI_MCA_btl_tcp_if_include
(Open MPI), MN_IF_NAME (NVIDIA's scripts), NCCL_IB_* (NCCL, from link.roce).

The env file holds no secrets: it is not a place for tokens (they would show in
``docker inspect``), so secret-looking settings are refused.
"""

from __future__ import annotations

import ipaddress
import json
import re

from ..common.envfile import render as render_envfile

SOCKET_KEYS = (
    "GLOO_SOCKET_IFNAME",
    "NCCL_SOCKET_IFNAME",
    "TP_SOCKET_IFNAME",
    "UCX_NET_DEVICES",
    "OMPI_MCA_btl_tcp_if_include",
    "MN_IF_NAME",
)
# Every key link.roce may set: pinned even when the current resolution does not set
# it (a NCCL_IB_GID_INDEX in settings would defeat per-device selection).
NCCL_GID_KEYS = (
    "NCCL_IB_HCA",
    "NCCL_IB_GID_INDEX",
    "NCCL_IB_DISABLE",
    "NCCL_IB_ADDR_FAMILY",
    "NCCL_IB_ROCE_VERSION_NUM",
)
RENDEZVOUS_KEYS = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "NNODES")
# What a triangle of direct cables adds (docs/topology.md): NCCL's subnet-aware routing
# picks, per connection, the local RDMA device in the remote device's subnet (NCCL
# v2.30.7-1, src/transport/net_ib/connect.cc), one device per twin (no merging) and
# NCCL's own IB transport, as NVIDIA's spark_cluster_setup.py runs a ring. Only set,
# and only pinned, in a triangle: a switch's file stays as it was.
TRIANGLE_KEYS = (
    "NCCL_IB_SUBNET_AWARE_ROUTING",
    "NCCL_IB_SUBNET_PREFIX_LEN",
    "NCCL_IB_MERGE_NICS",
    "NCCL_NET_PLUGIN",
)
TOPOLOGIES = ("switch", "triangle")
PINNED_KEYS = frozenset(("VLLM_HOST_IP",) + SOCKET_KEYS + NCCL_GID_KEYS + RENDEZVOUS_KEYS)

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_RES = (
    re.compile(r"^HF_TOKEN$"),
    re.compile(r"_TOKEN$"),
    re.compile(r"_KEY$"),
    re.compile(r"PASSWORD"),
    re.compile(r"SECRET"),
)
ROLES = ("head", "worker")
NODE_KEYS = ("rank", "nnodes", "role", "interface", "address", "master_addr", "master_port")

# As rendered before the package move: a new header would rewrite every node's env file
GENERATOR = "spark-cluster module_utils/spark_env.py"


def is_secret_key(key):
    upper = str(key).upper()
    return any(pattern.search(upper) for pattern in SECRET_RES)


def _ipv4(value, what):
    try:
        return str(ipaddress.IPv4Address(str(value).strip()))
    except ValueError as exc:
        raise ValueError(f"{what} must be an IPv4 address without prefix, got {value!r}") from exc


def _int(value, what, low=None, high=None):
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError as exc:
        raise ValueError(f"{what} must be an integer, got {value!r}") from exc
    if (low is not None and number < low) or (high is not None and number > high):
        raise ValueError(f"{what} must be in {low}..{high}, got {number}")
    return number


def _value(key, value):
    if value is None or isinstance(value, bool):
        raise ValueError(
            f"setting {key} has value {value!r}: give a string (quote YAML booleans, e.g. '0')"
        )
    if not isinstance(value, (str, int, float)):
        raise ValueError(f"setting {key} must be a string or number, got {type(value).__name__}")
    text = str(value)
    if "\n" in text or "\r" in text:
        raise ValueError(f"setting {key} contains a line break (not possible in an env file)")
    return text


def check_settings(settings):
    """Validated settings as {key: str}, sorted by key; ValueError naming the key otherwise.

    Sorted, because the inputs travel through JSON (the pre-start's params file) and
    YAML: the rendered file must be byte-identical whoever renders it."""
    checked = {}
    for key, value in sorted((settings or {}).items()):
        if not ENV_NAME_RE.match(str(key)):
            raise ValueError(f"setting {key!r} is not a valid environment variable name")
        if is_secret_key(key):
            raise ValueError(
                f"setting {key} looks like a secret: the runtime env file holds no secrets "
                "(it would show in docker inspect); pass it another way"
            )
        if key in PINNED_KEYS:
            raise ValueError(
                f"setting {key} would override a pinned key: it is derived from the inventory "
                "and the GID resolution (spark_env / spark_roce), not set by hand"
            )
        checked[key] = _value(key, value)
    return checked


def check_node(node):
    """Validated node inputs; ValueError naming the key otherwise."""
    missing = [key for key in NODE_KEYS if node.get(key) in (None, "")]
    if missing:
        raise ValueError(f"node is missing {', '.join(missing)}")
    role = str(node["role"])
    if role not in ROLES:
        raise ValueError(f"node role must be one of {', '.join(ROLES)}, got {role!r}")
    nnodes = _int(node["nnodes"], "nnodes", 1)
    rank = _int(node["rank"], "rank", 0, nnodes - 1)
    if (role == "head") != (rank == 0):
        raise ValueError(f"rank {rank} does not fit role {role}: the head is rank 0, workers 1..N")
    address = _ipv4(node["address"], "address")
    master_addr = _ipv4(node["master_addr"], "master_addr")
    if role == "head" and master_addr != address:
        raise ValueError(
            f"master_addr {master_addr} must be the head's own rail-0 address {address}"
        )
    interface = str(node["interface"])
    if not re.match(r"^[A-Za-z0-9_.:-]{1,15}$", interface):
        raise ValueError(f"interface {interface!r} is not a valid netdev name")
    return {
        "rank": rank,
        "nnodes": nnodes,
        "role": role,
        "interface": interface,
        "address": address,
        "master_addr": master_addr,
        "master_port": _int(node["master_port"], "master_port", 1, 65535),
        "settings": check_settings(node.get("settings")),
    }


def topology_env(topology):
    """The settings the topology adds ({} for a switch or none). topology: None or
    {name: 'switch'|'triangle', prefix_len: the rails' prefix length, ...}."""
    if not topology:
        return {}
    if not isinstance(topology, dict):
        raise ValueError(f"topology must be a mapping with name and prefix_len, got {topology!r}")
    name = str(topology.get("name") or "switch")
    if name not in TOPOLOGIES:
        raise ValueError(f"topology name must be one of {', '.join(TOPOLOGIES)}, got {name!r}")
    if name == "switch":
        return {}
    prefix = _int(topology.get("prefix_len"), "topology prefix_len", 1, 32)
    return {
        "NCCL_IB_SUBNET_AWARE_ROUTING": "1",
        "NCCL_IB_SUBNET_PREFIX_LEN": str(prefix),
        "NCCL_IB_MERGE_NICS": "0",
        "NCCL_NET_PLUGIN": "none",
    }


def build_env(node, gid, topology=None):
    """The ordered runtime environment ({str: str}) of one node.

    node: {rank, nnodes, role ('head'|'worker'), interface (rail-0 netdev), address
    (rail-0 address, no prefix), master_addr (head's rail-0 address), master_port,
    settings (extra keys, no secrets, no pinned keys)}.
    gid: the result of link.roce.resolve for this node's rails.
    topology: None (a switch, the file as it always was) or {name, prefix_len}: a
    triangle adds ``TRIANGLE_KEYS`` after the GID keys and refuses them in settings.
    """
    checked = check_node(node)
    extra = topology_env(topology)
    clash = sorted(set(extra) & set(checked["settings"]))
    if clash:
        raise ValueError(
            f"setting {', '.join(clash)} would override a pinned key: in a triangle it is "
            "derived from the topology (spark_env.topology_env), not set by hand"
        )
    nccl_env = dict((gid or {}).get("nccl_env") or {})
    if not nccl_env:
        raise ValueError("the GID resolution carries no nccl_env (run spark_roce.resolve first)")
    unknown = sorted(set(nccl_env) - set(NCCL_GID_KEYS))
    if unknown:
        raise ValueError(f"unexpected keys in the GID resolution: {', '.join(unknown)}")
    iface = checked["interface"]
    env = {"VLLM_HOST_IP": checked["address"]}
    for key in SOCKET_KEYS:
        env[key] = iface
    # NCCL_SOCKET_IFNAME is a prefix list: "=" makes it an exact match, so
    # enp1s0f1np1 does not also select enp1s0f1np10 (or enP7s7 via "en").
    env["NCCL_SOCKET_IFNAME"] = f"={iface}"
    for key in NCCL_GID_KEYS:
        if key in nccl_env:
            env[key] = str(nccl_env[key])
    env.update(extra)
    env["MASTER_ADDR"] = checked["master_addr"]
    env["MASTER_PORT"] = str(checked["master_port"])
    env["NODE_RANK"] = str(checked["rank"])
    env["NNODES"] = str(checked["nnodes"])
    env.update(checked["settings"])
    return env


def header(params=None):
    """The comment block at the top of the env file (deterministic: no timestamps)."""
    params = params or {}
    params_path = params.get("params_path") or "/etc/spark-cluster/runtime-env.json"
    lines = [
        f"Generated by {GENERATOR} (Ansible module spark_runtime_env,",
        "and spark_prestart.py at service start). Do not edit: this file is",
        "re-rendered at every service start (ExecStartPre) from",
        f"{params_path}; change the inventory and re-run the playbook instead.",
        "It holds no secrets.",
    ]
    node = params.get("node") or {}
    if node:
        lines.append(
            f"Node: {node.get('role')} rank {node.get('rank')} of {node.get('nnodes')}, "
            f"rail 0 {node.get('interface')} {node.get('address')}."
        )
    return "\n".join(lines)


def render(env, params=None):
    """Env-file text (docker --env-file format) with the generated-file header."""
    return render_envfile(env, header=header(params))


def make_params(path, node, rails, peers=(), sysfs_root="/sys", params_path=None, mode="0600",
                mtu=None, topology=None):
    """The inputs saved on the node (runtime-env.json), so that the pre-start check
    re-renders the env file from the same data with the same code (and, with ``mtu``,
    checks the rails' MTU and addresses at every start). ``topology`` (a triangle's
    {name, prefix_len, peer_paths}) is saved only when given."""
    params = {
        "generated_by": f"{GENERATOR} (make_params)",
        "path": str(path),
        "params_path": str(params_path) if params_path else None,
        "mode": str(mode),
        "sysfs_root": str(sysfs_root),
        "node": dict(node),
        "rails": [{"interface": str(r["interface"]), "address": str(r["address"])} for r in rails],
        "peers": [str(p) for p in peers],
    }
    if mtu is not None:
        params["mtu"] = int(mtu)
    if topology:
        topology_env(topology)   # refuse a bad one before it is saved
        params["topology"] = {
            "name": str(topology.get("name")),
            "prefix_len": int(topology.get("prefix_len")),
            "peer_paths": [{"host": str(p.get("host", "")), "address": str(p["address"]),
                            "interface": str(p["interface"]),
                            "via": None if p.get("via") in (None, "") else str(p["via"])}
                           for p in topology.get("peer_paths") or []],
        }
    return params


def rail_interfaces(rails):
    """{netdev: address without prefix} in rail order, for link.roce.resolve."""
    interfaces = {}
    for index, rail in enumerate(rails or []):
        interface = rail.get("interface")
        address = rail.get("address")
        if not interface or not address:
            raise ValueError(f"rail {index} needs interface and address, got {rail!r}")
        interfaces[str(interface)] = str(address).split("/")[0].strip()
    if not interfaces:
        raise ValueError("no rails given")
    return interfaces


def params_text(params):
    """Deterministic JSON text of the saved inputs."""
    return json.dumps(params, indent=2, sort_keys=True) + "\n"
