"""Tests of the TensorFlow losses and metrics on tiny tensors with hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from napari_unet.engine.config import TrainConfig
from napari_unet.engine.model import losses as L


def _t(values, dtype=tf.float32) -> tf.Tensor:
    """A (1, H, W, 1) tensor from a 2D list."""
    arr = np.asarray(values, dtype=np.float32)[None, ..., None]
    return tf.constant(arr, dtype=dtype)


TRUE = _t([[1, 0], [1, 0]])
ONES = _t([[1, 1], [1, 1]])


def _value(x: tf.Tensor) -> float:
    assert x.dtype == tf.float32 and x.shape == ()
    return float(x.numpy())


def test_bce_of_one_half_is_ln2():
    half = _t([[0.5, 0.5], [0.5, 0.5]])
    assert _value(L.weighted_bce(TRUE, half, ONES)) == pytest.approx(math.log(2), rel=1e-6)
    assert L.bce is L.weighted_bce
    zeros = tf.zeros_like(TRUE)  # logit 0 = probability 0.5
    assert _value(L.weighted_bce_logits(TRUE, zeros, ONES)) == pytest.approx(math.log(2))


def test_bce_known_value_and_weights():
    pred = _t([[0.9, 0.2], [0.6, 0.5]])
    per_pixel = [-math.log(0.9), -math.log(0.8), -math.log(0.6), -math.log(0.5)]
    assert _value(L.weighted_bce(TRUE, pred, ONES)) == pytest.approx(np.mean(per_pixel), rel=1e-5)
    weight = _t([[2, 1], [0, 1]])
    expected = (2 * per_pixel[0] + per_pixel[1] + per_pixel[3]) / 4
    assert _value(L.weighted_bce(TRUE, pred, weight)) == pytest.approx(expected, rel=1e-5)
    logits = tf.math.log(pred / (1 - pred))
    assert _value(L.weighted_bce_logits(TRUE, logits, weight)) == pytest.approx(expected, rel=1e-4)


def test_bce_clips_and_handles_zero_weight():
    wrong = 1.0 - TRUE
    value = _value(L.weighted_bce(TRUE, wrong, ONES))
    assert math.isfinite(value) and value == pytest.approx(-math.log(1e-7), rel=1e-2)
    assert _value(L.weighted_bce(TRUE, wrong, tf.zeros_like(ONES))) == 0.0


def test_ignored_pixels_do_not_matter():
    weight = _t([[1, 1], [0, 0]])
    pred_a = _t([[0.8, 0.3], [0.0, 1.0]])
    pred_b = _t([[0.8, 0.3], [1.0, 0.0]])  # differs only where weight is 0
    for fn in (
        L.weighted_bce,
        L.dice_loss,
        L.bce_dice,
        L.soft_dice_metric,
        L.dice_metric,
        L.iou_metric,
    ):
        assert _value(fn(TRUE, pred_a, weight)) == pytest.approx(_value(fn(TRUE, pred_b, weight)))


def test_ignored_pixels_get_no_gradient():
    weight = _t([[1, 1], [0, 0]])
    pred = tf.Variable(_t([[0.8, 0.3], [0.4, 0.7]]))
    with tf.GradientTape() as tape:
        loss = L.bce_dice(TRUE, pred, weight)
    grad = tape.gradient(loss, pred).numpy()[0, ..., 0]
    assert np.all(grad[1] == 0) and np.all(grad[0] != 0)


def test_dice_loss_perfect_and_all_wrong():
    assert _value(L.dice_loss(TRUE, TRUE, ONES, smooth=0.0)) == pytest.approx(0.0)
    assert _value(L.dice_loss(TRUE, TRUE, ONES, smooth=1.0)) == pytest.approx(0.0)
    assert _value(L.dice_loss(TRUE, 1 - TRUE, ONES, smooth=0.0)) == pytest.approx(1.0)
    # smoothing: (0 + 1) / (2 + 2 + 1) -> loss 0.8 instead of 1
    assert _value(L.dice_loss(TRUE, 1 - TRUE, ONES, smooth=1.0)) == pytest.approx(0.8)


def test_dice_loss_known_soft_value_and_empty():
    pred = _t([[0.5, 0.5], [1.0, 0.0]])
    # sum(p t) = 1.5, sum(p) = 2, sum(t) = 2 -> dice 3 / 4
    assert _value(L.dice_loss(TRUE, pred, ONES, smooth=0.0)) == pytest.approx(0.25)
    assert _value(L.dice_loss(TRUE, pred, ONES, smooth=1.0)) == pytest.approx(1 - 4 / 5)
    empty = tf.zeros_like(TRUE)
    assert _value(L.dice_loss(empty, empty, ONES, smooth=0.0)) == 0.0  # defined, not NaN
    assert _value(L.dice_loss(TRUE, pred, tf.zeros_like(ONES), smooth=0.0)) == 0.0


def test_dice_weight_magnitude_is_not_used():
    pred = _t([[0.5, 0.5], [1.0, 0.0]])
    heavy = _t([[5, 1], [3, 1]])
    assert _value(L.dice_loss(TRUE, pred, heavy)) == pytest.approx(
        _value(L.dice_loss(TRUE, pred, ONES))
    )


def test_bce_dice_is_sum():
    pred = _t([[0.7, 0.2], [0.6, 0.1]])
    expected = _value(L.weighted_bce(TRUE, pred, ONES)) + _value(L.dice_loss(TRUE, pred, ONES))
    assert _value(L.bce_dice(TRUE, pred, ONES)) == pytest.approx(expected)


@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
def test_low_precision_inputs_give_float32(dtype):
    pred = _t([[0.5, 0.5], [0.5, 0.5]], dtype=dtype)
    value = L.weighted_bce(TRUE, pred, ONES)
    assert value.dtype == tf.float32
    assert float(value) == pytest.approx(math.log(2), rel=1e-3)
    assert L.dice_loss(tf.cast(TRUE, tf.uint8), pred, ONES).dtype == tf.float32


def test_make_loss_from_config():
    pred = _t([[0.7, 0.2], [0.6, 0.1]])
    for name, reference in (
        ("bce", L.weighted_bce),
        ("dice", L.dice_loss),
        ("bce_dice", L.bce_dice),
    ):
        loss = L.make_loss(TrainConfig(loss=name))
        assert loss.__name__ == name
        assert _value(loss(TRUE, pred, ONES)) == pytest.approx(_value(reference(TRUE, pred, ONES)))
    smooth0 = L.make_loss(TrainConfig(loss="dice", dice_smooth=0.0))
    assert _value(smooth0(TRUE, pred, ONES)) == pytest.approx(
        _value(L.dice_loss(TRUE, pred, ONES, smooth=0.0))
    )
    logits = tf.math.log(pred / (1 - pred))
    from_logits = L.make_loss(TrainConfig(loss="bce_dice"), from_logits=True)
    assert _value(from_logits(TRUE, logits, ONES)) == pytest.approx(
        _value(L.bce_dice(TRUE, pred, ONES)), rel=1e-4
    )


def test_make_loss_works_in_tf_function():
    loss = tf.function(L.make_loss(TrainConfig()))
    pred = _t([[0.7, 0.2], [0.6, 0.1]])
    assert _value(loss(TRUE, pred, ONES)) == pytest.approx(_value(L.bce_dice(TRUE, pred, ONES)))


def test_thresholded_metrics():
    pred = _t([[0.9, 0.6], [0.4, 0.1]])  # thresholded: [[1, 1], [0, 0]]
    # intersection 1, |pred| 2, |true| 2
    assert _value(L.dice_metric(TRUE, pred, ONES)) == pytest.approx(0.5)
    assert _value(L.iou_metric(TRUE, pred, ONES)) == pytest.approx(1 / 3)
    assert _value(L.dice_metric(TRUE, TRUE, ONES)) == pytest.approx(1.0)
    empty = tf.zeros_like(TRUE)
    assert _value(L.iou_metric(empty, empty, ONES)) == 1.0
    assert _value(L.dice_metric(empty, empty, ONES)) == 1.0
    # soft Dice: sum(p t) = 1.3, sum(p) = 2.0, sum(t) = 2 -> 2.6 / 4
    assert _value(L.soft_dice_metric(TRUE, pred, ONES)) == pytest.approx(0.65)
