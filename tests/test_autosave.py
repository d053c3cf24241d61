"""Issue 7.5 (engine side): versioned atomic autosaves of corrected labels."""

from __future__ import annotations

import errno
import os
import threading
import time

import numpy as np
import pytest

from napari_unet.engine.autosave import AUTOSAVE_FOLDER, Autosaver
from napari_unet.engine.errors import UserInputError


def labels(seed: int, shape=(3, 16, 16), dtype=np.uint16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4, shape).astype(dtype)


def test_save_list_restore_round_trip(tmp_path):
    saver = Autosaver(tmp_path / "project", keep=3)
    first = saver.save("em mask", labels(0), edited_slices=[2, 0, 2], metadata={"image": "em"})
    assert first.path.parent == tmp_path / "project" / AUTOSAVE_FOLDER
    second = saver.save("em mask", labels(1), edited_slices=np.array([True, False, True]))
    versions = saver.versions("em mask")
    assert [v.path for v in versions] == [second.path, first.path]  # newest first
    restored = saver.restore(layer="em mask")
    np.testing.assert_array_equal(restored.labels, labels(1))
    assert restored.labels.dtype == np.uint16
    assert restored.edited_slices.tolist() == [0, 2]
    older = saver.restore(first)
    np.testing.assert_array_equal(older.labels, labels(0))
    assert older.metadata == {"image": "em"} and older.version.edited_slices == (0, 2)
    assert saver.layers() == ["em mask"]


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.uint32, np.int64, bool])
def test_dtypes_survive(tmp_path, dtype):
    saver = Autosaver(tmp_path)
    data = labels(3, dtype=dtype)
    saver.save("x", data)
    out = saver.restore(layer="x").labels
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, data)


def test_unchanged_labels_are_not_written_again(tmp_path):
    saver = Autosaver(tmp_path)
    assert saver.save("m", labels(0)) is not None
    assert saver.save("m", labels(0)) is None
    assert saver.save("m", labels(0), edited_slices=[1]) is not None  # bookkeeping changed
    assert saver.save("m", labels(0), edited_slices=[1], force=True) is not None
    assert len(saver.versions("m")) == 3


def test_keeps_the_last_n_versions(tmp_path):
    saver = Autosaver(tmp_path, keep=2)
    saved = [saver.save("m", labels(i)) for i in range(5)]
    assert [v.path for v in saver.versions("m")] == [saved[4].path, saved[3].path]
    assert not any(v.path.exists() for v in saved[:3])


def test_layer_names_never_collide(tmp_path):
    saver = Autosaver(tmp_path)
    names = ["em mask", "em_mask", "em/mask", "../../etc/passwd", "Zellkern ü", "", "." * 80]
    for i, name in enumerate(names):
        saver.save(name, labels(i))
    for i, name in enumerate(names):
        np.testing.assert_array_equal(saver.restore(layer=name).labels, labels(i))
        assert saver.latest(name).path.parent == saver.folder  # nothing outside autosave/
    assert sorted(saver.layers()) == sorted(names)


def test_full_disk_keeps_earlier_versions(tmp_path, monkeypatch):
    saver = Autosaver(tmp_path)
    first = saver.save("m", labels(0))

    def disk_full(handle, **arrays):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", disk_full)
    with pytest.raises(UserInputError, match="disk is full"):
        saver.save("m", labels(1))
    monkeypatch.undo()
    assert [v.path for v in saver.versions("m")] == [first.path]
    assert sorted(os.listdir(saver.folder)) == [first.path.name]  # no partial file
    np.testing.assert_array_equal(saver.restore(layer="m").labels, labels(0))
    assert saver.save("m", labels(1)) is not None  # the failed save did not count as saved


def test_leftovers_and_damaged_files_are_skipped(tmp_path):
    saver = Autosaver(tmp_path)
    good = saver.save("m", labels(0))
    stem = good.path.name[: -len(".npz")]
    (saver.folder / f".{stem}.abc.tmp.npz").write_bytes(b"partial write of a killed process")
    damaged = saver.folder / good.path.name.replace("Z.npz", "Z-1.npz")
    damaged.write_bytes(good.path.read_bytes()[:100])
    (saver.folder / "notes.txt").write_text("not an autosave")
    assert [v.path for v in saver.versions("m")] == [good.path]
    with pytest.raises(UserInputError, match="cannot read autosave"):
        saver.restore(damaged)


def test_restore_never_unpickles(tmp_path):
    saver = Autosaver(tmp_path)
    saver.folder.mkdir()
    marker = tmp_path / "CODE-WAS-EXECUTED"

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = saver.folder / "m-00000000--20250101T000000000000Z.npz"
    with open(evil, "wb") as handle:
        np.savez(
            handle,
            labels=np.array([Boom()], dtype=object),
            edited_slices=np.array([], np.int64),
            header=np.array("{}"),
        )
    assert saver.versions() == []
    with pytest.raises(UserInputError):
        saver.restore(evil)
    assert not marker.exists()


def test_bad_requests_are_clear_errors(tmp_path):
    saver = Autosaver(tmp_path)
    with pytest.raises(UserInputError, match="integers"):
        saver.save("m", np.zeros((2, 4, 4), np.float32))
    with pytest.raises(UserInputError, match="no autosave"):
        saver.restore(layer="m")
    with pytest.raises(UserInputError):
        Autosaver(tmp_path, keep=0)
    with pytest.raises(UserInputError, match="JSON"):
        saver.save("m", labels(0), metadata={"bad": object()})


def test_concurrent_saves(tmp_path):
    saver = Autosaver(tmp_path, keep=4)
    errors = []

    def work(offset):
        try:
            for i in range(6):
                saver.save(f"layer{offset % 2}", labels(offset * 100 + i))
                time.sleep(0.001)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for name in ("layer0", "layer1"):
        versions = saver.versions(name)
        assert len(versions) == 4
        for version in versions:
            saver.restore(version)


def test_lazy_labels_are_saved_slice_by_slice_and_read_back(tmp_path):
    """A zarr-backed layer is written one slice at a time (never loaded whole)."""
    import zarr

    from napari_unet.engine.autosave import combined_digest, slice_digests

    data = labels(7, shape=(5, 16, 16), dtype=np.uint8)
    store = zarr.create_array(
        str(tmp_path / "l.zarr"), shape=data.shape, chunks=(1, 16, 16), dtype="uint8"
    )
    store[:] = data
    reads = []

    class Counting:
        shape, dtype = store.shape, store.dtype

        def __getitem__(self, index):
            reads.append(index)
            return store[index]

    saver = Autosaver(tmp_path / "p")
    digest = combined_digest(slice_digests(data).values())
    version = saver.save("lazy", Counting(), edited_slices=[1, 3], digest=digest)
    assert version is not None and reads == list(range(5))  # one slice per read
    assert saver.save("lazy", Counting(), edited_slices=[1, 3], digest=digest) is None
    assert len(reads) == 5  # unchanged by the caller's digest: nothing read
    restored = saver.restore(layer="lazy")
    np.testing.assert_array_equal(restored.labels, data)
    assert restored.edited_slices.tolist() == [1, 3]


def test_slice_digests_tell_which_slices_changed():
    from napari_unet.engine.autosave import slice_digests

    data = labels(8, shape=(4, 8, 8), dtype=np.uint8)
    before = slice_digests(data)
    data[2, 0, 0] += 1
    after = slice_digests(data)
    assert [z for z in before if before[z] != after[z]] == [2]
    assert slice_digests(data[0]) == {0: after[0]}  # a 2D image is slice 0
