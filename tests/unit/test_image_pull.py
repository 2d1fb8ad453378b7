"""The runtime image by digest (runtime_image_source: pull): the registry asked before any
change, the pull classified, the digest checked, the local name tagged
(module_utils/spark_cluster/runtime/image.py, library/runtime_image_pull.py)."""

from __future__ import annotations

import json

import pytest

import runtime_image_pull
from spark_cluster.runtime import image as si

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
REF = f"ghcr.io/anemll/dspark-vllm-gx10:0.1.1@{DIGEST}"
LAB = f"127.0.0.1:5000/spark/standin-runtime:lab@{DIGEST}"


@pytest.mark.parametrize("ref, registry, repository, tag", [
    (REF, "ghcr.io", "anemll/dspark-vllm-gx10", "0.1.1"),
    (LAB, "127.0.0.1:5000", "spark/standin-runtime", "lab"),
    (f"ubuntu@{DIGEST}", "registry-1.docker.io", "library/ubuntu", ""),
    (f"localhost/x/y@{DIGEST}", "localhost", "x/y", ""),
])
def test_parse_ref_follows_dockers_rules(ref, registry, repository, tag):
    parts = si.parse_ref(ref)
    assert (parts["registry"], parts["repository"], parts["tag"], parts["digest"]) == (registry, repository, tag, DIGEST)


@pytest.mark.parametrize("ref", ["ghcr.io/anemll/dspark-vllm-gx10:0.1.1", "x@sha256:abc", ""])
def test_a_ref_without_a_full_digest_is_refused(ref):
    with pytest.raises(si.ImageError, match="not NAME@sha256"):
        si.parse_ref(ref)


def test_loopback_registries_speak_http():
    assert si.registry_scheme("127.0.0.1:5000") == "http" and si.registry_scheme("localhost:5000") == "http"
    assert si.registry_scheme("ghcr.io") == "https"
    assert si.registry_scheme("198.19.0.10:5000", insecure=["198.19.0.10:5000"]) == "http"


class Registry:
    """request(method, url, headers) of a tiny registry: manifests by reference."""

    def __init__(self, manifests, token=False, down=False):
        self.manifests, self.token, self.down, self.calls = manifests, token, down, []

    def __call__(self, method, url, headers):
        self.calls.append((method, url, headers.get("Authorization")))
        if self.down:
            raise OSError("[Errno 111] Connection refused")
        if "/token?" in url:
            return 200, {}, json.dumps({"token": "t0k"}).encode()
        if self.token and headers.get("Authorization") != "Bearer t0k":
            return 401, {"WWW-Authenticate": 'Bearer realm="https://ghcr.io/token",service="ghcr.io",'
                                             'scope="repository:anemll/dspark-vllm-gx10:pull"'}, b""
        reference = url.rsplit("/", 1)[1]
        if reference in self.manifests:
            return 200, {"Docker-Content-Digest": self.manifests[reference]}, b""
        return 404, {}, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}'


def test_probe_finds_the_manifest_through_an_anonymous_token():
    registry = Registry({DIGEST: DIGEST}, token=True)
    verdict = si.probe_manifest(REF, registry)
    assert verdict["ok"] and verdict["kind"] == "ok"
    assert registry.calls[0][1] == f"https://ghcr.io/v2/anemll/dspark-vllm-gx10/manifests/{DIGEST}"
    assert "scope=repository:anemll/dspark-vllm-gx10:pull" in registry.calls[1][1]
    assert registry.calls[-1][2] == "Bearer t0k"


def test_probe_names_a_wrong_digest_registry_down_and_a_missing_image():
    wrong = si.probe_manifest(REF, Registry({"0.1.1": OTHER}))
    assert wrong["kind"] == "wrong_digest" and f"is {OTHER}" in wrong["message"] and DIGEST in wrong["message"]
    down = si.probe_manifest(LAB, Registry({}, down=True))
    assert down["kind"] == "registry_down" and "127.0.0.1:5000 cannot be reached" in down["message"]
    missing = si.probe_manifest(LAB, Registry({}))
    assert missing["kind"] == "missing" and "image missing" in missing["message"]
    denied = si.probe_manifest(REF, lambda method, url, headers: (403, {}, b""))
    assert denied["kind"] == "denied" and "docker login" in denied["message"]


