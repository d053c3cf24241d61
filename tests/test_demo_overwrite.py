"""`napari-unet demo` asks before replacing an earlier demo's results and names what it wrote."""

from __future__ import annotations

import pytest

from napari_unet.cli.demo import demo_targets, run_demo
from napari_unet.engine.errors import UserInputError


def test_demo_refuses_to_replace_without_asking(tmp_path):
    (tmp_path / "prediction-mask.tif").write_bytes(b"earlier")
    with pytest.raises(UserInputError, match="--overwrite"):
        run_demo(tmp_path, train_minutes=0)  # no terminal to ask on
    asked = []
    with pytest.raises(UserInputError):
        run_demo(tmp_path, train_minutes=0, ask=lambda q: asked.append(q) or False)
    assert "prediction-mask.tif" in asked[0]
    assert (tmp_path / "prediction-mask.tif").read_bytes() == b"earlier"


def test_demo_names_what_it_wrote(tmp_path, capsys):
    (tmp_path / "prediction-mask.tif").write_bytes(b"earlier")
    report = run_demo(tmp_path, train_minutes=0, ask=lambda question: True)
    written = [str(p.resolve()) for p in demo_targets(tmp_path, 0)]
    assert report["written"] == written
    assert "wrote:" in capsys.readouterr().err
    assert (tmp_path / "prediction-mask.tif").read_bytes() != b"earlier"
