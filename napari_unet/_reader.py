"""napari reader: EM image stacks and masks (TIFF, PNG/JPEG, folders of slices, zarr).

:func:`get_reader` decides from the path alone (suffix, or a quick look at a
folder's entries) and never raises. The returned reader loads the data with
the engine's :mod:`~napari_unet.engine.io.stacks` and decides Labels vs Image from the
data and the name (:func:`looks_like_labels`): a binary stack (bool, or two values 0/1 or
0/255) is a mask whatever its name; integer data named with a whole-word hint (``mask``,
``masks``, ``label``, ``labels``, ``seg``, ``gt``...; not ``unlabeled``) is a Labels layer;
everything else opens as an Image layer with 1st/99.8th percentile contrast limits.
Stacks larger than :data:`LAZY_BYTES` open lazily (dask, slice by slice).

A file that looks like ours but cannot be read (truncated TIFF, corrupt PNG)
gives a napari error notification with a one-line reason, and the reader
returns napari's "no layers" sentinel ``[(None,)]`` so that no second error
dialog (and no traceback) follows.

Never imports TensorFlow or Qt.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "LAZY_BYTES",
    "contrast_limits",
    "get_reader",
    "is_mask_name",
    "labels_from_mask",
    "read_layers",
]

LayerData = tuple[Any, ...]
ReaderFunction = Callable[[str | Sequence[str]], list[LayerData]]

#: Stacks with more (uncompressed) bytes than this are opened lazily with dask.
LAZY_BYTES = 512 * 2**20

_FILE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
_SLICE_SUFFIXES = (".tif", ".tiff", ".png")
_ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")
#: Whole words of a file name that mark a mask or label stack.
MASK_WORDS = frozenset(
    {
        "mask",
        "masks",
        "label",
        "labels",
        "labeled",
        "labelled",
        "seg",
        "segs",
        "segmentation",
        "segmentations",
        "gt",
        "groundtruth",
        "annotation",
        "annotations",
        "instances",
        "truth",
    }
)
_WORD = re.compile(r"[A-Za-z]+")
#: At most this many pixels are looked at to decide whether a stack is binary.
_DECIDE_PIXELS = 2**22
_NULL_LAYERS: list[LayerData] = [(None,)]
_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- recognising


def _name_words(path: str | os.PathLike[str]) -> list[str]:
    """Lower-case words of a file or folder name: ``train-labels.tif`` -> train, labels;
    ``cellMask_01`` -> cell, mask (camelCase is split)."""
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png", ".jpeg", ".jpg", ".zarr"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    name = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)
    return [word.lower() for word in _WORD.findall(name)]


def is_mask_name(path: str | os.PathLike[str]) -> bool:
    """True if a whole word of the name marks a mask (``mask``, ``labels``, ``seg``, ``gt``...);
    ``unlabeled-volume`` or ``segment_raw`` do not."""
    return any(word in MASK_WORDS for word in _name_words(path))


def _sample(data: Any) -> np.ndarray:
    """Up to :data:`_DECIDE_PIXELS` pixels of the stack, strided over slices (lazy data is
    read only there)."""
    shape = tuple(getattr(data, "shape", ()))
    if not shape:
        return np.asarray(data)
    per_slice = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    step = max(1, (shape[0] * per_slice) // _DECIDE_PIXELS)
    return np.asarray(data[::step] if len(shape) > 2 else data)


def looks_like_labels(data: Any, path: str | os.PathLike[str]) -> bool:
    """Decide Labels vs Image from the data first and the name second.

    Parameters
    ----------
    data
        The stack as read (numpy, or a lazy dask/zarr array: only a strided sample is read).
    path
        The file or folder it came from.

    Returns
    -------
    bool
        True for a bool stack or an integer one holding only 0/1 or 0/255 (a binary mask,
        whatever its name); True for integer data, or float data within [0, 1], whose name
        has a mask word (instance or class labels, a mask saved as float); False otherwise
        (grey images of any name, ``unlabeled-volume.tif``).
    """
    dtype = np.dtype(getattr(data, "dtype", np.float32))
    if dtype.kind == "b":
        return True
    if dtype.kind not in "iuf":
        return False
    values = np.unique(_sample(data))
    if dtype.kind in "iu" and values.size == 2 and set(values.tolist()) in ({0, 1}, {0, 255}):
        return True
    if not is_mask_name(path):
        return False
    if dtype.kind == "f":  # a mask saved as float: 0/1 values or probabilities
        finite = values[np.isfinite(values)]
        return bool(finite.size and (finite.min() >= 0) and (finite.max() <= 1))
    return values.size < 2**16


def _is_zarr(path: Path) -> bool:
    return path.suffix.lower() == ".zarr" or any((path / m).exists() for m in _ZARR_MARKERS)


def _folder_has_slices(path: Path, limit: int = 2000) -> bool:
    """True if `path` directly holds a PNG/TIFF file (looks at `limit` entries at most)."""
    try:
        with os.scandir(path) as entries:
            for i, entry in enumerate(entries):
                if i >= limit:
                    return False
                name = entry.name.lower()
                if not name.startswith(".") and name.endswith(_SLICE_SUFFIXES):
                    return entry.is_file()
    except OSError:
        return False
    return False


def _accepts(path: str) -> bool:
    """Cheap decision from the path: suffix, zarr store, or a folder of slices."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        return False
    candidate = Path(path)
    try:
        if candidate.is_dir():
            return _is_zarr(candidate) or _folder_has_slices(candidate)
    except OSError:
        return False
    return candidate.suffix.lower() in _FILE_SUFFIXES


