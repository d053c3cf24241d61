"""Writing predictions: TIFF, ``.npy``, PNG slices or a run-length-encoded CSV.

The RLE CSV is the common challenge submission format: one row per image, pixels
numbered 1, 2, ... from top to bottom, then left to right (column-major), and the
foreground written as space-separated ``start length`` pairs. The header is Kaggle's
ultrasound nerve segmentation ``img,pixels`` by default, or ``ImageId,EncodedPixels``
(:data:`RLE_HEADERS`). An empty mask has an empty second column. :func:`read_rle_csv`
reads either header and decodes the file back exactly.

Every write is atomic (temporary name, then rename). No TensorFlow.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, atomic_write_text
from ..errors import UserInputError

__all__ = [
    "RLE_HEADER",
    "RLE_HEADERS",
    "decode_rle",
    "encode_rle",
    "export_format",
    "prediction_target",
    "read_rle_csv",
    "write_npy",
    "write_png",
    "write_prediction",
    "write_rle_csv",
]

#: Header row of the RLE CSV by default (Kaggle ultrasound nerve segmentation).
RLE_HEADER = ("img", "pixels")
#: The headers written and read: ``predict.csv_columns`` picks one.
RLE_HEADERS = (RLE_HEADER, ("ImageId", "EncodedPixels"))


def _rle_header(header: str | Sequence[str]) -> tuple[str, str]:
    """``"img,pixels"`` or a pair of column names as one of :data:`RLE_HEADERS`."""
    columns = tuple(c.strip() for c in (header.split(",") if isinstance(header, str) else header))
    if columns not in RLE_HEADERS:
        known = " or ".join(",".join(h) for h in RLE_HEADERS)
        raise UserInputError(f"RLE CSV columns must be {known}, got {','.join(columns)}")
    return columns  # type: ignore[return-value]


def encode_rle(mask: np.ndarray) -> str:
    """Run-length encode one 2D mask (nonzero = foreground).

    Parameters
    ----------
    mask
        ``(Y, X)`` array.

    Returns
    -------
    str
        ``"start length start length ..."`` with 1-based starts in column-major
        order; ``""`` for an empty mask.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise UserInputError(f"RLE encodes one 2D mask, got shape {mask.shape}")
    pixels = np.concatenate([[False], mask.flatten(order="F") != 0, [False]])
    changes = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1
    starts, ends = changes[0::2], changes[1::2]
    return " ".join(f"{s} {e - s}" for s, e in zip(starts, ends))


