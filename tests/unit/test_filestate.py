"""spark_node_files (module_utils/spark_cluster/common/node_files.py): directories, files and removals in one call; changed only when something
differs; check mode changes nothing; bad input names the path and what to do."""

import os
import stat

import pytest

import spark_node_files
from spark_cluster.common.node_files import FilesError, apply, ensure_absent, ensure_directory, ensure_file, mode_bits


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_first_apply_creates_everything_second_changes_nothing(tmp_path):
    lib = tmp_path / "lib" / "spark"
    gone = tmp_path / "old.exports"
    gone.write_text("x")
    tree = tmp_path / "olddir"
    (tree / "sub").mkdir(parents=True)
    args = dict(
        directories=[{"path": str(lib), "mode": "0750"}],
        files=[{"dest": str(lib / "a.py"), "content": "print(1)\n", "mode": "0644"}],
        absent=[str(gone), str(tree), str(tmp_path / "never")],
    )
    changed = apply(**args)
    assert changed == [str(lib), str(lib / "a.py"), str(gone), str(tree)]
    assert (lib / "a.py").read_text() == "print(1)\n" and mode(lib) == 0o750 and mode(lib / "a.py") == 0o644
    assert not gone.exists() and not tree.exists()
    assert apply(**args) == []


def test_check_mode_reports_and_changes_nothing(tmp_path):
    target = tmp_path / "a.py"
    target.write_text("old\n")
    os.chmod(target, 0o600)
    args = dict(directories=[{"path": str(tmp_path / "new")}],
                files=[{"dest": str(target), "content": "new\n"}, {"dest": str(tmp_path / "new" / "b.py"), "content": "b"}],
                absent=[str(target)])
    assert apply(**args, check=True) == [str(tmp_path / "new"), str(target), str(tmp_path / "new" / "b.py"), str(target)]
    assert target.read_text() == "old\n" and mode(target) == 0o600 and not (tmp_path / "new").exists()


def test_same_content_other_mode_fixes_the_mode_only(tmp_path):
    target = tmp_path / "a.py"
    target.write_bytes(b"same")
    os.chmod(target, 0o600)
    inode = os.stat(target).st_ino
    assert ensure_file(str(target), b"same", "0644") is True
    assert mode(target) == 0o644 and os.stat(target).st_ino == inode
    assert ensure_file(str(target), b"same", "0644") is False


def test_changed_content_of_the_same_size_is_rewritten(tmp_path):
    target = tmp_path / "a.py"
    target.write_bytes(b"aaaa")
    os.chmod(target, 0o644)
    assert ensure_file(str(target), b"bbbb", "0644") is True
    assert target.read_bytes() == b"bbbb"
    assert [p.name for p in tmp_path.iterdir()] == ["a.py"]  # no temporary file left


def test_a_file_where_a_directory_is_wanted_is_refused(tmp_path):
    (tmp_path / "x").write_text("")
    with pytest.raises(FilesError, match="exists and is not a directory: move it away"):
        ensure_directory(str(tmp_path / "x"))
    (tmp_path / "d").mkdir()
    with pytest.raises(FilesError, match="is not a regular file"):
        ensure_file(str(tmp_path / "d"), b"")
    with pytest.raises(FilesError, match="list it under directories too"):
        ensure_file(str(tmp_path / "nodir" / "f"), b"x")


def test_numeric_owner_and_group_need_no_entry(tmp_path):
    target = tmp_path / "jit"
    assert ensure_directory(str(target), "0755", "54321", "54322") is True
    st = os.stat(target)
    assert (st.st_uid, st.st_gid) == (54321, 54322)
    assert ensure_directory(str(target), "0755", "54321", "54322") is False


def test_recurse_gives_the_owner_to_everything_below_not_the_mode(tmp_path):
    hub = tmp_path / "hub"
    blob = hub / "models--x" / "blobs" / "abc"
    blob.parent.mkdir(parents=True)
    blob.write_text("w")
    os.chmod(blob, 0o600)
    link = hub / "models--x" / "snapshot"
    link.symlink_to(blob)
    os.chmod(hub, 0o755)
    # check mode sees the difference and changes nothing
    assert apply([{"path": str(hub), "owner": "54321", "group": "54322", "recurse": True}], check=True) == [str(hub)]
    assert os.lstat(blob).st_uid != 54321
    assert ensure_directory(str(hub), "0755", "54321", "54322", recurse=True) is True
    for path in (hub, blob.parent, blob, link):
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid) == (54321, 54322), path
    assert mode(blob) == 0o600  # the mode below is left alone
    assert ensure_directory(str(hub), "0755", "54321", "54322", recurse=True) is False
    # one file below given to someone else is found again, the directory itself unchanged
    os.lchown(blob, 0, 0)
    assert ensure_directory(str(hub), "0755", "54321", "54322", recurse=True) is True
    assert os.lstat(blob).st_uid == 54321
    # without recurse, only the directory itself counts
    os.lchown(blob, 0, 0)
    assert ensure_directory(str(hub), "0755", "54321", "54322") is False