def get_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """Return a reader for `path` if napari-unet can open it, else None.

    Parameters
    ----------
    path
        A file or folder path, or a list of them (each is opened as its own
        layer).

    Returns
    -------
    callable or None
        The reader function, or None for anything that is not a TIFF, PNG,
        JPEG, zarr store or folder of PNG/TIFF slices.
    """
    try:
        paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        if paths and all(_accepts(p) for p in paths):
            return read_layers
    except Exception:  # get_reader must never raise
        _log.debug("napari-unet get_reader failed for %r", path, exc_info=True)
    return None


# --------------------------------------------------------------------------- reading


def read_layers(path: str | Sequence[str]) -> list[LayerData]:
    """Read each path as one layer (see the module docstring).

    Parameters
    ----------
    path
        A path or a list of paths accepted by :func:`get_reader`.

    Returns
    -------
    list of LayerData
        ``(data, metadata, layer_type)`` tuples; ``[(None,)]`` if nothing could
        be read (the reason was shown as a notification).
    """
    from napari_unet.engine.errors import UserInputError

    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers: list[LayerData] = []
    for one in paths:
        try:
            layers.append(_read_one(Path(one)))
        except UserInputError as exc:
            _notify_error(str(exc))
        except MemoryError:
            _notify_error(f"cannot read {one}: not enough memory")
        except Exception as exc:  # unexpected: still one clear line, details in the log
            _log.debug("napari-unet failed to read %s", one, exc_info=True)
            _notify_error(f"cannot read {one}: {type(exc).__name__}: {exc}")
    return layers or list(_NULL_LAYERS)


def _notify_error(message: str) -> None:
    try:
        from napari.utils.notifications import show_error
    except ImportError:  # pragma: no cover - used without napari
        _log.error(message)
        return
    show_error(message)


def _read_one(path: Path) -> LayerData:
    from napari_unet.engine.io import stacks as io

    name = path.stem if path.suffix.lower() != ".zarr" else path.name[: -len(".zarr")]
    name = name or path.name
    lazy = _estimated_bytes(path) > LAZY_BYTES
    data = io.open_lazy(path) if lazy else io.read_stack(path)
    if looks_like_labels(data, path):
        labels = data if lazy else labels_from_mask(data)
        return labels, {"name": name, "metadata": {"source": str(path)}}, "labels"
    meta = {
        "name": name,
        "contrast_limits": contrast_limits(data),
        "metadata": {"source": str(path)},
    }
    return data, meta, "image"


