"""The runtime image's contract (module_utils/spark_cluster/runtime/image.py) and the access check the
pre-start runs: what a DSpark runtime image says in `docker image inspect`, and what its
uid 1000 can and cannot use on a node."""

import json
import os
import stat

import pytest

from spark_cluster.runtime import image as si

# What `docker image inspect vllm-dspark-runtime:clean` says of an image of this lineage
# (fields as docker prints them; values the lineage documents: uid 1000, bash, /opt/env)
DSPARK_INSPECT = [{
    "Id": "sha256:" + "a" * 64,
    "RepoDigests": [],
    "Size": 22_700_000_000,
    "Config": {
        "User": "1000",
        "Entrypoint": ["bash"],
        "Cmd": None,
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LD_LIBRARY_PATH=/usr/local/nvidia/lib64"],
        "WorkingDir": "/workspace",
        "Labels": {"org.bjk110.dspark.runtime": "clean-overlay"},
    },
    "RootFS": {"Type": "layers", "Layers": ["sha256:base1", "sha256:base2", "sha256:overlay"]},
}]


def test_a_dspark_image_runs_as_uid_1000_through_bash():
    c = si.contract(DSPARK_INSPECT)
    assert (c["uid"], c["gid"], c["user"]) == (1000, 1000, "1000")
    assert c["entrypoint"] == ["bash"] and c["workdir"] == "/workspace"
    assert c["standin"] is False and c["size"] == 22_700_000_000
    assert "/opt/env/bin" not in c["env"]["PATH"]  # the runtime is not on PATH


@pytest.mark.parametrize("user, expected", [
    ("", (0, 0, "root")),
    ("1000", (1000, 1000, "1000")),
    ("1000:2000", (1000, 2000, "1000:2000")),
    ("vllm", (None, None, "vllm")),       # a name: resolved with `id` inside the image
    ("vllm:1000", (None, 1000, "vllm:1000")),
])
def test_user_field(user, expected):
    assert si.parse_user(user) == expected


def test_stand_in_is_named_by_its_label():
    inspect = json.loads(json.dumps(DSPARK_INSPECT))
    inspect[0]["Config"]["Labels"]["spark-cluster.standin"] = "true"
    assert si.contract(inspect)["standin"] is True


def test_exports_put_the_runtime_toolchain_first_and_keep_the_images_paths():
    exports = si.runtime_exports(si.contract(DSPARK_INSPECT)["env"])
    assert exports["PATH"].split(":")[:3] == ["/opt/env/bin", "/opt/env/nvvm/bin", "/opt/env/targets/sbsa-linux/nvvm/bin"]
    assert exports["PATH"].endswith("/usr/bin:/sbin:/bin")
    assert exports["CUDA_HOME"] == exports["CUDA_PATH"] == exports["CUDAToolkit_ROOT"] == "/opt/env/targets/sbsa-linux"
    assert exports["LD_LIBRARY_PATH"] == "/opt/env/lib:/opt/env/targets/sbsa-linux/lib:/usr/local/nvidia/lib64"
    # an image that sets CUDA_HOME itself keeps it
    assert si.runtime_exports({"CUDA_HOME": "/usr/local/cuda"})["CUDA_HOME"] == "/usr/local/cuda"


def test_an_overlay_built_on_another_base_is_detected():
    layers = si.contract(DSPARK_INSPECT)["layers"]
    assert si.descends_from(layers, ["sha256:base1", "sha256:base2"])
    assert not si.descends_from(layers, ["sha256:moved-tag"])   # FROM resolved elsewhere
    assert not si.descends_from(layers, [])


def test_bad_inspect_output_is_an_error():
    with pytest.raises(si.ImageError):
        si.contract([])
    with pytest.raises(si.ImageError):
        si.contract({"Config": {}})


# --------------------------------------------------------------------------- access

class FakeFs:
    """Paths -> (mode, uid, gid); directories end with '/' in the spec."""

    def __init__(self, spec):
        self.entries = {}
        for path, (mode, uid, gid) in spec.items():
            kind = stat.S_IFDIR if path.endswith("/") else stat.S_IFREG
            self.entries[path.rstrip("/") or "/"] = (kind | mode, uid, gid)

    def stat(self, path):
        path = path.rstrip("/") or "/"
        if path not in self.entries:
            raise FileNotFoundError(path)
        mode, uid, gid = self.entries[path]
        return os.stat_result((mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))

    def listdir(self, path):
        prefix = path.rstrip("/") + "/"
        return sorted({p[len(prefix):].split("/")[0] for p in self.entries if p.startswith(prefix)})


