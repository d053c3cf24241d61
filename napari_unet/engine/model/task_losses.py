"""The training loss of every task, weighted per pixel (TensorFlow).

:func:`make_task_loss` picks the loss of ``train.loss`` for ``model.task``:

* binary: :func:`~napari_unet.engine.model.losses.make_loss` (``bce``, ``dice``,
  ``bce_dice``);
* multiclass: ``ce`` (weighted categorical cross-entropy of the softmax), ``dice`` (one
  minus the mean soft Dice over the classes, on pixels with weight > 0), ``ce_dice``;
* regression: ``l1`` (weighted mean absolute error), ``l2`` (weighted mean squared
  error), ``ssim`` (one minus the weighted mean of the SSIM map, Gaussian window of
  sigma 1.5, data range of the batch's target) and ``l1_ssim`` (``0.16 l1 + 0.84
  (1 - ssim)``, the mix of Zhao et al. 2017).

Every loss takes ``(y_true, y_pred, weight)``: ``y_true`` and ``weight`` ``(B, H, W, 1)``
(class indices for multiclass), ``y_pred`` ``(B, H, W, K)``; weight 0 marks an ignored
pixel. Everything is computed in float32. Import this module lazily (TensorFlow).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from .losses import EPSILON, LossFn, _dice_ratio, make_loss

__all__ = [
    "L1_SSIM_ALPHA",
    "make_task_loss",
    "multiclass_ce",
    "multiclass_dice_loss",
    "ssim_map",
    "weighted_l1",
    "weighted_l2",
    "weighted_ssim",
]

#: Weight of the SSIM part of ``l1_ssim`` (Zhao et al. 2017, "Loss functions for image
#: restoration with neural networks").
L1_SSIM_ALPHA = 0.84
_SSIM_SIGMA = 1.5
_SSIM_RADIUS = 3


def _weighted_mean(values: tf.Tensor, weight: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(weight * values) / tf.maximum(tf.reduce_sum(weight), EPSILON)


def multiclass_ce(y_true: Any, y_pred: Any, weight: Any) -> tf.Tensor:
    """Weighted categorical cross-entropy of softmax probabilities and class indices."""
    probs = tf.cast(y_pred, tf.float32)
    labels = tf.cast(tf.round(tf.cast(y_true, tf.float32))[..., 0], tf.int32)
    onehot = tf.one_hot(labels, tf.shape(probs)[-1], dtype=tf.float32)
    log_p = tf.math.log(tf.clip_by_value(probs, EPSILON, 1.0))
    per_pixel = -tf.reduce_sum(onehot * log_p, axis=-1)
    return _weighted_mean(per_pixel, tf.cast(weight, tf.float32)[..., 0])


def multiclass_dice_loss(y_true: Any, y_pred: Any, weight: Any, smooth: float = 1.0) -> tf.Tensor:
    """One minus the mean over classes of the soft Dice, on pixels with weight > 0."""
    probs = tf.cast(y_pred, tf.float32)
    classes = probs.shape[-1]
    labels = tf.cast(tf.round(tf.cast(y_true, tf.float32))[..., 0], tf.int32)
    onehot = tf.one_hot(labels, classes, dtype=tf.float32)
    keep = tf.cast(tf.cast(weight, tf.float32)[..., 0] > 0.0, tf.float32)
    ratios = [_dice_ratio(onehot[..., k], probs[..., k], keep, smooth) for k in range(classes)]
    return 1.0 - tf.add_n(ratios) / float(classes)


def weighted_l1(y_true: Any, y_pred: Any, weight: Any) -> tf.Tensor:
    """Weighted mean absolute error."""
    error = tf.abs(tf.cast(y_true, tf.float32) - tf.cast(y_pred, tf.float32))
    return _weighted_mean(error, tf.cast(weight, tf.float32))


def weighted_l2(y_true: Any, y_pred: Any, weight: Any) -> tf.Tensor:
    """Weighted mean squared error."""
    error = tf.square(tf.cast(y_true, tf.float32) - tf.cast(y_pred, tf.float32))
    return _weighted_mean(error, tf.cast(weight, tf.float32))


def _gaussian_window() -> tf.Tensor:
    x = tf.range(-_SSIM_RADIUS, _SSIM_RADIUS + 1, dtype=tf.float32)
    g = tf.exp(-0.5 * tf.square(x / _SSIM_SIGMA))
    g = g / tf.reduce_sum(g)
    return tf.reshape(tf.tensordot(g, g, axes=0), [2 * _SSIM_RADIUS + 1] * 2 + [1, 1])


def ssim_map(y_true: Any, y_pred: Any, data_range: Any) -> tf.Tensor:
    """Local SSIM ``(B, H, W, 1)`` of two ``(B, H, W, 1)`` batches (Wang et al. 2004).

    Local means, variances and the covariance use a Gaussian window (sigma 1.5, 7x7,
    zero padding); ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` with ``L = data_range``.
    """
    x = tf.cast(y_true, tf.float32)
    y = tf.cast(y_pred, tf.float32)
    window = _gaussian_window()

    def blur(t: tf.Tensor) -> tf.Tensor:
        return tf.nn.conv2d(t, window, strides=1, padding="SAME")

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cov = blur(x * y) - mx * my
    c1 = tf.square(0.01 * data_range)
    c2 = tf.square(0.03 * data_range)
    return ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def target_range(y_true: Any, weight: Any) -> tf.Tensor:
    """Data range of the labelled target pixels of a batch (at least 1e-3)."""
    t = tf.cast(y_true, tf.float32)
    keep = tf.cast(weight, tf.float32) > 0.0
    big = tf.constant(3.0e38)
    high = tf.reduce_max(tf.where(keep, t, -big))
    low = tf.reduce_min(tf.where(keep, t, big))
    return tf.maximum(tf.where(high >= low, high - low, 1.0), 1e-3)


def weighted_ssim(y_true: Any, y_pred: Any, weight: Any) -> tf.Tensor:
    """Weighted mean of :func:`ssim_map` over the batch (1 = identical)."""
    data_range = target_range(y_true, weight)
    keep = tf.cast(tf.cast(weight, tf.float32) > 0.0, tf.float32)
    return _weighted_mean(ssim_map(y_true, y_pred, data_range), keep)


def make_task_loss(config: Any) -> LossFn:
    """The loss of ``config.train.loss`` for ``config.model.task``.

    Parameters
    ----------
    config
        The whole :class:`~napari_unet.engine.config.Config` (a ``TrainConfig`` alone is
        taken as a binary task).

    Returns
    -------
    callable
        ``loss(y_true, y_pred, weight) -> float32 scalar`` named after the loss.
    """
    train = getattr(config, "train", config)
    task = getattr(getattr(config, "model", None), "task", "binary")
    if task == "binary":
        return make_loss(train)
    name = train.loss
    smooth = float(train.dice_smooth)
    parts: dict[str, LossFn] = {
        "ce": multiclass_ce,
        "dice": lambda t, p, w: multiclass_dice_loss(t, p, w, smooth),
        "ce_dice": lambda t, p, w: multiclass_ce(t, p, w) + multiclass_dice_loss(t, p, w, smooth),
        "l1": weighted_l1,
        "l2": weighted_l2,
        "ssim": lambda t, p, w: 1.0 - weighted_ssim(t, p, w),
        "l1_ssim": lambda t, p, w: (
            (1.0 - L1_SSIM_ALPHA) * weighted_l1(t, p, w)
            + L1_SSIM_ALPHA * (1.0 - weighted_ssim(t, p, w))
        ),
    }
    chosen = parts.get(name)
    if chosen is None or (task == "multiclass") != (name in ("ce", "dice", "ce_dice")):
        raise ValueError(f"loss {name!r} does not fit model.task {task}")

    def loss(y_true: Any, y_pred: Any, weight: Any) -> tf.Tensor:
        return chosen(y_true, y_pred, weight)

    loss.__name__ = loss.__qualname__ = f"{task}_{name}"
    return loss