def test_unknown_owner_and_bad_mode_are_refused(tmp_path):
    with pytest.raises(FilesError, match="user 'no-such-user-here' does not exist"):
        ensure_directory(str(tmp_path / "d"), owner="no-such-user-here")
    with pytest.raises(FilesError, match="not an octal number"):
        mode_bits("rw-r--r--")
    assert not (tmp_path / "d").exists()


def test_absent_removes_a_link_not_its_target(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "l").symlink_to(tmp_path / "t")
    assert ensure_absent(str(tmp_path / "l")) is True
    assert (tmp_path / "t").is_dir() and ensure_absent(str(tmp_path / "l")) is False


def test_module_main_in_check_mode_and_for_real(run_main, tmp_path):
    args = {"directories": [{"path": str(tmp_path / "lib")}],
            "files": [{"dest": str(tmp_path / "lib" / "m.py"), "content": "x = 1\n"}]}
    code, out = run_main(spark_node_files, args, check=True)
    assert code == 0 and out["changed"] and not (tmp_path / "lib").exists()
    code, out = run_main(spark_node_files, args)
    assert code == 0 and out["changed_paths"] == [str(tmp_path / "lib"), str(tmp_path / "lib" / "m.py")]
    code, out = run_main(spark_node_files, args)
    assert code == 0 and out["changed"] is False
    code, out = run_main(spark_node_files, {"directories": [{"path": str(tmp_path / "lib" / "m.py")}]})
    assert code == 1 and "is not a directory" in out["msg"]


def test_validate_sees_the_new_content_before_it_replaces_the_file(tmp_path):
    target = tmp_path / "rules.conf"
    target.write_text("old\n")
    seen = []

    def validator(command, tmp):
        seen.append((command, open(tmp).read(), target.read_text()))
        if "bad" in open(tmp).read():
            raise FilesError("nft said no")

    files = [{"dest": str(target), "content": "good\n", "mode": "0600", "validate": "nft -c -f %s"},
             {"dest": str(tmp_path / "unit"), "content": "u\n"}]
    assert apply(files=files, validator=validator) == [str(target), str(tmp_path / "unit")]
    assert seen == [("nft -c -f %s", "good\n", "old\n")] and mode(target) == 0o600
    assert apply(files=files, validator=validator) == [] and len(seen) == 1  # same content: not validated again
    assert apply(files=files, validator=validator, check=True) == []
    bad = [{"dest": str(target), "content": "bad\n", "validate": "nft -c -f %s"}, {"dest": str(tmp_path / "after"), "content": "a"}]
    with pytest.raises(FilesError, match=r"rules.conf: nft said no"):
        apply(files=bad, validator=validator)
    assert target.read_text() == "good\n" and not (tmp_path / "after").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rules.conf", "unit"]  # no temporary file left
    assert apply(files=bad, validator=validator, check=True) == [str(target), str(tmp_path / "after")]  # check mode runs nothing
    with pytest.raises(FilesError, match="nothing can run it"):
        apply(files=bad)


def test_module_validate_runs_the_command_on_the_new_content(run_main, tmp_path):
    target = tmp_path / "conf"
    args = {"files": [{"dest": str(target), "content": "ok\n", "validate": "grep -qx ok %s"}]}
    code, out = run_main(spark_node_files, args)
    assert code == 0 and out["changed_paths"] == [str(target)] and target.read_text() == "ok\n"
    args["files"][0]["content"] = "no\n"
    code, out = run_main(spark_node_files, args)
    assert code == 1 and "refused the new content (rc 1)" in out["msg"] and str(target) in out["msg"]
    assert target.read_text() == "ok\n"
    args["files"][0]["validate"] = "grep -qx ok"
    code, out = run_main(spark_node_files, args)
    assert code == 1 and "has no %s" in out["msg"]