def _estimated_bytes(path: Path) -> int:
    """Uncompressed size of the stack, from headers where cheap, else file sizes."""
    try:
        if path.is_dir():
            if _is_zarr(path):
                return _zarr_bytes(path)
            return sum(e.stat().st_size for e in os.scandir(path) if e.is_file())
        size = path.stat().st_size
        if path.suffix.lower() in (".tif", ".tiff"):
            size = max(size, _tiff_bytes(path))
        return size
    except OSError:
        return 0


def _tiff_bytes(path: Path) -> int:
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return int(np.prod(series.shape)) * series.dtype.itemsize
    except Exception:  # unreadable: read_stack will say why
        return 0


def _zarr_bytes(path: Path) -> int:
    try:
        from napari_unet.engine.io.stacks import _open_zarr_array

        array = _open_zarr_array(path)
        return int(np.prod(array.shape)) * np.dtype(array.dtype).itemsize
    except Exception:
        return 0


# --------------------------------------------------------------------------- layer data


def labels_from_mask(data: np.ndarray) -> np.ndarray:
    """Mask values for a napari Labels layer.

    Binary masks (two values, e.g. 0/255 or 0/1, or bool) become uint8
    ``{0, 1}`` so napari shows and paints label 1; instance labels keep their
    values (as an integer type); float probability maps are thresholded at 0.5.

    Parameters
    ----------
    data
        Mask stack as read from disk.

    Returns
    -------
    numpy.ndarray
        Integer labels of the same shape.
    """
    from napari_unet.engine.io.stacks import binarize_mask

    arr = np.asarray(data)
    if arr.dtype.kind == "b":
        return arr.astype(np.uint8)
    values = np.unique(arr)
    if values.size <= 2 and (values.size < 2 or values[0] == 0):
        return binarize_mask(arr)
    if arr.dtype.kind == "f":
        if np.all(np.isfinite(values)) and np.all(values == np.round(values)) and values.min() >= 0:
            return arr.astype(np.uint32 if values.max() > 65535 else np.uint16)
        return binarize_mask(arr)
    if arr.dtype.kind in "iu":
        return arr
    return binarize_mask(arr)


def contrast_limits(data: Any, low: float = 1.0, high: float = 99.8) -> list[float]:
    """1st/99.8th percentile display range, estimated from a subsample.

    At most about four million values are looked at (every n-th slice and
    pixel); a lazy (dask) stack only has its first, middle and last slices read.

    Parameters
    ----------
    data
        ``(Z, Y, X)`` numpy or dask array.
    low, high
        Percentiles.

    Returns
    -------
    list of float
        ``[low_value, high_value]`` with ``high_value > low_value``.
    """
    shape = tuple(int(s) for s in data.shape)
    z_count = shape[0] if len(shape) == 3 else 1
    if not isinstance(data, np.ndarray):  # lazy: only a few slices
        picks = sorted({0, z_count // 2, z_count - 1}) if len(shape) == 3 else []
        sample = np.stack([np.asarray(data[i]) for i in picks]) if picks else np.asarray(data)
    else:
        sample = data
    per_slice = int(np.prod(sample.shape[-2:]))
    budget = 4_000_000
    z_step = max(1, int(np.ceil(sample.shape[0] * per_slice / budget))) if sample.ndim == 3 else 1
    pixel_step = max(1, int(np.sqrt(per_slice / budget)))
    if sample.ndim == 3:
        sample = sample[::z_step, ::pixel_step, ::pixel_step]
    values = np.asarray(sample, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [0.0, 1.0]
    lo, hi = (float(v) for v in np.percentile(values, [low, high]))
    if hi <= lo:
        lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        hi = lo + 1.0
    return [lo, hi]
