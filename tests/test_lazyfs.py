"""The lazy filesystem drops exactly what was never synced: file content without fsync, names
(creates, renames, unlinks) without a directory fsync."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from prism_testkit.faults.lazyfs import LazyFilesystem
from prism_testkit.faults.lazyfs_daemon import LazyOperations
from prism_testkit.provision.lazymount import LazyMount, fuse_unavailable_reason
from prism_testkit.provision.mounts import is_mounted

UNAVAILABLE = fuse_unavailable_reason()


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[LazyMount]:
    if UNAVAILABLE is not None:  # loud: these tests are the proof the power-loss rows rely on
        pytest.fail(f"FUSE is unavailable, the lazy filesystem cannot be tested: {UNAVAILABLE}")
    data = tmp_path / "data"
    data.mkdir()
    (data / "existing").write_bytes(b"on disk before the mount")
    lazy = LazyMount.over(data)
    try:
        yield lazy
    finally:
        lazy.unmount()
    assert not is_mounted(data)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path: Path, data: bytes, *, sync: bool, flags: int = os.O_CREAT | os.O_WRONLY | os.O_TRUNC) -> None:
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def test_content_present_at_mount_time_survives_a_cut(mount: LazyMount) -> None:
    mount.power_cut()
    assert (mount.mountpoint / "existing").read_bytes() == b"on disk before the mount"


def test_a_write_without_fsync_is_gone_after_a_cut(mount: LazyMount) -> None:
    data = mount.mountpoint
    write(data / "existing", b"overwritten, never synced", sync=False)
    write(data / "new", b"never synced", sync=False)
    fsync_path(data)  # the new name is durable, its content is not
    assert (data / "new").read_bytes() == b"never synced"  # a running process sees its write
    report = mount.power_cut()
    assert report["unsynced_files"] == 2
    assert (data / "existing").read_bytes() == b"on disk before the mount"
    assert (data / "new").read_bytes() == b""


def test_a_rename_without_a_directory_fsync_is_counted_as_discarded(mount: LazyMount) -> None:
    """Issue 53: a file written and fsynced, then renamed into place with no fsync of its
    directory, is undone by a cut though no byte of content is lost; the report said "0 unsynced
    files, 0 bytes" beside every acknowledged write lost. The rename is counted."""
    data = mount.mountpoint
    write(data / "db.tmp", b"the whole database", sync=True)
    fsync_path(data)  # the temp name is durable
    os.rename(data / "db.tmp", data / "db")  # into place: its directory never fsynced
    report = mount.power_cut()
    assert (report["unsynced_files"], report["unsynced_bytes"]) == (0, 0)
    assert (report["unsynced_dir_ops"], report["unsynced_renames"]) == (1, 1), report
    assert sorted(os.listdir(data)) == ["db.tmp", "existing"]  # what the count stood for: undone


def test_creates_and_unlinks_count_until_their_directory_is_fsynced(mount: LazyMount) -> None:
    data = mount.mountpoint
    (data / "sub").mkdir()  # a create in the root
    write(data / "sub" / "new", b"synced content", sync=True)  # a create in sub
    os.unlink(data / "existing")  # an unlink in the root
    fsync_path(data / "sub")  # sub's create is durable, the root's two operations are not
    report = mount.power_cut()
    assert {k: report[k] for k in report if k.startswith("unsynced_") and "byte" not in k and "files" not in k} == {
        "unsynced_dir_ops": 2,
        "unsynced_creates": 1,
        "unsynced_renames": 0,
        "unsynced_unlinks": 1,
    }
    (data / "sub").mkdir()
    os.unlink(data / "existing")
    fsync_path(data)
    assert mount.power_cut()["unsynced_dir_ops"] == 0


def test_a_write_with_fsync_is_kept_after_a_cut(mount: LazyMount) -> None:
    data = mount.mountpoint
    write(data / "new", b"synced", sync=True)
    fsync_path(data)
    write(data / "existing", b"synced too", sync=True)
    mount.power_cut()
    assert (data / "new").read_bytes() == b"synced"
    assert (data / "existing").read_bytes() == b"synced too"


