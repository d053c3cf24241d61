"""The console script: happy paths and one clear line + exit code 2 for user errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_unet.cli.main import main
from napari_unet.engine.data.synthetic import synthetic_em


@pytest.fixture
def data(tmp_path):
    images, masks = synthetic_em(slices=3, size=48, cells=8, seed=9)
    tifffile.imwrite(tmp_path / "img.tif", images, photometric="minisblack")
    tifffile.imwrite(tmp_path / "mask.tif", masks * 255, photometric="minisblack")
    return tmp_path


def _config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "model: {depth: 2, base_filters: 4}\n"
        "train: {epochs: 1, steps_per_epoch: 2, batch_size: 2, patch_size: 32,"
        " precision: float32, tensorboard: false}\n"
        "predict: {tile_size: 64, overlap: 8}\n"
    )
    return path


def test_train_predict_evaluate(data, capsys):
    model_dir = data / "model"
    code = main(
        [
            "train",
            str(_config(data)),
            "--images",
            str(data / "img.tif"),
            "--masks",
            str(data / "mask.tif"),
            "--output",
            str(model_dir),
            "--quiet",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["model_dir"] == str(model_dir)
    out = data / "pred.tif"
    assert main(["predict", str(model_dir), str(data / "img.tif"), "-o", str(out), "--quiet"]) == 0
    mask = tifffile.imread(out)
    assert mask.shape == (3, 48, 48) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    prob = data / "prob.tif"
    assert (
        main(
            [
                "predict",
                str(model_dir),
                str(data / "img.tif"),
                "-o",
                str(prob),
                "--probabilities",
                "--quiet",
            ]
        )
        == 0
    )
    assert tifffile.imread(prob).dtype == np.float32
    capsys.readouterr()
    assert main(["evaluate", str(model_dir), str(data / "img.tif"), str(data / "mask.tif")]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert 0 <= scores["rand_fscore"] <= 1 and "vi" in scores
    # never overwrite silently
    assert main(["predict", str(model_dir), str(data / "img.tif"), "-o", str(out)]) == 2


def _bad_inputs(tmp_path):
    """(name, image path, mask path) of user errors for `train`."""
    good_img = tmp_path / "img.tif"
    good_mask = tmp_path / "mask.tif"
    cases = {}
    cases["missing file"] = (tmp_path / "nope.tif", good_mask)
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    cases["empty file"] = (empty, good_mask)
    truncated = tmp_path / "trunc.tif"
    truncated.write_bytes(good_img.read_bytes()[: good_img.stat().st_size // 3])
    cases["truncated tiff"] = (truncated, good_mask)
    text = tmp_path / "text.tif"
    text.write_text("not an image")
    cases["not a tiff"] = (text, good_mask)
    for name, arr in {
        "zero-size": np.zeros((0, 8, 8), np.uint8),
        "1-D": np.arange(10, dtype=np.uint8),
        "5-D": np.zeros((2, 2, 3, 8, 8), np.uint8),
        "complex": np.zeros((2, 8, 8), np.complex64),
        "all-NaN": np.full((2, 16, 16), np.nan, np.float32),
    }.items():
        path = tmp_path / f"{name}.npy.tif"
        if name == "complex":
            path = tmp_path / "complex.npy"
            np.save(path, arr)
        else:
            tifffile.imwrite(path, arr, photometric="minisblack" if arr.ndim > 1 else None)
        cases[name] = (path, good_mask)
    few = tmp_path / "few.tif"
    tifffile.imwrite(few, tifffile.imread(good_mask)[:2], photometric="minisblack")
    cases["slice-count mismatch"] = (good_img, few)
    other = tmp_path / "other.tif"
    tifffile.imwrite(other, np.zeros((3, 40, 48), np.uint8), photometric="minisblack")
    cases["shape mismatch"] = (good_img, other)
    return cases


def test_user_errors_exit_2_with_one_line(data, capsys):
    for name, (images, masks) in _bad_inputs(data).items():
        code = main(
            [
                "train",
                str(_config(data)),
                "--images",
                str(images),
                "--masks",
                str(masks),
                "--output",
                str(data / f"m-{name}"),
                "--quiet",
            ]
        )
        err = capsys.readouterr().err.strip()
        assert code == 2, name
        assert len(err.splitlines()) == 1 and err.startswith("napari-unet: error:"), (name, err)
        assert "Traceback" not in err


def test_predict_and_evaluate_user_errors(data, capsys, trained_model_dir):
    cases = [
        ["predict", str(data / "nope"), str(data / "img.tif"), "-o", str(data / "o.tif")],
        ["predict", str(trained_model_dir), str(data / "missing.tif"), "-o", str(data / "o.tif")],
        ["evaluate", str(trained_model_dir), str(data / "img.tif"), str(data / "missing.tif")],
        ["train", "--images", str(data / "img.tif")],
        [
            "train",
            "--images",
            str(data / "img.tif"),
            "--masks",
            str(data / "mask.tif"),
            "--patch-size",
            "33",
        ],
        ["frobnicate"],
    ]
    for argv in cases:
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2, argv
        assert len(err.splitlines()) == 1 and "Traceback" not in err, (argv, err)


def test_awkward_but_valid_inputs_predict(data, trained_model_dir):
    rng = np.random.default_rng(0)
    inputs = {
        "u16.tif": rng.integers(0, 65535, (2, 30, 20)).astype(np.uint16),
        "f32.tif": rng.normal(size=(2, 30, 20)).astype(np.float32),
        "i32.tif": rng.integers(-5, 5, (1, 30, 20)).astype(np.int32),
        "const.tif": np.full((1, 12, 12), 3, np.uint8),
        "single2d.tif": rng.integers(0, 255, (9, 11)).astype(np.uint8),
    }
    for name, arr in inputs.items():
        if name == "f32.tif":
            arr[0, 0, 0] = np.nan
        tifffile.imwrite(data / name, arr)
        out = data / f"out-{name}"
        assert (
            main(["predict", str(trained_model_dir), str(data / name), "-o", str(out), "--quiet"])
            == 0
        ), name
        expected = arr.shape if arr.ndim == 3 else (1, *arr.shape)
        assert tifffile.imread(out).reshape(expected).shape == expected


def test_console_script_runs_as_a_process():
    proc = subprocess.run(
        [sys.executable, "-m", "napari_unet.cli.main", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.strip()
