"""Reading TIFF files: plain, ImageJ, OME, BigTIFF, compressed, eagerly or lazily.

A truncated or corrupted TIFF (an exception from tifffile, an error it only
logs, or pixel data past the end of the file) becomes a one-line
:class:`~napari_unet.engine.errors.UserInputError` naming the file. TIFF axis
letters decide what is colour: samples (``S``) become grey, other singleton axes
are squeezed.

One layout is ambiguous: a single page of 3 or 4 *separate* sample planes. That is
how ``tifffile.imwrite`` stores any ``(3, Y, X)`` or ``(4, Y, X)`` array of a grey
stack unless told otherwise (planar RGB, the 4th plane tagged alpha; tifffile
itself will store them as separate grey pages in a future version). Such a file
is read as slices when tifffile's own shape record says the array was
``(samples, Y, X)`` (see :func:`planes_as_slices`), else as colour; the reader can
be told which (``planes``), and the pairing of images and masks re-reads a file the
other way when only that reading matches its partner's slice count. A file taken
as colour is said in the log (INFO).

Never imports TensorFlow, napari or Qt.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UserInputError
from .arrays import as_stack, channel_max, rgb_to_grey
from .files import _fail, _reason

if TYPE_CHECKING:
    import dask.array

__all__ = ["PLANES", "colour_planes", "planes_as_slices"]

_log = logging.getLogger(__name__)

#: How a one-page planar colour TIFF is read: decided from the file, as slices, as colour.
PLANES = ("auto", "slices", "colour")

# Pages bigger than this are read lazily tile by tile instead of whole.
_LAZY_PAGE_BYTES = 2**28


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


def _native(arr: np.ndarray) -> np.ndarray:
    """Same values in native byte order (TIFFs may be big-endian)."""
    if arr.dtype.byteorder not in ("=", "|"):
        return arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _to_grey_stack(arr: np.ndarray, axes: str, name: str) -> np.ndarray:
    """Use TIFF axis letters: samples ('S') are colour; everything else squeezes."""
    if "S" in axes:
        arr = np.moveaxis(arr, axes.index("S"), -1)
        if arr.shape[-1] in (3, 4):
            _log.info(
                "%s is taken as colour (%d samples per pixel) and read as grey by luminance",
                name,
                arr.shape[-1],
            )
            arr = rgb_to_grey(arr)
        elif arr.shape[-1] == 2:  # grey + alpha
            _log.info("%s is taken as grey + alpha; the alpha samples are dropped", name)
            arr = arr[..., 0]
    return as_stack(arr, rgb=False, name=name)


def _planar_samples(tif: Any, series: Any) -> int | None:
    """The number of sample planes of a one-page planar (separate) 3- or 4-sample TIFF
    series, the layout that is either a colour image or that many grey slices."""
    if len(tif.pages) != 1 or series.axes != "SYX" or series.shape[0] not in (3, 4):
        return None
    page = tif.pages[0]
    if int(getattr(page, "planarconfig", 1)) != 2:  # 2 = separate planes
        return None
    return int(series.shape[0])


def _shaped_as_planes(tif: Any, series: Any) -> bool:
    """True if tifffile's shape record says the array written was ``(samples, Y, X)``."""
    try:
        shaped = tif.shaped_metadata or ()
    except Exception:  # an unreadable description: no record
        return False
    return bool(shaped) and list(shaped[0].get("shape") or ()) == list(series.shape)


def planes_as_slices(tif: Any, series: Any, planes: str = "auto") -> bool:
    """Whether a series of the ambiguous planar layout is read as grey slices.

    Parameters
    ----------
    tif, series
        An open ``tifffile.TiffFile`` and its series.
    planes
        ``auto``: as slices when tifffile recorded the array as ``(samples, Y, X)``
        (what plain ``tifffile.imwrite`` of a 3- or 4-slice stack writes); ``slices``
        or ``colour`` decide.
    """
    if planes not in PLANES:
        raise ValueError(f"planes must be one of {PLANES}, got {planes!r}")
    if planes == "colour" or _planar_samples(tif, series) is None:
        return False
    return planes == "slices" or _shaped_as_planes(tif, series)


def colour_planes(path: str | Path) -> int | None:
    """The number of planes of a TIFF of the ambiguous planar layout, None for any
    other file (a partner's slice count then decides how to read it)."""
    import tifffile

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            return _planar_samples(tif, tif.series[0]) if tif.series else None
    except Exception:  # not a readable TIFF: not ambiguous
        return None


def _read_tiff(path: Path, colour: str = "grey", planes: str = "auto") -> np.ndarray:
    """Read a whole TIFF as ``(Z, Y, X)``; `colour` ``"max"`` takes the channel max;
    `planes` decides the ambiguous planar layout (see :func:`planes_as_slices`)."""
    import tifffile

    with _catch_tiff_errors(path), tifffile.TiffFile(path) as tif:
        series = _tiff_series(tif)
        for s in series:
            _check_tiff_extent(path, s.pages)
        if len(series) == 1:
            arr, axes = series[0].asarray(), series[0].axes
            if planes_as_slices(tif, series[0], planes):
                axes = axes.replace("S", "Q")
        else:
            arr, axes = np.stack([s.asarray() for s in series]), "Q" + series[0].axes
    arr = _native(arr)
    if colour == "max" and "S" in axes:
        arr = np.moveaxis(arr, axes.index("S"), -1)
        arr = channel_max(arr)
        axes = axes.replace("S", "")
    return _to_grey_stack(arr, axes, str(path))


def _lazy_tiff(path: Path) -> tuple[dask.array.Array, str]:
    """A dask array over the first series (one chunk per page, or per tile for
    very large pages) and its TIFF axis letters; the file stays open."""
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
            axes = series.axes
            if planes_as_slices(tif, series):
                axes = axes.replace("S", "Q")
    except BaseException:
        if tif is not None:
            tif.close()
        raise
    return arr, axes
