"""napari writers for Labels layers: a TIFF stack, or a folder of PNG slices.

Binary labels (values within ``{0, 1}``) are written as uint8 ``{0, 255}``,
the training-mask convention, so they read back as masks anywhere; instance
labels and other values are written as they are (PNG: uint8/uint16 only).
Every write is atomic (the engine writes to a temporary name and renames).

The TIFF writer is chosen for ``.tif``/``.tiff`` paths; the PNG writer has no
extension (npe2's directory-writer convention) and is picked in napari's save
dialog as "PNG slices folder".

Never imports TensorFlow or Qt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["labels_for_writing", "write_labels_png_slices", "write_labels_tiff"]


def labels_for_writing(data: Any, png: bool = False) -> np.ndarray:
    """The array to write for a Labels layer's data.

    Parameters
    ----------
    data
        Labels data (numpy or dask), any integer or bool dtype.
    png
        Target is PNG: values must fit uint16.

    Returns
    -------
    numpy.ndarray
        uint8 ``{0, 255}`` for binary labels, else the label values (the
        smallest unsigned type that holds them when they are non-negative).

    Raises
    ------
    UserInputError
        If PNG is asked for labels that do not fit uint16.
    """
    from napari_unet.engine.errors import UserInputError
    from napari_unet.engine.io.stacks import mask_to_uint8

    arr = np.asarray(data)
    if arr.dtype.kind == "b":
        return mask_to_uint8(arr)
    if arr.size == 0:
        return arr
    low, high = arr.min(), arr.max()
    if low >= 0 and high <= 1:
        return mask_to_uint8(arr)
    if low >= 0 and arr.dtype.kind in "iu":
        for dtype in (np.uint8, np.uint16, np.uint32):
            if high <= np.iinfo(dtype).max:
                if png and dtype is np.uint32:
                    break
                return arr.astype(dtype, copy=False)
    if png:
        raise UserInputError(
            f"labels with values {low}..{high} do not fit a PNG (uint16); write a TIFF instead"
        )
    return arr


def write_labels_tiff(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a Labels layer to a TIFF stack (npe2 single-layer writer).

    Parameters
    ----------
    path
        Target ``.tif``/``.tiff`` file. napari's save dialog already asked
        before replacing an existing file.
    data
        The layer's data.
    meta
        The layer's metadata (unused).

    Returns
    -------
    list of str
        The written path.
    """
    from napari_unet.engine.io.stacks import write_tiff

    return [str(write_tiff(Path(path), labels_for_writing(data), overwrite=True))]


def write_labels_png_slices(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a Labels layer as a folder of PNG slices ``slice0000.png``, ...

    Parameters
    ----------
    path
        Target folder. An existing folder is never replaced (napari's save
        dialog does not ask about folders): a clear error is raised instead.
    data
        The layer's data.
    meta
        The layer's metadata (unused).

    Returns
    -------
    list of str
        The written folder.

    Raises
    ------
    UserInputError
        If the folder exists or the labels do not fit uint16.
    """
    from napari_unet.engine.io.stacks import write_png_slices

    folder = Path(str(path).rstrip("/\\") or path)
    return [str(write_png_slices(folder, labels_for_writing(data, png=True), overwrite=False))]
