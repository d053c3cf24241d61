"""Running training and validation metrics of every task: summed counts, then scores.

The training and validation steps return a vector of sums per batch (:func:`counts_fn`,
in TensorFlow); the loop adds the vectors of an epoch and :func:`summarize_counts` turns
the total into the metrics of ``history.json``, the events and TensorBoard:

* binary: ``(tp, fp, fn, tn)`` -> ``dice``, ``iou``, ``pixel_error``, ``pixel_accuracy``;
* multiclass (K classes): per class ``tp, fp, fn`` of the arg-max prediction, then the
  correct and labelled pixel counts -> ``pixel_accuracy``, ``dice`` and ``iou`` (means
  over the classes after the first, the background), and ``dice_<class>``,
  ``iou_<class>`` for every class;
* regression: pixel sums and the per-batch PSNR and SSIM -> ``mae``, ``mse``, ``psnr``
  (dB, data range of each batch's target), ``ssim`` and ``pearson``.

Only labelled pixels (weight > 0) count. :func:`difference_fn` gives the validation step's
``pixel_difference`` sum (binary: ``|mask - p|``; multiclass: ``1 - p(true class)``;
regression: none).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["count_size", "counts_fn", "difference_fn", "summarize_counts"]

_REGRESSION_SUMS = 11


def _task(config: Any) -> str:
    return getattr(getattr(config, "model", None), "task", "binary")


def count_size(config: Any) -> int:
    """Length of the count vector of ``config``'s task."""
    task = _task(config)
    if task == "multiclass":
        return 3 * config.model.out_channels + 2
    return _REGRESSION_SUMS if task == "regression" else 4


def counts_fn(config: Any) -> Callable[..., Any]:
    """``counts(y, p, w) -> float32 vector`` for a multiclass or regression task."""
    import tensorflow as tf

    task = _task(config)
    if task == "multiclass":
        classes = config.model.out_channels

        def multiclass_counts(y, p, w):
            keep = tf.cast(w[..., 0] > 0, tf.float32)
            truth = tf.cast(tf.round(tf.cast(y[..., 0], tf.float32)), tf.int32)
            pred = tf.argmax(p, axis=-1, output_type=tf.int32)
            t = tf.one_hot(truth, classes, dtype=tf.float32) * keep[..., None]
            q = tf.one_hot(pred, classes, dtype=tf.float32) * keep[..., None]
            axes = [0, 1, 2]
            tp = tf.reduce_sum(t * q, axis=axes)
            fp = tf.reduce_sum((1.0 - t) * q, axis=axes)
            fn = tf.reduce_sum(t * (1.0 - q), axis=axes)
            correct = tf.reduce_sum(tf.cast(truth == pred, tf.float32) * keep)
            return tf.concat([tp, fp, fn, tf.stack([correct, tf.reduce_sum(keep)])], axis=0)

        return multiclass_counts
    if task != "regression":
        raise ValueError(f"binary counts are the training step's own (task {task})")
    from ..model.task_losses import ssim_map, target_range

    def regression_counts(y, p, w):
        y = tf.cast(y, tf.float32)
        p = tf.cast(p, tf.float32)
        keep = tf.cast(w > 0, tf.float32)
        n = tf.reduce_sum(keep)
        e = (p - y) * keep
        data_range = target_range(y, w)
        mse = tf.reduce_sum(e * e) / tf.maximum(n, 1.0)
        psnr = 10.0 * tf.math.log(data_range**2 / tf.maximum(mse, 1e-12)) / math.log(10.0)
        ssim = tf.reduce_sum(ssim_map(y, p, data_range) * keep) / tf.maximum(n, 1.0)
        sums = [n, tf.reduce_sum(tf.abs(e)), tf.reduce_sum(e * e)]
        sums += [tf.reduce_sum(y * keep), tf.reduce_sum(p * keep)]
        sums += [tf.reduce_sum(y * y * keep), tf.reduce_sum(p * p * keep)]
        sums += [tf.reduce_sum(y * p * keep), psnr, ssim, tf.constant(1.0)]
        return tf.stack(sums)

    return regression_counts


def difference_fn(config: Any) -> Callable[..., Any] | None:
    """``diff(y, p, labelled) -> float32`` sum of the validation ``pixel_difference``.

    None for binary (the validation step's own ``|mask - p|``) and regression (no such
    metric: ``mae`` says it).
    """
    if _task(config) != "multiclass":
        return None
    import tensorflow as tf

    classes = config.model.out_channels

    def multiclass_difference(y, p, labelled):
        truth = tf.cast(tf.round(tf.cast(y[..., 0], tf.float32)), tf.int32)
        p_true = tf.reduce_sum(tf.one_hot(truth, classes) * tf.cast(p, tf.float32), axis=-1)
        return tf.reduce_sum((1.0 - p_true) * labelled[..., 0])

    return multiclass_difference


def _binary(counts: np.ndarray) -> dict[str, float]:
    tp, fp, fn, tn = (float(v) for v in counts)
    total = tp + fp + fn + tn
    if total == 0:
        return {}
    dice = 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0
    iou = tp / (tp + fp + fn) if (tp + fp + fn) else 1.0
    return {
        "dice": dice,
        "iou": iou,
        "pixel_error": (fp + fn) / total,
        "pixel_accuracy": (tp + tn) / total,
    }


def _multiclass(counts: np.ndarray, classes: list[str]) -> dict[str, float]:
    k = len(classes)
    tp, fp, fn = counts[:k], counts[k : 2 * k], counts[2 * k : 3 * k]
    correct, total = float(counts[3 * k]), float(counts[3 * k + 1])
    if total == 0:
        return {}
    out: dict[str, float] = {"pixel_accuracy": correct / total}
    dices, ious = [], []
    for index, name in enumerate(classes):
        union = tp[index] + fp[index] + fn[index]
        dice = 2 * tp[index] / (union + tp[index]) if union else 1.0
        iou = tp[index] / union if union else 1.0
        out[f"dice_{name}"], out[f"iou_{name}"] = float(dice), float(iou)
        if index > 0:
            dices.append(dice)
            ious.append(iou)
    out["dice"], out["iou"] = float(np.mean(dices)), float(np.mean(ious))
    return out


def _regression(counts: np.ndarray) -> dict[str, float]:
    n, abs_sum, sq_sum, sy, sp, syy, spp, syp, psnr, ssim, batches = (float(v) for v in counts)
    if n == 0:
        return {}
    cov = syp / n - (sy / n) * (sp / n)
    var_y, var_p = syy / n - (sy / n) ** 2, spp / n - (sp / n) ** 2
    pearson = cov / math.sqrt(var_y * var_p) if var_y > 0 and var_p > 0 else 0.0
    return {
        "mae": abs_sum / n,
        "mse": sq_sum / n,
        "psnr": psnr / batches,
        "ssim": ssim / batches,
        "pearson": pearson,
    }


def summarize_counts(counts: Any, config: Any = None) -> dict[str, float]:
    """The metrics of summed count vectors (see the module docstring).

    Parameters
    ----------
    counts
        The summed vector (an empty or zero-length array gives no metrics).
    config
        The run's config (None: binary).
    """
    counts = np.asarray(counts, dtype=np.float64).reshape(-1)
    task = _task(config)
    if task == "multiclass" and counts.size == count_size(config):
        return _multiclass(counts, list(config.model.classes))
    if task == "regression" and counts.size == _REGRESSION_SUMS:
        return _regression(counts)
    return _binary(counts) if counts.size == 4 else {}
