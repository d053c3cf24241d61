"""Per-slice content hashes of label stacks, and an ``.npz`` written slice by slice.

The dock tracks which slices of a corrections layer the user changed by comparing
per-slice digests (:func:`slice_digests`) with those taken when the prediction was
written, instead of keeping a copy of the volume; autosaves of lazily read (zarr,
dask) labels are written one slice at a time (:func:`savez_by_slice`), so neither
needs more than one slice in memory. numpy only: no napari, Qt or TensorFlow.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = [
    "combined_digest",
    "is_lazy",
    "iter_planes",
    "savez_by_slice",
    "slice_digest",
    "slice_digests",
]


def is_lazy(obj: Any) -> bool:
    """True for dask/zarr (and other non-numpy) arrays that should be read slice by slice."""
    return not isinstance(obj, np.ndarray) and hasattr(obj, "shape") and hasattr(obj, "dtype")


def _plane(labels: Any, z: int) -> np.ndarray:
    """Slice `z` of a stack as a C-contiguous numpy array (dask computed in this thread)."""
    part = labels[z]
    if hasattr(part, "compute"):
        part = part.compute(scheduler="synchronous")
    return np.ascontiguousarray(np.asarray(part))


def iter_planes(labels: Any) -> Iterable[np.ndarray]:
    """The stack's slices one at a time (a 0-d or 1-slice array as one piece)."""
    if len(labels.shape) < 3:
        whole = labels[...] if is_lazy(labels) else labels
        if hasattr(whole, "compute"):
            whole = whole.compute(scheduler="synchronous")
        yield np.ascontiguousarray(np.asarray(whole))
        return
    for z in range(int(labels.shape[0])):
        yield _plane(labels, z)


def slice_digest(plane: Any) -> str:
    """Content hash of one slice (any array ``np.asarray`` reads; hashing releases the GIL)."""
    arr = np.ascontiguousarray(np.asarray(plane))
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{arr.shape}{arr.dtype.str}".encode())
    digest.update(arr.data)
    return digest.hexdigest()


def slice_digests(labels: Any, slices: Iterable[int] | None = None) -> dict[int, str]:
    """:func:`slice_digest` of slices of a ``(Z, Y, X)`` stack (2D: slice 0 is the image).

    Parameters
    ----------
    labels
        numpy, zarr or dask stack; lazy stacks are read one slice at a time.
    slices
        Which slices (default: all).
    """
    if len(labels.shape) < 3:
        return {0: slice_digest(next(iter(iter_planes(labels))))}
    chosen = range(int(labels.shape[0])) if slices is None else slices
    return {int(z): slice_digest(_plane(labels, int(z))) for z in chosen}


def combined_digest(digests: Iterable[str | None], extra: str = "") -> str:
    """One hash of per-slice digests (in slice order) and `extra` (e.g. shape and dtype)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(extra.encode())
    for item in digests:
        digest.update((item or "?").encode())
    return digest.hexdigest()


def savez_by_slice(handle: Any, labels: Any, edited: np.ndarray, header: str) -> None:
    """An ``np.load``-compatible ``.npz`` written one slice at a time (bounded memory)."""
    dtype = np.dtype(labels.dtype)
    shape = tuple(int(n) for n in labels.shape)
    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        with zf.open("labels.npy", "w", force_zip64=True) as out:
            np.lib.format.write_array_header_2_0(
                out,
                {
                    "descr": np.lib.format.dtype_to_descr(dtype),
                    "fortran_order": False,
                    "shape": shape,
                },
            )
            for plane in iter_planes(labels):
                out.write(plane.astype(dtype, copy=False).tobytes())
        for name, value in (("edited_slices", edited), ("header", np.array(header))):
            with zf.open(f"{name}.npy", "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asanyarray(value), allow_pickle=False)
