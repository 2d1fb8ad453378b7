"""The Hugging Face hub cache and the node-local JIT caches: the one place for their rules.

Plain functions (stdlib only), used by the modules ``hf_cache_facts``,
``hf_cache_snapshot`` and ``hf_cache_key`` and runnable on a node
(``python3 -m spark_cluster.node.cache check-exports FILE``, used to validate the rendered NFS
export before it is installed).

Hub cache layout (what ``hf download --cache-dir`` writes)::

    <hub>/models--<org>--<name>/blobs/<sha256 or git-sha1>    file contents
    <hub>/models--<org>--<name>/refs/<branch>                 commit hash
    <hub>/models--<org>--<name>/snapshots/<commit>/<file>     symlink -> ../../blobs/<hash>

Every blob is named by a hash of its content (sha256 for LFS files such as the
safetensors shards, the git blob sha1 for small files such as config.json), so a
copy can be verified against its own names: no second source of truth is needed.

JIT/autotune caches: both ranks JIT into them, so they are node-local (never on the
share), and an autotune hit on one rank only deadlocks the engine launch, so every
node holds the head's tuned caches or none. ``<jit_dir>/.spark-cache-key`` records
which runtime image produced the directory and a hash of its listing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shutil
import sys

from ..common.fileio import write_atomic

MODES = ("nfs", "rsync")
MISMATCH_POLICIES = ("copy", "clear")
KEY_FILE = ".spark-cache-key"
NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "sshfs", "fuse.sshfs", "glusterfs", "ceph", "9p", "afs")
HEX40 = re.compile(r"^[0-9a-f]{40}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
GB = 1000**3


class CacheError(Exception):
    """A problem with the cache the caller must see (message names the path)."""


# ---------------------------------------------------------------- hub cache layout


def repo_dir(hub_dir, repo, repo_type="model"):
    """``<hub>/models--org--name`` for ``org/name``."""
    if not repo or repo.count("/") != 1 or any(not part for part in repo.split("/")):
        raise CacheError(f"hf_cache_repo: expected 'org/name', found {repo!r}")
    return os.path.join(hub_dir, f"{repo_type}s--" + repo.replace("/", "--"))


def resolve_revision(rdir, revision):
    """Commit hash for a branch/tag (``refs/<revision>``) or a commit hash; None if unknown."""
    if HEX40.match(revision or ""):
        return revision
    ref = os.path.join(rdir, "refs", revision or "main")
    try:
        with open(ref, encoding="ascii") as handle:
            commit = handle.read().strip()
    except OSError:
        return None
    return commit if HEX40.match(commit) else None


def dir_bytes(path):
    """Bytes of the regular files below path (symlinks not followed); 0 if missing."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                try:
                    total += os.lstat(full).st_size
                except OSError:
                    pass
    return total


def snapshot_status(hub_dir, repo, revision="main", expected_shards=0):
    """Is the snapshot of repo@revision complete in hub_dir?

    Complete means: the revision resolves to a commit, its snapshot holds config.json,
    every shard named in model.safetensors.index.json (or at least one safetensors
    file without an index), at least ``expected_shards`` shards, every file resolves
    to a non-empty blob, and no ``*.incomplete`` download is left in blobs/.
    """
    rdir = repo_dir(hub_dir, repo)
    status = {
        "repo_dir": rdir,
        "commit": None,
        "snapshot_dir": None,
        "complete": False,
        "files": 0,
        "shards": 0,
        "missing": [],
        "incomplete_blobs": [],
        "bytes_present": dir_bytes(os.path.join(rdir, "blobs")),
    }
    commit = resolve_revision(rdir, revision)
    if commit is None:
        status["missing"] = [f"refs/{revision}"]
        return status
    snap = os.path.join(rdir, "snapshots", commit)
    status.update(commit=commit, snapshot_dir=snap)
    if not os.path.isdir(snap):
        status["missing"] = [f"snapshots/{commit}"]
        return status
    present = {}
    for root, _dirs, files in os.walk(snap):
        for name in files:
            full = os.path.join(root, name)
            present[os.path.relpath(full, snap)] = full
    required = {"config.json"}
    index = os.path.join(snap, "model.safetensors.index.json")
    if os.path.exists(index):
        required.add("model.safetensors.index.json")
        try:
            with open(index, encoding="utf-8") as handle:
                required.update(json.load(handle).get("weight_map", {}).values())
        except (OSError, ValueError) as exc:
            status["missing"].append(f"model.safetensors.index.json unreadable: {exc}")
    shards = sorted(p for p in present if p.endswith(".safetensors"))
    if not shards and not any(p.endswith(".safetensors") for p in required):
        status["missing"].append("*.safetensors")
    missing = []
    for rel in sorted(required | set(present)):
        full = present.get(rel)
        if full is None or not os.path.exists(full) or os.path.getsize(full) == 0:
            missing.append(rel)
    if expected_shards and len(shards) < expected_shards:
        missing.append(f"{expected_shards - len(shards)} of {expected_shards} shards")
    blobs = os.path.join(rdir, "blobs")
    incomplete = sorted(n for n in (os.listdir(blobs) if os.path.isdir(blobs) else []) if n.endswith(".incomplete"))
    status.update(files=len(present), shards=len(shards), incomplete_blobs=incomplete)
    status["missing"].extend(missing)
    status["complete"] = not status["missing"] and not incomplete
    return status


