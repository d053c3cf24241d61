"""Scores of a whole prediction against its truth, for every task (numpy only).

* binary: :func:`~napari_unet.engine.evaluation.metrics.evaluate` (pixel error and
  accuracy, Dice, IoU, Rand F-score, VI) at the model's threshold;
* multiclass: :func:`multiclass_scores` -- pixel accuracy, Dice and IoU of every class,
  and their means over the classes after the first (the background);
* regression: :func:`regression_scores` -- MAE, MSE, PSNR (dB, the truth's data range),
  SSIM (mean over slices, scikit-image, the truth's data range) and Pearson's r.

:func:`score_task` picks the one of a config's ``model.task``; the test slices of
``data.split`` and ``napari-unet evaluate`` are scored with it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import UserInputError

__all__ = ["multiclass_scores", "regression_scores", "score_task"]


def multiclass_scores(
    labels: np.ndarray,
    truth: np.ndarray,
    classes: list[str],
    labelled: np.ndarray | None = None,
) -> dict[str, float]:
    """Pixel accuracy and per-class Dice / IoU of a class-index prediction.

    Parameters
    ----------
    labels, truth
        Class indices of the same shape.
    classes
        Class names, index 0 first.
    labelled
        Pixels that count (None: all).

    Returns
    -------
    dict
        ``pixel_accuracy``, ``dice``, ``iou`` (means over classes 1..K-1) and
        ``dice_<name>``, ``iou_<name>`` per class. A class absent from both prediction
        and truth scores 1.
    """
    labels, truth = np.asarray(labels), np.asarray(truth)
    if labels.shape != truth.shape:
        raise UserInputError(f"prediction {labels.shape} and truth {truth.shape} differ in shape")
    keep = np.ones(truth.shape, bool) if labelled is None else np.asarray(labelled, bool)
    pred, true = labels[keep], truth[keep]
    if true.size == 0:
        return {}
    out: dict[str, float] = {"pixel_accuracy": float(np.mean(pred == true))}
    dices, ious = [], []
    for index, name in enumerate(classes):
        p, t = pred == index, true == index
        inter, union = np.sum(p & t), np.sum(p | t)
        dice = 2 * inter / (p.sum() + t.sum()) if union else 1.0
        iou = inter / union if union else 1.0
        out[f"dice_{name}"], out[f"iou_{name}"] = float(dice), float(iou)
        if index:
            dices.append(dice)
            ious.append(iou)
    out["dice"], out["iou"] = float(np.mean(dices)), float(np.mean(ious))
    return out


def regression_scores(
    prediction: np.ndarray, truth: np.ndarray, labelled: np.ndarray | None = None
) -> dict[str, float]:
    """MAE, MSE, PSNR, SSIM and Pearson's r of a float prediction ``(Z, Y, X)``.

    PSNR and SSIM use the data range of the truth (max - min over the counted pixels);
    SSIM is the mean over the slices of scikit-image's ``structural_similarity``
    (computed on whole slices).
    """
    from skimage.metrics import structural_similarity

    pred = np.asarray(prediction, dtype=np.float64)
    true = np.asarray(truth, dtype=np.float64)
    if pred.shape != true.shape:
        raise UserInputError(f"prediction {pred.shape} and truth {true.shape} differ in shape")
    keep = np.isfinite(true) if labelled is None else np.asarray(labelled, bool) & np.isfinite(true)
    if not keep.any():
        return {}
    p, t = pred[keep], true[keep]
    mse = float(np.mean((p - t) ** 2))
    data_range = float(t.max() - t.min()) or 1.0
    psnr = 10 * math.log10(data_range**2 / mse) if mse > 0 else float("inf")
    stack_p, stack_t = (pred, true) if pred.ndim == 3 else (pred[None], true[None])
    side = min(stack_t.shape[-2:])
    window = min(7, side if side % 2 else side - 1)
    ssim = (
        [
            structural_similarity(a, b, data_range=data_range, win_size=window)
            for a, b in zip(np.nan_to_num(stack_t), np.nan_to_num(stack_p))
        ]
        if window >= 3
        else [float("nan")]
    )
    pearson = float(np.corrcoef(p, t)[0, 1]) if p.std() > 0 and t.std() > 0 else 0.0
    return {
        "mae": float(np.mean(np.abs(p - t))),
        "mse": mse,
        "psnr": psnr,
        "ssim": float(np.mean(ssim)),
        "pearson": pearson,
    }


def score_task(
    output: np.ndarray, truth: np.ndarray, config: Any, labelled: np.ndarray | None = None
) -> dict[str, Any]:
    """Scores of a prediction for ``config.model.task``.

    Parameters
    ----------
    output
        The network's output: probability ``(Z, Y, X)`` (binary), class probabilities
        ``(Z, Y, X, K)`` (multiclass) or values ``(Z, Y, X)`` (regression).
    truth
        Mask ``{0, 1}``, class indices or the (normalized) float target.
    config
        The model's config (task, classes, ``predict.threshold``).
    labelled
        Pixels that count (None: all); binary scores use every pixel.
    """
    task = config.model.task
    if task == "multiclass":
        labels = np.argmax(output, axis=-1) if output.ndim == truth.ndim + 1 else output
        return multiclass_scores(labels, truth, list(config.model.classes), labelled)
    if task == "regression":
        return regression_scores(output, truth, labelled)
    from .metrics import evaluate

    threshold = config.predict.threshold
    scores = evaluate(output, truth, threshold=threshold)
    return {k: v for k, v in scores.items() if k != "per_slice"}