def decode_rle(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """Decode :func:`encode_rle` output into a uint8 ``{0, 1}`` ``(Y, X)`` mask.

    Raises
    ------
    UserInputError
        If the text is not ``start length`` pairs inside the image.
    """
    height, width = (int(s) for s in shape)
    flat = np.zeros(height * width, dtype=np.uint8)
    parts = rle.split()
    if len(parts) % 2:
        raise UserInputError("an RLE string must hold start/length pairs")
    try:
        numbers = np.array([int(p) for p in parts], dtype=np.int64).reshape(-1, 2)
    except ValueError:
        raise UserInputError(f"an RLE string holds a non-integer: {rle[:60]!r}") from None
    for start, length in numbers:
        if start < 1 or length < 0 or start - 1 + length > flat.size:
            raise UserInputError(f"RLE run {start} {length} lies outside a {height}x{width} image")
        flat[start - 1 : start - 1 + length] = 1
    return flat.reshape((height, width), order="F")


def write_rle_csv(
    path: str | Path,
    masks: np.ndarray,
    ids: Sequence[str] | None = None,
    overwrite: bool = True,
    header: str | Sequence[str] = RLE_HEADER,
) -> Path:
    """Write a ``(Z, Y, X)`` mask stack as an RLE CSV, one row per slice.

    Parameters
    ----------
    path
        Target ``.csv``.
    masks
        Masks (nonzero = foreground); a 2D mask is one row.
    ids
        Id of each slice (first column); default ``"0"``, ``"1"``, ...
    overwrite
        If False, an existing file is an error.
    header
        ``img,pixels`` (default) or ``ImageId,EncodedPixels``.
    """
    columns = _rle_header(header)
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    ids = [str(i) for i in range(masks.shape[0])] if ids is None else [str(i) for i in ids]
    if len(ids) != masks.shape[0]:
        raise UserInputError(f"{len(ids)} ids for {masks.shape[0]} slices")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for image_id, mask in zip(ids, masks):
        writer.writerow((image_id, encode_rle(mask)))
    path = Path(path).expanduser()
    atomic_write_text(path, buffer.getvalue(), overwrite=overwrite)
    return path


def read_rle_csv(path: str | Path, shape: tuple[int, int]) -> tuple[list[str], np.ndarray]:
    """Read an RLE CSV back into ids and a uint8 ``{0, 1}`` ``(Z, Y, X)`` stack.

    Parameters
    ----------
    path
        CSV with the header ``img,pixels`` or ``ImageId,EncodedPixels``.
    shape
        ``(Y, X)`` of every image (the format does not store it).
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(c.strip() for c in rows[0]) not in RLE_HEADERS:
        known = " or ".join(",".join(h) for h in RLE_HEADERS)
        raise UserInputError(f"{path} is not an RLE CSV (header {known})")
    ids: list[str] = []
    masks = []
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2:
            raise UserInputError(f"{path} line {number}: expected 2 columns, got {len(row)}")
        ids.append(row[0])
        masks.append(decode_rle(row[1], shape))
    stack = np.stack(masks) if masks else np.zeros((0, *shape), dtype=np.uint8)
    return ids, stack


def write_npy(path: str | Path, arr: np.ndarray, overwrite: bool = True) -> Path:
    """Save an array as ``.npy`` atomically (loadable with ``allow_pickle=False``)."""
    arr = np.asarray(arr)
    if arr.dtype.hasobject:
        raise UserInputError("object arrays cannot be written as .npy without pickle")
    path = Path(path).expanduser()
    with atomic_path(path, overwrite) as tmp, open(tmp, "wb") as handle:
        np.save(handle, arr, allow_pickle=False)
    return path


def write_png(
    folder: str | Path,
    arr: np.ndarray,
    overwrite: bool = False,
    prefix: str = "slice",
    names: Sequence[str] | None = None,
) -> Path:
    """Write a stack as PNG slices ``{prefix}0000.png`` ... in `folder` (atomic folder).

    uint8/uint16/bool are written as they are (bool as ``{0, 255}``); float data
    in ``[0, 1]`` (probabilities) is scaled to uint8 ``0..255``. With `names`, slice
    ``z`` is ``{names[z]}.png`` instead (e.g. the input files' names).
    """
    from .stacks import write_png_slices

    arr = np.asarray(arr)
    if arr.dtype.kind == "f":
        arr = np.round(np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255).astype(np.uint8)
    if names is None:
        return write_png_slices(folder, arr, overwrite=overwrite, prefix=prefix)
    return _write_named_png(Path(folder).expanduser(), arr, list(names), overwrite)


def _write_named_png(folder: Path, arr: np.ndarray, names: list[str], overwrite: bool) -> Path:
    """Slice ``z`` of `arr` as ``folder/{names[z]}.png``, in one atomic folder."""
    import imageio.v3 as iio

    from ..atomic import atomic_dir
    from .arrays import as_stack

    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    arr = as_stack(arr, rgb=False, name="data to write")
    if len(names) != arr.shape[0] or len(set(names)) != len(names):
        raise UserInputError(f"{len(names)} distinct PNG names needed for {arr.shape[0]} slices")
    if any(not n or "/" in n or "\\" in n for n in names):
        raise UserInputError("PNG names must be plain file names")
    with atomic_dir(folder, overwrite) as tmp:
        for name, plane in zip(names, arr):
            iio.imwrite(tmp / f"{name}.png", np.ascontiguousarray(plane))
    return folder


def export_format(output: str | Path) -> str:
    """``tiff``, ``npy``, ``csv`` or ``png`` (a folder) from an output path's spelling.

    A path ending in ``/`` or without a suffix is a folder of PNG slices.
    """
    text = str(output)
    if text.endswith(("/", "\\")):
        return "png"
    suffix = Path(text).suffix.lower()
    if suffix in (".tif", ".tiff"):
        return "tiff"
    if suffix in (".npy", ".csv"):
        return suffix[1:]
    if suffix == "":
        return "png"
    raise UserInputError(
        f"cannot tell the format of {output}: use .tif, .tiff, .npy, .csv or a folder"
    )


def prediction_target(
    output: str | Path, probabilities: bool = False, overwrite: bool = False
) -> tuple[Path, str]:
    """Check an output before predicting: its format, its kind of data, that it can be written.

    Returns
    -------
    path, format
        The file or folder (a trailing ``/`` removed) and :func:`export_format`.
    """
    from ..atomic import check_writable

    kind = export_format(output)
    if probabilities and kind == "csv":
        raise UserInputError("an RLE CSV holds masks, not probabilities; use .tif or .npy")
    path = Path(str(output).rstrip("/\\") or str(output)).expanduser()
    check_writable(path, overwrite=overwrite)
    return path, kind


def write_prediction(
    output: str | Path,
    mask01: np.ndarray | None = None,
    probability: np.ndarray | None = None,
    overwrite: bool = False,
    ids: Sequence[str] | None = None,
    csv_columns: str = ",".join(RLE_HEADER),
    names: Sequence[str] | None = None,
) -> tuple[Path, str]:
    """Write a mask (uint8 ``{0, 255}``; RLE for ``.csv``) or a probability map.

    Exactly one of `mask01` and `probability` is given. The format follows
    :func:`export_format`; a probability map cannot be run-length encoded. `ids`
    are the CSV's first column, `csv_columns` its header; `names` name the PNG files
    of a folder output (default ``slice0000.png`` ...).

    Returns
    -------
    path, format
        The written file or folder and its format name.
    """
    from .stacks import mask_to_uint8, write_tiff

    if (mask01 is None) == (probability is None):
        raise ValueError("give exactly one of mask01 and probability")
    path, kind = prediction_target(output, probability is not None, overwrite)
    if probability is not None:
        data = np.asarray(probability, dtype=np.float32)
    else:
        data = mask_to_uint8(mask01)
    if kind == "tiff":
        write_tiff(path, data, overwrite=overwrite)
    elif kind == "npy":
        write_npy(path, data, overwrite=overwrite)
    elif kind == "csv":
        write_rle_csv(path, data, ids=ids, overwrite=overwrite, header=csv_columns)
    else:
        write_png(path, data, overwrite=overwrite, names=names)
    return path, kind
