"""Reading and writing image stacks and masks.

Everything read comes back as ``(Z, Y, X)``; masks as uint8 ``{0, 1}``. Every
read problem (missing file, wrong format, truncated TIFF, ...) becomes a
:class:`~napari_unet.engine.errors.UserInputError` with a one-line message that
names the file. Every write is atomic (temporary name, then rename).

Never imports TensorFlow, napari or Qt.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..atomic import atomic_dir, atomic_path
from ..data.preprocess import as_stack, rgb_to_grey, squeeze_extra_axes
from ..errors import UserInputError

if TYPE_CHECKING:
    import dask.array

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

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf2", ".tf8")
PLAIN_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
#: File types recognised as slices inside a folder.
IMAGE_SUFFIXES = TIFF_SUFFIXES + PLAIN_SUFFIXES
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

#: Arrays with more bytes than this are written as BigTIFF (classic TIFF stops at 4 GB).
BIGTIFF_THRESHOLD = 2**31
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
_ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")
# Pages bigger than this are read lazily tile by tile instead of whole.
_LAZY_PAGE_BYTES = 2**28


# --------------------------------------------------------------------------- helpers


def _fail(path: Path | str, reason: str) -> UserInputError:
    """A one-line UserInputError naming `path`."""
    return UserInputError(f"cannot read {path}: {reason}")


def _reason(exc: BaseException) -> str:
    """First line of an exception message, shortened, for user-facing errors."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders ``slice2`` before ``slice10``."""
    parts = re.split(r"(\d+)", name.lower())
    return tuple(int(p) if p.isdigit() else p for p in parts)


def _is_zarr(path: Path) -> bool:
    return path.is_dir() and (
        path.suffix.lower() == ".zarr" or any((path / m).exists() for m in _ZARR_MARKERS)
    )


def _check_readable_file(path: Path) -> None:
    """Raise UserInputError for missing, unreadable or empty files."""
    if not path.exists():
        raise _fail(path, "no such file or folder")
    if not os.access(path, os.R_OK):
        raise _fail(path, "permission denied")
    if path.is_file() and path.stat().st_size == 0:
        raise _fail(path, "the file is empty (0 bytes)")


def _is_tiff(path: Path) -> bool:
    if path.suffix.lower() in TIFF_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(4) in _TIFF_MAGIC
    except OSError:
        return False


def _native(arr: np.ndarray) -> np.ndarray:
    """Same values in native byte order (TIFFs may be big-endian)."""
    if arr.dtype.byteorder not in ("=", "|"):
        return arr.astype(arr.dtype.newbyteorder("="))
    return arr


def list_image_files(folder: str | Path) -> list[Path]:
    """Image files (TIFF, PNG, JPEG, BMP) directly in `folder`, in natural order.

    Hidden files (``.name``) are skipped.
    """
    folder = Path(folder)
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    return sorted(files, key=lambda p: _natural_key(p.name))


# --------------------------------------------------------------------------- TIFF


class _TiffLogCatcher(logging.Handler):
    """Collects tifffile's logged errors: a truncated file is often only *logged*
    ("invalid page offset") while fewer pages are silently returned."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _catch_tiff_errors(path: Path) -> Iterator[None]:
    """Turn tifffile exceptions and fatal logged errors into UserInputError."""
    logger = logging.getLogger("tifffile")
    catcher = _TiffLogCatcher()
    logger.addHandler(catcher)
    propagate = logger.propagate
    logger.propagate = False
    try:
        yield
    except UserInputError:
        raise
    except Exception as exc:
        reason = _reason(exc)
        if "failed to read" in reason:
            raise _fail(path, f"the TIFF file is truncated ({reason})") from None
        raise _fail(path, f"not a readable TIFF file ({reason})") from None
    finally:
        logger.removeHandler(catcher)
        logger.propagate = propagate
    fatal = [m for m in catcher.messages if "invalid page offset" in m or "truncat" in m]
    if fatal:
        raise _fail(path, "the TIFF file is truncated or corrupted (some pages are missing)")


def _check_tiff_extent(path: Path, pages: Any) -> None:
    """Raise if any page's pixel data lies beyond the end of the file."""
    size = path.stat().st_size
    for page in pages:
        if page is None:
            continue
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False) if n]
        if ends and max(ends) > size:
            raise _fail(path, "the TIFF file is truncated (pixel data runs past the end)")


