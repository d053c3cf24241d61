"""Evaluation against ground truth of any mask kind, on its labelled pixels only.

:func:`evaluate` (ISBI 2012 protocol) takes a binary ground truth in which every pixel
is labelled. Correction layers are often *sparse* annotations (0 unlabeled,
1 background, 2 foreground): counting 1 as foreground, or the unlabeled pixels as
background, gives meaningless scores. :func:`evaluate_annotation` converts the ground
truth with :func:`~napari_unet.engine.data.mask_kinds.mask_targets` (target and weight,
weight 0 = unlabeled) and scores each slice on its labelled pixels:

- pixel error, accuracy, difference, Dice and IoU over the labelled pixels;
- Rand F-score and VI between the predicted segments of the whole slice and the
  4-connected components of the labelled foreground (both measures only look at
  ground-truth foreground pixels, which are all labelled);
- slices without a labelled pixel are left out (``n_slices`` counts scored slices;
  ``per_slice`` holds their indices).

Inputs are read one slice at a time, so lazy (dask, zarr) stacks stay out of memory.
numpy/scipy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.mask_kinds import mask_targets, resolve_mask_kind
from ..errors import UserInputError
from .pixel_metrics import (
    binarize_prediction,
    dice,
    iou,
    pixel_accuracy,
    pixel_difference_percent,
    pixel_error,
)
from .segment_metrics import gt_segments, rand_fscore, segment_interiors, variation_of_information
from .stack_evaluation import _SUMMARY_KEYS, _mean_ignoring_nan

__all__ = ["evaluate_annotation"]


def _slice(array: Any, z: int) -> np.ndarray:
    part = array[z]
    if hasattr(part, "compute"):
        part = part.compute(scheduler="synchronous")
    return np.asarray(part)


def _score_slice(
    prob: np.ndarray, target: np.ndarray, labelled: np.ndarray, threshold: float
) -> dict[str, float]:
    """Every measure of one slice, on its labelled pixels."""
    is_mask = prob.dtype == bool or np.issubdtype(prob.dtype, np.integer)
    pred = binarize_prediction(prob, threshold)
    p, t = pred[labelled], target[labelled].astype(bool)
    pred_labels, gt_labels = segment_interiors(pred), gt_segments(target * labelled)
    rand = rand_fscore(pred_labels, gt_labels)
    vi = variation_of_information(pred_labels, gt_labels)
    return {
        "pixel_error": pixel_error(p, t),
        "pixel_accuracy": pixel_accuracy(p, t),
        "pixel_difference_percent": pixel_difference_percent(t, p if is_mask else prob[labelled]),
        "dice": dice(p, t),
        "iou": iou(p, t),
        "rand_fscore": rand.fscore,
        "rand_precision": rand.precision,
        "rand_recall": rand.recall,
        "rand_error": rand.error,
        "vi": vi.vi,
        "vi_split": vi.split,
        "vi_merge": vi.merge,
        "labelled_fraction": float(labelled.mean()) if labelled.size else 0.0,
    }


def evaluate_annotation(
    probability: Any, truth: Any, threshold: float = 0.5, mask_kind: str = "auto"
) -> dict[str, Any]:
    """Evaluate a prediction against a ground truth of any kind, on its labelled pixels.

    Parameters
    ----------
    probability
        float probabilities (or a mask) ``(Z, Y, X)`` or ``(Y, X)``: numpy, dask or zarr.
    truth
        Ground truth of the same shape: binary, sparse (0 unlabeled, 1 background,
        2 foreground) or instance labels, as `mask_kind` says.
    threshold
        Foreground where ``probability > threshold``.
    mask_kind
        ``auto``, ``binary``, ``sparse`` or ``instances`` (see
        :func:`~napari_unet.engine.data.mask_kinds.resolve_mask_kind`; ``auto`` refuses
        the ambiguous values {0, 1, 2}).

    Returns
    -------
    dict
        As :func:`~napari_unet.engine.evaluation.metrics.evaluate` (overall values are
        means over the scored slices), plus ``mask_kind``, ``labelled_fraction`` and
        ``skipped_slices`` (slices without labelled pixels).

    Raises
    ------
    UserInputError
        If the shapes differ, the arrays are not 2D/3D, or the values contradict
        `mask_kind`.
    """
    shape, tshape = tuple(probability.shape), tuple(truth.shape)
    if shape != tshape:
        raise UserInputError(f"prediction {shape} and ground truth {tshape} differ in shape")
    if len(shape) not in (2, 3):
        raise UserInputError(f"expected a (Z, Y, X) stack or a 2D slice, got shape {shape}")
    n = 1 if len(shape) == 2 else shape[0]
    kind = None if mask_kind == "auto" else mask_kind
    per_slice: list[dict[str, Any]] = []
    skipped: list[int] = []
    labelled_pixels = 0
    for z in range(n):
        prob = np.asarray(probability) if len(shape) == 2 else _slice(probability, z)
        true = np.asarray(truth) if len(shape) == 2 else _slice(truth, z)
        if kind is None:  # decide once, on the first slice that holds labels
            if not true.any():
                skipped.append(z)
                continue
            kind, _ = resolve_mask_kind(true, "auto")
        else:
            resolve_mask_kind(true, kind)  # the values must fit the kind
        target, weight = mask_targets(true, kind)  # type: ignore[arg-type]
        labelled = weight > 0
        if not labelled.any():
            skipped.append(z)
            continue
        labelled_pixels += int(labelled.sum())
        per_slice.append({"slice": z, **_score_slice(prob, target, labelled, threshold)})
    result: dict[str, Any] = {
        "n_slices": len(per_slice),
        "threshold": float(threshold),
        "mask_kind": kind or "binary",
        "labelled_fraction": labelled_pixels / float(np.prod(shape)) if shape else 0.0,
        "skipped_slices": skipped,
    }
    for key in _SUMMARY_KEYS:
        result[key] = _mean_ignoring_nan([s[key] for s in per_slice])
    result["per_slice"] = per_slice
    return result
