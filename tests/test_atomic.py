import os

import numpy as np
import pytest

from napari_unet.engine import atomic
from napari_unet.engine.atomic import atomic_dir, atomic_path, atomic_write_text
from napari_unet.engine.errors import UserInputError


def test_failed_write_leaves_target_untouched(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_write_replaces_and_refuses_without_overwrite(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    with pytest.raises(UserInputError, match="already exists"):
        atomic_write_text(target, "three", overwrite=False)
    assert target.read_text() == "two"


def test_temporary_name_keeps_suffix(tmp_path):
    with atomic_path(tmp_path / "model.keras") as tmp:
        assert tmp.suffix == ".keras" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")


def test_atomic_dir(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "f").write_text("x")
        assert not target.exists()
    assert (target / "f").read_text() == "x"
    with pytest.raises(UserInputError):
        with atomic_dir(target):
            pass
    with atomic_dir(target, overwrite=True) as tmp:
        (tmp / "g").write_text("y")
    assert sorted(os.listdir(target)) == ["g"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_unwritable_folder_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    with pytest.raises(UserInputError, match="not writable"):
        atomic_write_text(tmp_path / "x.txt", "x")


# --------------------------------------------------------------------------- issue 16


def _synced(monkeypatch) -> list[str]:
    """Record what gets fsynced (as paths, via /proc/self/fd)."""
    seen: list[str] = []
    real = os.fsync

    def fsync(fd):
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def test_atomic_dir_syncs_every_file_and_folder(tmp_path, monkeypatch):
    seen = _synced(monkeypatch)
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a.png").write_bytes(b"a")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.png").write_bytes(b"b")
        staged = tmp
    names = [s.replace(str(staged), "<tmp>") for s in seen]
    assert {"<tmp>/a.png", "<tmp>/sub/b.png", "<tmp>/sub", "<tmp>"} <= set(names)
    assert names.index("<tmp>/sub/b.png") < names.index("<tmp>/sub") < names.index("<tmp>")
    assert seen[-1] == str(tmp_path)  # the parent, after the rename


def test_atomic_zarr_syncs_the_group_and_swaps_it_in(tmp_path, monkeypatch):
    import zarr

    from napari_unet.engine.inference.block_store import atomic_zarr

    target = tmp_path / "p.zarr"
    for value in (1, 2):
        seen = _synced(monkeypatch)
        with atomic_zarr(target, overwrite=True) as tmp:
            zarr.open_group(str(tmp), mode="w").create_array("m", shape=(2, 4), dtype="u1")[...] = (
                value
            )
        assert any(s.endswith("zarr.json") for s in seen) and seen[-1] == str(tmp_path)
        monkeypatch.undo()
        assert (np.asarray(zarr.open_group(str(target), mode="r")["m"][...]) == value).all()
    assert sorted(os.listdir(tmp_path)) == ["p.zarr"]  # no .old folder, no temporary


@pytest.mark.parametrize("native", [True, False], ids=["renameat2", "fallback"])
def test_no_replace_is_enforced_at_the_rename(tmp_path, monkeypatch, native):
    """A target that appears after the first check is never replaced: the rename itself
    refuses (renameat2 NOREPLACE, or link / mkdir claims without it)."""
    if not native:
        monkeypatch.setattr(atomic, "_RENAMEAT2", None)
    elif atomic._RENAMEAT2 is None:
        pytest.skip("no renameat2 on this system (the fallback case covers it)")
    replaced = []
    monkeypatch.setattr(os, "replace", lambda *a: replaced.append(a))  # must not be used
    target = tmp_path / "x.txt"
    with pytest.raises(UserInputError, match="already exists"):
        with atomic_path(target, overwrite=False) as tmp:
            tmp.write_text("new")
            target.write_text("appeared meanwhile")
    assert target.read_text() == "appeared meanwhile"
    folder = tmp_path / "slices"
    with pytest.raises(UserInputError, match="already exists"):
        with atomic_dir(folder) as tmp:
            (tmp / "s.png").write_bytes(b"new")
            folder.mkdir()
            (folder / "theirs.png").write_bytes(b"theirs")
    assert os.listdir(folder) == ["theirs.png"]
    empty = tmp_path / "empty"
    with pytest.raises(UserInputError, match="already exists"):
        with atomic_dir(empty) as tmp:
            empty.mkdir()  # even an empty folder that appeared is not taken over
    assert replaced == [] and sorted(os.listdir(tmp_path)) == ["empty", "slices", "x.txt"]
    atomic_write_text(tmp_path / "fresh.txt", "ok", overwrite=False)
    assert (tmp_path / "fresh.txt").read_text() == "ok"


def test_replacing_a_folder_is_one_exchange(tmp_path, monkeypatch):
    if atomic._RENAMEAT2 is None:
        pytest.skip("no renameat2 on this system")
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "old").write_text("1")
    renames = []
    real = atomic._renameat2
    monkeypatch.setattr(atomic, "_renameat2", lambda a, b, f: renames.append(f) or real(a, b, f))
    with atomic_dir(target, overwrite=True) as tmp:
        (tmp / "new").write_text("2")
    assert atomic.RENAME_EXCHANGE in renames  # swapped in one step, never removed first
    assert os.listdir(target) == ["new"] and os.listdir(tmp_path) == ["out"]


def test_commit_of_a_staged_file(tmp_path):
    staged = tmp_path / "stage" / "m.weights.h5"
    staged.parent.mkdir()
    staged.write_bytes(b"w")
    (tmp_path / "m.weights.h5").write_bytes(b"old")
    with pytest.raises(UserInputError, match="already exists"):
        atomic.commit(staged, tmp_path / "m.weights.h5", overwrite=False)
    assert (tmp_path / "m.weights.h5").read_bytes() == b"old" and staged.exists()
    atomic.commit(staged, tmp_path / "m.weights.h5", overwrite=True)
    assert (tmp_path / "m.weights.h5").read_bytes() == b"w" and not staged.exists()