NODE = {
    "/": (0o755, 0, 0), "/var/": (0o755, 0, 0), "/var/cache/": (0o755, 0, 0),
    "/var/lib/": (0o755, 0, 0), "/var/lib/spark-hf/": (0o755, 1000, 1000),
    "/var/lib/spark-hf/hub/": (0o755, 1000, 1000),
    "/etc/": (0o755, 0, 0), "/etc/spark-cluster/": (0o755, 0, 0),
}
ENTRIES = [
    {"path": "/var/cache/spark-jit", "need": "write", "what": "JIT/autotune cache", "children": True},
    {"path": "/var/lib/spark-hf/hub", "need": "read", "what": "hub cache", "children": True},
    {"path": "/etc/spark-cluster/api-key", "need": "read", "what": "API key file"},
]


def check(spec):
    fs = FakeFs(dict(NODE, **spec))
    return si.check_access(ENTRIES, 1000, [1000], stat=fs.stat, listdir=fs.listdir)


def test_caches_and_key_owned_by_the_runtime_uid_pass():
    assert check({
        "/var/cache/spark-jit/": (0o755, 1000, 1000),
        "/var/cache/spark-jit/deep_gemm/": (0o755, 1000, 1000),
        "/etc/spark-cluster/api-key": (0o400, 1000, 1000),
    }) == []


def test_root_owned_caches_and_a_0600_root_key_fail_before_the_start():
    """What the old roles left: every cache root-owned 0755, the key file 0600 root."""
    problems = check({
        "/var/cache/spark-jit/": (0o755, 0, 0),
        "/var/cache/spark-jit/tilelang/": (0o755, 0, 0),
        "/etc/spark-cluster/api-key": (0o600, 0, 0),
    })
    text = "\n".join(problems)
    assert "uid 1000 cannot write /var/cache/spark-jit " in text
    assert "uid 1000 cannot write /var/cache/spark-jit/tilelang" in text
    assert "uid 1000 cannot read /etc/spark-cluster/api-key (owner 0:0 mode 0600)" in text
    assert len(problems) == 3


def test_one_root_owned_jit_subdirectory_is_named():
    problems = check({
        "/var/cache/spark-jit/": (0o755, 1000, 1000),
        "/var/cache/spark-jit/triton/": (0o700, 0, 0),
        "/etc/spark-cluster/api-key": (0o400, 1000, 1000),
    })
    assert len(problems) == 1 and "/var/cache/spark-jit/triton" in problems[0]


def test_a_0700_configuration_directory_does_not_matter_to_a_bind_mounted_key():
    """The key file reaches the container as a bind mount: only its own mode counts."""
    assert check({
        "/etc/spark-cluster/": (0o700, 0, 0),
        "/var/cache/spark-jit/": (0o755, 1000, 1000),
        "/etc/spark-cluster/api-key": (0o400, 1000, 1000),
    }) == []


def test_group_permissions_count_and_missing_paths_are_named():
    problems = check({
        "/var/cache/spark-jit/": (0o775, 0, 1000),  # group-writable for the runtime's group
        "/etc/spark-cluster/api-key": (0o440, 0, 1000),
    })
    assert problems == []
    missing = check({"/etc/spark-cluster/api-key": (0o400, 1000, 1000)})
    assert missing == ["JIT/autotune cache: /var/cache/spark-jit does not exist (uid 1000 needs to write it)"]


# --------------------------------------------------------------------------- the module

class Failed(Exception):
    pass


class FakeModule:
    """AnsibleModule's surface runtime_image_contract uses, docker answered from a dict."""

    def __init__(self, params, answers):
        self.params = dict({"runtime_prefix": "/opt/env", "docker": "/usr/bin/docker", "base_image": None}, **params)
        self.answers = answers
        self.calls = []

    def run_command(self, argv):
        self.calls.append(argv)
        return self.answers[tuple(argv[1:])]

    def fail_json(self, **kwargs):
        raise Failed(kwargs["msg"])


def base_inspect(layers):
    return json.dumps([{"Id": "sha256:" + "b" * 64, "RepoDigests": ["ghcr.io/x@sha256:" + "c" * 64],
                        "Config": {}, "RootFS": {"Layers": layers}}])