def test_a_cut_keeps_a_file_with_nothing_unsynced_as_it_is_and_rebuilds_the_others(mount: LazyMount) -> None:
    """A power cut takes a file whose every change was synced into the rebuilt tree as it is
    (the same inode underneath, not a copy of its durable image: copying every file made two
    thirds of the lazy filesystem's CPU), and rebuilds any file with an unsynced change, even
    one synced before it, from what was synced."""
    data, lower = mount.mountpoint, mount.state / "lower"
    write(data / "synced", b"synced", sync=True)
    write(data / "synced then changed", b"synced", sync=True)
    fsync_path(data)
    write(data / "synced then changed", b"changed, never synced", sync=False)
    before = {name: os.lstat(lower / name).st_ino for name in ("existing", "synced", "synced then changed")}
    mount.power_cut()
    assert (data / "existing").read_bytes() == b"on disk before the mount"
    assert (data / "synced").read_bytes() == b"synced"
    assert (data / "synced then changed").read_bytes() == b"synced"
    after = {name: os.lstat(lower / name).st_ino for name in before}
    assert after["existing"] == before["existing"]
    assert after["synced"] == before["synced"]
    assert after["synced then changed"] != before["synced then changed"]
    write(data / "synced", b"written after the cut", sync=False)  # a kept file is tracked as before
    mount.power_cut()
    assert (data / "synced").read_bytes() == b"synced"


def test_a_file_whose_directory_was_never_fsynced_is_gone(mount: LazyMount) -> None:
    data = mount.mountpoint
    write(data / "new", b"synced content, unsynced name", sync=True)
    mount.power_cut()
    assert sorted(os.listdir(data)) == ["existing"]


def test_an_unsynced_append_is_cut_back_to_the_synced_length(mount: LazyMount) -> None:
    data = mount.mountpoint
    write(data / "existing", b" + synced", sync=True, flags=os.O_WRONLY | os.O_APPEND)
    write(data / "existing", b" + lost", sync=False, flags=os.O_WRONLY | os.O_APPEND)
    assert (data / "existing").read_bytes() == b"on disk before the mount + synced + lost"
    mount.power_cut()
    assert (data / "existing").read_bytes() == b"on disk before the mount + synced"


def test_an_unsynced_truncate_is_undone(mount: LazyMount) -> None:
    data = mount.mountpoint
    os.truncate(data / "existing", 3)
    mount.power_cut()
    assert (data / "existing").read_bytes() == b"on disk before the mount"


def test_an_o_sync_write_is_durable_without_fsync(mount: LazyMount) -> None:
    data = mount.mountpoint
    write(data / "existing", b"O_SYNC", sync=False, flags=os.O_WRONLY | os.O_TRUNC | os.O_SYNC)
    mount.power_cut()
    assert (data / "existing").read_bytes() == b"O_SYNC"


def test_a_rename_without_directory_fsync_is_undone(mount: LazyMount) -> None:
    data = mount.mountpoint
    os.rename(data / "existing", data / "renamed")
    mount.power_cut()
    assert sorted(os.listdir(data)) == ["existing"]
    assert (data / "existing").read_bytes() == b"on disk before the mount"


def test_a_rename_with_directory_fsync_is_kept_with_content_synced_under_the_new_name(mount: LazyMount) -> None:
    data = mount.mountpoint
    os.rename(data / "existing", data / "renamed")
    fsync_path(data)
    write(data / "renamed", b"new content", sync=True)
    mount.power_cut()
    assert sorted(os.listdir(data)) == ["renamed"]
    assert (data / "renamed").read_bytes() == b"new content"


def test_an_atomic_replace_is_all_or_nothing(mount: LazyMount) -> None:
    """The write-temp, fsync, rename, fsync-dir idiom: before the dir fsync the old version."""
    data = mount.mountpoint
    write(data / "tmp", b"version 2", sync=True)
    os.replace(data / "tmp", data / "existing")
    mount.power_cut()
    assert (data / "existing").read_bytes() == b"on disk before the mount"
    write(data / "tmp", b"version 2", sync=True)
    os.replace(data / "tmp", data / "existing")
    fsync_path(data)
    mount.power_cut()
    assert (data / "existing").read_bytes() == b"version 2"
    assert sorted(os.listdir(data)) == ["existing"]


def test_an_unlink_without_directory_fsync_is_undone(mount: LazyMount) -> None:
    data = mount.mountpoint
    os.unlink(data / "existing")
    mount.power_cut()
    assert (data / "existing").read_bytes() == b"on disk before the mount"


def test_new_subdirectories_need_their_own_and_their_parents_fsync(mount: LazyMount) -> None:
    data = mount.mountpoint
    (data / "sub").mkdir()
    write(data / "sub" / "f", b"deep", sync=True)
    fsync_path(data)  # names "sub", not its content
    mount.power_cut()
    assert os.listdir(data / "sub") == []
    write(data / "sub" / "f", b"deep", sync=True)
    fsync_path(data / "sub")
    mount.power_cut()
    assert (data / "sub" / "f").read_bytes() == b"deep"


