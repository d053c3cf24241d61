"""model.task: binary, multiclass and regression through config, data, losses, metrics,
augmentation, tiled and blockwise prediction, exports, the CLI and the dock's layers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_unet.engine.config import Config
from napari_unet.engine.data.synthetic import EM_CLASSES, synthetic_em_classes
from napari_unet.engine.errors import UserInputError
from napari_unet.engine.inference.prediction import Prediction

CLASSES = list(EM_CLASSES)  # background, membrane, mitochondria


def _task_config(tmp_path, task, **model):
    model = {"depth": 2, "base_filters": 4, "task": task, **model}
    if task == "multiclass":
        model.setdefault("classes", CLASSES)
    return Config.model_validate(
        {
            "model": model,
            "train": {
                "epochs": 1,
                "steps_per_epoch": 2,
                "batch_size": 2,
                "patch_size": 32,
                "precision": "float32",
                "tensorboard": False,
            },
            "predict": {"tile_size": 32, "overlap": 8, "batch_size": 2, "precision": "float32"},
            "output": str(tmp_path / "model"),
        }
    )


def _model_folder(tmp_path, config):
    """A model folder with the untrained network of `config` (no training needed)."""
    from napari_unet.engine.model.model_folder import ModelFolder
    from napari_unet.engine.model.unet import build_unet

    folder = ModelFolder(tmp_path / f"{config.model.task}-model")
    folder.create()
    folder.save_config(config.model_copy(update={"output": str(folder.path)}))
    folder.save_weights_file(build_unet(config.model), "best")
    return folder.path


# --------------------------------------------------------------------------- config


def test_task_settings_and_their_refusals():
    multiclass = Config.model_validate({"model": {"task": "multiclass", "classes": CLASSES}})
    assert multiclass.train.loss == "ce_dice" and multiclass.model.out_channels == 3
    assert Config().train.loss == "bce_dice" and Config().model.task == "binary"
    assert Config().with_overrides({"model.task": "regression"}).train.loss == "l1"
    bad = [
        ({"model": {"task": "multiclass"}}, "needs model.classes"),
        ({"model": {"classes": ["a", "b"]}}, "multiclass only"),
        ({"model": {"task": "regression"}, "train": {"loss": "bce"}}, "does not fit"),
        ({"train": {"loss": "ce"}}, "does not fit model.task binary"),
        (
            {"model": {"task": "multiclass", "classes": CLASSES}, "data": {"mask_kind": "sparse"}},
            "data.mask_kind applies to binary masks",
        ),
        (
            {"model": {"task": "regression"}, "train": {"border_weights": {"enabled": True}}},
            "border_weights",
        ),
        ({"model": {"task": "regression"}, "train": {"monitor": "val_rand_fscore"}}, "binary"),
        ({"data": {"split": {"train": "0-5", "val": "5-6"}}}, "both split.train and val"),
        ({"data": {"split": {"train": "3-1"}}}, "backwards"),
    ]
    for raw, message in bad:
        with pytest.raises(ValueError, match=message):
            Config.model_validate(raw)
    split = Config.model_validate({"data": {"split": {"train": "0-3, 7", "test": [4, 5]}}})
    assert split.data.split.indices("train") == [0, 1, 2, 3, 7]
    assert split.data.split.indices("val") == []


def test_multiclass_targets_refuse_unknown_classes():
    from napari_unet.engine.data.task_data import multiclass_targets, normalize_target

    target, weight = multiclass_targets(np.array([[0, 1], [2, 1]]), CLASSES)
    assert target.dtype == np.uint8 and weight.min() == 1
    with pytest.raises(UserInputError, match="class index 3"):
        multiclass_targets(np.array([[0, 3]]), CLASSES)
    with pytest.raises(UserInputError, match="whole class indices"):
        multiclass_targets(np.array([[0.5, 1.0]]), CLASSES)
    z, stats = normalize_target(np.array([[[1.0, 3.0]], [[5.0, 7.0]]]), "zscore", (1, 99))
    assert abs(z.mean()) < 1e-6 and abs(z.std() - 1) < 1e-6 and stats["offset"] == [4.0]


# --------------------------------------------------------------------------- channels


def test_channel_stacks_are_read_and_laid_out(tmp_path):
    from napari_unet.engine.io.channels import channels_last, read_channels, to_channel_stack

    rng = np.random.default_rng(0)
    zcyx = rng.integers(0, 255, (3, 2, 20, 24), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "hyper.tif", zcyx, imagej=True, metadata={"axes": "ZCYX"})
    np.save(tmp_path / "stack.npy", zcyx)
    np.save(tmp_path / "zhixuhao.npy", zcyx[:, :1].transpose(0, 2, 3, 1))  # (N, Y, X, 1)
    for name in ("hyper.tif", "stack.npy"):
        np.testing.assert_array_equal(read_channels(tmp_path / name), zcyx)
    assert read_channels(tmp_path / "zhixuhao.npy").shape == (3, 1, 20, 24)
    assert channels_last(to_channel_stack(zcyx), 2).shape == (3, 20, 24, 2)
    assert channels_last(to_channel_stack(zcyx[:, 0]), None).shape == (3, 20, 24)
    with pytest.raises(UserInputError, match="2 channel"):
        channels_last(zcyx, 3)


# --------------------------------------------------------------------------- predictions


def test_prediction_reads_its_task():
    probability = np.zeros((1, 2, 2, 3), np.float32)
    probability[0, :, :, 1] = 0.8
    probability[0, 0, 0] = (0.1, 0.1, 0.8)
    prediction = Prediction(probability, task="multiclass", classes=tuple(CLASSES))
    assert prediction.labels().tolist() == [[[2, 1], [1, 1]]]
    assert prediction.class_mask("mitochondria").sum() == 1
    assert prediction.class_mask(1).sum() == 3
    with pytest.raises(UserInputError, match="class labels"):
        prediction.mask()
    with pytest.raises(UserInputError, match="no class 'nucleus'"):
        prediction.class_mask("nucleus")
    with pytest.raises(UserInputError, match="float image"):
        Prediction(np.zeros((1, 2, 2)), task="regression").mask()


def test_outputs_a_task_cannot_hold_are_refused(tmp_path):
    from napari_unet.engine.io.task_export import check_task_output

    cases = [
        ("sub.csv", "regression", False, None, "float image"),
        ("out/", "regression", False, None, "float image"),
        ("sub.csv", "multiclass", False, None, "--class NAME"),
        ("mask.tif", "binary", False, "membrane", "multiclass model"),
    ]
    for output, task, probabilities, class_name, message in cases:
        with pytest.raises(UserInputError, match=message):
            check_task_output(tmp_path / output, task, probabilities, class_name)
    assert check_task_output(tmp_path / "sub.csv", "multiclass", False, "membrane") == "csv"


def test_task_scores():
    from napari_unet.engine.evaluation.task_scores import multiclass_scores, regression_scores

    truth = np.array([[0, 1, 2, 2]])
    scores = multiclass_scores(np.array([[0, 1, 2, 0]]), truth, CLASSES)
    assert scores["pixel_accuracy"] == 0.75 and scores["dice_membrane"] == 1.0
    assert scores["dice_mitochondria"] == pytest.approx(2 / 3)
    assert scores["dice"] == pytest.approx((1 + 2 / 3) / 2)
    target = np.random.default_rng(1).random((2, 16, 16))
    perfect = regression_scores(target, target)
    assert perfect["mae"] == 0 and perfect["pearson"] == pytest.approx(1.0)
    assert perfect["ssim"] == pytest.approx(1.0) and perfect["psnr"] == float("inf")
    noisy = regression_scores(target + 0.1, target)
    assert noisy["mae"] == pytest.approx(0.1) and 15 < noisy["psnr"] < 25


# --------------------------------------------------------------------------- TensorFlow parts


def test_task_losses_and_running_metrics():
    import tensorflow as tf

    from napari_unet.engine.model.task_losses import make_task_loss, weighted_ssim
    from napari_unet.engine.training.task_metrics import counts_fn, summarize_counts

    config = Config.model_validate({"model": {"task": "multiclass", "classes": CLASSES}})
    labels = np.array([0, 1, 2, 1], np.float32).reshape(1, 2, 2, 1)
    perfect = tf.one_hot(labels[..., 0].astype(int), 3) * 0.998 + 0.001 / 1.5
    weight = np.ones_like(labels)
    loss = make_task_loss(config)
    assert float(loss(labels, perfect, weight)) < 0.05
    wrong = tf.roll(perfect, 1, axis=-1)
    assert float(loss(labels, wrong, weight)) > 1.0
    ignored = weight.copy()
    ignored[0, 0, 0] = 0  # a weight-0 pixel changes nothing
    bad_there = tf.tensor_scatter_nd_update(perfect, [[0, 0, 0]], [[0.0, 1.0, 0.0]])
    assert float(loss(labels, bad_there, ignored)) == pytest.approx(
        float(loss(labels, perfect, ignored)), abs=1e-5
    )
    counts = counts_fn(config)(labels, bad_there, weight).numpy()
    metrics = summarize_counts(counts, config)
    assert metrics["pixel_accuracy"] == 0.75 and metrics["dice_mitochondria"] == 1.0
    assert metrics["dice_background"] == 0.0

    regression = Config.model_validate({"model": {"task": "regression"}})
    y = np.random.default_rng(0).random((2, 16, 16, 1)).astype(np.float32)
    w = np.ones_like(y)
    assert float(weighted_ssim(y, y, w)) == pytest.approx(1.0, abs=1e-5)
    for name in ("l1", "l2", "ssim", "l1_ssim"):
        fn = make_task_loss(regression.with_overrides({"train.loss": name}))
        assert float(fn(y, y, w)) == pytest.approx(0.0, abs=1e-5)
        assert float(fn(y, y + 0.5, w)) > 0.01
    summary = summarize_counts(counts_fn(regression)(y, y + 0.1, w).numpy(), regression)
    assert summary["mae"] == pytest.approx(0.1, abs=1e-5) and summary["pearson"] > 0.99


def test_augmentation_moves_channels_and_float_targets_together():
    from napari_unet.engine.config import AugmentConfig
    from napari_unet.engine.data.augment import augment_patch

    rng = np.random.default_rng(0)
    plane = rng.random((40, 40)).astype(np.float32)
    image = np.stack([plane, plane], axis=-1)  # two identical channels
    target = plane[..., None].copy()  # a float target equal to them
    weight = np.ones_like(target)
    geometry = AugmentConfig(intensity={"enabled": False})
    for k in range(4):
        out_img, out_t, _out_w = augment_patch(
            image, target, weight, geometry, [3, k], 32, (19.5, 19.5), float_target=True
        )
        out_img, out_t = out_img.numpy(), out_t.numpy()
        assert out_img.shape == (32, 32, 2) and out_t.shape == (32, 32, 1)
        np.testing.assert_allclose(out_img[..., 0], out_img[..., 1], atol=1e-6)
        np.testing.assert_allclose(out_img[..., 0], out_t[..., 0], atol=1e-6)  # bilinear too
    intensity_only = AugmentConfig(
        flips=False, rot90=False, affine={"enabled": False}, elastic={"enabled": False}
    )
    out_img, out_t, _ = augment_patch(image, target, weight, intensity_only, [1, 2])
    np.testing.assert_array_equal(out_t.numpy(), target)  # intensity touches inputs only
    assert not np.allclose(out_img.numpy(), image)


def test_pipeline_feeds_channels_and_keeps_float_targets(tmp_path):
    from napari_unet.engine.data.pipeline import make_train_dataset, make_val_dataset

    config = _task_config(tmp_path, "regression", in_channels=2)
    rng = np.random.default_rng(0)
    images = rng.random((2, 40, 40, 2)).astype(np.float32)
    target = rng.normal(size=(2, 40, 40)).astype(np.float32)
    x, y, _w = next(iter(make_train_dataset(images, target, None, config)))
    assert x.shape == (2, 32, 32, 2) and y.shape == (2, 32, 32, 1)
    assert float(np.min(y)) < 0 and not np.isin(np.asarray(y), (0, 1)).all()  # not binarised
    vx, vy, _ = next(iter(make_val_dataset(images, target, None, config)))
    assert vx.shape[-1] == 2 and vy.dtype == np.float32


def test_tiled_and_blockwise_prediction_for_multiclass_and_regression(tmp_path):
    from napari_unet.engine.events import drain
    from napari_unet.engine.inference.blockwise import BlockwiseOptions, predict_blockwise
    from napari_unet.engine.inference.predict import predict_iter
    from napari_unet.engine.io.lazy import volume_stats

    images, _ = synthetic_em_classes(2, (44, 52), seed=4)
    stats = volume_stats(images)
    for task in ("multiclass", "regression"):
        folder = _model_folder(tmp_path, _task_config(tmp_path, task))
        whole = drain(predict_iter(folder, images, stats=stats))
        if task == "multiclass":
            assert whole.probability.shape == (2, 44, 52, 3)
            np.testing.assert_allclose(whole.probability.sum(-1), 1.0, atol=1e-5)  # blended
        else:
            assert whole.probability.shape == (2, 44, 52)
        options = BlockwiseOptions(block_slices=1, block_size=24, probability_dtype="float32")
        result = predict_blockwise(folder, images, tmp_path / f"{task}.zarr", options=options)
        stored = np.asarray(result.probability.compute())
        assert np.abs(stored - whole.probability).max() < 1e-5
        if task == "multiclass":
            np.testing.assert_array_equal(result.labels().compute(), whole.labels())
        else:
            with pytest.raises(UserInputError, match="no labels"):
                result.labels()


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def three_class_project(tmp_path_factory):
    """A 3-class EM project trained from the CLI (background, membrane, mitochondria)."""
    from napari_unet.cli.main import main

    root = tmp_path_factory.mktemp("three-class")
    images, labels = synthetic_em_classes(slices=4, size=48, seed=5)
    tifffile.imwrite(root / "em.tif", images, photometric="minisblack")
    tifffile.imwrite(root / "classes.tif", labels, photometric="minisblack")
    (root / "config.yaml").write_text(
        "data: {images: em.tif, masks: classes.tif, val_fraction: 0.25}\n"
        "model: {depth: 2, base_filters: 4, task: multiclass,"
        " classes: [background, membrane, mitochondria]}\n"
        "train: {epochs: 2, steps_per_epoch: 3, batch_size: 2, patch_size: 32,"
        " precision: float32, tensorboard: true, tensorboard_images_every: 2,"
        " optimizer: adamw, log_dir: tb}\n"
        "predict: {tile_size: 32, overlap: 8, batch_size: 2, precision: float32}\n"
        "output: model\n"
    )
    assert main(["train", str(root / "config.yaml"), "--quiet"]) == 0
    return root, images, labels


def test_three_class_em_model_trains_from_the_cli(three_class_project, capsys):
    from napari_unet.cli.main import main
    from napari_unet.engine.io.export import read_rle_csv
    from napari_unet.engine.model.model_folder import ModelFolder

    root, _images, labels = three_class_project
    folder = ModelFolder(root / "model")
    saved = folder.load_config()
    assert saved.model.task == "multiclass" and saved.model.in_channels == 1
    last = folder.read_json(folder.history_path)[-1]
    for key in ("train_pixel_accuracy", "val_dice_membrane", "val_iou_mitochondria", "val_dice"):
        assert key in last
    assert "val_rand_fscore" not in last  # binary-only metric
    assert list((root / "tb").glob("events.out.tfevents.*"))  # train.log_dir
    capsys.readouterr()
    model = str(root / "model")
    assert main(["predict", model, str(root / "em.tif"), "-o", str(root / "cls.tif")]) == 0
    predicted = tifffile.imread(root / "cls.tif")
    assert predicted.shape == labels.shape and set(np.unique(predicted)) <= {0, 1, 2}
    mito = root / "mito.tif"
    assert (
        main(["predict", model, str(root / "em.tif"), "-o", str(mito), "--class", "mitochondria"])
        == 0
    )
    np.testing.assert_array_equal(tifffile.imread(mito), (predicted == 2) * 255)
    probs = root / "p.npy"
    assert main(["predict", model, str(root / "em.tif"), "-o", str(probs), "--probabilities"]) == 0
    p = np.load(probs, allow_pickle=False)
    assert p.shape == (4, 3, 48, 48)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    csv = root / "membrane.csv"
    assert (
        main(["predict", model, str(root / "em.tif"), "-o", str(csv), "--class", "membrane"]) == 0
    )
    _, decoded = read_rle_csv(csv, (48, 48))
    np.testing.assert_array_equal(decoded, predicted == 1)
    capsys.readouterr()
    assert main(["predict", model, str(root / "em.tif"), "-o", str(root / "x.csv")]) == 2
    assert "--class NAME" in capsys.readouterr().err
    assert main(["evaluate", model, str(root / "em.tif"), str(root / "classes.tif")]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert {"pixel_accuracy", "dice_membrane", "iou_background"} <= set(scores)


@pytest.mark.gui
def test_dock_engine_path_trains_and_shows_classes(make_napari_viewer, tmp_path):
    """What the dock runs: train_iter on layer arrays, predict_iter, then a class Labels layer."""
    from napari_unet.widgets.tf_loader import ensure_tensorflow

    ensure_tensorflow()
    from napari_unet.engine.events import drain
    from napari_unet.engine.inference.predict import predict_iter
    from napari_unet.engine.training.train import train_iter
    from napari_unet.widgets.task_outputs import add_class_layer, show_task_prediction

    images, labels = synthetic_em_classes(slices=3, size=40, seed=6)
    config = _task_config(tmp_path, "multiclass").with_overrides({"data.val_fraction": 0.34})
    result = drain(train_iter(config, images, labels, metadata={"layers": ["em", "classes"]}))
    assert not result.failed and result.history[-1]["val_pixel_accuracy"] >= 0
    prediction = drain(predict_iter(result.model_dir, images))
    viewer = make_napari_viewer()
    viewer.add_image(images, name="em")
    layer = show_task_prediction(viewer, prediction, "em")
    assert layer.name == "em classes" and layer.metadata["classes"] == CLASSES
    colours = layer.colormap.map(np.array([0, 1, 2]))
    assert colours[0][3] == 0 and not np.allclose(colours[1], colours[2])  # one per class
    mito = add_class_layer(viewer, prediction, "mitochondria", "em")
    np.testing.assert_array_equal(mito.data, prediction.labels() == 2)
    regression = Prediction(np.random.default_rng(0).random((3, 40, 40)), task="regression")
    image_layer = show_task_prediction(viewer, regression, "em")
    assert image_layer.data.dtype == np.float32 and image_layer.name == "em prediction"