def test_module_reads_the_contract_and_checks_the_base():
    import runtime_image_contract as mod
    image = "vllm-dspark-runtime:clean"
    answers = {("image", "inspect", image): (0, json.dumps(DSPARK_INSPECT), ""),
               ("image", "inspect", "base@sha256:1"): (0, base_inspect(["sha256:base1", "sha256:base2"]), "")}
    result = mod.run(FakeModule({"image": image, "base_image": "base@sha256:1"}, answers))
    assert result["contract"]["uid"] == 1000 and result["exports"]["PATH"].startswith("/opt/env/bin:")
    assert result["base"]["id"] == "sha256:" + "b" * 64
    assert "user 1000 (uid 1000, gid 1000), entrypoint bash" in result["message"]
    answers[("image", "inspect", "moved")] = (0, base_inspect(["sha256:other"]), "")
    with pytest.raises(Failed, match="was not built on moved"):
        mod.run(FakeModule({"image": image, "base_image": "moved"}, answers))


def test_module_resolves_a_named_user_inside_the_image():
    import runtime_image_contract as mod
    inspect = json.loads(json.dumps(DSPARK_INSPECT))
    inspect[0]["Config"]["User"] = "vllm"
    answers = {("image", "inspect", "img"): (0, json.dumps(inspect), ""),
               ("run", "--rm", "--network", "none", "--entrypoint", "id", "img", "-u"): (0, "1001\n", ""),
               ("run", "--rm", "--network", "none", "--entrypoint", "id", "img", "-g"): (0, "1002\n", "")}
    result = mod.run(FakeModule({"image": "img"}, answers))
    assert (result["contract"]["uid"], result["contract"]["gid"]) == (1001, 1002)
    with pytest.raises(Failed, match="docker image inspect missing failed"):
        mod.run(FakeModule({"image": "missing"}, {("image", "inspect", "missing"): (1, "", "No such image")}))


# ---------------------------------------------------------------------- main()

def docker_answers(monkeypatch, answers):
    """AnsibleModule.run_command answered from a dict keyed by docker's argv (without
    the binary); records every call."""
    from ansible.module_utils.basic import AnsibleModule

    calls = []

    def run_command(self, argv, *args, **kwargs):
        calls.append(list(argv))
        return answers[tuple(argv[1:])]

    monkeypatch.setattr(AnsibleModule, "run_command", run_command)
    return calls


@pytest.mark.parametrize("check", [True, False])
def test_module_main_reads_only_in_and_out_of_check_mode(run_main, monkeypatch, check):
    import runtime_image_contract
    image = "vllm-dspark-runtime:clean"
    calls = docker_answers(monkeypatch, {
        ("image", "inspect", image): (0, json.dumps(DSPARK_INSPECT), ""),
        ("image", "inspect", "base@sha256:1"): (0, base_inspect(["sha256:base1", "sha256:base2"]), "")})
    code, out = run_main(runtime_image_contract, {"image": image, "base_image": "base@sha256:1",
                                                  "docker": "/usr/bin/docker"}, check=check)
    assert code == 0, out
    assert out["changed"] is False
    assert out["contract"]["uid"] == 1000 and out["base"]["id"] == "sha256:" + "b" * 64
    assert out["exports"]["PATH"].startswith("/opt/env/bin:")
    assert out["message"].startswith(image + " ")
    # read-only whatever the mode: two inspects, nothing run, pulled or tagged
    assert calls == [["/usr/bin/docker", "image", "inspect", image],
                     ["/usr/bin/docker", "image", "inspect", "base@sha256:1"]]


def test_module_main_fails_on_another_base_and_on_a_missing_image(run_main, monkeypatch):
    import runtime_image_contract
    image = "vllm-dspark-runtime:clean"
    docker_answers(monkeypatch, {
        ("image", "inspect", image): (0, json.dumps(DSPARK_INSPECT), ""),
        ("image", "inspect", "moved"): (0, base_inspect(["sha256:other"]), ""),
        ("image", "inspect", "gone"): (1, "", "Error: No such image: gone")})
    code, out = run_main(runtime_image_contract, {"image": image, "base_image": "moved"})
    assert code == 1 and out["failed"] and out["changed"] is False
    assert "was not built on moved" in out["msg"] and "rebuild" in out["msg"]
    assert out["base"]["id"] == "sha256:" + "b" * 64
    code, out = run_main(runtime_image_contract, {"image": "gone"}, check=True)
    assert code == 1 and out["msg"] == "docker image inspect gone failed: Error: No such image: gone"