def _tiff_series(tif: Any) -> tuple[Any, ...]:
    """The series holding the image: normally the first one; several 2D series
    of one shape and dtype (pages appended one by one) are read together."""
    series = tif.series
    if not series:
        raise ValueError("no image data in the file")
    first = series[0]
    if len(series) > 1 and all(
        s.shape == first.shape and s.dtype == first.dtype and s.axes == first.axes == "YX"
        for s in series
    ):
        return tuple(series)
    return (first,)


def _to_grey_stack(arr: np.ndarray, axes: str, name: str) -> np.ndarray:
    """Use TIFF axis letters: samples ('S') are colour; everything else squeezes."""
    if "S" in axes:
        arr = np.moveaxis(arr, axes.index("S"), -1)
        if arr.shape[-1] in (3, 4):
            arr = rgb_to_grey(arr)
        elif arr.shape[-1] == 2:  # grey + alpha
            arr = arr[..., 0]
    return as_stack(arr, rgb=False, name=name)


def _read_tiff(path: Path, colour: str = "grey") -> np.ndarray:
    import tifffile

    with _catch_tiff_errors(path), tifffile.TiffFile(path) as tif:
        series = _tiff_series(tif)
        for s in series:
            _check_tiff_extent(path, s.pages)
        if len(series) == 1:
            arr, axes = series[0].asarray(), series[0].axes
        else:
            arr, axes = np.stack([s.asarray() for s in series]), "Q" + series[0].axes
    arr = _native(arr)
    if colour == "max" and "S" in axes:
        arr = np.moveaxis(arr, axes.index("S"), -1)
        arr = _channel_max(arr)
        axes = axes.replace("S", "")
    return _to_grey_stack(arr, axes, str(path))


def _channel_max(arr: np.ndarray) -> np.ndarray:
    """Max over colour channels, ignoring alpha (for masks painted in colour)."""
    channels = arr.shape[-1]
    if channels in (2, 4):
        arr = arr[..., : channels - 1]
    return arr.max(axis=-1)


# --------------------------------------------------------------------------- PNG / JPEG


def _read_plain(path: Path, colour: str = "grey") -> np.ndarray:
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
            arr = _channel_max(arr)
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
    array = _open_zarr_array(path)
    try:
        arr = np.asarray(array[...])
    except Exception as exc:
        raise _fail(path, f"cannot load zarr data ({_reason(exc)})") from None
    if colour == "max" and arr.ndim in (3, 4) and arr.shape[-1] in (3, 4):
        return as_stack(_channel_max(arr), rgb=False, name=str(path))
    return as_stack(arr, name=str(path))


# --------------------------------------------------------------------------- folders


def _layout_hint(folder: Path) -> str:
    names = {p.name.lower() for p in folder.iterdir() if p.is_dir()}
    if names & {"train", "test"}:
        return " (it looks like a dataset folder: use its train/images and train/masks)"
    return ""


def _read_folder(folder: Path, colour: str = "grey") -> np.ndarray:
    """Stack the images of a folder in natural order; all must have one shape."""
    try:
        files = list_image_files(folder)
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


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in (shape[1:] if len(shape) == 3 and shape[0] == 1 else shape))


# --------------------------------------------------------------------------- reading


def _read_file(path: Path, colour: str = "grey") -> np.ndarray:
    _check_readable_file(path)
    if _is_tiff(path):
        return _read_tiff(path, colour)
    return _read_plain(path, colour)


def _read_any(path: str | Path, colour: str) -> np.ndarray:
    path = Path(path).expanduser()
    _check_readable_file(path)
    try:
        if _is_zarr(path):
            arr = _read_zarr(path, colour)
        elif path.is_dir():
            arr = _read_folder(path, colour)
        else:
            arr = _read_file(path, colour)
    except MemoryError:
        raise _fail(path, "not enough memory to load it (try open_lazy)") from None
    except OSError as exc:
        raise _fail(path, _reason(exc)) from None
    check_image(arr, str(path))
    return arr


