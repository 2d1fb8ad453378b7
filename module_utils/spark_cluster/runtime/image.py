"""The runtime image's contract, read from ``docker image inspect`` (plain functions).

The serving role renders the compose file from what the image says, not from what the
project assumes: the user it runs as, its entrypoint, its environment (PATH,
LD_LIBRARY_PATH), its working directory and labels. Images of the DSpark lineage run
as uid 1000 with ``ENTRYPOINT ["bash"]`` and keep the runtime in ``/opt/env`` (python,
vllm, nvcc for the DeepGEMM/TileLang JIT), off ``PATH``; the recipe's compose exports
``PATH``/``CUDA_HOME``/``LD_LIBRARY_PATH`` for ``/opt/env`` before it runs
``/opt/env/bin/vllm`` (``runtime_exports`` renders the same).

``check_access`` is the pre-start check that the runtime uid can read and write what it
needs (used by the pre-start check on the node and by the serving role): a cache it cannot
write is a clear failure before the start, not a crash loop.
"""

from __future__ import annotations

import json
import os
import re
import stat as stat_mod

STANDIN_LABEL = "spark-cluster.standin"


class ImageError(ValueError):
    """The inspect output cannot be read as an image contract."""


def parse_user(user):
    """(uid, gid, name) of an image's ``User``: "" is root; "1000", "1000:1000" numeric;
    a name ("vllm", "vllm:vllm") gives (None, None, name): resolve it in the image."""
    user = (user or "").strip()
    if not user:
        return 0, 0, "root"
    name, _, group = user.partition(":")
    uid = int(name) if name.isdigit() else None
    if group:
        gid = int(group) if group.isdigit() else None
    else:
        gid = uid  # docker: no group given -> the user's primary group (numeric: same id)
    return uid, gid, user


def env_dict(env_list):
    """``Config.Env`` (a list of KEY=VALUE) as a dict."""
    out = {}
    for item in env_list or []:
        key, sep, value = str(item).partition("=")
        if sep:
            out[key] = value
    return out


def contract(inspect):
    """The contract of one image from one ``docker image inspect`` object."""
    if isinstance(inspect, list):
        if len(inspect) != 1:
            raise ImageError(f"expected one image in the inspect output, got {len(inspect)}")
        inspect = inspect[0]
    if not isinstance(inspect, dict) or "Id" not in inspect:
        raise ImageError("not a docker image inspect object (no Id)")
    config = inspect.get("Config") or {}
    uid, gid, user = parse_user(config.get("User"))
    labels = config.get("Labels") or {}
    return {
        "id": inspect["Id"],
        "user": user,
        "uid": uid,
        "gid": gid,
        "entrypoint": list(config.get("Entrypoint") or []),
        "cmd": list(config.get("Cmd") or []),
        "env": env_dict(config.get("Env")),
        "workdir": config.get("WorkingDir") or "/",
        "labels": labels,
        "standin": str(labels.get(STANDIN_LABEL, "")).lower() == "true",
        "layers": list((inspect.get("RootFS") or {}).get("Layers") or []),
        "repo_digests": list(inspect.get("RepoDigests") or []),
        "size": int(inspect.get("Size") or 0),
    }


def descends_from(layers, base_layers):
    """True when an image's layers start with all of its base's layers."""
    return bool(base_layers) and list(layers[: len(base_layers)]) == list(base_layers)


