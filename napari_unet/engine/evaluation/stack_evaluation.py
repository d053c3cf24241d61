"""Whole-stack evaluation: every pixel and object measure, slice by slice (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UserInputError
from .pixel_metrics import (
    _as_bool,
    _check_same_shape,
    binarize_prediction,
    dice,
    iou,
    pixel_accuracy,
    pixel_difference_percent,
    pixel_error,
)
from .segment_metrics import gt_segments, rand_fscore, segment_interiors, variation_of_information

__all__ = ["evaluate"]


_SUMMARY_KEYS = (
    "pixel_error",
    "pixel_accuracy",
    "pixel_difference_percent",
    "dice",
    "iou",
    "rand_fscore",
    "rand_precision",
    "rand_recall",
    "rand_error",
    "vi",
    "vi_split",
    "vi_merge",
)


def _mean_ignoring_nan(values: list[float]) -> float:
    """Mean of the non-NaN ``values``; NaN when there is none.

    Parameters
    ----------
    values
        Per-slice values.

    Returns
    -------
    float
        The mean over the finite entries.
    """
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[~np.isnan(arr)]
    return float(finite.mean()) if finite.size else float("nan")


def evaluate(probability: np.ndarray, true01: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Evaluate a prediction of a stack slice by slice (ISBI 2012 protocol).

    Parameters
    ----------
    probability
        float probabilities ``(Z, Y, X)`` or ``(Y, X)`` in ``[0, 1]``, or a bool /
        integer mask of that shape (nonzero = foreground; ``threshold`` unused).
    true01
        Ground-truth mask of the same shape, nonzero = foreground (cell interior).
    threshold
        Foreground where ``probability > threshold``.

    Returns
    -------
    dict
        ``n_slices``, ``threshold``, the overall values of ``pixel_error``,
        ``pixel_accuracy``, ``pixel_difference_percent``, ``dice``, ``iou``,
        ``rand_fscore``, ``rand_precision``, ``rand_recall``, ``rand_error``,
        ``vi``, ``vi_split``, ``vi_merge``, and ``per_slice``: a list with one
        dict of the same keys (plus ``slice``) per slice.

    Notes
    -----
    Every overall value is the **mean over slices** of the per-slice values
    (as in the ISBI 2012 challenge, which averages the per-slice Rand F-score),
    ignoring slices where a value is undefined (Rand/VI on a slice whose ground
    truth has no foreground: NaN); an overall value is NaN when no slice defines
    it. ``rand_error`` is ``1 - rand_fscore`` per slice. Segments are found per
    slice with :func:`segment_interiors` / :func:`gt_segments`.
    ``pixel_difference_percent`` compares the ground truth to the probabilities
    themselves (to the mask when a mask is given).

    Raises
    ------
    UserInputError
        If the shapes differ or the arrays are not 2D/3D.
    """
    prob = np.asarray(probability)
    true = np.asarray(true01)
    _check_same_shape(prob, true)
    if prob.ndim == 2:
        prob, true = prob[None], true[None]
    if prob.ndim != 3:
        raise UserInputError(f"expected a (Z, Y, X) stack or a 2D slice, got shape {prob.shape}")
    is_mask = prob.dtype == bool or np.issubdtype(prob.dtype, np.integer)

    per_slice: list[dict[str, Any]] = []
    for z in range(prob.shape[0]):
        pz = prob[z]
        tz = _as_bool(true[z])
        pred = binarize_prediction(pz, threshold)
        pred_labels, gt_labels = segment_interiors(pred), gt_segments(tz)
        rand = rand_fscore(pred_labels, gt_labels)
        vi = variation_of_information(pred_labels, gt_labels)
        per_slice.append(
            {
                "slice": z,
                "pixel_error": pixel_error(pred, tz),
                "pixel_accuracy": pixel_accuracy(pred, tz),
                "pixel_difference_percent": pixel_difference_percent(tz, pred if is_mask else pz),
                "dice": dice(pred, tz),
                "iou": iou(pred, tz),
                "rand_fscore": rand.fscore,
                "rand_precision": rand.precision,
                "rand_recall": rand.recall,
                "rand_error": rand.error,
                "vi": vi.vi,
                "vi_split": vi.split,
                "vi_merge": vi.merge,
            }
        )
    result: dict[str, Any] = {"n_slices": len(per_slice), "threshold": float(threshold)}
    for key in _SUMMARY_KEYS:
        result[key] = _mean_ignoring_nan([s[key] for s in per_slice])
    result["per_slice"] = per_slice
    return result
