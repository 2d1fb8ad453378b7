"""Small file helpers shared by the modules and the node-side programs (stdlib only).

One place for what was written several times: reading a (sysfs, proc, config) file
that may be missing, and replacing a file atomically. The node-side programs import it
from the installed package (``spark_lib_dir/spark_cluster``, roles/spark_common's
tasks/node_package.yml).
"""

from __future__ import annotations

import os
import tempfile


def read_text(path, default=None, strip=True):
    """Text of ``path`` (stripped unless ``strip`` is false), or ``default`` when the
    file is missing or unreadable (sysfs answers EINVAL on empty GID slots)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return default
    return text.strip() if strip else text


def read_bytes(path):
    """Bytes of ``path``, or None when it does not exist."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def listdir(path):
    """Names in ``path``, or [] when it is missing or not a directory."""
    try:
        return os.listdir(path)
    except OSError:
        return []


def write_atomic(path, data, mode=None, default_mode=0o600, keep_owner=True, validate=None):
    """Replace ``path`` with ``data`` (str or bytes) atomically: a temporary file in the
    same directory, flushed to disk, renamed over it. Readers see the old or the new
    file, never a part of one.

    ``mode``: the new file's mode; None keeps the old file's mode, or ``default_mode``
    when there is none. The temporary file never has wider permissions than the final
    one. ``keep_owner``: an existing file's owner and group are kept (the caller runs
    as root, e.g. a systemd unit rewriting a root-owned or runtime-user file).
    ``validate``: called with the temporary file's path before the rename; an exception
    it raises leaves ``path`` as it was (a ruleset checked with ``nft -c`` first)."""
    try:
        st = os.stat(path)
        old_mode, uid, gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
    except FileNotFoundError:
        old_mode, uid, gid = default_mode, None, None
    if mode is None:
        mode = old_mode
    payload = data.encode("utf-8") if isinstance(data, str) else data
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if keep_owner and uid is not None and (uid, gid) != (os.getuid(), os.getgid()):
            os.chown(tmp, uid, gid)
        if validate is not None:
            validate(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
