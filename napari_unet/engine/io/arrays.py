"""Array-shape conventions of reading: everything becomes a grey ``(Z, Y, X)`` stack.

:func:`as_stack` turns 2D images, RGB(A) images, trailing singleton channels and
extra singleton axes into ``(Z, Y, X)``; :func:`rgb_to_grey` converts colour by
luminance. The readers of this stage use them, and so do training and prediction
(through :mod:`~napari_unet.engine.data.preprocess`, which re-exports them).

Pure numpy; never imports TensorFlow, napari or Qt.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UserInputError

__all__ = [
    "LUMINANCE_WEIGHTS",
    "as_stack",
    "channel_max",
    "looks_rgb",
    "rgb_to_grey",
    "squeeze_extra_axes",
]

#: Rec. 709 luminance weights (the ones scikit-image's ``rgb2gray`` uses).
LUMINANCE_WEIGHTS = (0.2125, 0.7154, 0.0721)

# Integer/float types whose values do not fit float32 exactly: work in float64.
_WIDE_KINDS = {np.dtype(t) for t in (np.int32, np.uint32, np.int64, np.uint64, np.float64)}


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


def channel_max(arr: np.ndarray) -> np.ndarray:
    """Max over the colour channels on the last axis, ignoring alpha.

    Used for masks painted in colour: foreground wherever any channel is set.

    Parameters
    ----------
    arr
        Array ``(..., C)`` with ``C`` colour channels (2 and 4 include alpha).

    Returns
    -------
    numpy.ndarray
        Array with the last axis removed.
    """
    channels = arr.shape[-1]
    if channels in (2, 4):
        arr = arr[..., : channels - 1]
    return arr.max(axis=-1)


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
