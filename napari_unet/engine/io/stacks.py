"""Reading and writing image stacks and masks (one import for all of them).

Everything read comes back as ``(Z, Y, X)``; masks as uint8 ``{0, 1}``. Every
read problem (missing file, wrong format, truncated TIFF, ...) becomes a
:class:`~napari_unet.engine.errors.UserInputError` with a one-line message that
names the file. Every write is atomic (temporary name, then rename).

This module gathers the public names of the modules that implement them:

* :mod:`~napari_unet.engine.io.readers` -- :func:`read_stack`, :func:`read_mask`
  (PNG/JPEG, zarr, folders of slices; TIFF in :mod:`~napari_unet.engine.io.tiff`);
* :mod:`~napari_unet.engine.io.lazy_readers` -- :func:`open_lazy`;
* :mod:`~napari_unet.engine.io.checks` -- :func:`check_image`, :func:`check_pair`,
  :func:`binarize_mask`;
* :mod:`~napari_unet.engine.io.writers` -- :func:`write_tiff`,
  :func:`write_png_slices`, :func:`mask_to_uint8`, :data:`BIGTIFF_THRESHOLD`;
* :mod:`~napari_unet.engine.io.layout` -- :func:`find_dataset_layout`;
* :mod:`~napari_unet.engine.io.files` -- :func:`list_image_files`,
  :data:`IMAGE_SUFFIXES`.

Never imports TensorFlow, napari or Qt.
"""

from __future__ import annotations

from .checks import binarize_mask, check_image, check_pair
from .files import IMAGE_SUFFIXES, list_image_files
from .files import PLAIN_SUFFIXES as PLAIN_SUFFIXES
from .files import TIFF_SUFFIXES as TIFF_SUFFIXES
from .layout import find_dataset_layout
from .lazy_readers import _lazy_grey_stack as _lazy_grey_stack
from .lazy_readers import open_lazy
from .readers import _open_zarr_array as _open_zarr_array
from .readers import read_mask, read_stack
from .writers import BIGTIFF_THRESHOLD, mask_to_uint8, write_png_slices, write_tiff

__all__ = [
    "BIGTIFF_THRESHOLD",
    "IMAGE_SUFFIXES",
    "binarize_mask",
    "check_image",
    "check_pair",
    "find_dataset_layout",
    "list_image_files",
    "mask_to_uint8",
    "open_lazy",
    "read_mask",
    "read_stack",
    "write_png_slices",
    "write_tiff",
]