def read_stack(path: str | Path) -> np.ndarray:
    """Read an image stack as ``(Z, Y, X)``, keeping its dtype.

    Accepts multi-page TIFF (plain, ImageJ, OME, BigTIFF, compressed), PNG,
    JPEG, BMP, a folder of slices (natural order: ``slice2`` before ``slice10``)
    and zarr stores. Colour becomes grey by luminance; a 2D image becomes
    ``(1, Y, X)``; extra singleton axes are squeezed. Values are not normalized.

    Parameters
    ----------
    path
        File, folder of slices or ``.zarr`` folder.

    Returns
    -------
    numpy.ndarray
        ``(Z, Y, X)`` array in native byte order.

    Raises
    ------
    UserInputError
        For any problem reading the data; the message names the file.
    """
    return _read_any(path, colour="grey")


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask stack as uint8 ``{0, 1}`` ``(Z, Y, X)``.

    Like :func:`read_stack` followed by :func:`binarize_mask`, except that a
    colour mask is foreground where any colour channel is nonzero.
    """
    path = Path(path).expanduser()
    arr = _read_any(path, colour="max")
    return binarize_mask(arr, name=str(path))


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


def _lazy_tiff(path: Path) -> tuple[dask.array.Array, str]:
    import dask.array as da
    import tifffile

    tif = None
    try:
        with _catch_tiff_errors(path):
            tif = tifffile.TiffFile(path)  # stays open while the dask array lives
            series = tif.series[0]
            _check_tiff_extent(path, series.pages)
            page_bytes = int(np.prod(series.keyframe.shape)) * series.dtype.itemsize
            if page_bytes <= _LAZY_PAGE_BYTES:
                store = series.aszarr(chunkmode="page")
            else:
                store = series.aszarr()
            arr = da.from_zarr(store)
    except BaseException:
        if tif is not None:
            tif.close()
        raise
    return arr, series.axes


def _lazy_grey_stack(arr: dask.array.Array, axes: str | None, name: str) -> dask.array.Array:
    """Lazy counterpart of :func:`as_stack` (plus TIFF colour samples)."""
    import dask.array as da

    from ..data.preprocess import looks_rgb

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


# --------------------------------------------------------------------------- dataset layout


_LAYOUT_SPLITS = {"train": ("train", "training"), "val": ("val", "validation"), "test": ("test",)}
_LAYOUT_KINDS = {"images": ("images", "image"), "masks": ("masks", "labels", "label", "mask")}


def _child(folder: Path | None, names: tuple[str, ...]) -> Path | None:
    """The first existing child of `folder` named one of `names` (case-insensitive)."""
    if folder is None or not folder.is_dir():
        return None
    children = {p.name.lower(): p for p in folder.iterdir() if not p.name.startswith(".")}
    for name in names:
        if name in children:
            return children[name]
    return None


def find_dataset_layout(root: str | Path) -> dict[str, Path | None]:
    """Recognise the seed dataset layout under `root`::

        root/train/images   root/train/masks   (also labels, label, mask; image)
        root/val/images     root/val/masks     (optional; also validation)
        root/test/images    root/test/masks    (optional)

    Parameters
    ----------
    root
        Dataset folder.

    Returns
    -------
    dict
        Keys ``train_images``, ``train_masks``, ``val_images``, ``val_masks``,
        ``test_images``, ``test_masks``; each a path (folder or file such as
        ``images.tif``) or None when missing.

    Raises
    ------
    UserInputError
        If `root` is not a folder.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserInputError(f"dataset folder {root} does not exist or is not a folder")
    layout: dict[str, Path | None] = {}
    for split, split_names in _LAYOUT_SPLITS.items():
        split_dir = _child(root, split_names)
        for kind, kind_names in _LAYOUT_KINDS.items():
            found = _child(split_dir, kind_names)
            if found is None and split_dir is not None:
                found = _child(split_dir, _with_suffixes(kind_names))
            layout[f"{split}_{kind}"] = found
    return layout


def _with_suffixes(names: tuple[str, ...]) -> tuple[str, ...]:
    """``images`` -> ``images.tif``, ``images.tiff``, ``images.zarr`` ..."""
    return tuple(f"{n}{s}" for n in names for s in (*TIFF_SUFFIXES, ".zarr"))


# --------------------------------------------------------------------------- validation


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


# --------------------------------------------------------------------------- masks


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


def mask_to_uint8(mask01: np.ndarray) -> np.ndarray:
    """Mask (nonzero = foreground) as uint8 ``{0, 255}`` for writing."""
    out = (np.asarray(mask01) != 0).astype(np.uint8)
    out *= 255
    return out


# --------------------------------------------------------------------------- writing


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
