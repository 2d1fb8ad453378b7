"""The runtime image's contract, read from ``docker image inspect`` (plain functions).

The serving role renders the compose file from what the image says, not from what the
project assumes: the user it runs as, its entrypoint, its environment (PATH,
LD_LIBRARY_PATH), its working directory and labels. Images of the DSpark lineage run
as uid 1000 with ``ENTRYPOINT ["bash"]`` and keep the runtime in ``/opt/env`` (python,
vllm, nvcc for the DeepGEMM/TileLang JIT), off ``PATH``; the recipe's compose exports
``PATH``/``CUDA_HOME``/``LD_LIBRARY_PATH`` for ``/opt/env`` before it runs
``/opt/env/bin/vllm`` (``runtime_exports`` renders the same).

``check_access`` is the pre-start check that the runtime uid can read and write what it
needs (used by spark_prestart.py on the node and by the serving role): a cache it cannot
write is a clear failure before the start, not a crash loop.
"""

from __future__ import annotations

import os
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
