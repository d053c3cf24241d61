"""Segmentation quality measures for EM stacks (numpy/scipy only, no TensorFlow).

Conventions
-----------
* Masks are uint8 ``{0, 1}``; 1 is the foreground. For ISBI 2012 the foreground
  is the cell interior (label 255 in the released labels) and 0 is membrane.
* Probability maps are float32 in ``[0, 1]``; a pixel is foreground when
  ``probability > threshold``.
* The object-level measures follow the ISBI 2012 challenge
  (Arganda-Carreras et al. 2015, *Front. Neuroanat.* 9:142): every slice is
  segmented on its own by labelling the 4-connected components of predicted
  interior and growing them into the predicted membrane
  (:func:`segment_interiors`); the ground truth segments are the 4-connected
  components of true interior (:func:`gt_segments`); both measures are then
  restricted to the pixels of true interior.

Pixel-level measures: :func:`pixel_error`, :func:`pixel_accuracy`, :func:`dice`,
:func:`iou`, :func:`pixel_difference_percent`.
Object-level measures: :func:`rand_fscore` (foreground-restricted Rand F-score,
Fiji's ``V_Rand``), :func:`rand_error`, :func:`variation_of_information`.
Whole stacks: :func:`evaluate`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage, sparse

from ..errors import UserInputError

__all__ = [
    "RandScore",
    "VIScore",
    "binarize_prediction",
    "dice",
    "evaluate",
    "gt_segments",
    "iou",
    "pixel_accuracy",
    "pixel_difference_percent",
    "pixel_error",
    "rand_error",
    "rand_fscore",
    "segment_interiors",
    "variation_of_information",
]

#: 4-connectivity in 2D (the ISBI 2012 convention).
_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


# --------------------------------------------------------------------------- helpers


def _check_same_shape(a: np.ndarray, b: np.ndarray, what: str = "prediction and ground truth"):
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


# --------------------------------------------------------------------------- segments


def _check_2d(arr: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise UserInputError(f"{name} must be one 2D slice, got shape {arr.shape}")
    return arr


def segment_interiors(prob_or_mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Label one 2D slice the ISBI 2012 way.

    The predicted cell interior (``probability > threshold``, or ``mask != 0``)
    is split into 4-connected components; every other pixel (predicted
    membrane) then takes the label of its nearest interior pixel (Euclidean
    distance transform), so the labels tile the whole slice.

    Parameters
    ----------
    prob_or_mask
        2D float probabilities or 2D bool/integer mask.
    threshold
        Probability threshold (ignored for masks).

    Returns
    -------
    numpy.ndarray
        int32 labels ``1..n`` covering every pixel, or all zeros when the slice
        has no interior pixel.
    """
    fg = binarize_prediction(_check_2d(prob_or_mask, "prediction"), threshold)
    labels, n = ndimage.label(fg, structure=_FOUR_CONNECTED)
    labels = labels.astype(np.int32, copy=False)
    if n == 0 or fg.all():
        return labels
    # The zeros of ``~fg`` are the interior pixels: the returned indices point every
    # pixel at its nearest interior pixel, whose label it takes.
    iy, ix = ndimage.distance_transform_edt(~fg, return_distances=False, return_indices=True)
    return labels[iy, ix]


def gt_segments(true01: np.ndarray) -> np.ndarray:
    """4-connected components of the ground-truth interior of one 2D slice.

    Parameters
    ----------
    true01
        2D binary mask (nonzero = interior).

    Returns
    -------
    numpy.ndarray
        int32 labels, 0 on background (membrane), not grown.
    """
    fg = _as_bool(_check_2d(true01, "ground truth"))
    labels, _ = ndimage.label(fg, structure=_FOUR_CONNECTED)
    return labels.astype(np.int32, copy=False)


# --------------------------------------------------------------------------- object level


@dataclass(frozen=True)
class RandScore:
    """Foreground-restricted Rand scores (ISBI 2012 ``V_Rand``).

    Attributes
    ----------
    fscore, precision, recall
        ``F = 2PR / (P + R)``, ``P = sum_ab / sum_b``, ``R = sum_ab / sum_a``;
        NaN when the ground truth has no foreground pixel.
    sum_ab
        ``sum_ij n_ij**2`` over the contingency table (gt segment i, predicted j).
    sum_a
        ``sum_i a_i**2`` with ``a_i`` the size of ground-truth segment i.
    sum_b
        ``sum_j b_j**2`` with ``b_j`` the size of predicted segment j.
    n
        Number of pixels compared (ground-truth foreground).
    """

    fscore: float
    precision: float
    recall: float
    sum_ab: float
    sum_a: float
    sum_b: float
    n: int

    @property
    def error(self) -> float:
        """Rand error ``1 - fscore``."""
        return 1.0 - self.fscore

    def as_dict(self) -> dict[str, float]:
        """Plain dict of the fields plus ``error``."""
        return {**asdict(self), "error": self.error}


@dataclass(frozen=True)
class VIScore:
    """Variation of information (natural log) and its two parts.

    Attributes
    ----------
    vi
        ``split + merge``.
    split
        ``H(pred | gt)``: over-segmentation (a gt segment cut into several).
    merge
        ``H(gt | pred)``: under-segmentation (several gt segments in one).
    """

    vi: float
    split: float
    merge: float