@pytest.mark.parametrize("stderr, kind", [
    ("Error response from daemon: manifest for x@sha256:aa not found: manifest unknown", "missing"),
    ('Error response from daemon: Get "http://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection refused',
     "registry_down"),
    ("write /var/lib/docker/tmp/x: no space left on device", "no_space"),
    ("no matching manifest for linux/arm64/v8 in the manifest list entries", "platform"),
    ("something else", "failed"),
])
def test_a_failed_pull_is_classified(stderr, kind):
    got, message = si.classify_pull_error(stderr, LAB)
    assert got == kind and message.startswith(f"docker pull {LAB} failed ({kind})")


def test_digest_matches_the_repo_digests():
    assert si.digest_matches([f"ghcr.io/anemll/dspark-vllm-gx10@{DIGEST}"], REF)
    assert not si.digest_matches([f"ghcr.io/anemll/dspark-vllm-gx10@{OTHER}"], REF)
    assert not si.digest_matches([], REF)


def test_exports_follow_the_profiles_runtime_paths():
    current = {"path": ["/usr/local/cuda/bin", "/usr/local/bin"], "ld_library_path": ["/usr/local/cuda/lib64"],
               "cuda_home": "/usr/local/cuda"}
    out = si.exports_for({"PATH": "/usr/bin:/usr/local/bin"}, current)
    assert out["PATH"] == "/usr/local/cuda/bin:/usr/local/bin:/usr/bin"
    assert out["CUDA_HOME"] == out["CUDA_PATH"] == "/usr/local/cuda" and out["LD_LIBRARY_PATH"] == "/usr/local/cuda/lib64"
    assert si.exports_for({"CUDA_HOME": "/opt/cuda"}, current)["CUDA_HOME"] == "/opt/cuda"


# ---------------------------------------------------------------------- the module

def inspect(image_id, digests):
    return 0, json.dumps([{"Id": image_id, "RepoDigests": digests}]), ""


def docker(monkeypatch, answers):
    from ansible.module_utils.basic import AnsibleModule

    calls = []

    def run_command(self, argv, *args, **kwargs):
        argv = list(argv[2:]) if argv[0] == "timeout" else list(argv)  # `timeout N docker ...`
        calls.append(list(argv[1:]))
        answer = answers.get(tuple(argv[1:]), (1, "", "Error: No such image"))
        return answer(tuple(argv[1:])) if callable(answer) else answer

    monkeypatch.setattr(AnsibleModule, "run_command", run_command)
    return calls


ID = "sha256:" + "c" * 64
PULLED = inspect(ID, [f"ghcr.io/anemll/dspark-vllm-gx10@{DIGEST}"])
NAME = "ghcr.io/anemll/dspark-vllm-gx10:0.1.1"


def test_pull_pulls_checks_the_digest_and_tags(run_main, monkeypatch):
    state = {"pulled": False}

    def inspect_ref(_argv):
        return PULLED if state["pulled"] else (1, "", "No such image")

    def pull(_argv):
        state["pulled"] = True
        return 0, "", ""
    calls = docker(monkeypatch, {("image", "inspect", REF): inspect_ref, ("pull", REF): pull,
                                 ("tag", REF, NAME): (0, "", "")})
    code, out = run_main(runtime_image_pull, {"ref": REF, "name": NAME})
    assert code == 0, out
    assert out["changed"] and out["id"] == ID and not out["present"]
    assert ["pull", REF] in calls and ["tag", REF, NAME] in calls


