"""Pixel-level segmentation measures and the binary masks they compare (numpy only).

Masks are uint8 ``{0, 1}`` (or bool, or ``{0, 255}``): nonzero is foreground.
Probability maps are float32 in ``[0, 1]``; a pixel is foreground when
``probability > threshold`` (:func:`binarize_prediction`).

Measures: :func:`pixel_error` (ISBI 2012), :func:`pixel_accuracy`, :func:`dice`,
:func:`iou`, :func:`pixel_difference_percent`.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserInputError

__all__ = [
    "binarize_prediction",
    "dice",
    "iou",
    "pixel_accuracy",
    "pixel_difference_percent",
    "pixel_error",
]


# --------------------------------------------------------------------------- masks


def _check_same_shape(
    a: np.ndarray, b: np.ndarray, what: str = "prediction and ground truth"
) -> None:
    """Raise :class:`UserInputError` unless ``a`` and ``b`` have the same shape.

    Parameters
    ----------
    a, b
        Arrays to compare.
    what
        Names of the two arrays, for the message.

    Raises
    ------
    UserInputError
        If the shapes differ.
    """
    if a.shape != b.shape:
        raise UserInputError(f"{what} differ in shape: {a.shape} vs {b.shape}")


def _as_bool(mask: np.ndarray) -> np.ndarray:
    """A {0, 1} (or {0, 255}, or bool) mask as bool: nonzero is foreground."""
    mask = np.asarray(mask)
    return mask if mask.dtype == bool else mask != 0


def binarize_prediction(prob_or_mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Foreground of a probability map or of a mask, as bool.

    Parameters
    ----------
    prob_or_mask
        Float probabilities in ``[0, 1]`` (foreground where ``> threshold``), or a
        bool/integer mask (foreground where nonzero, i.e. ``mask == 1`` for a
        ``{0, 1}`` mask; ``threshold`` is then ignored).
    threshold
        Probability threshold.

    Returns
    -------
    numpy.ndarray
        Bool array of the same shape.
    """
    arr = np.asarray(prob_or_mask)
    if arr.dtype == bool or np.issubdtype(arr.dtype, np.integer):
        return _as_bool(arr)
    return arr > threshold


# --------------------------------------------------------------------------- pixel level


def pixel_error(pred01: np.ndarray, true01: np.ndarray) -> float:
    """Fraction of pixels whose binary label differs (ISBI 2012 "pixel error").

    Parameters
    ----------
    pred01, true01
        Binary masks of the same shape (nonzero = foreground).

    Returns
    -------
    float
        In ``[0, 1]``; 0 for an empty array.
    """
    pred, true = _as_bool(pred01), _as_bool(true01)
    _check_same_shape(pred, true)
    if pred.size == 0:
        return 0.0
    return float(np.count_nonzero(pred != true)) / pred.size


def pixel_accuracy(pred01: np.ndarray, true01: np.ndarray) -> float:
    """``1 - pixel_error``: fraction of pixels with the right binary label."""
    return 1.0 - pixel_error(pred01, true01)


def dice(pred01: np.ndarray, true01: np.ndarray, smooth: float = 0.0) -> float:
    """Dice coefficient ``(2|P∩T| + smooth) / (|P| + |T| + smooth)`` of the foreground.

    Parameters
    ----------
    pred01, true01
        Binary masks of the same shape (nonzero = foreground).
    smooth
        Added to numerator and denominator.

    Returns
    -------
    float
        In ``[0, 1]``; defined as 1 when both masks are empty (and ``smooth == 0``).
    """
    pred, true = _as_bool(pred01), _as_bool(true01)
    _check_same_shape(pred, true)
    inter = float(np.count_nonzero(pred & true))
    total = float(np.count_nonzero(pred) + np.count_nonzero(true))
    if total + smooth == 0:
        return 1.0
    return (2.0 * inter + smooth) / (total + smooth)


def iou(pred01: np.ndarray, true01: np.ndarray) -> float:
    """Intersection over union (Jaccard index) of the foreground.

    Returns
    -------
    float
        In ``[0, 1]``; defined as 1 when both masks are empty.
    """
    pred, true = _as_bool(pred01), _as_bool(true01)
    _check_same_shape(pred, true)
    union = np.count_nonzero(pred | true)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(pred & true)) / union


def pixel_difference_percent(mask01: np.ndarray, probability: np.ndarray) -> float:
    """Mean absolute difference between a {0, 1} mask and a probability map, in percent.

    Parameters
    ----------
    mask01
        Binary mask (nonzero = 1).
    probability
        Probabilities in ``[0, 1]``, same shape.

    Returns
    -------
    float
        ``mean(|mask - probability|) * 100``; 0 for empty arrays.
    """
    mask = _as_bool(mask01)
    prob = np.asarray(probability)
    _check_same_shape(mask, prob, "mask and probability")
    if mask.size == 0:
        return 0.0
    diff = np.abs(mask.astype(np.float64) - prob.astype(np.float64))
    return float(diff.mean() * 100.0)