def runtime_exports(image_env, prefix="/opt/env"):
    """The recipe's exports for the runtime in ``prefix``, over the image's own values:
    the toolchain first on PATH and LD_LIBRARY_PATH, CUDA_HOME (and the two names CMake
    and the JITs also read) kept when the image sets it."""
    image_env = image_env or {}
    cuda_home = image_env.get("CUDA_HOME") or f"{prefix}/targets/sbsa-linux"

    def joined(first, rest):
        parts = list(first) + [p for p in (rest or "").split(":") if p and p not in first]
        return ":".join(parts)

    return {
        "PATH": joined([f"{prefix}/bin", f"{prefix}/nvvm/bin", f"{prefix}/targets/sbsa-linux/nvvm/bin"],
                       image_env.get("PATH") or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "CUDA_HOME": cuda_home,
        "CUDA_PATH": image_env.get("CUDA_PATH") or cuda_home,
        "CUDAToolkit_ROOT": image_env.get("CUDAToolkit_ROOT") or cuda_home,
        "LD_LIBRARY_PATH": joined([f"{prefix}/lib", f"{prefix}/targets/sbsa-linux/lib"],
                                  image_env.get("LD_LIBRARY_PATH")),
    }


def _allowed(st, uid, gids, bits):
    """POSIX permission check of one stat result for (uid, gids): bits is a subset of 'rwx'."""
    if uid == 0:
        return "x" not in bits or bool(st.st_mode & 0o111) or stat_mod.S_ISDIR(st.st_mode)
    if st.st_uid == uid:
        shift = 6
    elif st.st_gid in gids:
        shift = 3
    else:
        shift = 0
    want = sum({"r": 4, "w": 2, "x": 1}[b] for b in bits)
    return (st.st_mode >> shift) & want == want


def expand(entries, listdir=os.listdir, stat=os.stat):
    """Entries with ``children: true`` followed by one entry per subdirectory (one level):
    the seven JIT directories below the JIT root, the repositories below the hub cache."""
    out = []
    for entry in entries:
        out.append(entry)
        if not entry.get("children"):
            continue
        try:
            names = sorted(listdir(entry["path"]))
        except OSError:
            continue
        for name in names:
            path = os.path.join(entry["path"], name)
            try:
                if stat_mod.S_ISDIR(stat(path).st_mode):
                    out.append({"path": path, "need": entry["need"], "what": entry.get("what") or entry["path"]})
            except OSError:
                continue
    return out


def check_access(entries, uid, gids, stat=os.stat, listdir=os.listdir):
    """Problems (one line each) for what the runtime uid cannot use.

    ``entries`` is a list of {"path", "need": "read" | "write", "what", "children"}; a
    directory that must be written needs w+x, one that is read needs r+x, a file that is
    read needs r; ``children`` extends the check to the subdirectories (see ``expand``).
    The paths are bind-mounted into the container, so their parents on the node do not
    matter (the configuration directory stays 0700). ``gids`` are the uid's groups (its primary group at
    least). Missing paths are problems too."""
    gids = set(gids or [])
    problems = []
    for entry in expand(entries, listdir, stat):
        path, need, what = entry["path"], entry["need"], entry.get("what") or entry["path"]
        try:
            st = stat(path)
        except FileNotFoundError:
            problems.append(f"{what}: {path} does not exist (uid {uid} needs to {need} it)")
            continue
        except OSError as exc:
            problems.append(f"{what}: cannot stat {path}: {exc}")
            continue
        is_dir = stat_mod.S_ISDIR(st.st_mode)
        bits = ("wx" if is_dir else "w") if need == "write" else ("rx" if is_dir else "r")
        owner = f"owner {st.st_uid}:{st.st_gid} mode {stat_mod.S_IMODE(st.st_mode):04o}"
        if not _allowed(st, uid, gids, bits):
            problems.append(f"{what}: uid {uid} cannot {need} {path} ({owner}): "
                            f"chown it to {uid} or re-run the playbook")
    return problems


# --------------------------------------------------------------------------- pull by digest

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
))


def parse_ref(ref):
    """{registry, repository, tag, digest, name} of ``[registry/]repo[:tag]@sha256:<hex>``;
    ImageError when it is not named by digest. Docker's rules: the first component is a
    registry when it has a dot or a colon or is localhost; otherwise Docker Hub
    (registry-1.docker.io, library/ for a single name)."""
    ref = str(ref or "").strip()
    name, sep, digest = ref.partition("@")
    if not sep or not DIGEST_RE.match(digest):
        raise ImageError(f"{ref!r} is not NAME@sha256:<64 hex digits> (a pull names its image by digest)")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = "registry-1.docker.io", name
        if "/" not in path:
            path = "library/" + path
    tag = ""
    if ":" in path.rsplit("/", 1)[-1]:
        path, tag = path.rsplit(":", 1)
    return {"registry": registry, "repository": path, "tag": tag, "digest": digest,
            "name": name}


def registry_scheme(registry, insecure=()):
    """http for loopback registries (Docker allows them without TLS) and those listed
    insecure; https otherwise."""
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    if host in ("localhost", "::1", "[::1]") or host.startswith("127.") or registry in set(insecure or ()):
        return "http"
    return "https"


def _bearer_challenge(header):
    """{realm, service, scope} of a WWW-Authenticate: Bearer header (or {})."""
    header = header or ""
    if not header.lower().startswith("bearer "):
        return {}
    out = {}
    for part in re.finditer(r'(\w+)="([^"]*)"', header):
        out[part.group(1)] = part.group(2)
    return out


