"""Post-processing of predictions (numpy/scipy only).

- :func:`instances_from_probability`: connected components of the predicted
  cell interiors, small pieces removed and holes filled, as an instance label
  image (what a biologist counts and measures).
- :func:`to_sparse_annotation` / :func:`annotation_convention`: the sparse
  annotation convention used for corrections (0 = unlabeled, 1 = background,
  2 = foreground) and its detection.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage

from ..errors import UserInputError

__all__ = [
    "SPARSE_BACKGROUND",
    "SPARSE_FOREGROUND",
    "SPARSE_UNLABELED",
    "annotation_convention",
    "instances_from_probability",
    "to_sparse_annotation",
]

SPARSE_UNLABELED = 0
SPARSE_BACKGROUND = 1
SPARSE_FOREGROUND = 2

_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def instances_from_probability(
    probability: np.ndarray,
    threshold: float = 0.5,
    min_size: int = 20,
    fill_holes: bool = True,
) -> np.ndarray:
    """Instance labels of the predicted objects, slice by slice.

    Parameters
    ----------
    probability
        (Z, Y, X) or (Y, X) probability of the foreground (cell interior), or
        a {0, 1} mask.
    threshold
        Foreground is ``probability > threshold``.
    min_size
        Objects with fewer pixels are removed.
    fill_holes
        Fill holes inside each object (e.g. vesicles inside a cell).

    Returns
    -------
    np.ndarray
        int32 labels, 0 = background, objects numbered 1..N uniquely across
        the whole stack.
    """
    prob = np.asarray(probability)
    squeeze = prob.ndim == 2
    stack = prob[None] if squeeze else prob
    if stack.ndim != 3:
        raise UserInputError(f"expected a (Z, Y, X) probability stack, got shape {prob.shape}")
    labels = np.zeros(stack.shape, dtype=np.int32)
    next_label = 1
    for z, plane in enumerate(stack):
        foreground = plane > threshold
        if fill_holes:
            foreground = ndimage.binary_fill_holes(foreground, structure=_FOUR_CONNECTED)
        components, count = ndimage.label(foreground, structure=_FOUR_CONNECTED)
        if count == 0:
            continue
        sizes = np.bincount(components.ravel(), minlength=count + 1)
        keep = sizes >= max(min_size, 1)
        keep[0] = False
        new_ids = np.zeros(count + 1, dtype=np.int32)
        kept = int(keep.sum())
        new_ids[keep] = np.arange(next_label, next_label + kept, dtype=np.int32)
        labels[z] = new_ids[components]
        next_label += kept
    return labels[0] if squeeze else labels


def annotation_convention(labels: np.ndarray) -> Literal["dense", "sparse", "empty", "instances"]:
    """Which convention a labels array uses.

    ``dense``: a binary mask (two values, or one); ``sparse``: values within
    {0, 1, 2} with 2 present (0 = unlabeled, 1 = background, 2 = foreground);
    ``instances``: more than three values (an instance label image);
    ``empty``: nothing labelled at all.
    """
    values = np.unique(np.asarray(labels))
    if values.size == 0 or (values.size == 1 and values[0] == 0):
        return "empty"
    if set(values.tolist()) <= {0, 1, 2} and 2 in values:
        return "sparse"
    if values.size <= 2:
        return "dense"
    return "instances"


def to_sparse_annotation(
    mask01: np.ndarray, labelled_slices: np.ndarray | list[int] | None = None
) -> np.ndarray:
    """Convert a dense {0,1} mask (or a thresholded prediction) to the sparse form.

    Parameters
    ----------
    mask01
        (Z, Y, X) {0, 1} mask; nonzero counts as foreground.
    labelled_slices
        Slices whose pixels are all labelled (1 = background, 2 = foreground);
        the others become 0 = unlabeled. None labels every slice.

    Returns
    -------
    np.ndarray
        uint8 sparse annotation.
    """
    mask = np.asarray(mask01) > 0
    sparse = np.where(mask, SPARSE_FOREGROUND, SPARSE_BACKGROUND).astype(np.uint8)
    if labelled_slices is not None:
        keep = np.zeros(mask.shape[0], dtype=bool)
        keep[np.asarray(labelled_slices, dtype=int)] = True
        sparse[~keep] = SPARSE_UNLABELED
    return sparse
