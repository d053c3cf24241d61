"""Training losses and progress metrics in TensorFlow (Keras 3 on the TF backend).

Every function takes ``(y_true, y_pred, weight)`` tensors of shape
``(B, H, W, 1)`` (any matching shape works):

* ``y_true``: the target mask, ``{0, 1}`` (any numeric dtype).
* ``y_pred``: sigmoid probabilities (float32, bfloat16 or float16), or logits
  for the ``*_logits`` variants. Everything is cast to float32 first, so the
  losses are safe under mixed precision.
* ``weight``: per-pixel weights ``>= 0``; weight 0 marks an ignored pixel
  (unannotated in sparse annotations), which then has no effect on the value
  or the gradient.

Each returns a float32 scalar over the whole batch. This module imports
TensorFlow at the top and must only be imported lazily (by training code).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

__all__ = [
    "EPSILON",
    "LossFn",
    "bce",
    "bce_dice",
    "dice_loss",
    "dice_metric",
    "iou_metric",
    "make_loss",
    "soft_dice_metric",
    "weighted_bce",
    "weighted_bce_logits",
]

#: Probability clip / division guard.
EPSILON = 1e-7

LossFn = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]


def _cast(y_true: Any, y_pred: Any, weight: Any) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    return (
        tf.cast(y_true, tf.float32),
        tf.cast(y_pred, tf.float32),
        tf.cast(weight, tf.float32),
    )


def _weighted_mean(values: tf.Tensor, weight: tf.Tensor) -> tf.Tensor:
    """``sum(w * v) / max(sum(w), EPSILON)`` (0 when every weight is 0)."""
    total = tf.reduce_sum(weight)
    return tf.reduce_sum(weight * values) / tf.maximum(total, EPSILON)


def weighted_bce(y_true: Any, y_pred: Any, weight: Any) -> tf.Tensor:
    """Weighted binary cross-entropy of probabilities.

    ``sum(w * bce) / max(sum(w), eps)`` with
    ``bce = -(t log p + (1 - t) log(1 - p))`` and ``p`` clipped to
    ``[eps, 1 - eps]`` (``eps = 1e-7``).

    Parameters
    ----------
    y_true
        Targets in ``{0, 1}``.
    y_pred
        Sigmoid probabilities.
    weight
        Per-pixel weights ``>= 0`` (0 = ignored).

    Returns
    -------
    tf.Tensor
        float32 scalar; 0 when every weight is 0.
    """
    t, p, w = _cast(y_true, y_pred, weight)
    p = tf.clip_by_value(p, EPSILON, 1.0 - EPSILON)
    per_pixel = -(t * tf.math.log(p) + (1.0 - t) * tf.math.log(1.0 - p))
    return _weighted_mean(per_pixel, w)


#: Short name used in the engine API table.
bce = weighted_bce


def weighted_bce_logits(y_true: Any, logits: Any, weight: Any) -> tf.Tensor:
    """Weighted binary cross-entropy computed from logits (numerically stable).

    Same value as :func:`weighted_bce` on ``sigmoid(logits)`` (without the
    clipping), via ``tf.nn.sigmoid_cross_entropy_with_logits``.

    Returns
    -------
    tf.Tensor
        float32 scalar; 0 when every weight is 0.
    """
    t, z, w = _cast(y_true, logits, weight)
    per_pixel = tf.nn.sigmoid_cross_entropy_with_logits(labels=t, logits=z)
    return _weighted_mean(per_pixel, w)


def _dice_ratio(t: tf.Tensor, p: tf.Tensor, keep: tf.Tensor, smooth: float) -> tf.Tensor:
    """``(2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth)`` over ``keep``; 1 if 0/0."""
    p = p * keep
    t = t * keep
    numerator = 2.0 * tf.reduce_sum(p * t) + smooth
    denominator = tf.reduce_sum(p) + tf.reduce_sum(t) + smooth
    safe = tf.where(denominator > 0.0, denominator, tf.ones_like(denominator))
    return tf.where(denominator > 0.0, numerator / safe, tf.ones_like(numerator))


def dice_loss(y_true: Any, y_pred: Any, weight: Any, smooth: float = 1.0) -> tf.Tensor:
    """Soft Dice loss over the whole batch, on pixels with ``weight > 0``.

    ``1 - (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth)`` where the sums
    run over the batch and ``p``, ``t`` are multiplied by ``weight > 0`` (the
    weight's magnitude is not used, only whether a pixel counts).

    Parameters
    ----------
    y_true, y_pred, weight
        See the module docstring; ``y_pred`` are probabilities.
    smooth
        Smoothing term; with ``smooth = 0`` an empty target and empty
        prediction give loss 0 (defined, not NaN).

    Returns
    -------
    tf.Tensor
        float32 scalar in ``[0, 1]``.
    """
    t, p, w = _cast(y_true, y_pred, weight)
    keep = tf.cast(w > 0.0, tf.float32)
    return 1.0 - _dice_ratio(t, p, keep, float(smooth))


def bce_dice(y_true: Any, y_pred: Any, weight: Any, smooth: float = 1.0) -> tf.Tensor:
    """:func:`weighted_bce` + :func:`dice_loss`."""
    return weighted_bce(y_true, y_pred, weight) + dice_loss(y_true, y_pred, weight, smooth)


def make_loss(train_config: Any, from_logits: bool = False) -> LossFn:
    """The loss named by ``TrainConfig.loss`` (``bce``, ``dice`` or ``bce_dice``).

    Parameters
    ----------
    train_config
        A :class:`~napari_unet.engine.config.TrainConfig` (a whole ``Config`` is
        accepted too; its ``train`` section is used). ``dice_smooth`` sets the
        Dice smoothing.
    from_logits
        The model outputs logits rather than sigmoid probabilities: the BCE part
        uses :func:`weighted_bce_logits` and the Dice part ``sigmoid(logits)``.

    Returns
    -------
    callable
        ``loss(y_true, y_pred, weight) -> float32 scalar``, with ``__name__``
        set to the loss name.
    """
    cfg = getattr(train_config, "train", train_config)
    name = cfg.loss
    smooth = float(cfg.dice_smooth)
    bce_fn = weighted_bce_logits if from_logits else weighted_bce

    def _probs(y_pred: Any) -> tf.Tensor:
        y_pred = tf.cast(y_pred, tf.float32)
        return tf.sigmoid(y_pred) if from_logits else y_pred

    if name == "bce":

        def loss(y_true: Any, y_pred: Any, weight: Any) -> tf.Tensor:
            return bce_fn(y_true, y_pred, weight)

    elif name == "dice":

        def loss(y_true: Any, y_pred: Any, weight: Any) -> tf.Tensor:
            return dice_loss(y_true, _probs(y_pred), weight, smooth)

    elif name == "bce_dice":

        def loss(y_true: Any, y_pred: Any, weight: Any) -> tf.Tensor:
            return bce_fn(y_true, y_pred, weight) + dice_loss(
                y_true, _probs(y_pred), weight, smooth
            )

    else:
        raise ValueError(f"unknown loss {name!r}; choose from 'bce', 'dice', 'bce_dice'")
    loss.__name__ = name
    loss.__qualname__ = name
    return loss


def soft_dice_metric(y_true: Any, y_pred: Any, weight: Any) -> tf.Tensor:
    """Soft Dice coefficient (no threshold, no smoothing) over ``weight > 0`` pixels.

    ``1 - dice_loss(..., smooth=0)``; 1 when target and prediction are both empty.
    """
    return 1.0 - dice_loss(y_true, y_pred, weight, smooth=0.0)


def _hard(y_true: Any, y_pred: Any, weight: Any, threshold: float):
    t, p, w = _cast(y_true, y_pred, weight)
    keep = w > 0.0
    pred = tf.logical_and(p > threshold, keep)
    true = tf.logical_and(t > 0.5, keep)
    inter = tf.reduce_sum(tf.cast(tf.logical_and(pred, true), tf.float32))
    n_pred = tf.reduce_sum(tf.cast(pred, tf.float32))
    n_true = tf.reduce_sum(tf.cast(true, tf.float32))
    return inter, n_pred, n_true


def dice_metric(y_true: Any, y_pred: Any, weight: Any, threshold: float = 0.5) -> tf.Tensor:
    """Dice of the thresholded prediction (``y_pred > threshold``) over ``weight > 0``.

    Returns
    -------
    tf.Tensor
        float32 scalar in ``[0, 1]``; 1 when both are empty.
    """
    inter, n_pred, n_true = _hard(y_true, y_pred, weight, threshold)
    total = n_pred + n_true
    return tf.where(total > 0.0, 2.0 * inter / tf.maximum(total, 1.0), 1.0)


def iou_metric(y_true: Any, y_pred: Any, weight: Any, threshold: float = 0.5) -> tf.Tensor:
    """Intersection over union of the thresholded prediction over ``weight > 0``.

    Returns
    -------
    tf.Tensor
        float32 scalar in ``[0, 1]``; 1 when both are empty.
    """
    inter, n_pred, n_true = _hard(y_true, y_pred, weight, threshold)
    union = n_pred + n_true - inter
    return tf.where(union > 0.0, inter / tf.maximum(union, 1.0), 1.0)