def probe_manifest(ref, request, insecure=()):
    """Ask the registry whether ``ref``'s manifest exists, before any pull.

    ``request(method, url, headers)`` returns (status, headers dict, body bytes) or
    raises OSError for a registry that cannot be reached. Returns {ok, kind, message}:
    kind is ``ok``, ``registry_down``, ``wrong_digest`` (the tag names another digest),
    ``missing`` (no such repository or manifest) or ``denied`` (the registry wants
    credentials); every message says what was asked and what to do."""
    parts = parse_ref(ref)
    base = f"{registry_scheme(parts['registry'], insecure)}://{parts['registry']}/v2/{parts['repository']}"
    headers = {"Accept": MANIFEST_TYPES}

    def ask(reference):
        url = f"{base}/manifests/{reference}"
        status, hdrs, body = request("HEAD", url, dict(headers))
        if status == 401 and "Authorization" not in headers:
            challenge = _bearer_challenge({k.lower(): v for k, v in hdrs.items()}.get("www-authenticate"))
            if challenge.get("realm"):
                query = f"service={challenge.get('service', '')}&scope=repository:{parts['repository']}:pull"
                sep = "&" if "?" in challenge["realm"] else "?"
                t_status, _, t_body = request("GET", f"{challenge['realm']}{sep}{query}", {})
                if t_status == 200:
                    data = json.loads(t_body or b"{}")
                    found = data.get("token") or data.get("access_token")
                    if found:
                        headers["Authorization"] = f"Bearer {found}"
                        status, hdrs, body = request("HEAD", url, dict(headers))
        return status, {k.lower(): v for k, v in hdrs.items()}, body

    where = f"{parts['registry']}/{parts['repository']}"
    try:
        status, hdrs, _ = ask(parts["digest"])
    except OSError as exc:
        return {"ok": False, "kind": "registry_down",
                "message": f"registry {parts['registry']} cannot be reached ({exc}): the pull of {ref} would fail. "
                           "Check the registry (and any proxy the node needs), then re-run"}
    if status == 200:
        found = hdrs.get("docker-content-digest")
        if found and found != parts["digest"]:
            return {"ok": False, "kind": "wrong_digest",
                    "message": f"registry {where} answered {parts['digest']} with manifest {found}"}
        return {"ok": True, "kind": "ok", "message": f"{where}@{parts['digest']} is in the registry"}
    if status in (401, 403):
        return {"ok": False, "kind": "denied",
                "message": f"registry {where} refused an anonymous look-up (HTTP {status}): the image is private or "
                           "missing; log in on the node (docker login) or set runtime_image_pull_probe: false"}
    if status == 404 and parts["tag"]:
        try:
            t_status, t_hdrs, _ = ask(parts["tag"])
        except OSError:
            t_status, t_hdrs = 0, {}
        other = t_hdrs.get("docker-content-digest")
        if t_status == 200 and other and other != parts["digest"]:
            return {"ok": False, "kind": "wrong_digest",
                    "message": f"wrong digest: {where}:{parts['tag']} is {other} in the registry, the pin "
                               f"(runtime_image_pull_ref) says {parts['digest']}; review which one you mean"}
    if status == 404:
        return {"ok": False, "kind": "missing",
                "message": f"image missing: registry {where} has no manifest {parts['digest']} "
                           f"(HTTP 404): the repository or the digest is wrong, or the image was removed"}
    return {"ok": False, "kind": "registry_down",
            "message": f"registry {where} answered HTTP {status} for {parts['digest']}: not usable now"}


PULL_ERRORS = (
    ("platform", ("no matching manifest for",)),
    ("missing", ("manifest unknown", "not found: manifest", "manifest for", "repository does not exist",
                 "pull access denied", "name unknown")),
    ("registry_down", ("connection refused", "no such host", "i/o timeout", "dial tcp", "tls handshake timeout",
                       "context deadline exceeded", "network is unreachable",
                       "server gave http response to https client", "service unavailable")),
    ("no_space", ("no space left on device",)),
)


def classify_pull_error(text, ref=""):
    """(kind, message) of a failed ``docker pull``: missing, registry_down, no_space,
    platform or failed, each with what to do."""
    low = str(text or "").lower()
    tail = " ".join(str(text or "").strip().splitlines()[-2:])[:300]
    for kind, needles in PULL_ERRORS:
        if any(n in low for n in needles):
            break
    else:
        kind = "failed"
    advice = {
        "missing": "the registry has no such image or digest: check runtime_image_pull_ref",
        "registry_down": "the registry cannot be reached: check it (and the node's proxy) and re-run",
        "no_space": "Docker's data-root is full: free space (docker image prune) and re-run",
        "platform": "the image has no manifest for this node's platform (linux/arm64 on a Spark)",
        "failed": "see docker's message",
    }[kind]
    return kind, f"docker pull {ref} failed ({kind}): {advice}. docker said: {tail}"


def digest_matches(repo_digests, ref):
    """True when ``docker image inspect``'s RepoDigests hold the ref's repository@digest."""
    parts = parse_ref(ref)
    repo = parts["name"]
    if ":" in repo.rsplit("/", 1)[-1]:
        repo = repo.rsplit(":", 1)[0]
    return f"{repo}@{parts['digest']}" in set(repo_digests or [])


def exports_for(image_env, paths):
    """The recipe's exports over the image's own env, from a profile's runtime paths
    {path: [...], ld_library_path: [...], cuda_home: ...}: the listed directories first on
    PATH and LD_LIBRARY_PATH, CUDA_HOME the image's or the profile's (CUDA_PATH and
    CUDAToolkit_ROOT follow it)."""
    image_env = image_env or {}
    paths = paths or {}

    def joined(first, rest):
        parts = list(first) + [p for p in (rest or "").split(":") if p and p not in first]
        return ":".join(parts)

    cuda_home = image_env.get("CUDA_HOME") or paths.get("cuda_home") or "/usr/local/cuda"
    return {
        "PATH": joined(paths.get("path") or [], image_env.get("PATH")
                       or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "CUDA_HOME": cuda_home,
        "CUDA_PATH": image_env.get("CUDA_PATH") or cuda_home,
        "CUDAToolkit_ROOT": image_env.get("CUDAToolkit_ROOT") or cuda_home,
        "LD_LIBRARY_PATH": joined(paths.get("ld_library_path") or [], image_env.get("LD_LIBRARY_PATH")),
    }
