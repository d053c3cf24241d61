"""Array preparation shared by training and prediction: percentile normalization,
resizing and the train/validation slice split.

The ``(Z, Y, X)`` shape conventions (:func:`as_stack`, :func:`rgb_to_grey`,
:func:`looks_rgb`, :func:`squeeze_extra_axes`) and the percentile statistics
(:func:`normalization_stats`, :data:`MAX_STATS_PIXELS`) belong to the I/O stage
(:mod:`~napari_unet.engine.io.arrays`, :mod:`~napari_unet.engine.io.percentiles`)
and are re-exported here.

Pure numpy / scikit-image; never imports TensorFlow, napari or Qt.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UserInputError
from ..io.arrays import (
    _WIDE_KINDS,
    LUMINANCE_WEIGHTS,
    as_stack,
    looks_rgb,
    rgb_to_grey,
    squeeze_extra_axes,
)
from ..io.percentiles import MAX_STATS_PIXELS, normalization_stats

__all__ = [
    "LUMINANCE_WEIGHTS",
    "MAX_STATS_PIXELS",
    "NORMALIZED_LIMIT",
    "apply_normalization",
    "as_stack",
    "looks_rgb",
    "normalization_stats",
    "normalize_percentile",
    "resize_stack",
    "rgb_to_grey",
    "split_train_val",
    "squeeze_extra_axes",
]

#: Normalized values are clipped to +-this so that extreme outliers stay finite in float32.
NORMALIZED_LIMIT = 1e4


# --------------------------------------------------------------------------- normalization


def _per_slice_values(values: np.ndarray | float, n: int) -> np.ndarray:
    """Broadcast scalar / length-1 / length-n statistics to length n."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size not in (1, n):
        raise UserInputError(
            f"normalization statistics have {values.size} values but the stack has {n} slices"
        )
    return np.broadcast_to(values, (n,))


def apply_normalization(
    stack: np.ndarray, lo: np.ndarray | float, hi: np.ndarray | float, clip: bool = False
) -> np.ndarray:
    """Map `lo` to 0 and `hi` to 1, as float32.

    NaN and infinite input values become 0 (the low value). Where ``hi <= lo``
    (a constant image or slice) the output is 0, without warnings. Outliers are
    clipped to :data:`NORMALIZED_LIMIT` so the output is always finite.

    Parameters
    ----------
    stack
        ``(Z, Y, X)`` stack or 2D image.
    lo, hi
        Scalars or arrays of length 1 or Z, e.g. from :func:`normalization_stats`.
    clip
        Clip the result to ``[0, 1]``.

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape as `stack`.
    """
    stack = np.asarray(stack)
    flat = stack.ndim == 2
    if flat:
        stack = stack[np.newaxis]
    if stack.ndim != 3:
        raise UserInputError(f"expected a (Z, Y, X) stack, got shape {stack.shape}")
    n = stack.shape[0]
    lo, hi = _per_slice_values(lo, n), _per_slice_values(hi, n)
    work = np.float64 if stack.dtype in _WIDE_KINDS else np.float32
    out = np.empty(stack.shape, dtype=np.float32)
    for z in range(n):
        scale = hi[z] - lo[z]
        if not (np.isfinite(scale) and scale > 0):
            out[z] = 0.0
            continue
        part = stack[z].astype(work)
        bad = ~np.isfinite(part) if stack.dtype.kind == "f" else None
        with np.errstate(over="ignore", invalid="ignore"):
            part -= lo[z]
            part *= 1.0 / scale
        # far outliers would overflow float32 to inf (found by tests/test_properties.py)
        limit = 1.0 if clip else NORMALIZED_LIMIT
        np.clip(part, 0.0 if clip else -limit, limit, out=part)
        if bad is not None and bad.any():
            part[bad] = 0.0
        out[z] = part
    return out[0] if flat else out


def normalize_percentile(
    stack: np.ndarray,
    low: float = 1.0,
    high: float = 99.8,
    per_slice: bool = False,
    clip: bool = False,
) -> np.ndarray:
    """Percentile normalization: the `low` percentile maps to 0, `high` to 1.

    Parameters
    ----------
    stack
        ``(Z, Y, X)`` stack or 2D image of any real dtype.
    low, high
        Percentiles in ``[0, 100]``.
    per_slice
        Compute the percentiles per slice instead of over the whole stack.
    clip
        Clip the result to ``[0, 1]`` (off by default).

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape; NaN/inf become 0, constant images 0.
    """
    lo, hi = normalization_stats(stack, low, high, per_slice)
    return apply_normalization(stack, lo, hi, clip=clip)


# --------------------------------------------------------------------------- resizing


def resize_stack(stack: np.ndarray, shape: tuple[int, int], order: int = 1) -> np.ndarray:
    """Resize every slice of a ``(Z, Y, X)`` stack to `shape` = ``(Y, X)``.

    Parameters
    ----------
    stack
        Image or mask stack.
    shape
        Target ``(height, width)``.
    order
        Spline order: 1 (bilinear) for images, 0 (nearest) for masks and labels.
        Downsampling with ``order > 0`` is anti-aliased.

    Returns
    -------
    numpy.ndarray
        With ``order == 0`` the input dtype and values are preserved; otherwise
        float32 (float64 input stays float64).
    """
    from skimage.transform import resize

    stack = np.asarray(stack)
    if stack.ndim == 2:
        stack = stack[np.newaxis]
    if stack.ndim != 3:
        raise UserInputError(f"expected a (Z, Y, X) stack, got shape {stack.shape}")
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 1:
        raise UserInputError(f"resize shape must be (height, width) >= 1, got {shape}")
    if order == 0:
        out_dtype = stack.dtype
    else:
        out_dtype = np.dtype(np.float64 if stack.dtype == np.float64 else np.float32)
    if stack.shape[1:] == shape:
        return stack.astype(out_dtype, copy=False)
    downsampling = shape[0] < stack.shape[1] or shape[1] < stack.shape[2]
    source = stack.view(np.uint8) if stack.dtype == bool else stack
    out = np.empty((stack.shape[0], *shape), dtype=out_dtype)
    for z in range(stack.shape[0]):
        out[z] = resize(
            source[z],
            shape,
            order=order,
            preserve_range=True,
            anti_aliasing=bool(order > 0 and downsampling),
            mode="reflect",
        )
    return out


# --------------------------------------------------------------------------- splitting


def split_train_val(n_slices: int, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Randomly hold out a fraction of the slices for validation.

    With ``n_slices >= 2`` and ``fraction > 0`` both parts get at least one
    slice; with ``fraction == 0`` or a single slice the validation part is empty.

    Parameters
    ----------
    n_slices
        Number of slices in the stack.
    fraction
        Fraction in ``[0, 1)`` held out for validation (rounded to nearest).
    seed
        Random seed; the same seed gives the same split.

    Returns
    -------
    train_idx, val_idx : numpy.ndarray
        Sorted int64 slice indices; together they cover ``range(n_slices)``.
    """
    n_slices = int(n_slices)
    if n_slices < 1:
        raise UserInputError("cannot split an empty stack (0 slices)")
    if not 0.0 <= fraction < 1.0:
        raise UserInputError(f"validation fraction must be in [0, 1), got {fraction}")
    n_val = 0
    if fraction > 0 and n_slices >= 2:
        n_val = min(max(math.floor(n_slices * fraction + 0.5), 1), n_slices - 1)
    order = np.random.default_rng(seed).permutation(n_slices)
    val = np.sort(order[:n_val]).astype(np.int64)
    train = np.sort(order[n_val:]).astype(np.int64)
    return train, val