def git_blob_sha1(path):
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(b"blob %d\0" % os.path.getsize(path))
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_snapshot(snapshot_dir):
    """Check every file of a snapshot against the hash its blob is named by.

    Returns {"verified": n, "bytes": n, "bad": [...], "bad_paths": [...], "unverifiable": [...]}:
    a blob named by 64 hex digits must have that sha256, one named by 40 the git blob sha1.
    ``bad_paths`` are the blob files to remove so that a pull fetches them again (a pull
    keeps a file whose size and mtime match, whatever its content).
    """
    result = {"verified": 0, "bytes": 0, "bad": [], "bad_paths": [], "unverifiable": []}
    for root, _dirs, files in os.walk(snapshot_dir):
        for name in sorted(files):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, snapshot_dir)
            blob = os.path.basename(os.path.realpath(full))
            if not os.path.isfile(full):
                result["bad"].append(f"{rel}: missing blob {blob}")
                continue
            if HEX64.match(blob):
                actual = file_sha256(full)
            elif HEX40.match(blob):
                actual = git_blob_sha1(full)
            else:
                result["unverifiable"].append(rel)
                continue
            if actual != blob:
                result["bad"].append(f"{rel}: content hash {actual[:12]} != blob name {blob[:12]}")
                result["bad_paths"].append(os.path.realpath(full))
            else:
                result["verified"] += 1
                result["bytes"] += os.path.getsize(full)
    return result




# ---------------------------------------------------------------- paths and disk


def _norm(path):
    return os.path.normpath(os.path.abspath(path))


def inside(path, parent):
    """True when path is parent or below it (lexically, after normalisation)."""
    path, parent = _norm(path), _norm(parent)
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def mount_of(path, mounts_text):
    """(mount point, fs type) of the filesystem holding path, from /proc/mounts text."""
    best = ("/", "")
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if inside(path, point) and len(point) >= len(best[0]):
            best = (point, fields[2])
    return best


def existing_ancestor(path):
    path = _norm(path)
    while not os.path.exists(path) and path != "/":
        path = os.path.dirname(path)
    return path


def free_bytes(path):
    """Free bytes (for an unprivileged writer) on the filesystem that will hold path."""
    stat = os.statvfs(existing_ancestor(path))
    return stat.f_bavail * stat.f_frsize


def jit_share_problems(jit_dir, share_paths, mounts_text=""):
    """Reasons why jit_dir is not node-local (empty list when it is)."""
    problems = []
    for share in share_paths:
        if not share:
            continue
        if inside(jit_dir, share):
            problems.append(f"jit_cache_dir {jit_dir} is inside the shared hub cache {share}: both ranks would JIT into the same directories")
        elif inside(share, jit_dir):
            problems.append(f"jit_cache_dir {jit_dir} contains the shared hub cache {share}: keep them apart")
    point, fstype = mount_of(existing_ancestor(jit_dir), mounts_text)
    if fstype in NETWORK_FS or fstype.startswith("nfs"):
        problems.append(f"jit_cache_dir {jit_dir} is on a {fstype} filesystem mounted at {point}: JIT caches must be node-local")
    return problems