def test_pull_of_an_image_already_held_and_tagged_changes_nothing(run_main, monkeypatch):
    calls = docker(monkeypatch, {("image", "inspect", REF): PULLED, ("image", "inspect", NAME): PULLED})
    code, out = run_main(runtime_image_pull, {"ref": REF, "name": NAME})
    assert code == 0 and out["changed"] is False and out["present"]
    assert not [c for c in calls if c[0] in ("pull", "tag")]


def test_check_mode_reports_the_pull_and_does_nothing(run_main, monkeypatch):
    calls = docker(monkeypatch, {})
    code, out = run_main(runtime_image_pull, {"ref": REF, "name": NAME}, check=True)
    assert code == 0 and out["changed"] and "would pull" in out["message"]
    assert calls == [["image", "inspect", REF]]


def test_a_failed_pull_is_a_clear_refusal_and_nothing_is_tagged(run_main, monkeypatch):
    calls = docker(monkeypatch, {("pull", LAB): (1, "", "dial tcp 127.0.0.1:5000: connect: connection refused")})
    code, out = run_main(runtime_image_pull, {"ref": LAB, "name": "standin:lab"})
    assert code == 1 and out["kind"] == "registry_down" and "cannot be reached" in out["msg"]
    assert not [c for c in calls if c[0] == "tag"]


def test_a_pull_that_outlives_its_timeout_tags_nothing(run_main, monkeypatch):
    calls = docker(monkeypatch, {("pull", REF): (124, "", "")})
    code, out = run_main(runtime_image_pull, {"ref": REF, "name": NAME, "timeout": 5})
    assert code == 1 and "did not finish in 5 s" in out["msg"]
    assert not [c for c in calls if c[0] == "tag"]


def test_an_image_without_the_pinned_digest_is_refused(run_main, monkeypatch):
    docker(monkeypatch, {("image", "inspect", REF): inspect(ID, [f"ghcr.io/anemll/dspark-vllm-gx10@{OTHER}"])})
    code, out = run_main(runtime_image_pull, {"ref": REF, "name": NAME})
    assert code == 1 and out["kind"] == "wrong_digest"


def test_probe_is_read_only_and_fails_with_the_registrys_verdict(run_main, monkeypatch):
    calls = docker(monkeypatch, {})
    monkeypatch.setattr(runtime_image_pull, "http_request", lambda timeout: Registry({}, down=True))
    code, out = run_main(runtime_image_pull, {"ref": LAB, "action": "probe"}, check=True)
    assert code == 1 and out["kind"] == "registry_down" and out["changed"] is False
    assert calls == [["image", "inspect", LAB]]
    docker(monkeypatch, {("image", "inspect", LAB): inspect(ID, [])})
    code, out = run_main(runtime_image_pull, {"ref": LAB, "action": "probe"})
    assert code == 0 and out["present"] and "on this node already" in out["message"]


def test_the_http_client_hands_back_4xx_and_raises_oserror_when_nothing_listens():
    """The probe's real transport: 401/404 are answers (read for the token and the
    verdict), a closed port is an OSError (registry down). Loopback only."""
    import http.server
    import socket
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802
            code = 200 if self.path.endswith(DIGEST) else 404
            self.send_response(code)
            if code == 200:
                self.send_header("Docker-Content-Digest", DIGEST)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        request = runtime_image_pull.http_request(5)
        status, headers, _ = request("HEAD", f"http://127.0.0.1:{port}/v2/x/manifests/sha256:0", {})
        assert status == 404
        ref = f"127.0.0.1:{port}/spark/standin@{DIGEST}"
        assert si.probe_manifest(ref, request)["kind"] == "ok"
        assert si.probe_manifest(f"127.0.0.1:{port}/spark/standin@{OTHER}", request)["kind"] == "missing"
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    with pytest.raises(OSError):
        runtime_image_pull.http_request(2)("HEAD", f"http://127.0.0.1:{closed}/v2/", {})
    assert si.probe_manifest(f"127.0.0.1:{closed}/x@{DIGEST}", runtime_image_pull.http_request(2))["kind"] == "registry_down"
