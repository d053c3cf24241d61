"""What the values of a mask stack mean: binary, sparse annotation or instance labels.

``data.mask_kind`` says it explicitly; ``auto`` decides only where the values leave no doubt
and says what it chose (:func:`resolve_mask_kind`). :func:`mask_targets` turns a mask stack of
a known kind into the training target (uint8 {0, 1}) and pixel weights (0 = not labelled).

- ``binary``: two values, the lower is background (0/1, 0/255, bool, 1/2, ...); a float map in
  [0, 1] with values in between is a probability, thresholded at 0.5.
- ``sparse``: the dock's correction layers: 0 = unlabeled (weight 0), 1 = background,
  2 = foreground.
- ``instances``: 0 = background, every other value one object; pixels where two objects touch
  become background so that touching objects stay apart.

Exactly the values {0, 1, 2} are ambiguous (a sparse annotation, or two labelled objects):
``auto`` refuses them with a message naming the two choices.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..errors import UserInputError

__all__ = ["MaskKind", "mask_targets", "resolve_mask_kind", "touching_borders"]

MaskKind = Literal["binary", "sparse", "instances"]
#: Masks with at most this many pixels are inspected whole; larger ones by a strided sample.
_SAMPLE_PIXELS = 2**24


def _values(masks: np.ndarray) -> np.ndarray:
    flat = np.asarray(masks).reshape(-1)
    step = max(1, flat.size // _SAMPLE_PIXELS)
    return np.unique(flat[::step])


def resolve_mask_kind(masks: np.ndarray, requested: str = "auto") -> tuple[MaskKind, str]:
    """The kind of `masks`, and a one-line account of the choice.

    Parameters
    ----------
    masks
        The mask stack (any shape).
    requested
        ``data.mask_kind``: ``auto``, ``binary``, ``sparse`` or ``instances``.

    Returns
    -------
    kind, message
        The kind used and a sentence saying why (for the log and the run's metadata).

    Raises
    ------
    UserInputError
        If ``auto`` meets the ambiguous values {0, 1, 2}, or the values contradict the
        requested kind (a sparse mask with values above 2, instances in a float mask).
    """
    values = _values(masks)
    kind_of_dtype = np.asarray(masks).dtype.kind
    shown = ", ".join(str(v) for v in values[:6].tolist()) + (", ..." if values.size > 6 else "")
    if requested == "sparse":
        if not set(values.tolist()) <= {0, 1, 2}:
            raise UserInputError(
                f"data.mask_kind is sparse but the masks hold values {shown}; "
                "a sparse annotation holds 0 (unlabeled), 1 (background) and 2 (foreground)"
            )
        return "sparse", "masks taken as a sparse annotation (data.mask_kind: sparse)"
    if requested == "instances":
        if kind_of_dtype == "f" and not np.all(values == np.round(values)):
            raise UserInputError("data.mask_kind is instances but the masks hold fractions")
        return "instances", "masks taken as instance labels (data.mask_kind: instances)"
    if requested == "binary":
        return "binary", "masks taken as binary (data.mask_kind: binary)"
    if set(values.tolist()) == {0, 1, 2}:
        raise UserInputError(
            "the masks hold only the values 0, 1 and 2, which can be a sparse annotation "
            "(0 unlabeled, 1 background, 2 foreground) or two labelled objects: set "
            "data.mask_kind to sparse or instances (--mask-kind on the command line)"
        )
    if values.size <= 2 or kind_of_dtype in "bf":
        return "binary", f"masks taken as binary (values {shown}; data.mask_kind: auto)"
    return "instances", (
        f"masks taken as instance labels ({values.size - (values[0] == 0)} objects; "
        "data.mask_kind: auto)"
    )


def touching_borders(labels: np.ndarray) -> np.ndarray:
    """Pixels of an object whose 4-neighbour belongs to another object (not background).

    Parameters
    ----------
    labels
        Instance labels, (..., Y, X).

    Returns
    -------
    numpy.ndarray
        bool array, True where two objects touch.
    """
    labels = np.asarray(labels)
    border = np.zeros(labels.shape, dtype=bool)
    for axis in range(-1, -1 - min(2, labels.ndim), -1):  # x, then y where there is one
        a = np.moveaxis(labels, axis, 0)
        b = np.moveaxis(border, axis, 0)
        touch = (a[1:] != a[:-1]) & (a[1:] != 0) & (a[:-1] != 0)
        b[1:] |= touch
        b[:-1] |= touch
    return border


def mask_targets(masks: np.ndarray, kind: MaskKind) -> tuple[np.ndarray, np.ndarray]:
    """Training target (uint8 {0, 1}) and weight (float32, 0 = not labelled) of `masks`.

    Parameters
    ----------
    masks
        The mask stack.
    kind
        Its kind, from :func:`resolve_mask_kind`.
    """
    masks = np.asarray(masks)
    ones = np.ones(masks.shape, dtype=np.float32)
    if kind == "sparse":
        return (masks == 2).astype(np.uint8), (masks > 0).astype(np.float32)
    if kind == "instances":
        target = (masks != 0) & ~touching_borders(masks)
        return target.astype(np.uint8), ones
    from ..io.checks import binarize_mask

    values = _values(masks)
    if values.size == 2 and values[0] != 0 and masks.dtype.kind != "f":
        return (masks == values[1]).astype(np.uint8), ones  # e.g. 1/2: the lower is background
    return binarize_mask(masks), ones
