"""Opening stacks lazily: :func:`open_lazy` gives a ``(Z, Y, X)`` dask array.

TIFF files are read through tifffile's zarr interface and zarr stores directly,
so volumes larger than memory can be processed slice by slice; folders of slices
load one file per chunk. :func:`_lazy_grey_stack` is the lazy counterpart of
:func:`~napari_unet.engine.io.arrays.as_stack`.

Never imports TensorFlow, napari or Qt.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserInputError
from .arrays import looks_rgb, rgb_to_grey, squeeze_extra_axes
from .files import _check_readable_file, _fail, _is_tiff, _is_zarr, _shape_text, list_image_files
from .readers import _open_zarr_array, _read_file, read_stack
from .tiff import _lazy_tiff

if TYPE_CHECKING:
    import dask.array

__all__ = ["open_lazy"]


def open_lazy(path: str | Path) -> dask.array.Array:
    """Open an image stack lazily as a ``(Z, Y, X)`` dask array.

    TIFF files are read through tifffile's zarr interface (one chunk per page,
    or per tile for very large pages) and zarr stores directly, so volumes larger
    than memory can be processed slice by slice. Folders of slices load one file
    per chunk; other formats are read eagerly and wrapped.

    Parameters
    ----------
    path
        TIFF file, ``.zarr`` folder, folder of slices or single image.

    Returns
    -------
    dask.array.Array
        ``(Z, Y, X)`` array; nothing but headers has been read.

    Raises
    ------
    UserInputError
        If the file cannot be opened or does not hold a grey stack.
    """
    import dask.array as da

    path = Path(path).expanduser()
    _check_readable_file(path)
    if _is_zarr(path):
        arr, axes = da.from_zarr(_open_zarr_array(path)), None
    elif path.is_dir():
        return _lazy_folder(path)
    elif _is_tiff(path):
        arr, axes = _lazy_tiff(path)
    else:
        return da.from_array(read_stack(path), chunks=(1, -1, -1))
    return _lazy_grey_stack(arr, axes, str(path))


def _lazy_grey_stack(arr: dask.array.Array, axes: str | None, name: str) -> dask.array.Array:
    """Lazy counterpart of :func:`as_stack` (plus TIFF colour samples)."""
    import dask.array as da

    dtype = np.dtype(arr.dtype)
    if dtype.kind == "c":  # same refusals as check_image (NaN-only is found when read)
        raise UserInputError(f"{name} has complex values ({dtype}); expected a real-valued image")
    if dtype.kind not in "biuf":
        raise UserInputError(f"{name} has data type {dtype}; expected a numeric image")
    if axes is not None and "S" in axes:
        arr = da.moveaxis(arr, axes.index("S"), -1)
        rgb = arr.shape[-1] in (3, 4)
        if arr.shape[-1] == 2:  # grey + alpha, as in _to_grey_stack
            arr = arr[..., 0]
    else:
        rgb = axes is None and looks_rgb(arr.shape)
    if rgb:
        out_dtype = rgb_to_grey(np.zeros((1, 1, arr.shape[-1]), arr.dtype)).dtype
        arr = arr.rechunk({arr.ndim - 1: -1})
        arr = arr.map_blocks(rgb_to_grey, drop_axis=arr.ndim - 1, dtype=out_dtype)
    elif arr.ndim >= 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    arr = squeeze_extra_axes(arr, name, arr.shape)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.size == 0:
        raise UserInputError(f"{name} has shape {arr.shape}; expected a 2D image or a stack")
    return arr


def _lazy_folder(folder: Path) -> dask.array.Array:
    """One dask chunk per slice file; the first file is read to learn the shape."""
    import dask
    import dask.array as da

    files = list_image_files(folder)
    if len(files) <= 1:
        return da.from_array(read_stack(folder), chunks=(1, -1, -1))
    first = _read_file(files[0])
    if first.shape[0] != 1:
        raise _fail(
            folder,
            f"{files[0].name} holds {first.shape[0]} slices; "
            "a slice folder must hold one 2D image per file",
        )

    def load(file: Path) -> np.ndarray:
        arr = _read_file(file)
        if arr.shape != first.shape:
            raise _fail(
                folder,
                f"slice {file.name} has shape {_shape_text(arr.shape)} but "
                f"{files[0].name} has {_shape_text(first.shape)}",
            )
        return arr.astype(first.dtype, copy=False)

    parts = [da.from_array(first, chunks=-1)] + [
        da.from_delayed(dask.delayed(load)(f), shape=first.shape, dtype=first.dtype)
        for f in files[1:]
    ]
    return da.concatenate(parts, axis=0)
