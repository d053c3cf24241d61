"""Volumes larger than memory: lazy ``(Z, Y, X)`` dask arrays and their statistics.

:func:`as_lazy` turns a path (TIFF, zarr, OME-Zarr, folder of slices), a zarr
array, a dask array or a numpy array into a ``(Z, Y, X)`` dask array without
reading pixel data. :func:`volume_stats` computes the normalization
percentiles of a whole volume from a strided subsample (every k-th slice, every
s-th pixel) so the volume is never loaded; for volumes of at most
:data:`~napari_unet.engine.data.preprocess.MAX_STATS_PIXELS` pixels it reads all of
them and equals :func:`~napari_unet.engine.data.preprocess.normalization_stats`.

Never imports TensorFlow, napari or Qt.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UserInputError
from .percentiles import MAX_STATS_PIXELS, normalization_stats

if TYPE_CHECKING:
    import dask.array

__all__ = [
    "LAZY_BYTES",
    "as_lazy",
    "estimated_bytes",
    "is_large",
    "is_lazy_array",
    "is_lazy_training_input",
    "read_region",
    "volume_stats",
]


def _default_lazy_bytes() -> int:
    override = os.environ.get("NAPARI_UNET_LAZY_BYTES")
    if override:
        return int(float(override))
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return 2**32
    return max(2**30, memory // 4)


#: Inputs with more (uncompressed) bytes than this are treated as "large":
#: the CLI predicts them blockwise and training keeps them lazy. A quarter of
#: the machine's memory, at least 1 GiB (override with ``NAPARI_UNET_LAZY_BYTES``).
LAZY_BYTES = _default_lazy_bytes()

#: Pixel stride along Y and X of the statistics subsample of large volumes.
STATS_XY_STEP = 4


def is_lazy_array(obj: Any) -> bool:
    """True for dask and zarr arrays (data that should not be loaded whole)."""
    module = type(obj).__module__.split(".")[0]
    return module in ("dask", "zarr") and hasattr(obj, "shape") and hasattr(obj, "dtype")


def as_lazy(source: Any, name: str = "images") -> dask.array.Array:
    """A ``(Z, Y, X)`` dask array view of `source`, reading nothing yet.

    Parameters
    ----------
    source
        Path (anything :func:`~napari_unet.engine.io.stacks.open_lazy` reads: TIFF,
        zarr, OME-Zarr level 0, folder of slices), zarr array, dask array or
        numpy array (2D images become one slice).
    name
        Used in error messages.

    Raises
    ------
    UserInputError
        If `source` cannot be read as a grey ``(Z, Y, X)`` stack.
    """
    import dask.array as da

    from .checks import check_image
    from .lazy_readers import _lazy_grey_stack, open_lazy

    if isinstance(source, (str, Path)):
        arr = open_lazy(source)
    elif isinstance(source, da.Array):
        arr = _lazy_grey_stack(source, None, name)
    elif is_lazy_array(source):  # zarr
        arr = _lazy_grey_stack(da.from_zarr(source), None, name)
    else:
        array = np.asarray(source)
        check_image(array, name)
        if array.ndim == 2:
            array = array[None]
        arr = _lazy_grey_stack(da.from_array(array, chunks=(1, -1, -1)), None, name)
    dtype = np.dtype(arr.dtype)
    if dtype.kind not in "biuf":
        raise UserInputError(f"{name} has data type {dtype}; expected a numeric image")
    return arr


def estimated_bytes(source: Any) -> int:
    """Uncompressed size of a stack in bytes, from headers only (no pixel data)."""
    if isinstance(source, (str, Path)):
        arr = as_lazy(source, str(source))
    else:
        arr = source
    return int(np.prod(arr.shape, dtype=np.int64)) * np.dtype(arr.dtype).itemsize


def is_large(source: Any, threshold: int | None = None) -> bool:
    """True if `source` has more than `threshold` (default :data:`LAZY_BYTES`) bytes."""
    return estimated_bytes(source) > (LAZY_BYTES if threshold is None else threshold)


def read_region(volume: Any, index: tuple[slice, ...]) -> np.ndarray:
    """Read ``volume[index]`` into memory (dask: computed in this thread)."""
    part = volume[index]
    if hasattr(part, "compute"):
        return np.asarray(part.compute(scheduler="synchronous"))
    return np.asarray(part)


def _sample_steps(shape: tuple[int, int, int], max_pixels: int) -> tuple[int, int]:
    """(slice step k, pixel step s) so that the subsample has at most `max_pixels`."""
    depth, height, width = shape
    step = STATS_XY_STEP
    while math.ceil(height / step) * math.ceil(width / step) > max_pixels:
        step *= 2
    per_slice = math.ceil(height / step) * math.ceil(width / step)
    every = max(1, math.ceil(depth * per_slice / max_pixels))
    return every, step


def volume_stats(
    volume: Any,
    low: float = 1.0,
    high: float = 99.8,
    per_slice: bool = False,
    max_pixels: int = MAX_STATS_PIXELS,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalization percentiles of a whole (lazy) volume without loading it.

    Volumes of at most `max_pixels` pixels are read whole and give exactly
    :func:`~napari_unet.engine.data.preprocess.normalization_stats`. Larger ones are
    subsampled: every ``s``-th pixel along Y and X (``s`` = 4, doubled while a
    slice alone exceeds `max_pixels`) of every ``k``-th slice, ``k`` chosen so
    the sample holds at most `max_pixels` values. With `per_slice` every slice
    gets its own percentiles from its ``s``-strided pixels (every slice is read).

    Parameters
    ----------
    volume
        ``(Z, Y, X)`` dask, zarr or numpy array.
    low, high
        Percentiles in ``[0, 100]``.
    per_slice
        One (lo, hi) pair per slice.
    max_pixels
        Largest sample.

    Returns
    -------
    lo, hi : numpy.ndarray
        float64 arrays of shape ``(Z,)`` with `per_slice`, else ``(1,)``; pass
        them to :func:`~napari_unet.engine.data.preprocess.apply_normalization`.
    """
    shape = tuple(int(s) for s in volume.shape)
    if len(shape) != 3:
        raise UserInputError(f"expected a (Z, Y, X) volume, got shape {shape}")
    depth, height, width = shape
    if depth * height * width <= max_pixels:
        return normalization_stats(read_region(volume, (slice(None),) * 3), low, high, per_slice)
    every, step = _sample_steps(shape, max_pixels)
    if not per_slice:
        sample = _compute(volume[::every, ::step, ::step])
        return normalization_stats(sample, low, high, per_slice=False)
    # one pair per slice, in groups of slices that fit the sample budget
    per_slice_pixels = math.ceil(height / step) * math.ceil(width / step)
    group = max(1, max_pixels // per_slice_pixels)
    parts_lo, parts_hi = [], []
    for z0 in range(0, depth, group):
        sample = _compute(volume[z0 : z0 + group, ::step, ::step])
        lo, hi = normalization_stats(sample, low, high, per_slice=True)
        parts_lo.append(lo)
        parts_hi.append(hi)
    return np.concatenate(parts_lo), np.concatenate(parts_hi)


def _compute(part: Any) -> np.ndarray:
    """Materialise a (strided) lazy selection with dask's thread pool."""
    if hasattr(part, "compute"):
        return np.asarray(part.compute(scheduler="threads"))
    return np.asarray(part)


def is_lazy_training_input(config: Any, images: Any = None) -> bool:
    """True if training should keep the images lazy: a dask or zarr array, or a path to a
    stack larger than :data:`LAZY_BYTES` (see :mod:`~napari_unet.engine.data.lazy_sources`)."""
    images = images if images is not None else config.data.images
    if images is None:
        return False
    if is_lazy_array(images):
        return True
    if not isinstance(images, (str, Path)):
        return False
    path = Path(images).expanduser()
    is_zarr = path.suffix.lower() == ".zarr" or any(
        (path / m).exists() for m in ("zarr.json", ".zarray", ".zgroup")
    )
    if not path.exists() or (path.is_dir() and not is_zarr):
        return False  # folders of slices and missing paths: the eager reader decides
    try:
        return is_large(path)
    except UserInputError:
        return False
