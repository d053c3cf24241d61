"""Multi-channel image stacks: ``(Z, C, Y, X)`` as read, ``(Z, Y, X, C)`` inside the engine.

A network with ``model.in_channels > 1`` takes several co-registered images per slice
(e.g. phase contrast and a fluorescence channel). They come as

* a ``(Z, C, Y, X)`` array: an in-memory array, a ``.npy`` file or a zarr array with four
  axes, or a TIFF whose axes say ``C`` (an ImageJ/OME hyperstack ``ZCYX``);
* the chosen channels of a frames folder (see :mod:`~napari_unet.engine.io.frames`).

:func:`read_channels` reads a path as ``(Z, C, Y, X)`` (``C = 1`` for a grey stack, read
exactly as :func:`~napari_unet.engine.io.readers.read_stack` reads it);
:func:`channels_last` turns ``(Z, C, Y, X)`` into the ``(Z, Y, X, C)`` layout that
training and prediction use, checking the number of channels. A grey stack stays
``(Z, Y, X)`` so that every single-channel path is unchanged.

Never imports TensorFlow, napari or Qt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError
from .checks import check_image
from .files import _fail, _is_tiff, _is_zarr, _reason

__all__ = ["channel_count", "channels_last", "read_channels", "to_channel_stack"]


def _tiff_channels(path: Path) -> np.ndarray | None:
    """A TIFF with a ``C`` axis longer than 1 as ``(Z, C, Y, X)``; None for other TIFFs."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            if "C" not in axes or series.shape[axes.index("C")] == 1:
                return None
            arr = series.asarray()
    except Exception as exc:
        raise _fail(path, f"not a readable TIFF file ({_reason(exc)})") from None
    arr = np.moveaxis(arr, axes.index("C"), 0)
    rest = axes.replace("C", "")
    if rest[-2:] != "YX" or "S" in rest:
        raise _fail(path, f"a channel TIFF must end in YX without colour samples, got {axes}")
    arr = arr.reshape(arr.shape[0], -1, *arr.shape[-2:])  # every other axis becomes Z
    return np.ascontiguousarray(np.moveaxis(arr, 0, 1))


def _raw_array(path: Path) -> np.ndarray | None:
    """A ``.npy`` or zarr array as stored (None for other files)."""
    if path.suffix.lower() == ".npy":
        from .readers import read_npy

        return read_npy(path)
    if _is_zarr(path):
        from .readers import _open_zarr_array

        return np.asarray(_open_zarr_array(path)[...])
    return None


def _is_zcyx(shape: tuple[int, ...]) -> bool:
    """Four axes with several channels on the second (not ``(N, Y, X, 1)``)."""
    return len(shape) == 4 and shape[1] > 1 and shape[-1] != 1


def to_channel_stack(arr: Any, name: str = "images") -> np.ndarray:
    """An in-memory image as ``(Z, C, Y, X)``: a 4D array is taken as ``(Z, C, Y, X)``,
    a ``(C, Y, X)`` array needs its caller to add Z; anything else is a grey stack.

    Parameters
    ----------
    arr
        Array of 2 to 4 dimensions.
    name
        For error messages.

    Returns
    -------
    numpy.ndarray
        ``(Z, C, Y, X)``; ``C = 1`` for grey data.
    """
    from .arrays import as_stack, looks_rgb

    arr = np.asarray(arr)
    check_image(arr, name)
    if _is_zcyx(arr.shape) and not looks_rgb(arr.shape):
        return arr
    return as_stack(arr, name=name)[:, None]


def read_channels(path: str | Path) -> np.ndarray:
    """Read a path as ``(Z, C, Y, X)``.

    Parameters
    ----------
    path
        A TIFF hyperstack with a ``C`` axis, a four-axis ``.npy``/zarr array, or any grey
        stack :func:`~napari_unet.engine.io.readers.read_stack` reads (then ``C = 1``).

    Returns
    -------
    numpy.ndarray
        ``(Z, C, Y, X)`` in the file's dtype.

    Raises
    ------
    UserInputError
        For any problem reading it; the message names the file.
    """
    from .arrays import looks_rgb
    from .readers import read_stack

    path = Path(path).expanduser()
    if path.is_file() and _is_tiff(path):
        arr = _tiff_channels(path)
        if arr is not None:
            check_image(arr, str(path))
            return arr
    elif path.exists():
        raw = _raw_array(path)
        if raw is not None and _is_zcyx(raw.shape) and not looks_rgb(raw.shape):
            check_image(raw, str(path))
            return raw
    return read_stack(path)[:, None]


def channel_count(stack: Any) -> int:
    """Channels of an engine stack: ``(Z, Y, X)`` has 1, ``(Z, Y, X, C)`` has C."""
    shape = np.shape(stack)
    return int(shape[-1]) if len(shape) == 4 else 1


def channels_last(stack: np.ndarray, expected: int | None, name: str = "images") -> np.ndarray:
    """``(Z, C, Y, X)`` as the engine's layout: ``(Z, Y, X)`` for one channel, else
    ``(Z, Y, X, C)``.

    Parameters
    ----------
    stack
        ``(Z, C, Y, X)`` array.
    expected
        ``model.in_channels`` (None: whatever the data has).
    name
        For the error message.

    Raises
    ------
    UserInputError
        If the channels differ from `expected`.
    """
    channels = stack.shape[1]
    if expected is not None and channels != expected:
        raise UserInputError(
            f"{name} have {channels} channel(s) but model.in_channels is {expected}"
        )
    if channels == 1:
        return stack[:, 0]
    return np.ascontiguousarray(np.moveaxis(stack, 1, -1))