def validate(
    *,
    mode,
    role,
    jit_dir,
    hub_dir,
    nfs_mount_point=None,
    download=False,
    token_required=False,
    token_present=False,
    model_size_gb=0.0,
    bytes_present=0,
    free=None,
    mounts_text="",
):
    """Every problem with this node's cache settings, each naming the variable.

    role is "head" or "worker". The disk check asks for the model size minus what
    the node already holds of it, on the nodes that store the weights (the head, and
    the workers in rsync mode).
    """
    problems = []
    if mode not in MODES:
        problems.append(f"hf_cache_mode: {mode!r} is not one of {', '.join(MODES)}")
    shares = [hub_dir]
    if mode == "nfs" and nfs_mount_point:
        shares.append(nfs_mount_point)
    problems.extend(jit_share_problems(jit_dir, shares, mounts_text))
    if role == "head" and download and token_required and not token_present:
        problems.append(
            "hf_cache_token is empty but the repository is gated (hf_cache_token_required: true): "
            "set HF_TOKEN in the controller's environment or hf_cache_token from Vault"
        )
    stores = role == "head" or mode == "rsync"
    if stores and free is not None and model_size_gb:
        needed = max(0, int(model_size_gb * GB) - int(bytes_present))
        if free < needed:
            problems.append(
                f"not enough free disk for the model at {hub_dir}: {free / GB:.1f} GB free, "
                f"{needed / GB:.1f} GB needed (hf_cache_model_size_gb={model_size_gb}, "
                f"{bytes_present / GB:.1f} GB already present)"
            )
    return problems


# ---------------------------------------------------------------- JIT cache key


def listing(jit_dir):
    """Sorted (relative path, size, mtime seconds) of the regular files and symlinks below
    jit_dir, the key file excluded."""
    entries = []
    if not os.path.isdir(jit_dir):
        return entries
    for root, dirs, files in os.walk(jit_dir):
        dirs.sort()
        for name in files:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, jit_dir)
            if rel == KEY_FILE:
                continue
            st = os.lstat(full)
            entries.append((rel, st.st_size, int(st.st_mtime)))
    entries.sort()
    return entries


