import os

import pytest

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
