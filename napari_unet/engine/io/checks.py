"""Checks of what was read: usable images, matching image/mask pairs, binary masks.

:func:`check_image` and :func:`check_pair` raise a one-line
:class:`~napari_unet.engine.errors.UserInputError`; :func:`binarize_mask` turns
any binary or label encoding into uint8 ``{0, 1}``.

Pure numpy; never imports TensorFlow, napari or Qt.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserInputError

__all__ = ["binarize_mask", "check_image", "check_pair"]


def check_image(arr: np.ndarray, name: str = "image") -> None:
    """Raise :class:`UserInputError` if `arr` cannot be used as an image.

    Rejected: empty arrays, fewer than 2 dimensions, more than 4 non-singleton
    dimensions, complex, object, string and other non-numeric dtypes, and images
    that are entirely NaN. A few NaNs, constant images, odd and tiny sizes pass.

    Parameters
    ----------
    arr
        Image array.
    name
        Used in the message (e.g. the file name or layer name).
    """
    arr = np.asarray(arr) if not hasattr(arr, "dtype") else arr
    dtype = np.dtype(arr.dtype)
    if dtype.kind == "c":
        raise UserInputError(f"{name} has complex values ({dtype}); expected a real-valued image")
    if dtype.kind not in "biuf":
        raise UserInputError(f"{name} has data type {dtype}; expected a numeric image")
    if arr.size == 0:
        raise UserInputError(f"{name} is empty (shape {tuple(arr.shape)})")
    if arr.ndim < 2:
        raise UserInputError(f"{name} has shape {tuple(arr.shape)}; expected at least 2D (Y, X)")
    if sum(s > 1 for s in arr.shape) > 4:
        raise UserInputError(
            f"{name} has shape {tuple(arr.shape)}; at most (Z, Y, X) plus colour is supported"
        )
    if dtype.kind == "f" and _all_nan(arr):
        raise UserInputError(f"{name} contains only NaN values")


def _all_nan(arr: np.ndarray) -> bool:
    """True if every value is NaN; stops at the first slice with a number."""
    if arr.ndim < 3:
        return bool(np.isnan(arr).all())
    return all(_all_nan(part) for part in arr)


def check_pair(
    images: np.ndarray,
    masks: np.ndarray,
    image_name: str | None = None,
    mask_name: str | None = None,
) -> None:
    """Raise :class:`UserInputError` unless images and masks have one ``(Z, Y, X)`` shape.

    A mask without any foreground is allowed.

    Parameters
    ----------
    images, masks
        ``(Z, Y, X)`` stacks.
    image_name, mask_name
        Optional names (file or layer) used in the message.
    """
    images_label = f"the images ({image_name})" if image_name else "the images"
    masks_label = f"the masks ({mask_name})" if mask_name else "the masks"
    ishape, mshape = tuple(np.shape(images)), tuple(np.shape(masks))
    for label, shape in ((images_label, ishape), (masks_label, mshape)):
        if len(shape) != 3:
            raise UserInputError(f"{label} have shape {shape}; expected (Z, Y, X)")
    if ishape[0] != mshape[0]:
        raise UserInputError(
            f"{masks_label} have {mshape[0]} slices but {images_label} have {ishape[0]}"
        )
    if ishape[1:] != mshape[1:]:
        raise UserInputError(
            f"{masks_label} have slices of {mshape[1]}x{mshape[2]} pixels but "
            f"{images_label} have {ishape[1]}x{ishape[2]}"
        )


def binarize_mask(arr: np.ndarray, name: str = "mask") -> np.ndarray:
    """Turn any binary or label encoding into uint8 ``{0, 1}``.

    Nonzero is foreground (0/1, 0/255, 0/65535, bool, instance labels), except
    for a float probability map (values in ``[0, 1]`` with some strictly between)
    which is thresholded: foreground where ``value >= 0.5``.

    Parameters
    ----------
    arr
        Mask array of any shape.
    name
        Used in error messages.

    Returns
    -------
    numpy.ndarray
        uint8 array of 0 and 1, same shape.

    Raises
    ------
    UserInputError
        For NaN values or non-numeric data.
    """
    arr = np.asarray(arr)
    kind = arr.dtype.kind
    if kind not in "biuf":
        raise UserInputError(f"{name} has data type {arr.dtype}; expected a numeric mask")
    if kind == "b":
        return arr.astype(np.uint8)
    if kind == "f":
        if np.isnan(arr).any():
            raise UserInputError(
                f"{name} contains NaN values; masks must be 0 (background) and nonzero (foreground)"
            )
        if arr.size and arr.min() >= 0 and arr.max() <= 1 and np.any((arr > 0) & (arr < 1)):
            return (arr >= 0.5).astype(np.uint8)
    return (arr != 0).astype(np.uint8)
