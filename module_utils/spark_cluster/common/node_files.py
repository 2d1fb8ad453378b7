"""Many small files, directories and removals on a node in one module call (spark_node_files).
Desired state of paths; the plain file helpers (atomic replace) are in common.fileio.

A no-op re-run of site.yml pays one round trip per task and per loop item; a loop of
`copy` or `file` over eight paths costs eight. These plain functions compare and apply a
whole list at once: directories (mode, owner, group), files with given content, paths that
must be absent. Each returns what it changed (or would change, in check mode)."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat

from .fileio import write_atomic


class FilesError(Exception):
    """A path that cannot be made what was asked (message says what and what to do)."""


def _lookup(name, getter, kind, attr):
    if name is None or name == "":
        return None
    if str(name).isdigit():  # a numeric id needs no entry (the runtime image's uid 1000)
        return int(name)
    try:
        return getattr(getter(name), attr)
    except KeyError:
        raise FilesError(f"{kind} {name!r} does not exist on this node: create it first, or give a numeric id") from None


def ids(owner, group):
    """uid and gid of owner and group names or numbers (None: leave as is)."""
    return _lookup(owner, pwd.getpwnam, "user", "pw_uid"), _lookup(group, grp.getgrnam, "group", "gr_gid")


def mode_bits(mode):
    """'0644' / '644' / 420 to 0o644."""
    if isinstance(mode, int):
        return mode
    try:
        return int(str(mode), 8)
    except ValueError:
        raise FilesError(f"mode {mode!r} is not an octal number like '0644'") from None


def _attrs_differ(st, mode, uid, gid):
    return (
        stat.S_IMODE(st.st_mode) != mode
        or (uid is not None and st.st_uid != uid)
        or (gid is not None and st.st_gid != gid)
    )


def _set_attrs(path, mode, uid, gid):
    os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    os.chmod(path, mode)


def own_below(path, uid, gid, check=False):
    """owner and group (None: leave as is) on everything below path, as the file module's
    recurse does (modes untouched; a symlink itself, never what it points to). Changed or not."""
    changed = False
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            entry = os.path.join(top, name)
            st = os.lstat(entry)
            if (uid is not None and st.st_uid != uid) or (gid is not None and st.st_gid != gid):
                changed = True
                if not check:
                    os.lchown(entry, -1 if uid is None else uid, -1 if gid is None else gid)
    return changed


def ensure_directory(path, mode="0755", owner=None, group=None, check=False, recurse=False):
    """Create path (and its parents) as a directory with mode/owner/group; with recurse, the
    owner and group also on everything below it (own_below). Changed or not."""
    mode, (uid, gid) = mode_bits(mode), ids(owner, group)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not check:
            os.makedirs(path, exist_ok=True)
            _set_attrs(path, mode, uid, gid)
        return True
    if not stat.S_ISDIR(st.st_mode):
        raise FilesError(f"{path} exists and is not a directory: move it away, then re-run")
    below = own_below(path, uid, gid, check) if recurse else False
    if not _attrs_differ(st, mode, uid, gid):
        return below
    if not check:
        _set_attrs(path, mode, uid, gid)
    return True


def ensure_file(path, content, mode="0644", owner=None, group=None, check=False, validate=None):
    """Write content (bytes) to path atomically when it differs; fix mode/owner/group.
    validate: called with the new content's temporary path before it replaces path (only
    when the content differs, not in check mode); FilesError from it leaves path as it was."""
    mode, (uid, gid) = mode_bits(mode), ids(owner, group)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise FilesError(f"{path} exists and is not a regular file: move it away, then re-run")
    if st is not None and st.st_size == len(content):
        with open(path, "rb") as handle:
            same = handle.read() == content
        if same:
            if not _attrs_differ(st, mode, uid, gid):
                return False
            if not check:
                _set_attrs(path, mode, uid, gid)
            return True
    if check:
        return True
    if not os.path.isdir(os.path.dirname(path) or "."):
        raise FilesError(f"the directory of {path} does not exist: list it under directories too")
    write_atomic(path, content, mode=mode, keep_owner=False, validate=validate)
    if uid is not None or gid is not None:
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    return True


def ensure_absent(path, check=False):
    """Remove path (file, link or directory tree) when present."""
    if not os.path.lexists(path):
        return False
    if not check:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    return True


def _validation(dest, command, validator):
    def run(tmp):
        try:
            validator(command, tmp)
        except FilesError as exc:
            raise FilesError(f"{dest}: {exc}") from None
    return run


def apply(directories=(), files=(), absent=(), check=False, validator=None):
    """Directories first, then files (in the order given), then removals. Returns the
    changed paths, in order. A file entry's ``validate`` (a command with %s, e.g.
    ``nft -c -f %s``) is handed with the temporary path to ``validator(command, tmp)``,
    which raises FilesError when the content is refused."""
    changed = []
    for entry in directories:
        if ensure_directory(entry["path"], entry.get("mode") or "0755", entry.get("owner"), entry.get("group"), check,
                            bool(entry.get("recurse"))):
            changed.append(entry["path"])
    for entry in files:
        content = entry["content"]
        if isinstance(content, str):
            content = content.encode()
        command = entry.get("validate")
        if command and validator is None:
            raise FilesError(f"{entry['dest']}: a validate command was given but nothing can run it")
        check_content = _validation(entry["dest"], command, validator) if command else None
        if ensure_file(entry["dest"], content, entry.get("mode") or "0644", entry.get("owner"), entry.get("group"), check,
                       validate=check_content):
            changed.append(entry["dest"])
    for path in absent:
        if ensure_absent(path, check):
            changed.append(path)
    return changed