def _contingency(
    pred_labels: np.ndarray, gt_labels: np.ndarray
) -> tuple[sparse.csr_matrix, np.ndarray, int]:
    """Contingency table over ground-truth foreground (gt > 0).

    Returns the CSR table (rows: gt segments, columns: predicted segments, both
    compacted), a bool array over columns telling which one is predicted label 0,
    and the pixel count.
    """
    pred = np.asarray(pred_labels)
    gt = np.asarray(gt_labels)
    _check_same_shape(pred, gt, "predicted and ground-truth labels")
    inside = gt > 0
    g = gt[inside]
    p = pred[inside]
    n = int(g.size)
    if n == 0:
        return sparse.csr_matrix((0, 0)), np.zeros(0, bool), 0
    g_ids, g_idx = np.unique(g, return_inverse=True)
    p_ids, p_idx = np.unique(p, return_inverse=True)
    table = sparse.coo_matrix(
        (np.ones(n, dtype=np.float64), (g_idx.ravel(), p_idx.ravel())),
        shape=(g_ids.size, p_ids.size),
    ).tocsr()  # duplicates are summed
    return table, p_ids == 0, n


def rand_fscore(
    pred_labels: np.ndarray,
    gt_labels: np.ndarray,
    pred_zero: Literal["segment", "singletons"] = "segment",
) -> RandScore:
    """Foreground-restricted Rand F-score of the ISBI 2012 challenge (Fiji ``V_Rand``).

    Only pixels where ``gt_labels > 0`` are compared. With ``n_ij`` the number
    of those pixels in ground-truth segment i and predicted segment j::

        sum_ab = sum_ij n_ij**2
        sum_a  = sum_i (sum_j n_ij)**2      (ground truth)
        sum_b  = sum_j (sum_i n_ij)**2      (prediction)
        precision = sum_ab / sum_b,  recall = sum_ab / sum_a
        F = 2 P R / (P + R) = 2 sum_ab / (sum_a + sum_b)

    A prediction that merges ground-truth segments loses precision; one that
    splits them loses recall.

    Parameters
    ----------
    pred_labels, gt_labels
        Integer label images of the same shape (any dimensionality). For 2D EM
        slices use :func:`segment_interiors` and :func:`gt_segments`.
    pred_zero
        How predicted label 0 is counted. ``"segment"`` (default): as one more
        segment; after :func:`segment_interiors` label 0 only occurs when a slice
        has no predicted interior at all, which then counts as one big merge.
        ``"singletons"``: every such pixel is its own segment (the SNEMI3D
        convention for unassigned pixels).

    Returns
    -------
    RandScore
        NaN scores when the ground truth has no foreground pixel.

    Notes
    -----
    ``skimage.metrics.adapted_rand_error`` counts pairs of distinct pixels
    (``n**2 - n`` instead of ``n**2``) and, as of scikit-image 0.26, returns
    precision and recall swapped relative to this definition
    (scikit-image issue #6485); the F-scores agree up to that pair correction.
    """
    if pred_zero not in ("segment", "singletons"):
        raise ValueError(f"pred_zero must be 'segment' or 'singletons', got {pred_zero!r}")
    table, zero_col, n = _contingency(pred_labels, gt_labels)
    if n == 0:
        nan = float("nan")
        return RandScore(nan, nan, nan, 0.0, 0.0, 0.0, 0)
    a = np.asarray(table.sum(axis=1)).ravel()
    b = np.asarray(table.sum(axis=0)).ravel()
    sum_a = float(a @ a)
    if pred_zero == "singletons" and zero_col.any():
        keep = ~zero_col
        kept = table[:, keep]
        singles = float(b[zero_col].sum())
        sum_ab = float(kept.data @ kept.data) + singles
        sum_b = float(b[keep] @ b[keep]) + singles
    else:
        sum_ab = float(table.data @ table.data)
        sum_b = float(b @ b)
    precision = sum_ab / sum_b
    recall = sum_ab / sum_a
    fscore = 2.0 * sum_ab / (sum_a + sum_b)
    return RandScore(fscore, precision, recall, sum_ab, sum_a, sum_b, n)


def rand_error(
    pred_labels: np.ndarray,
    gt_labels: np.ndarray,
    pred_zero: Literal["segment", "singletons"] = "segment",
) -> float:
    """``1 - rand_fscore(pred_labels, gt_labels).fscore`` (ISBI 2012 "Rand error")."""
    return rand_fscore(pred_labels, gt_labels, pred_zero=pred_zero).error


def variation_of_information(pred_labels: np.ndarray, gt_labels: np.ndarray) -> VIScore:
    """Variation of information over the ground-truth foreground, in nats.

    ``VI = H(pred | gt) + H(gt | pred)`` computed on the pixels where
    ``gt_labels > 0`` (the same pixels as :func:`rand_fscore`); predicted
    label 0 counts as one segment.

    Parameters
    ----------
    pred_labels, gt_labels
        Integer label images of the same shape.

    Returns
    -------
    VIScore
        ``vi``, ``split = H(pred | gt)``, ``merge = H(gt | pred)``; NaN when the
        ground truth has no foreground pixel. 0 for identical segmentations.
    """
    table, _, n = _contingency(pred_labels, gt_labels)
    if n == 0:
        nan = float("nan")
        return VIScore(nan, nan, nan)
    coo = table.tocoo()
    p_ij = coo.data / n
    a = np.asarray(table.sum(axis=1)).ravel() / n
    b = np.asarray(table.sum(axis=0)).ravel() / n
    # H(pred | gt) = -sum p_ij log(p_ij / p_i);  H(gt | pred) = -sum p_ij log(p_ij / p_j)
    split = float(-(p_ij * np.log(p_ij / a[coo.row])).sum())
    merge = float(-(p_ij * np.log(p_ij / b[coo.col])).sum())
    split = max(split, 0.0)  # clamp -0.0 / rounding
    merge = max(merge, 0.0)
    return VIScore(split + merge, split, merge)


# --------------------------------------------------------------------------- stacks

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