def test_a_write_back_makes_every_name_and_byte_so_far_durable_and_nothing_after(mount: LazyMount) -> None:
    """An established data dir (the kernel wrote everything back): new directories, files
    and unsynced content survive a later cut; what is written after the write-back does not."""
    data = mount.mountpoint
    (data / "stream" / "msgs").mkdir(parents=True)
    write(data / "stream" / "msgs" / "1.blk", b"established", sync=False)
    made = mount.write_back()
    assert made == {"synced_files": 1, "synced_bytes": len(b"established")}
    write(data / "stream" / "msgs" / "1.blk", b"+later", sync=False, flags=os.O_WRONLY | os.O_APPEND)
    write(data / "stream" / "msgs" / "2.blk", b"named, never synced", sync=True)
    mount.power_cut()
    assert (data / "stream" / "msgs" / "1.blk").read_bytes() == b"established"
    assert os.listdir(data / "stream" / "msgs") == ["1.blk"]


def test_ownership_and_mode_of_synced_files_survive(mount: LazyMount) -> None:
    data = mount.mountpoint
    write(data / "owned", b"x", sync=True)
    os.chmod(data / "owned", 0o600)
    os.chown(data / "owned", 1234, 4321)
    fsync_path(data / "owned")
    fsync_path(data)
    mount.power_cut()
    st = os.stat(data / "owned")
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o600, 1234, 4321)


def test_a_file_handle_open_across_a_cut_fails_instead_of_writing_into_the_new_tree(mount: LazyMount) -> None:
    data = mount.mountpoint
    fd = os.open(data / "existing", os.O_WRONLY)
    try:
        mount.power_cut()
        with pytest.raises(OSError):
            os.write(fd, b"from before the cut")
    finally:
        os.close(fd)
    assert (data / "existing").read_bytes() == b"on disk before the mount"


def test_a_new_directory_on_a_dead_files_inode_number_is_rebuilt_as_a_directory(tmp_path: Path) -> None:
    """The model alone (no FUSE): ext4 hands a deleted file's inode number to the next mkdir. A
    directory fsync that maps the new name by that number must not take the dead file's node (a
    data dir came back with ``snapshots`` as a file, and nats-server could not start)."""
    lower = tmp_path / "lower"
    lower.mkdir()
    fs = LazyFilesystem(lower, tmp_path / "blobs")
    (lower / "old").write_bytes(b"a dead file's synced content")
    dead = fs.created(str(lower / "old"))
    fd = os.open(lower / "old", os.O_RDONLY)
    try:
        fs.sync_file(dead, fd)
    finally:
        os.close(fd)
    fs.sync_dir(str(lower))
    os.unlink(lower / "old")
    (lower / "snapshots").mkdir()
    # the state a reused number leaves before the mkdir's own bookkeeping ran
    fs.node_of_inode[os.lstat(lower / "snapshots").st_ino] = dead
    fs.sync_dir(str(lower))
    fs.power_cut()
    assert (lower / "snapshots").is_dir()
    assert not (lower / "old").exists()


def test_a_directory_fsync_racing_a_mkdir_sees_the_new_directorys_own_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's mkdir gives the new inode its node before another thread's directory fsync
    can list the name: the fsync, started while the mkdir runs, maps the name to that node."""
    lower = tmp_path / "lower"
    lower.mkdir()
    fs = LazyFilesystem(lower, tmp_path / "blobs")
    ops = LazyOperations(fs)
    monkeypatch.setattr(ops, "_owned_by_caller", lambda live: None)
    racer: list[threading.Thread] = []
    real_mkdir = os.mkdir

    def mkdir_then_race(path: str, mode: int = 0o777) -> None:
        real_mkdir(path, mode)
        racer.append(threading.Thread(target=fs.sync_dir, args=(str(lower),)))
        racer[0].start()
        racer[0].join(timeout=0.5)  # unlocked, the fsync runs to completion in this window

    monkeypatch.setattr(os, "mkdir", mkdir_then_race)
    ops.mkdir("/snapshots", 0o755)
    racer[0].join()
    monkeypatch.setattr(os, "mkdir", real_mkdir)
    assert fs.image[fs.ROOT].entries["snapshots"] == fs.node(str(lower / "snapshots"))
