"""Writing stacks: :func:`write_tiff`, :func:`write_png_slices` and :func:`mask_to_uint8`.

Every write is atomic (temporary name, then rename); a failure becomes a
one-line :class:`~napari_unet.engine.errors.UserInputError` naming the target.

Never imports TensorFlow, napari or Qt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_dir, atomic_path
from ..errors import UserInputError
from .arrays import as_stack
from .checks import check_image
from .files import _reason

__all__ = ["BIGTIFF_THRESHOLD", "mask_to_uint8", "write_png_slices", "write_tiff"]

#: Arrays with more bytes than this are written as BigTIFF (classic TIFF stops at 4 GB).
BIGTIFF_THRESHOLD = 2**31
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))


def mask_to_uint8(mask01: np.ndarray) -> np.ndarray:
    """Mask (nonzero = foreground) as uint8 ``{0, 255}`` for writing.

    Parameters
    ----------
    mask01
        Mask of any dtype and shape.

    Returns
    -------
    numpy.ndarray
        uint8 array of 0 and 255, same shape.
    """
    out = (np.asarray(mask01) != 0).astype(np.uint8)
    out *= 255
    return out


def _tiff_options(arr: np.ndarray) -> dict[str, Any]:
    """tifffile keywords: ImageJ hyperstack for uint8/uint16/float32 up to
    BIGTIFF_THRESHOLD bytes, else a plain (BigTIFF when large) TIFF."""
    big = arr.nbytes > BIGTIFF_THRESHOLD
    if arr.dtype in _IMAGEJ_DTYPES and arr.ndim in (2, 3) and not big:
        return {"imagej": True, "metadata": {"axes": "ZYX" if arr.ndim == 3 else "YX"}}
    return {"bigtiff": big, "photometric": "minisblack"}


def write_tiff(
    path: str | Path,
    arr: np.ndarray,
    overwrite: bool = True,
    compression: str | None = None,
) -> Path:
    """Write an array as TIFF atomically.

    uint8, uint16 and float32 stacks are written as ImageJ hyperstacks (axes
    ZYX); other dtypes as plain TIFF. Arrays above :data:`BIGTIFF_THRESHOLD`
    bytes become (plain) BigTIFF. Bool arrays are written as uint8 ``{0, 1}``.

    Parameters
    ----------
    path
        Target file.
    arr
        ``(Z, Y, X)`` stack or 2D image.
    overwrite
        If False, an existing file is an error.
    compression
        tifffile compression, e.g. ``"zlib"``, ``"lzw"``; None for uncompressed.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    import tifffile

    path = Path(path).expanduser()
    arr = np.asarray(arr)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    check_image(arr, "data to write")
    options = _tiff_options(arr)
    if compression:
        options["compression"] = compression
    try:
        with atomic_path(path, overwrite) as tmp:
            tifffile.imwrite(tmp, arr, **options)
    except UserInputError:
        raise
    except Exception as exc:
        raise UserInputError(f"cannot write {path}: {_reason(exc)}") from None
    return path


def write_png_slices(
    folder: str | Path,
    arr: np.ndarray,
    overwrite: bool = False,
    prefix: str = "slice",
) -> Path:
    """Write each slice as ``{prefix}0000.png``, ``{prefix}0001.png``, ...

    The files are written into a temporary folder that is renamed to `folder`
    when complete. PNG holds uint8 and uint16; bool is written as ``{0, 255}``.

    Parameters
    ----------
    folder
        Target folder (created; replaced only with `overwrite`).
    arr
        ``(Z, Y, X)`` stack or 2D image, uint8/uint16/bool.
    overwrite
        Replace an existing folder.
    prefix
        File name prefix.

    Returns
    -------
    pathlib.Path
        The written folder.
    """
    import imageio.v3 as iio

    folder = Path(folder).expanduser()
    arr = np.asarray(arr)
    if arr.dtype == bool:
        arr = mask_to_uint8(arr)
    if arr.dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise UserInputError(
            f"PNG slices need uint8 or uint16 data, got {arr.dtype}; convert first "
            "(e.g. mask_to_uint8 for masks) or write a TIFF"
        )
    check_image(arr, "data to write")
    arr = as_stack(arr, rgb=False, name="data to write")
    width = max(4, len(str(arr.shape[0] - 1)))
    try:
        with atomic_dir(folder, overwrite) as tmp:
            for z, plane in enumerate(arr):
                iio.imwrite(tmp / f"{prefix}{z:0{width}d}.png", np.ascontiguousarray(plane))
    except UserInputError:
        raise
    except Exception as exc:
        raise UserInputError(f"cannot write {folder}: {_reason(exc)}") from None
    return folder
