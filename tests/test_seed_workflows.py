"""Each seed project's workflow end to end on tiny data, through the command line.

* a config-YAML project (relative paths, optimizer choice, augmented pairs on disk);
* zhixuhao's ISBI U-Net: ``imgs_train.npy`` -> model -> ``imgs_mask_test.npy``, the
  ``unet_membrane.hdf5`` weights and a warm start from them;
* Kaggle's ultrasound nerve segmentation: ``NAME.tif`` / ``NAME_mask.tif`` pairs ->
  ``submission.csv`` with the ``img,pixels`` header, read back exactly;
* the ISBI 2012 split by slice index (24 train / 3 val / 3 test) with the test slices scored;
* microDL: regression from a two-channel frames folder to a float target channel.
"""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_unet.cli.main import main
from napari_unet.engine.data.synthetic import synthetic_em, synthetic_regression

TINY = (
    "model: {depth: 2, base_filters: 4}\n"
    "train: {epochs: 1, steps_per_epoch: 2, batch_size: 2, patch_size: 32, precision: float32,"
    " tensorboard: false, val_em_metrics: false}\n"
    "predict: {tile_size: 32, overlap: 8, batch_size: 2, precision: float32}\n"
)


def _train(config, *extra, capsys=None):
    code = main(["train", str(config), "--quiet", *extra])
    out = capsys.readouterr() if capsys is not None else None
    assert code == 0, out.err if out else code
    return json.loads(out.out.strip().splitlines()[-1]) if out else None


