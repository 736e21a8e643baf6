"""The lazy filesystem's storage faults beyond a clean cut keep exactly what each kind promises:
a torn-op a strict prefix of one unsynced write, a torn-seq a non-prefix subset of them, a crash
at a named call what was durable at that call. Driven through the real FUSE mount."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import find

from prism_testkit.faults.lazyfs import PAGE, LazyFilesystem, StorageFault
from prism_testkit.faults.power_loss import SUITE_FAULTS, storage_faults
from prism_testkit.provision.lazymount import LazyMount
from tests.test_lazyfs import fsync_path, mount  # the mount holds one file, "existing"

__all__ = ["mount"]  # the fixture, used by name

SEEDS = range(8)
BASE = b"synced base|"


def synced_file(path: Path, content: bytes) -> None:
    """A file whose content and name are durable."""
    path.write_bytes(content)
    fsync_path(path)
    fsync_path(path.parent)


def unsynced_writes(path: Path, writes: list[tuple[int, bytes]]) -> None:
    """Each (offset, bytes) one write(2), hence one FUSE write; no fsync."""
    fd = os.open(path, os.O_WRONLY)
    try:
        for offset, data in writes:
            assert os.pwrite(fd, data, offset) == len(data)
    finally:
        os.close(fd)


def appends(n: int, size: int) -> list[tuple[int, bytes]]:
    return [(len(BASE) + i * size, bytes([ord("a") + i]) * size) for i in range(n)]


def the_only_file(detail: dict[str, Any], path: str) -> dict[str, Any]:
    kept = detail["kept"]
    assert isinstance(kept, list), detail
    assert len(kept) == 1, detail
    assert kept[0]["path"] == path, detail
    return dict(kept[0])


@pytest.mark.parametrize("seed", SEEDS)
def test_torn_op_keeps_the_writes_before_it_and_a_strict_prefix_of_one_write(mount: LazyMount, seed: int) -> None:
    data = mount.mountpoint
    writes = {"/log": appends(4, 100), "/other": [(len(BASE), b"other: one write of its own")]}
    for name, file_writes in writes.items():
        synced_file(data / name[1:], BASE)
        unsynced_writes(data / name[1:], file_writes)
    mount.power_cut(StorageFault("torn-op", seed=seed))
    detail = mount.faults[-1]
    assert isinstance(detail["kept"], list), detail
    assert len(detail["kept"]) == 1, detail
    found = detail["kept"][0]
    (torn,) = found["torn"]
    chosen = writes[found["path"]]
    index, kept_bytes = torn["write"], torn["kept_bytes"]
    assert 0 < kept_bytes < len(chosen[index][1]), f"not a strict, non-empty prefix: {detail}"
    assert found["kept"] == list(range(index + 1)), detail
    expected = BASE + b"".join(w for _, w in chosen[:index]) + chosen[index][1][:kept_bytes]
    assert (data / found["path"][1:]).read_bytes() == expected
    for name in writes.keys() - {found["path"]}:
        assert (data / name[1:]).read_bytes() == BASE  # every other unsynced write is dropped


@pytest.mark.parametrize("seed", SEEDS)
def test_torn_op_with_page_granularity_tears_at_a_page_boundary_of_the_file(mount: LazyMount, seed: int) -> None:
    data = mount.mountpoint
    synced_file(data / "pages", b"")
    page_write = bytes(range(256)) * (3 * PAGE // 256) + b"tail"  # crosses three page boundaries
    unsynced_writes(data / "pages", [(0, page_write)])
    mount.power_cut(StorageFault("torn-op", seed=seed, granularity="page"))
    (torn,) = the_only_file(mount.faults[-1], "/pages")["torn"]
    end = torn["offset"] + torn["kept_bytes"]  # the kernel may have split the write(2) in FUSE writes
    assert end % PAGE == 0, torn
    assert 0 < torn["kept_bytes"] < torn["length"], torn
    assert (data / "pages").read_bytes() == page_write[:end]


@pytest.mark.parametrize("seed", SEEDS)
def test_torn_seq_keeps_a_subset_of_the_unsynced_writes_that_is_not_a_prefix(mount: LazyMount, seed: int) -> None:
    data = mount.mountpoint
    synced_file(data / "seq", BASE)
    writes = appends(6, 10)
    unsynced_writes(data / "seq", writes)
    mount.power_cut(StorageFault("torn-seq", seed=seed))
    found = the_only_file(mount.faults[-1], "/seq")
    kept = found["kept"]
    assert isinstance(kept, list)
    assert any(i not in kept for i in range(max(kept))), f"a prefix, not a torn sequence: {kept}"
    assert found["torn"] == []  # whole writes, none split
    expected = bytearray(BASE)
    for i, (offset, chunk) in enumerate(writes):
        if i in kept:
            expected[len(expected) : offset] = b"\0" * max(0, offset - len(expected))  # a hole before it
            expected[offset : offset + len(chunk)] = chunk
    assert (data / "seq").read_bytes() == bytes(expected)


def test_the_same_seed_keeps_the_same_writes(mount: LazyMount) -> None:
    data = mount.mountpoint
    synced_file(data / "seq", BASE)
    kept = []
    for _ in range(2):
        unsynced_writes(data / "seq", appends(8, 10))
        mount.power_cut(StorageFault("torn-seq", seed=42))
        kept.append(mount.faults[-1]["kept"])
        synced_file(data / "seq", BASE)
    assert kept[0] == kept[1]


def test_torn_writes_never_resurrect_a_file_whose_name_was_not_synced(mount: LazyMount) -> None:
    data = mount.mountpoint
    synced_file(data / "seq", BASE)
    (data / "unnamed").write_bytes(b"x" * 50)
    unsynced_writes(data / "unnamed", appends(4, 10))
    unsynced_writes(data / "seq", appends(4, 10))
    mount.power_cut(StorageFault("torn-seq", seed=7))
    assert sorted(os.listdir(data)) == ["existing", "seq"]
    assert [f["path"] for f in mount.faults[-1]["kept"]] == ["/seq"]


def test_crash_after_fsync_keeps_what_that_fsync_covered_and_nothing_later(mount: LazyMount) -> None:
    data = mount.mountpoint
    synced_file(data / "f", b"")
    synced_file(data / "g", b"")
    mount.arm(StorageFault("crash", op="fsync", when="after", path="/f", nth=2))
    fd = os.open(data / "f", os.O_WRONLY)
    try:
        os.write(fd, b"one ")
        os.fsync(fd)  # the first fsync of /f
        fsync_path(data / "g")  # another path: not counted
        os.write(fd, b"two ")
        os.fsync(fd)  # the second: it completes, then the machine dies
        with pytest.raises(OSError) as dead:
            os.write(fd, b"three")
        assert dead.value.errno == errno.EIO
    finally:
        os.close(fd)
    mount.power_cut()
    assert mount.faults[-1]["crashed_at"] == {"op": "fsync", "when": "after", "path": "/f", "nth": 2}
    assert (data / "f").read_bytes() == b"one two "


def test_crash_before_fsync_keeps_only_what_the_earlier_fsync_covered(mount: LazyMount) -> None:
    data = mount.mountpoint
    synced_file(data / "f", b"")
    mount.arm(StorageFault("crash", op="fsync", when="before", path="/f", nth=2))
    fd = os.open(data / "f", os.O_WRONLY)
    try:
        os.write(fd, b"one ")
        os.fsync(fd)
        os.write(fd, b"two ")
        with pytest.raises(OSError):
            os.fsync(fd)  # never ran
    finally:
        os.close(fd)
    mount.power_cut()
    assert (data / "f").read_bytes() == b"one "


def test_crash_before_rename_leaves_the_old_name(mount: LazyMount) -> None:
    data = mount.mountpoint
    synced_file(data / "old", b"content")
    mount.arm(StorageFault("crash", op="rename", when="before", path="/old"))
    with pytest.raises(OSError):
        os.rename(data / "old", data / "new")
    assert sorted(os.listdir(data)) == ["existing", "old"]  # it never happened, even in the live tree
    with pytest.raises(OSError):
        fsync_path(data)  # the machine is dead: nothing becomes durable any more
    mount.power_cut()
    assert sorted(os.listdir(data)) == ["existing", "old"]
    assert (data / "old").read_bytes() == b"content"


def test_crash_after_the_directory_fsync_of_a_rename_keeps_the_new_name(mount: LazyMount) -> None:
    data = mount.mountpoint
    synced_file(data / "old", b"content")
    mount.arm(StorageFault("crash", op="fsyncdir", when="after", path="/"))
    os.rename(data / "old", data / "new")
    fsync_path(data)
    with pytest.raises(OSError):
        (data / "late").write_bytes(b"after the crash")
    mount.power_cut()
    assert sorted(os.listdir(data)) == ["existing", "new"]


def test_crash_after_the_nth_write_on_a_pattern_then_torn_keeps_part_of_the_frozen_writes(mount: LazyMount) -> None:
    data = mount.mountpoint
    synced_file(data / "wal.log", BASE)
    synced_file(data / "other", b"")
    mount.arm(StorageFault("crash", op="write", when="after", path="/*.log", nth=3, torn="torn-op", seed=1))
    unsynced_writes(data / "other", [(0, b"not counted")])
    with pytest.raises(OSError):
        unsynced_writes(data / "wal.log", appends(5, 10))  # the 4th write fails
    mount.power_cut()
    detail = mount.faults[-1]
    assert detail["crashed_at"]["nth"] == 3
    (found,) = [f for f in detail["kept"] if f["path"] == "/wal.log"] or [None]
    assert found is not None, detail
    assert found["writes"] == 3, detail
    content = (data / "wal.log").read_bytes()
    assert content.startswith(BASE)
    assert len(BASE) < len(content) < len(BASE) + 30
    assert b"d" not in content[len(BASE) :]  # the 4th write never happened


def test_an_armed_crash_that_never_fires_is_a_clean_cut(mount: LazyMount) -> None:
    data = mount.mountpoint
    synced_file(data / "f", b"kept")
    mount.arm(StorageFault("crash", op="rename", path="/nothing-matches"))
    unsynced_writes(data / "f", [(0, b"lost")])
    mount.power_cut()
    assert mount.faults[-1]["crashed_at"] is None
    assert (data / "f").read_bytes() == b"kept"
    (data / "f").write_bytes(b"alive again")  # the cut disarmed it: writes work


def test_the_strategy_shrinks_to_a_clean_cut_and_reaches_every_kind() -> None:
    assert find(storage_faults(), lambda f: True) == StorageFault()
    for kind in ("torn-op", "torn-seq", "crash"):
        assert find(storage_faults(), lambda f, k=kind: f.kind == k).kind == kind  # type: ignore[misc]
    assert {f.kind for f in SUITE_FAULTS.values()} == {"clean", "torn-op", "torn-seq", "crash"}


def test_a_fault_round_trips_through_its_description() -> None:
    fault = StorageFault("crash", seed=9, op="rename", when="before", path="/pg_wal/*", nth=4, torn="torn-seq")
    assert StorageFault.from_dict(fault.as_dict()) == fault
    assert "op=rename" in fault.describe()
    with pytest.raises(ValueError):
        StorageFault("crash", op="mmap")


def test_past_the_journal_limit_a_files_later_writes_are_never_kept(tmp_path: Path) -> None:
    """The model alone (no FUSE): with room for two writes, a torn cut chooses among those two
    and drops the later ones, as a clean cut would; an fsync frees the room again."""
    lower = tmp_path / "lower"
    lower.mkdir()
    (lower / "f").write_bytes(BASE)
    fs = LazyFilesystem(lower, tmp_path / "blobs")
    fs.journal_limit = 25
    node = fs.node(str(lower / "f"))
    fd = os.open(lower / "f", os.O_RDWR)
    try:
        for offset, chunk in appends(4, 10):
            os.pwrite(fd, chunk, offset)
            fs.written(node, offset, offset + len(chunk), data=chunk)
        assert [c.data for c in fs.journal[node]] == [b"a" * 10, b"b" * 10]
        detail = fs.power_cut(StorageFault("torn-seq", seed=0))["fault"]
        assert detail["unrecorded_files"] == 1
        content = (lower / "f").read_bytes()
        assert b"c" not in content[len(BASE) :]
        assert b"d" not in content[len(BASE) :]
    finally:
        os.close(fd)
    fd = os.open(lower / "f", os.O_RDWR)
    try:
        os.pwrite(fd, b"x" * 30, 0)
        fs.written(node, 0, 30, data=b"x" * 30)  # more than the room: not recorded
        assert node in fs.unrecorded
        fs.sync_file(node, fd)
        fs.written(node, 0, 10, data=b"y" * 10)
        assert [c.data for c in fs.journal[node]] == [b"y" * 10]
        assert fs.journal_bytes == 10
    finally:
        os.close(fd)
