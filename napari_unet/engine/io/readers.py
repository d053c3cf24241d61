"""Reading whole stacks: :func:`read_stack` and :func:`read_mask`.

They dispatch on the path: zarr stores (OME-Zarr level 0), folders of slices (one
2D image per file, natural order), TIFF files (:mod:`~napari_unet.engine.io.tiff`)
and PNG/JPEG/BMP images. Everything comes back as ``(Z, Y, X)``, masks as uint8
``{0, 1}``; every problem is a one-line
:class:`~napari_unet.engine.errors.UserInputError` naming the file.

Never imports TensorFlow, napari or Qt.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .arrays import as_stack, channel_max, rgb_to_grey
from .checks import binarize_mask, check_image
from .files import (
    _check_readable_file,
    _fail,
    _is_tiff,
    _is_zarr,
    _reason,
    _shape_text,
)
from .tiff import _read_tiff

__all__ = ["read_mask", "read_npy", "read_stack", "reread_to_match"]

_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- PNG / JPEG


def _read_plain(path: Path, colour: str = "grey") -> np.ndarray:
    """Read a PNG/JPEG/BMP/GIF image; colour becomes grey (or channel max)."""
    try:
        import imageio.v3 as iio

        with warnings.catch_warnings():  # plugin probing warns about legacy plugins
            warnings.simplefilter("ignore", DeprecationWarning)
            arr = np.asarray(iio.imread(path))
    except ImportError:  # pragma: no cover - imageio ships with scikit-image
        from skimage import io as skio

        try:
            arr = np.asarray(skio.imread(path))
        except Exception as exc:
            raise _fail(path, f"not a readable image ({_reason(exc)})") from None
    except Exception as exc:
        raise _fail(path, f"not a readable image ({_reason(exc)})") from None
    if arr.ndim == 3 and arr.shape[-1] in (2, 3, 4):
        if colour == "max":
            arr = channel_max(arr)
        elif arr.shape[-1] == 2:
            arr = arr[..., 0]
        else:
            arr = rgb_to_grey(arr)
    return as_stack(arr, rgb=False, name=str(path))


# --------------------------------------------------------------------------- zarr


def _open_zarr_array(path: Path) -> Any:
    """Open a zarr array; for a group take array ``0`` (OME-Zarr full resolution)
    or its only array."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise _fail(path, f"not a readable zarr store ({_reason(exc)})") from None
    if isinstance(node, zarr.Array):
        return node
    level0 = _ome_level0(node)
    if level0 is not None:
        try:
            return node[level0]
        except Exception as exc:
            raise _fail(path, f"OME-Zarr level {level0!r} is missing ({_reason(exc)})") from None
    names = sorted(node.array_keys())
    if "0" in names:
        return node["0"]
    if len(names) == 1:
        return node[names[0]]
    if not names:
        raise _fail(path, "the zarr group holds no arrays")
    raise _fail(path, f"the zarr group holds several arrays {names}; give the path of one")


def _ome_level0(group: Any) -> str | None:
    """Path of the full-resolution array of an OME-Zarr image group, if it is one.

    Reads ``multiscales`` from the group attributes (``.zattrs`` in OME-Zarr
    0.4, ``ome`` in ``zarr.json`` for 0.5); the first dataset is level 0.
    """
    try:
        attrs = dict(group.attrs)
    except Exception:
        return None
    multiscales = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    try:
        return str(multiscales[0]["datasets"][0]["path"])
    except (TypeError, LookupError):
        return None


def _read_zarr(path: Path, colour: str = "grey") -> np.ndarray:
    """Load a zarr array (or OME-Zarr level 0) whole as ``(Z, Y, X)``."""
    array = _open_zarr_array(path)
    try:
        arr = np.asarray(array[...])
    except Exception as exc:
        raise _fail(path, f"cannot load zarr data ({_reason(exc)})") from None
    if colour == "max" and arr.ndim in (3, 4) and arr.shape[-1] in (3, 4):
        return as_stack(channel_max(arr), rgb=False, name=str(path))
    return as_stack(arr, name=str(path))


# --------------------------------------------------------------------------- folders


def _layout_hint(folder: Path) -> str:
    """A hint for an empty folder that looks like a dataset root."""
    names = {p.name.lower() for p in folder.iterdir() if p.is_dir()}
    if names & {"train", "test"}:
        return " (it looks like a dataset folder: use its train/images and train/masks)"
    return ""


def _read_folder(folder: Path, colour: str = "grey") -> np.ndarray:
    """Stack the images of a folder in natural order; all must have one shape.

    The masks of a folder of ``NAME`` / ``NAME_mask`` pairs are left out (see
    :mod:`~napari_unet.engine.io.pairs`)."""
    from .pairs import slice_files

    try:
        files = slice_files(folder)
    except OSError as exc:
        raise _fail(folder, _reason(exc)) from None
    if not files:
        raise _fail(folder, "the folder contains no TIFF/PNG/JPEG images" + _layout_hint(folder))
    if len(files) == 1:
        return _read_file(files[0], colour)
    first = _read_file(files[0], colour)
    if first.shape[0] != 1:
        raise _fail(
            folder,
            f"{files[0].name} holds {first.shape[0]} slices; "
            "a slice folder must hold one 2D image per file",
        )
    out = np.empty((len(files), *first.shape[1:]), dtype=first.dtype)
    out[0] = first[0]
    for i, file in enumerate(files[1:], start=1):
        arr = _read_file(file, colour)
        if arr.shape != first.shape:
            raise _fail(
                folder,
                f"slice {file.name} has shape {_shape_text(arr.shape)} but "
                f"{files[0].name} has {_shape_text(first.shape)}; all slices must match",
            )
        if not np.can_cast(arr.dtype, out.dtype, casting="safe"):
            out = out.astype(np.result_type(out.dtype, arr.dtype))
        out[i] = arr[0]
    return out


