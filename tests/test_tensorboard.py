"""TensorBoard: step scalars, epoch scalars of every metric, the validation image history,
and the pixel-difference metric."""

import numpy as np
import pytest

from napari_unet.engine.data.synthetic import synthetic_em
from napari_unet.engine.evaluation.metrics import pixel_difference_percent
from napari_unet.engine.training.tb_logging import GAP, side_by_side
from napari_unet.engine.training.train import prepare_data, train

from .conftest import tiny_config


def _events(logs):
    import tensorflow as tf

    found = {}
    for path in sorted(logs.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value))
    return found


def test_side_by_side_layout():
    x = np.full((2, 4, 4, 1), 0.2, np.float32)
    y = np.ones((2, 4, 4, 1), np.float32)
    p = np.full((2, 4, 4, 1), 2.0, np.float32)  # clipped to 1
    out = side_by_side(x, y, p)
    assert out.shape == (2, 4, 12 + 2 * GAP, 1)
    np.testing.assert_allclose(out[:, :, :4], 0.2)
    np.testing.assert_allclose(out[:, :, 4 + GAP : 8 + GAP], 1.0)
    assert out.max() == 1.0


def test_training_writes_scalars_and_image_history(tmp_path):
    import tensorflow as tf

    images, masks = synthetic_em(slices=3, size=48, cells=8, seed=3)
    config = tiny_config(
        tmp_path,
        epochs=2,
        steps_per_epoch=3,
        tensorboard=True,
        tensorboard_every_steps=2,
        tensorboard_images_every=3,
        tensorboard_images=2,
        val_em_metrics=False,
    )
    result = train(config, images, masks)
    tags = _events(result.model_dir / "logs")
    # step-level scalars every 2 steps (and the first)
    assert [s for s, _ in tags["step/loss"]] == [1, 2, 4, 6]
    assert [s for s, _ in tags["step/learning_rate"]] == [1, 2, 4, 6]
    # every loss and metric of the epoch records, at the epoch's last step
    for name in (
        "loss",
        "learning_rate",
        "train_dice",
        "val_loss",
        "val_dice",
        "val_iou",
        "val_pixel_error",
        "val_pixel_difference",
    ):
        assert [s for s, _ in tags[name]] == [3, 6], name
    # image | label | prediction of 2 validation tiles, at steps 1, 3 and 6
    history = tags["val/image_label_prediction"]
    assert [s for s, _ in history] == [1, 3, 6]
    value = history[-1][1]
    assert value.metadata.plugin_data.plugin_name == "images"
    width, height, *pngs = value.tensor.string_val
    assert (int(width), int(height), len(pngs)) == (3 * 32 + 2 * GAP, 32, 2)
    decoded = tf.io.decode_png(pngs[0]).numpy()
    assert decoded.shape == (32, 3 * 32 + 2 * GAP, 1)


def test_pixel_difference_is_mean_abs_difference_in_percent(tmp_path):
    import keras

    from napari_unet.engine.data.pipeline import val_tiles

    images, masks = synthetic_em(slices=3, size=64, cells=8, seed=6)
    config = tiny_config(tmp_path, epochs=1, steps_per_epoch=2, val_em_metrics=False)
    result = train(config, images, masks)
    reported = result.history[-1]["val_pixel_difference"]
    assert 0.0 <= reported <= 100.0
    prepared = prepare_data(config, images, masks)
    x, y, w = val_tiles(prepared.val_images, prepared.val_masks, prepared.val_weights, 32)
    model = keras.saving.load_model(result.model_dir / "last.keras")
    p = np.asarray(model(x, training=False), np.float32)
    keep = w > 0
    assert reported == pytest.approx(pixel_difference_percent(y[keep], p[keep]), rel=1e-4)
