"""Array preparation shared by training and prediction: shape conventions,
percentile normalization, resizing and the train/validation slice split.

Pure numpy / scikit-image; never imports TensorFlow, napari or Qt.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import UserInputError

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
]

#: Rec. 709 luminance weights (the ones scikit-image's ``rgb2gray`` uses).
LUMINANCE_WEIGHTS = (0.2125, 0.7154, 0.0721)

#: Above this many pixels, percentiles are estimated on a strided subsample.
MAX_STATS_PIXELS = 2**24

#: Normalized values are clipped to +-this so that extreme outliers stay finite in float32.
NORMALIZED_LIMIT = 1e4

# Integer/float types whose values do not fit float32 exactly: work in float64.
_WIDE_KINDS = {np.dtype(t) for t in (np.int32, np.uint32, np.int64, np.uint64, np.float64)}


# --------------------------------------------------------------------------- shapes


def looks_rgb(shape: tuple[int, ...]) -> bool:
    """Guess whether the last axis of `shape` holds RGB(A) colour channels.

    The last axis must have 3 or 4 entries and be smaller than both spatial
    axes before it, so that a tiny ``(2, 4, 4)`` grey stack is not mistaken for
    an RGBA image.

    Parameters
    ----------
    shape
        Array shape with 3 or 4 dimensions.

    Returns
    -------
    bool
        True if the array is most likely ``(Y, X, C)`` or ``(Z, Y, X, C)``.
    """
    if len(shape) not in (3, 4) or shape[-1] not in (3, 4):
        return False
    return shape[-1] < min(shape[-3], shape[-2])


def rgb_to_grey(arr: np.ndarray) -> np.ndarray:
    """Convert colour channels on the last axis to grey by luminance.

    Alpha (a 4th channel) is dropped. Integer input is rounded back to its own
    dtype (the weights sum to 1, so values stay in range); float input keeps its
    float dtype (float16 becomes float32).

    Parameters
    ----------
    arr
        Array ``(..., 3)`` or ``(..., 4)``.

    Returns
    -------
    numpy.ndarray
        Array with the last axis removed.
    """
    arr = np.asarray(arr)
    if arr.ndim < 3 or arr.shape[-1] not in (3, 4):
        raise UserInputError(f"expected colour channels on the last axis, got shape {arr.shape}")
    work = np.float64 if arr.dtype in _WIDE_KINDS else np.float32
    if arr.dtype.kind == "f":
        out_dtype = np.dtype(np.float32) if arr.dtype.itemsize < 4 else arr.dtype
    elif arr.dtype.kind in "iub":
        out_dtype = np.dtype(np.uint8) if arr.dtype.kind == "b" else arr.dtype
    else:
        raise UserInputError(f"cannot convert {arr.dtype} colour data to grey")
    out = np.empty(arr.shape[:-1], dtype=out_dtype)
    # One leading index at a time keeps the float temporaries small.
    for index in np.ndindex(*arr.shape[:-3]) if arr.ndim > 3 else [()]:
        grey = sum(arr[index][..., c].astype(work) * w for c, w in enumerate(LUMINANCE_WEIGHTS))
        if out_dtype.kind in "iu":
            info = np.iinfo(out_dtype)
            grey = np.clip(np.rint(grey), info.min, info.max)
        out[index] = grey
    return out


def squeeze_extra_axes(arr: Any, name: str, original: tuple[int, ...]) -> Any:
    """Drop singleton leading axes until at most 3 remain (numpy or dask arrays).

    Raises
    ------
    UserInputError
        If more than 3 axes remain and none of the leading ones is a singleton.
    """
    while arr.ndim > 3:
        singles = [i for i in range(arr.ndim - 2) if arr.shape[i] == 1]
        if not singles:
            raise UserInputError(
                f"{name} has shape {original}; expected a 2D image, a (Z, Y, X) stack "
                "or an RGB image (several channels or time points are not supported)"
            )
        arr = arr.squeeze(axis=singles[0])
    return arr


def as_stack(arr: np.ndarray, rgb: bool | None = None, name: str = "image") -> np.ndarray:
    """Bring an image into the ``(Z, Y, X)`` convention.

    * RGB(A) on the last axis becomes grey (`rgb=None` guesses with :func:`looks_rgb`);
    * a trailing singleton channel ``(Y, X, 1)`` is dropped;
    * extra singleton axes before ``(Y, X)`` are squeezed (e.g. TZCYX with T=C=1);
    * a 2D image becomes ``(1, Y, X)``.

    Parameters
    ----------
    arr
        Array-like with at least 2 dimensions.
    rgb
        True: the last axis is colour; False: it is not; None: guess.
    name
        Used in error messages (e.g. the file name).

    Returns
    -------
    numpy.ndarray
        3D array ``(Z, Y, X)`` (a view where possible).

    Raises
    ------
    UserInputError
        If the array cannot be read as a grey stack.
    """
    arr = np.asarray(arr)
    original = arr.shape
    if rgb is None:
        rgb = looks_rgb(arr.shape)
    if rgb:
        arr = rgb_to_grey(arr)
    elif arr.ndim >= 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    arr = squeeze_extra_axes(arr, name, original)
    if arr.ndim < 2:
        raise UserInputError(f"{name} has shape {original}; expected at least 2 dimensions")
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    return arr


# --------------------------------------------------------------------------- normalization


def _stats_sample(values: np.ndarray) -> np.ndarray:
    """Return all of `values` or, when large, a strided 1-D subsample.

    The stride is chosen coprime with the row length so that the sample walks
    through every column instead of repeating a few of them.
    """
    size = values.size
    if size <= MAX_STATS_PIXELS:
        return values
    step = math.ceil(size / MAX_STATS_PIXELS)
    width = values.shape[-1] if values.ndim else 1
    while math.gcd(step, width) != 1:
        step += 1
    return values.flat[::step]  # copies only the sampled elements


def _percentiles(values: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """(low, high) percentiles of the finite values; (0, 0) if none are finite.

    Falls back to (min, max) when the two percentiles coincide but the data is
    not constant (e.g. mostly-zero padding with a little content).
    """
    sample = _stats_sample(values)
    if sample.dtype.kind == "f":
        finite = np.isfinite(sample)
        if not finite.all():
            sample = sample[finite]
    elif sample.dtype.kind == "b":
        sample = sample.astype(np.uint8)
    if sample.size == 0:
        return 0.0, 0.0
    lo, hi = np.percentile(sample, [low, high])
    if hi <= lo:
        lo, hi = sample.min(), sample.max()
    return float(lo), float(hi)


def normalization_stats(
    stack: np.ndarray, low: float = 1.0, high: float = 99.8, per_slice: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Intensity values at the `low` and `high` percentiles.

    NaN and infinite values are ignored. Stacks larger than
    :data:`MAX_STATS_PIXELS` (per slice with `per_slice`) are subsampled.

    Parameters
    ----------
    stack
        ``(Z, Y, X)`` stack (a 2D image counts as one slice).
    low, high
        Percentiles in ``[0, 100]``, ``low < high``.
    per_slice
        One (lo, hi) pair per slice instead of one for the whole stack.

    Returns
    -------
    lo, hi : numpy.ndarray
        float64 arrays of shape ``(Z,)`` with `per_slice`, else ``(1,)``.
        Store them to apply the same mapping later with :func:`apply_normalization`.
    """
    if not 0.0 <= low < high <= 100.0:
        raise UserInputError(f"percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}")
    stack = np.asarray(stack)
    if stack.ndim == 2:
        stack = stack[np.newaxis]
    parts = list(stack) if per_slice else [stack]
    pairs = [_percentiles(part, low, high) for part in parts]
    if not pairs:
        return np.zeros(0), np.zeros(0)
    lo, hi = np.array(pairs, dtype=np.float64).T
    return lo, hi


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