def listing_hash(entries):
    digest = hashlib.sha256()
    for rel, size, mtime in entries:
        digest.update(f"{rel}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()


def compute_key(jit_dir, image_id):
    """The key of a JIT directory now: which image and what it holds."""
    entries = listing(jit_dir)
    return {
        "image_id": image_id or "",
        "listing_sha256": listing_hash(entries),
        "files": len(entries),
        "bytes": sum(size for _rel, size, _mtime in entries),
    }


def read_key(jit_dir):
    """The stored key file, or None when absent/unreadable."""
    try:
        with open(os.path.join(jit_dir, KEY_FILE), encoding="utf-8") as handle:
            key = json.load(handle)
    except (OSError, ValueError):
        return None
    return key if isinstance(key, dict) else None


def key_text(key):
    return json.dumps(key, indent=2, sort_keys=True) + "\n"


def write_key(jit_dir, key):
    """Write the key file when its content differs; returns changed. It belongs to the
    JIT directory's owner (the runtime uid), like everything the runtime finds there:
    a root-owned key would be handed back to that uid by the serving role on every run."""
    path = os.path.join(jit_dir, KEY_FILE)
    text = key_text(key)
    owner = os.stat(jit_dir)
    changed = False
    try:
        with open(path, encoding="utf-8") as handle:
            same = handle.read() == text
    except OSError:
        same = False
    if not same:
        write_atomic(path, text.encode(), mode=0o644, keep_owner=False)
        changed = True
    st = os.stat(path)
    if (st.st_uid, st.st_gid) != (owner.st_uid, owner.st_gid):
        os.chown(path, owner.st_uid, owner.st_gid)
        changed = True
    return changed


def node_state(jit_dir):
    """What a node holds now: the stored image id and the live listing."""
    stored = read_key(jit_dir) or {}
    live = compute_key(jit_dir, stored.get("image_id", ""))
    live["key_file"] = bool(stored)
    live["in_sync_with_key_file"] = bool(stored) and stored.get("listing_sha256") == live["listing_sha256"]
    return live


def same_cache(node, head):
    """Identical caches (same image, same listing), or both empty."""
    if node["files"] == 0 and head["files"] == 0:
        return True
    return node["listing_sha256"] == head["listing_sha256"] and node.get("image_id", "") == head.get("image_id", "")


def plan(node, head, policy="copy", runtime_image_id=""):
    """What to do with one worker's JIT dir before a start.

    Returns {"action": "none"|"copy"|"clear", "message": ...}. "copy" brings the head's
    caches over; "clear" empties the worker, and then the head must be emptied too (the
    caller does it): a tuned cache present on one rank only deadlocks the launch.
    """
    if policy not in MISMATCH_POLICIES:
        raise CacheError(f"jit_cache_mismatch: {policy!r} is not one of {', '.join(MISMATCH_POLICIES)}")
    if same_cache(node, head):
        what = "empty on both" if head["files"] == 0 else f"{head['files']} files, image {short(head.get('image_id'))}"
        return {"action": "none", "message": f"JIT cache matches the head's ({what})"}
    why = (
        f"worker has {node['files']} files (listing {node['listing_sha256'][:12]}, image {short(node.get('image_id'))}), "
        f"head has {head['files']} (listing {head['listing_sha256'][:12]}, image {short(head.get('image_id'))})"
    )
    if policy == "copy" and head["files"] and runtime_image_id and head.get("image_id") and head["image_id"] != runtime_image_id:
        why += f"; the head's caches came from image {short(head['image_id'])}, the runtime is {short(runtime_image_id)}"
    if policy == "copy":
        return {"action": "copy", "message": f"JIT cache differs from the head's ({why}): copying the head's caches"}
    return {"action": "clear", "message": f"JIT cache differs from the head's ({why}): clearing it on every node"}


def short(image_id):
    if not image_id:
        return "none"
    return image_id.split(":", 1)[-1][:12]


def clear_dir(jit_dir, keep=()):
    """Empty jit_dir (the directory itself and the names in keep stay); returns changed."""
    changed = False
    if not os.path.isdir(jit_dir):
        return False
    for name in os.listdir(jit_dir):
        full = os.path.join(jit_dir, name)
        if name in keep and os.path.isdir(full) and not os.path.islink(full):
            changed |= clear_dir(full)
            continue
        if name in keep:
            continue
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        else:
            os.unlink(full)
        changed = True
    return changed


# ---------------------------------------------------------------- systemd and NFS


def systemd_escape_path(path):
    """``systemd-escape --path``: /var/lib/spark-hf/hub -> var-lib-spark\\x2dhf-hub."""
    path = _norm(path).strip("/")
    if not path:
        return "-"
    out = []
    for i, char in enumerate(path):
        if char == "/":
            out.append("-")
        elif char.isascii() and (char.isalnum() or char in ":_") or (char == "." and i > 0):
            out.append(char)
        else:
            out.extend(f"\\x{byte:02x}" for byte in char.encode())
    return "".join(out)


_EXPORT_OPTIONS = {
    "ro", "rw", "sync", "async", "root_squash", "no_root_squash", "all_squash", "no_all_squash",
    "subtree_check", "no_subtree_check", "secure", "insecure", "wdelay", "no_wdelay", "hide", "nohide",
    "crossmnt", "no_acl", "acl", "mp",
}
_EXPORT_KEYED = {"sec", "fsid", "anonuid", "anongid", "mountpoint", "refer", "replicas", "mp"}


def check_exports(text):
    """Problems in an /etc/exports(.d) file, one per bad line (empty when good).

    The format exportfs(8) reads: ``/abs/path client(opt,...) client(opt,...)``,
    clients here must be IPv4 addresses or networks. Squashing root must not be
    switched off and the export must be read-only (what this project renders).
    """
    problems = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        path, clients = fields[0], fields[1:]
        if not path.startswith("/"):
            problems.append(f"line {number}: export path {path!r} is not absolute")
        if not clients:
            problems.append(f"line {number}: no client given (would export to the world)")
        for client in clients:
            match = re.fullmatch(r"([^()\s]+)\(([^()\s]*)\)", client)
            if not match:
                problems.append(f"line {number}: {client!r} is not host(options) (a space before '(' exports to the world)")
                continue
            host, opts = match.groups()
            try:
                ipaddress.ip_network(host, strict=False)
            except ValueError:
                problems.append(f"line {number}: client {host!r} is not an IPv4 address or network")
            options = [o for o in opts.split(",") if o]
            for opt in options:
                name = opt.split("=", 1)[0]
                if ("=" in opt and name not in _EXPORT_KEYED) or ("=" not in opt and opt not in _EXPORT_OPTIONS):
                    problems.append(f"line {number}: unknown export option {opt!r}")
            if "ro" not in options or "rw" in options:
                problems.append(f"line {number}: {host} must be read-only (ro)")
            if "no_root_squash" in options:
                problems.append(f"line {number}: {host} has no_root_squash")
    return problems


USAGE = "usage: python3 -m spark_cluster.node.cache check-exports FILE"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if len(argv) == 2 and argv[0] == "check-exports":
        with open(argv[1], encoding="utf-8") as handle:
            problems = check_exports(handle.read())
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    print(USAGE, file=sys.stderr)
    return 2