# --------------------------------------------------------------------------- dispatch


def _read_file(path: Path, colour: str = "grey", planes: str = "auto") -> np.ndarray:
    """Read one image file (TIFF, ``.npy`` or plain image) as ``(Z, Y, X)``; `planes`
    decides how a one-page planar colour TIFF is read (see
    :func:`~napari_unet.engine.io.tiff.planes_as_slices`)."""
    _check_readable_file(path)
    if path.suffix.lower() == ".npy":
        return as_stack(read_npy(path), name=str(path))
    if _is_tiff(path):
        return _read_tiff(path, colour, planes)
    return _read_plain(path, colour)


def read_npy(path: str | Path) -> np.ndarray:
    """Load a NumPy ``.npy`` array without pickle (zhixuhao's ``imgs_test.npy`` layout,
    ``(N, Y, X, 1)``, reads as ``(N, Y, X)`` through :func:`read_stack`).

    Raises
    ------
    UserInputError
        If the file is not a ``.npy`` array or holds Python objects.
    """
    path = Path(path).expanduser()
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode=None)
    except ValueError as exc:  # object arrays need pickle
        raise _fail(path, f"not a plain numeric .npy array ({_reason(exc)})") from None
    except (OSError, EOFError) as exc:
        raise _fail(path, f"not a readable .npy file ({_reason(exc)})") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive given a .npy name
        raise _fail(path, "not a single .npy array")
    return arr


def _read_any(path: str | Path, colour: str, planes: str = "auto") -> np.ndarray:
    """Read a zarr store, folder of slices or file and check the result."""
    path = Path(path).expanduser()
    _check_readable_file(path)
    try:
        if _is_zarr(path):
            arr = _read_zarr(path, colour)
        elif path.is_dir():
            arr = _read_folder(path, colour)
        else:
            arr = _read_file(path, colour, planes)
    except MemoryError:
        raise _fail(path, "not enough memory to load it (try open_lazy)") from None
    except OSError as exc:
        raise _fail(path, _reason(exc)) from None
    check_image(arr, str(path))
    return arr


def read_stack(path: str | Path, planes: str = "auto") -> np.ndarray:
    """Read an image stack as ``(Z, Y, X)``, keeping its dtype.

    Accepts multi-page TIFF (plain, ImageJ, OME, BigTIFF, compressed), PNG,
    JPEG, BMP, a folder of slices (natural order: ``slice2`` before ``slice10``)
    and zarr stores. Colour becomes grey by luminance (said in the log); a 2D
    image becomes ``(1, Y, X)``; extra singleton axes are squeezed. Values are not
    normalized.

    Parameters
    ----------
    path
        File, folder of slices or ``.zarr`` folder.
    planes
        A one-page TIFF of 3 or 4 separate sample planes (what ``tifffile.imwrite``
        makes of a 3- or 4-slice grey stack): ``auto`` reads it as slices when
        tifffile recorded it so, else as colour; ``slices`` or ``colour`` decide.

    Returns
    -------
    numpy.ndarray
        ``(Z, Y, X)`` array in native byte order.

    Raises
    ------
    UserInputError
        For any problem reading the data; the message names the file.
    """
    return _read_any(path, colour="grey", planes=planes)


def read_mask(path: str | Path, planes: str = "auto") -> np.ndarray:
    """Read a mask stack as uint8 ``{0, 1}`` ``(Z, Y, X)``.

    Like :func:`read_stack` followed by :func:`binarize_mask`, except that a
    colour mask is foreground where any colour channel is nonzero.

    Parameters
    ----------
    path
        File, folder of slices or ``.zarr`` folder.
    planes
        As for :func:`read_stack`.

    Returns
    -------
    numpy.ndarray
        uint8 ``(Z, Y, X)`` array of 0 and 1.

    Raises
    ------
    UserInputError
        For any problem reading the data; the message names the file.
    """
    path = Path(path).expanduser()
    arr = _read_any(path, colour="max", planes=planes)
    return binarize_mask(arr, name=str(path))


def reread_to_match(path: Any, arr: np.ndarray, slices: int, mask: bool = False) -> np.ndarray:
    """`arr`, read from `path`, re-read the other way if that is what matches a partner.

    A one-page TIFF of 3 or 4 separate sample planes reads as one colour image or as
    that many grey slices (see :func:`read_stack`). When the partner stack (the masks
    of these images, or the images of these masks) has `slices` slices and only the
    other reading has as many, the file is read that way (said in the log).

    Parameters
    ----------
    path
        Where `arr` was read from (anything but a TIFF path: `arr` is returned).
    arr
        The ``(Z, Y, X)`` stack as read.
    slices
        The partner's number of slices.
    mask
        Re-read with :func:`read_mask` instead of :func:`read_stack`.

    Returns
    -------
    numpy.ndarray
        The stack that matches, or `arr` when no other reading does.
    """
    from .tiff import colour_planes

    if not isinstance(path, (str, Path)) or np.ndim(arr) != 3 or arr.shape[0] == slices:
        return arr
    planes = colour_planes(Path(path).expanduser())
    if planes is None:
        return arr
    if slices == planes and arr.shape[0] == 1:
        choice = "slices"
    elif slices == 1 and arr.shape[0] == planes:
        choice = "colour"
    else:
        return arr
    _log.info("%s is read as %s to match its partner's %d slice(s)", path, choice, slices)
    return (read_mask if mask else read_stack)(path, planes=choice)
