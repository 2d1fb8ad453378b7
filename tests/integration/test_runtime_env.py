"""Each node's runtime environment: pinned to its own rail-0 interface and address,
rank from the inventory, no RDMA in the lab (so TCP sockets, said plainly), mode 0600."""

import json


def read_env(host):
    f = host.file("/etc/spark-cluster/runtime.env")
    env = {}
    for line in f.content_string.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return f, env


def test_env_file_is_private(host):
    f, _ = read_env(host)
    assert f.user == "root"
    assert f.mode == 0o600
    assert host.file("/etc/spark-cluster").mode == 0o700


def test_env_is_pinned_to_this_nodes_rail(host, hostvars, rails):
    _, env = read_env(host)
    iface = rails[0]["interface"]
    address = rails[0]["address"].split("/")[0]
    assert env["VLLM_HOST_IP"] == address
    assert env["GLOO_SOCKET_IFNAME"] == iface
    assert env["NCCL_SOCKET_IFNAME"] == f"={iface}"
    for key in ("TP_SOCKET_IFNAME", "UCX_NET_DEVICES", "OMPI_MCA_btl_tcp_if_include", "MN_IF_NAME"):
        assert env[key] == iface, key


def test_rank_and_master_come_from_the_inventory(host, hostvars):
    _, env = read_env(host)
    groups = hostvars["groups"]
    me = hostvars["inventory_hostname"]
    head = groups["spark_head"][0]
    head_address = hostvars["hostvars"][head]["spark_rails"][0]["address"].split("/")[0]
    expected_rank = 0 if me == head else groups["spark_workers"].index(me) + 1
    assert env["NODE_RANK"] == str(expected_rank)
    assert env["NNODES"] == str(1 + len(groups["spark_workers"]))
    assert env["MASTER_ADDR"] == head_address
    assert env["MASTER_PORT"].isdigit()


def test_no_rdma_in_the_lab_means_tcp_sockets(host):
    _, env = read_env(host)
    assert env["NCCL_IB_DISABLE"] == "1"
    assert "NCCL_IB_GID_INDEX" not in env
    assert "NCCL_IB_HCA" not in env


def test_recipe_settings_and_no_secrets(host):
    f, env = read_env(host)
    assert env["NCCL_NVLS_ENABLE"] == "0"
    assert env["NCCL_CUMEM_ENABLE"] == "0"
    assert not [k for k in env if "TOKEN" in k or k.endswith("_KEY") or "SECRET" in k]


def test_prestart_check_passes_and_catches_a_wrong_pin(host):
    ok = host.run("PYTHONPATH=/usr/local/lib/spark-cluster /usr/bin/python3 -m spark_cluster.node.prestart "
                  "--params /etc/spark-cluster/runtime-env.json --check-only")
    assert ok.rc == 0, ok.stderr
    params = json.loads(host.file("/etc/spark-cluster/runtime-env.json").content_string)
    assert params
    # The same params, but rail 0's address is one this node does not hold (an address
    # lost after a reboot): the check must stop the start and say why.
    bad = host.run(
        "tmp=$(mktemp -d) && "
        "python3 -c \"import json; p=json.load(open('/etc/spark-cluster/runtime-env.json')); "
        "p['path']='$tmp/runtime.env'; p['node']['address']='198.18.100.99'; "
        "p['rails'][0]['address']='198.18.100.99'; json.dump(p, open('$tmp/p.json','w'))\" && "
        "PYTHONPATH=/usr/local/lib/spark-cluster /usr/bin/python3 -m spark_cluster.node.prestart --params $tmp/p.json --check-only; "
        "rc=$?; rm -rf $tmp; exit $rc"
    )
    assert bad.rc == 1, bad.stdout
    assert "198.18.100.99" in bad.stderr
