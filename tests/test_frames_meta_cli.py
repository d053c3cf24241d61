"""``napari-unet frames-meta``: the input folder is only read; the CSV goes next to it.

By default ``./<FOLDER name>_frames_meta.csv``; ``--output`` names a file or a folder;
``--in-folder`` is the only way to write into the input folder. An existing CSV is
replaced only with ``--overwrite`` and keeps its extra columns.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile

from napari_unet.cli.main import main
from napari_unet.engine.io.frames import META_COLUMNS, frame_name, read_frames_meta

from .corpus import hash_tree


@pytest.fixture
def frames(tmp_path):
    folder = tmp_path / "scan"
    folder.mkdir()
    for c in range(2):
        for z in range(3):
            plane = np.full((4, 4), c * 10 + z, np.uint8)
            tifffile.imwrite(folder / frame_name(c, z, 0, 0, "tif"), plane)
    return folder


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def _run(argv, capsys):
    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_default_writes_beside_not_into_the_input(frames, workdir, capsys):
    before = hash_tree(frames)
    code, out, err = _run(["frames-meta", frames], capsys)
    assert code == 0, err
    target = workdir / "scan_frames_meta.csv"
    assert json.loads(out) == {"frames_meta": str(target), "frames": 6}
    assert hash_tree(frames) == before, "the input folder was written to"
    rows = _rows(target)
    assert tuple(rows[0]) == META_COLUMNS and len(rows) == 6
    # the CSV describes the folder: reading it gives the folder's frames
    assert read_frames_meta(frames, meta=target) == read_frames_meta(frames)


def test_output_file_folder_and_in_folder(frames, workdir, tmp_path, capsys):
    before = hash_tree(frames)
    out_dir = tmp_path / "tables"
    out_dir.mkdir()
    assert _run(["frames-meta", frames, "-o", out_dir], capsys)[0] == 0
    assert (out_dir / "scan_frames_meta.csv").is_file()
    assert _run(["frames-meta", frames, "-o", tmp_path / "named.csv"], capsys)[0] == 0
    assert len(_rows(tmp_path / "named.csv")) == 6
    for argv in (
        ["frames-meta", frames, "-o", frames / "inside.csv"],  # into the input: needs the flag
        ["frames-meta", frames, "-o", frames],
        ["frames-meta", frames, "--in-folder", "-o", tmp_path / "x.csv"],
    ):
        code, _, err = _run(argv, capsys)
        assert code == 2 and len(err.splitlines()) == 1 and err.startswith("napari-unet: error:")
    assert hash_tree(frames) == before
    code, out, _ = _run(["frames-meta", frames, "--in-folder"], capsys)
    assert code == 0 and json.loads(out)["frames_meta"] == str(frames / "frames_meta.csv")
    assert set(hash_tree(frames)) == set(before) | {"frames_meta.csv"}


def test_existing_csv_needs_overwrite_and_keeps_its_extra_columns(frames, workdir, capsys):
    target = workdir / "scan_frames_meta.csv"
    target.write_text(
        "channel_idx,slice_idx,time_idx,pos_idx,file_name,channel_name,notes\n"
        f"0,0,0,0,{frame_name(0, 0, 0, 0, 'tif')},phase,first\n"
        f"1,0,0,0,{frame_name(1, 0, 0, 0, 'tif')},mask,\n"
        "0,9,0,0,im_c000_z009_t000_p000.tif,phase,gone\n"
    )
    earlier = target.read_bytes()
    code, _, err = _run(["frames-meta", frames], capsys)
    assert code == 2 and "already exists" in err and target.read_bytes() == earlier
    code, _, err = _run(["frames-meta", frames, "--overwrite"], capsys)
    assert code == 0, err
    rows = _rows(target)
    assert list(rows[0]) == [*META_COLUMNS, "channel_name", "notes"]
    by_name = {r["file_name"]: r for r in rows}
    assert len(rows) == 6 and "im_c000_z009_t000_p000.tif" not in by_name  # vanished frame
    assert by_name[frame_name(0, 0, 0, 0, "tif")]["channel_name"] == "phase"
    assert by_name[frame_name(0, 0, 0, 0, "tif")]["notes"] == "first"
    assert by_name[frame_name(1, 0, 0, 0, "tif")]["channel_name"] == "mask"
    assert by_name[frame_name(0, 2, 0, 0, "tif")]["channel_name"] == ""  # a new frame


def test_an_existing_csv_without_file_names_is_never_replaced(frames, workdir, capsys):
    target = workdir / "scan_frames_meta.csv"
    target.write_text("a,b\n1,2\n")
    code, _, err = _run(["frames-meta", frames, "--overwrite"], capsys)
    assert code == 2 and "file_name" in err and len(err.splitlines()) == 1
    assert target.read_text() == "a,b\n1,2\n"


def test_not_a_frames_folder(tmp_path, workdir, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv in (["frames-meta", empty], ["frames-meta", tmp_path / "missing"]):
        code, _, err = _run(argv, capsys)
        assert code == 2 and len(err.splitlines()) == 1
    assert not list(workdir.iterdir())
