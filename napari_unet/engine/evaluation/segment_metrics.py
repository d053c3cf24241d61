"""Object-level (topology) measures of 2D EM segmentations (numpy/scipy only).

Follows the ISBI 2012 challenge (Arganda-Carreras et al. 2015, *Front.
Neuroanat.* 9:142): every slice is segmented on its own by labelling the
4-connected components of predicted interior and growing them into the
predicted membrane (:func:`segment_interiors`); the ground-truth segments are
the 4-connected components of true interior (:func:`gt_segments`); both
measures are then restricted to the pixels of true interior.

Measures: :func:`rand_fscore` (foreground-restricted Rand F-score, Fiji's
``V_Rand``), :func:`rand_error`, :func:`variation_of_information`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy import ndimage, sparse

from ..errors import UserInputError
from .pixel_metrics import _as_bool, _check_same_shape, binarize_prediction

__all__ = [
    "RandScore",
    "VIScore",
    "gt_segments",
    "rand_error",
    "rand_fscore",
    "segment_interiors",
    "variation_of_information",
]

#: 4-connectivity in 2D (the ISBI 2012 convention).
_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


# --------------------------------------------------------------------------- segments


def _check_2d(arr: np.ndarray, name: str) -> np.ndarray:
    """``arr`` as an array, checked to be one 2D slice.

    Parameters
    ----------
    arr
        Array-like to check.
    name
        What ``arr`` is, for the message.

    Returns
    -------
    numpy.ndarray
        ``np.asarray(arr)``.

    Raises
    ------
    UserInputError
        If ``arr`` is not 2D.
    """
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

    Parameters
    ----------
    pred_labels, gt_labels
        Integer label images of the same shape.

    Returns
    -------
    table : scipy.sparse.csr_matrix
        Pixel counts; rows: gt segments, columns: predicted segments (both compacted).
    zero_col : numpy.ndarray
        Bool over columns: which one is predicted label 0.
    n : int
        Number of pixels counted.
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