def test_config_yaml_project(tmp_path, capsys):
    from napari_unet.engine.io.sources import read_pairs
    from napari_unet.engine.model.model_folder import ModelFolder

    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    images, masks = synthetic_em(slices=3, size=40, cells=8, seed=11)
    tifffile.imwrite(project / "data" / "em.tif", images, photometric="minisblack")
    tifffile.imwrite(project / "data" / "em_masks.tif", masks * 255, photometric="minisblack")
    config = project / "config.yaml"
    config.write_text(
        TINY.replace("precision: float32,", "precision: float32, optimizer: sgd, momentum: 0.8,")
        + "data: {images: data/em.tif, masks: data/em_masks.tif, val_fraction: 0.34}\n"
        "output: models/run1\n"
    )
    summary = _train(config, capsys=capsys)
    folder = ModelFolder(project / "models" / "run1")
    assert summary["model_dir"] == str(folder.path) and folder.best_path.exists()
    saved = folder.load_config()
    assert saved.train.optimizer == "sgd" and saved.train.momentum == 0.8
    history = folder.read_json(folder.history_path)
    assert 0.0 <= history[-1]["train_pixel_accuracy"] <= 1.0  # accuracy in the history
    out = project / "pred.tif"
    assert (
        main(["predict", str(folder.path), str(project / "data" / "em.tif"), "-o", str(out)]) == 0
    )
    assert tifffile.imread(out).shape == images.shape
    # napari-unet augment: the training stream's patches as NAME / NAME_mask pairs
    augmented = project / "augmented"
    assert main(["augment", str(config), "--samples", "5", "--output", str(augmented)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["samples"] == 5
    pair_images, pair_masks, ids = read_pairs(augmented)
    assert ids == ["0000", "0001", "0002", "0003", "0004"]
    assert pair_images.shape == (5, 32, 32) and pair_images.dtype == np.float32
    assert set(np.unique(pair_masks)) <= {0, 255}


def test_zhixuhao_isbi_npy_in_and_out_with_hdf5_weights(tmp_path, capsys):
    images, masks = synthetic_em(slices=4, size=32, cells=6, seed=12)
    imgs_train = (images[..., None] / 255.0).astype(np.float32)  # (N, 512, 512, 1) in data.py
    imgs_mask_train = masks[..., None].astype(np.float32)
    np.save(tmp_path / "imgs_train.npy", imgs_train)
    np.save(tmp_path / "imgs_mask_train.npy", imgs_mask_train)
    np.save(tmp_path / "imgs_test.npy", imgs_train[:2])
    config = tmp_path / "unet.yaml"
    config.write_text(TINY + "data: {val_fraction: 0.25}\n")
    model = tmp_path / "model"
    args = ["--images", str(tmp_path / "imgs_train.npy"), "--masks"]
    args += [str(tmp_path / "imgs_mask_train.npy"), "--output", str(model)]
    _train(config, *args, capsys=capsys)
    out = tmp_path / "imgs_mask_test.npy"
    test = str(tmp_path / "imgs_test.npy")
    assert main(["predict", str(model), test, "-o", str(out), "--probabilities"]) == 0
    probability = np.load(out, allow_pickle=False)
    assert probability.shape == (2, 32, 32, 1) and probability.dtype == np.float32
    assert 0.0 <= probability.min() and probability.max() <= 1.0
    # the HDF5 checkpoint (unet_membrane.hdf5) and a warm start from it
    weights = tmp_path / "unet_membrane.hdf5"
    assert main(["export-model", str(model), "--format", "h5", "-o", str(weights)]) == 0
    keras_weights = tmp_path / "unet.weights.h5"
    assert main(["export-model", str(model), "--format", "h5", "-o", str(keras_weights)]) == 0
    capsys.readouterr()
    warm = tmp_path / "warm"
    args_warm = ["--images", str(tmp_path / "imgs_train.npy"), "--masks"]
    args_warm += [str(tmp_path / "imgs_mask_train.npy"), "--output", str(warm)]
    for source in (weights, keras_weights):
        code = main(["train", str(config), *args_warm, "--init-from", str(source), "--quiet"])
        assert code == 0, capsys.readouterr().err
        args_warm[-1] = str(tmp_path / "warm2")
    capsys.readouterr()
    other = tmp_path / "other.yaml"
    other.write_text(TINY.replace("base_filters: 4", "base_filters: 8"))
    args_other = [*args_warm[:-1], str(tmp_path / "never")]
    assert main(["train", str(other), *args_other, "--init-from", str(weights), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not hold weights of the config's network" in err


def test_kaggle_ultrasound_pairs_to_submission_csv(tmp_path, capsys):
    from napari_unet.engine.inference.predict import predict
    from napari_unet.engine.io.export import read_rle_csv
    from napari_unet.engine.io.stacks import read_stack

    train, test = tmp_path / "train", tmp_path / "test"
    train.mkdir()
    test.mkdir()
    images, masks = synthetic_em(slices=5, size=(36, 52), cells=6, seed=13)
    for i, (image, mask) in enumerate(zip(images, masks), start=1):
        tifffile.imwrite(train / f"1_{i}.tif", image, photometric="minisblack")
        tifffile.imwrite(train / f"1_{i}_mask.tif", mask * 255, photometric="minisblack")
    for i in (1, 2, 10):
        tifffile.imwrite(test / f"{i}.tif", images[i % 5], photometric="minisblack")
    config = tmp_path / "nerve.yaml"
    config.write_text(
        TINY + "data: {images: train, val_fraction: 0.2, resize: [32, 48]}\noutput: model\n"
    )
    _train(config, capsys=capsys)
    submission = tmp_path / "submission.csv"
    assert main(["predict", str(tmp_path / "model"), str(test), "-o", str(submission)]) == 0
    lines = submission.read_text().splitlines()
    assert lines[0] == "img,pixels" and [line.split(",")[0] for line in lines[1:]] == [
        "1",
        "2",
        "10",
    ]
    ids, decoded = read_rle_csv(submission, (36, 52))
    expected = predict(tmp_path / "model", read_stack(test)).mask()
    assert ids == ["1", "2", "10"]
    np.testing.assert_array_equal(decoded, expected)  # read back exactly
    legacy = tmp_path / "legacy.csv"
    args = ["predict", str(tmp_path / "model"), str(test), "-o", str(legacy)]
    assert main([*args, "--csv-columns", "ImageId,EncodedPixels"]) == 0
    assert legacy.read_text().splitlines()[0] == "ImageId,EncodedPixels"
    np.testing.assert_array_equal(read_rle_csv(legacy, (36, 52))[1], decoded)
    pngs = tmp_path / "pngs"
    assert main(["predict", str(tmp_path / "model"), str(test), "-o", f"{pngs}/"]) == 0
    assert sorted(p.name for p in pngs.iterdir()) == ["1.png", "10.png", "2.png"]
    np.testing.assert_array_equal(iio.imread(pngs / "10.png"), expected[2] * 255)


def test_isbi_split_by_slice_index_scores_the_test_slices(tmp_path, capsys):
    from napari_unet.engine.model.model_folder import ModelFolder

    images, masks = synthetic_em(slices=30, size=32, cells=5, seed=14)
    tifffile.imwrite(tmp_path / "train-volume.tif", images, photometric="minisblack")
    tifffile.imwrite(tmp_path / "train-labels.tif", masks * 255, photometric="minisblack")
    config = tmp_path / "isbi.yaml"
    config.write_text(
        TINY + "data: {images: train-volume.tif, masks: train-labels.tif,\n"
        "       split: {train: '0-23', val: '24-26', test: [27, 28, 29]}}\noutput: model\n"
    )
    main(["train", str(config)])
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    test = summary["test"]
    assert test["slices"] == [27, 28, 29]
    for key in ("dice", "pixel_error", "rand_fscore", "vi"):
        assert 0.0 <= test[key] <= 10.0
    assert "test slices: " in captured.err  # printed
    folder = ModelFolder(tmp_path / "model")
    metadata = folder.read_json(folder.metadata_path)
    assert metadata["test"] == test
    assert metadata["data"]["train_indices"] == list(range(24))
    assert metadata["data"]["val_indices"] == [24, 25, 26]


def test_microdl_regression_from_a_two_channel_frames_folder(tmp_path, capsys):
    from napari_unet.engine.io.frames import frame_name

    frames = tmp_path / "frames"
    frames.mkdir()
    inputs, target = synthetic_regression(slices=4, size=32, seed=15)
    for z in range(4):
        for c in (0, 1):
            iio.imwrite(frames / frame_name(c, z, 0, 0), inputs[z, c])
        iio.imwrite(frames / frame_name(2, z, 0, 0), np.round(target[z]).astype(np.uint16))
    assert main(["frames-meta", str(frames), "--in-folder"]) == 0  # where training reads it
    assert (frames / "frames_meta.csv").exists()
    config = tmp_path / "microdl.yaml"
    config.write_text(
        TINY.replace("depth: 2,", "depth: 2, task: regression,")
        + "data: {frames: {folder: frames, channels: [0, 1], mask_channel: 2},"
        " val_fraction: 0.25}\noutput: model\n"
    )
    _train(config, capsys=capsys)
    from napari_unet.engine.model.model_folder import ModelFolder

    folder = ModelFolder(tmp_path / "model")
    saved = folder.load_config()
    assert saved.model.in_channels == 2 and saved.model.task == "regression"
    last = folder.read_json(folder.history_path)[-1]
    assert {"train_mae", "val_psnr", "val_ssim", "val_pearson"} <= set(last)
    out = tmp_path / "predicted.tif"
    assert main(["predict", str(folder.path), str(frames), "-o", str(out)]) == 0
    predicted = tifffile.imread(out)
    assert predicted.shape == (4, 32, 32) and predicted.dtype == np.float32
    assert main(["predict", str(folder.path), str(frames), "-o", str(tmp_path / "x.csv")]) == 2
    assert "float image" in capsys.readouterr().err


@pytest.mark.parametrize("header", ["img,pixels", "ImageId,EncodedPixels"])
def test_rle_csv_reads_both_headers(tmp_path, header):
    from napari_unet.engine.io.export import read_rle_csv

    path = tmp_path / "sub.csv"
    path.write_text(f"{header}\n1,1 2 5 1\n2,\n")
    ids, masks = read_rle_csv(path, (2, 3))
    assert ids == ["1", "2"] and masks[0].tolist() == [[1, 0, 1], [1, 0, 0]]
    assert masks[1].sum() == 0
