"""Exports: RLE (exact round trip, Kaggle order), .npy, PNG slices, and predict --output."""

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from napari_unet.cli.main import main
from napari_unet.engine.data.synthetic import synthetic_em
from napari_unet.engine.errors import UserInputError
from napari_unet.engine.io.export import (
    decode_rle,
    encode_rle,
    export_format,
    read_rle_csv,
    write_npy,
    write_png,
    write_prediction,
    write_rle_csv,
)

BITS = st.integers(0, 1)


def test_rle_is_column_major_and_one_based():
    mask = np.array([[1, 0, 0], [1, 1, 0]], np.uint8)
    # pixels numbered top to bottom, then left to right: 1=(0,0) 2=(1,0) 3=(0,1) 4=(1,1) ...
    assert encode_rle(mask) == "1 2 4 1"
    assert encode_rle(np.zeros((3, 4))) == ""
    assert encode_rle(np.ones((2, 2), bool)) == "1 4"
    last = np.zeros((3, 3), np.uint8)
    last[2, 2] = 255
    assert encode_rle(last) == "9 1"
    np.testing.assert_array_equal(decode_rle("1 2 4 1", (2, 3)), mask)


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9)), elements=BITS))
def test_rle_round_trip_is_exact(mask):
    assert np.array_equal(decode_rle(encode_rle(mask), mask.shape), mask)


def test_rle_csv_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    masks = (rng.random((4, 13, 7)) > 0.6).astype(np.uint8)
    masks[1] = 0  # an empty mask has an empty EncodedPixels
    masks[2] = 1
    path = write_rle_csv(tmp_path / "sub.csv", masks * 255, ids=["a", "b", "c", "d"])
    lines = path.read_text().splitlines()
    assert lines[0] == "img,pixels" and lines[2] == "b,"  # Kaggle ultrasound nerve header
    ids, back = read_rle_csv(path, (13, 7))
    assert ids == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(back, masks)
    legacy = write_rle_csv(
        tmp_path / "old.csv", masks, ids=list("abcd"), header="ImageId,EncodedPixels"
    )
    assert legacy.read_text().splitlines()[0] == "ImageId,EncodedPixels"
    np.testing.assert_array_equal(read_rle_csv(legacy, (13, 7))[1], masks)
    assert not list(tmp_path.glob(".*"))  # atomic: no temporary file left


def test_rle_errors(tmp_path):
    with pytest.raises(UserInputError):
        decode_rle("1 2 3", (2, 2))
    with pytest.raises(UserInputError, match="outside"):
        decode_rle("3 5", (2, 2))
    with pytest.raises(UserInputError):
        decode_rle("a b", (2, 2))
    bad = tmp_path / "bad.csv"
    bad.write_text("id,pixels\n0,1 1\n")
    with pytest.raises(UserInputError, match="not an RLE CSV"):
        read_rle_csv(bad, (2, 2))


def test_npy_png_and_format_choice(tmp_path):
    arr = np.random.default_rng(1).random((2, 5, 6)).astype(np.float32)
    path = write_npy(tmp_path / "p.npy", arr)
    np.testing.assert_array_equal(np.load(path, allow_pickle=False), arr)
    folder = write_png(tmp_path / "png", arr)
    files = sorted(folder.glob("*.png"))
    assert [f.name for f in files] == ["slice0000.png", "slice0001.png"]
    import imageio.v3 as iio

    np.testing.assert_array_equal(iio.imread(files[1]), np.round(arr[1] * 255).astype(np.uint8))
    assert export_format("a.TIF") == "tiff" and export_format("a.tiff") == "tiff"
    assert export_format("a.npy") == "npy" and export_format("a.csv") == "csv"
    assert export_format("out/") == "png" and export_format("out") == "png"
    with pytest.raises(UserInputError, match="format"):
        export_format("a.jpg")


@pytest.mark.parametrize("name", ["m.tif", "m.npy", "m.csv", "slices/"])
def test_write_prediction_formats(tmp_path, name):
    mask = np.zeros((2, 6, 5), np.uint8)
    mask[:, 1:4, 2] = 1
    path, kind = write_prediction(
        tmp_path / name if not name.endswith("/") else f"{tmp_path}/{name}", mask01=mask
    )
    if kind == "tiff":
        back = tifffile.imread(path) // 255
    elif kind == "npy":
        back = np.load(path, allow_pickle=False) // 255
    elif kind == "csv":
        back = read_rle_csv(path, (6, 5))[1]
    else:
        import imageio.v3 as iio

        back = np.stack([iio.imread(p) for p in sorted(path.glob("*.png"))]) // 255
    np.testing.assert_array_equal(back, mask)
    with pytest.raises(UserInputError, match="probabilities"):
        write_prediction(tmp_path / "p.csv", probability=mask.astype(np.float32))


def test_cli_predict_outputs(tmp_path, trained_model_dir, capsys):
    images, _ = synthetic_em(slices=2, size=40, cells=6, seed=11)
    src = tmp_path / "img.tif"
    tifffile.imwrite(src, images, photometric="minisblack")
    tif = tmp_path / "mask.tif"
    assert main(["predict", str(trained_model_dir), str(src), "-o", str(tif), "--quiet"]) == 0
    reference = tifffile.imread(tif)
    npy = tmp_path / "mask.npy"
    assert main(["predict", str(trained_model_dir), str(src), "-o", str(npy), "--quiet"]) == 0
    np.testing.assert_array_equal(np.load(npy, allow_pickle=False), reference)
    csv = tmp_path / "sub.csv"
    assert main(["predict", str(trained_model_dir), str(src), "-o", str(csv), "--quiet"]) == 0
    ids, decoded = read_rle_csv(csv, (40, 40))
    assert ids == ["img_0", "img_1"]
    np.testing.assert_array_equal(decoded * 255, reference)
    out = f"{tmp_path}/pngs/"
    assert main(["predict", str(trained_model_dir), str(src), "-o", out, "--quiet"]) == 0
    assert len(list((tmp_path / "pngs").glob("*.png"))) == 2
    prob = tmp_path / "prob.npy"
    assert (
        main(
            [
                "predict",
                str(trained_model_dir),
                str(src),
                "-o",
                str(prob),
                "--probabilities",
                "--quiet",
            ]
        )
        == 0
    )
    assert np.load(prob).dtype == np.float32
    capsys.readouterr()
    code = main(
        [
            "predict",
            str(trained_model_dir),
            str(src),
            "-o",
            str(tmp_path / "p.csv"),
            "--probabilities",
        ]
    )
    assert code == 2 and "probabilities" in capsys.readouterr().err
