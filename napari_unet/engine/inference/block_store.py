"""Output stores of blockwise prediction: a zarr group and a TIFF stack.

The zarr group holds ``probability`` (uint8 ``round(255 p)``, float16 or
float32) and ``mask`` (uint8 ``{0, 255}``), chunked one slice deep; for a multiclass
model ``probability`` has a trailing class axis and ``mask`` holds the arg-max class
indices, for a regression model ``probability`` holds the float32 values (no mask); it is
written in a temporary ``<name>.zarr.tmp-XXXX`` folder beside the target and
renamed into place at the end (:func:`atomic_zarr`). Blocks own whole chunks,
so the single-process writer and cluster workers never write the same chunk
(:class:`ZarrTarget` is picklable: workers open the group by path).

A TIFF stack is written page by page under a temporary
``.<stem>.tmp-<pid>-<id><suffix>`` name and renamed likewise
(:class:`TiffTarget`); on a cluster it is copied from the finished zarr group
(:func:`zarr_to_tiff`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import (
    check_writable,
    fsync_dir,
    fsync_tree,
    rename_noreplace,
    replace_folder,
    write_error,
)
from ..errors import UserInputError
from .blocks import Block, BlockPlan, BlockwiseOptions, output_region

__all__ = [
    "TiffTarget",
    "ZarrTarget",
    "atomic_zarr",
    "create_group",
    "encode_mask",
    "encode_probability",
    "zarr_to_tiff",
]


# --------------------------------------------------------------------------- encoding


def encode_probability(probability: np.ndarray, dtype: str) -> np.ndarray:
    """float32 probability as stored: uint8 ``round(255 p)``, float16 or float32."""
    if dtype == "uint8":
        scaled = np.clip(probability, 0.0, 1.0) * 255.0
        return np.rint(scaled).astype(np.uint8)
    return probability.astype(dtype, copy=False)


def encode_mask(probability: np.ndarray, threshold: float) -> np.ndarray:
    """uint8 ``{0, 255}`` mask: probability above `threshold` (as in :class:`Prediction`)."""
    mask = (probability > threshold).astype(np.uint8)
    mask *= 255
    return mask


# --------------------------------------------------------------------------- zarr


@dataclass(frozen=True)
class ZarrTarget:
    """A zarr output group being written (picklable: workers open it by path)."""

    path: str
    probability_dtype: str
    write_probability: bool
    write_mask: bool
    threshold: float
    #: ``model.task``: what the block's output is (see the module docstring).
    task: str = "binary"

    def write(self, plan: BlockPlan, block: Block, probability: np.ndarray) -> None:
        """Write one block's probability and mask."""
        region = output_region(plan, block)
        arrays = _open_arrays(self.path)
        if self.task == "regression":  # the predicted values, as they are
            arrays["probability"][region] = probability.astype(np.float32, copy=False)
            return
        if self.task == "multiclass":  # class probabilities (z, y, x, K), arg-max labels
            if self.write_probability:
                stored = encode_probability(probability, self.probability_dtype)
                arrays["probability"][region] = stored
            if self.write_mask:
                arrays["mask"][region] = np.argmax(probability, axis=-1).astype(np.uint8)
            return
        if self.write_probability:
            arrays["probability"][region] = encode_probability(probability, self.probability_dtype)
        if self.write_mask:
            arrays["mask"][region] = encode_mask(probability, self.threshold)


_ARRAYS: dict[str, dict[str, Any]] = {}
_ARRAYS_LOCK = threading.Lock()


def _open_arrays(path: str) -> dict[str, Any]:
    """The zarr arrays of an output group, opened once per process."""
    import zarr

    with _ARRAYS_LOCK:
        if path not in _ARRAYS:
            group = zarr.open_group(path, mode="r+")
            _ARRAYS[path] = {name: group[name] for name in group.array_keys()}
        return _ARRAYS[path]


def _forget_arrays(path: str) -> None:
    """Drop the cached arrays of `path` (its folder was renamed or removed)."""
    with _ARRAYS_LOCK:
        _ARRAYS.pop(path, None)


def create_group(
    path: Path,
    plan: BlockPlan,
    options: BlockwiseOptions,
    attrs: dict[str, Any],
    task: str = "binary",
    classes: int = 1,
) -> None:
    """Create the output group at `path`: the arrays `options` asks for, shaped
    and chunked as `plan` says, with `attrs` under ``napari_unet``; a multiclass
    `probability` gets a trailing axis of `classes`, a regression output only a
    float32 `probability`."""
    import zarr

    group = zarr.open_group(str(path), mode="w")
    if hasattr(group, "create_array"):  # zarr 3: blosc-lz4 writes ~2x faster than zstd
        from zarr.codecs import BloscCodec

        def create(name: str, dtype: str, extra: tuple[int, ...] = ()) -> None:
            compressor = BloscCodec(cname="lz4", clevel=5)
            group.create_array(
                name,
                shape=(*plan.shape, *extra),
                chunks=(*plan.chunks, *extra),
                dtype=dtype,
                compressors=[compressor],
            )
    else:  # pragma: no cover - zarr 2

        def create(name: str, dtype: str, extra: tuple[int, ...] = ()) -> None:
            group.create_dataset(
                name, shape=(*plan.shape, *extra), chunks=(*plan.chunks, *extra), dtype=dtype
            )

    if task == "regression":
        create("probability", "float32")
    else:
        if options.write_probability:
            extra = (classes,) if task == "multiclass" else ()
            create("probability", options.probability_dtype, extra)
        if options.write_mask:
            create("mask", "uint8")
    group.attrs.update({"napari_unet": attrs})


@contextlib.contextmanager
def atomic_zarr(target: Path, overwrite: bool) -> Iterator[Path]:
    """A ``<name>.zarr.tmp-XXXX`` folder beside `target`, moved to it on success.

    Every chunk and metadata file is fsynced before the move, and the parent folder
    after it. An existing `target` is swapped for the new group in one step (only with
    `overwrite`); without `overwrite`, a `target` that appeared while predicting is
    never replaced (see :func:`~napari_unet.engine.atomic.rename_noreplace`).
    """
    check_writable(target, overwrite)
    tmp = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        _forget_arrays(str(tmp))  # no cached handle writes after the sync
        fsync_tree(tmp)
        if overwrite:
            replace_folder(tmp, target)
        else:
            try:
                rename_noreplace(tmp, target)
            except FileExistsError:
                raise UserInputError(
                    f"{target} appeared while predicting; it was not replaced "
                    "(choose another name or allow overwriting)"
                ) from None
        with contextlib.suppress(OSError):  # best effort: the group is complete and in place
            fsync_dir(target.parent)
    except BaseException as exc:
        _remove_group(tmp)
        if isinstance(exc, OSError):  # full disk, read-only folder: one clear line
            raise write_error(target, exc) from None
        raise
    finally:
        _forget_arrays(str(tmp))


def _remove_group(tmp: Path, settle: float = 0.05, patience: float = 2.0) -> None:
    """Delete a failed temporary group, also what zarr writes into it a moment later.

    zarr writes the chunks of one assignment concurrently; when one write fails the
    error arrives while others are still running, and they re-create their folders.
    The folder is removed until it stays gone for `settle` seconds (at most `patience`).
    """
    deadline = time.monotonic() + patience
    while True:
        shutil.rmtree(tmp, ignore_errors=True)
        time.sleep(settle)
        if not tmp.exists() or time.monotonic() > deadline:
            return


# --------------------------------------------------------------------------- tiff


class TiffTarget:
    """Writes a TIFF stack page by page under a temporary name; slices are
    appended when every block of their slice range has arrived."""

    def __init__(
        self,
        path: Path,
        plan: BlockPlan,
        options: BlockwiseOptions,
        threshold: float,
        task: str = "binary",
    ):
        import tifffile

        from ..io.stacks import BIGTIFF_THRESHOLD

        self.path = path
        self.plan = plan
        self.task = task
        self.content = "probability" if task == "regression" else options.tiff_content
        if task == "multiclass" and self.content == "probability":
            raise UserInputError(
                "a multiclass TIFF holds the class labels; write the class probabilities "
                "to a .zarr output"
            )
        dtype = "float32" if task == "regression" else options.tiff_dtype
        self.dtype = np.dtype("uint8" if self.content == "mask" else dtype)
        self.threshold = threshold
        check_writable(path, options.overwrite)
        self.overwrite = options.overwrite
        self.tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{id(self):x}{path.suffix}")
        nbytes = int(np.prod(plan.shape, dtype=np.int64)) * self.dtype.itemsize
        self._writer = tifffile.TiffWriter(self.tmp, bigtiff=nbytes > BIGTIFF_THRESHOLD)
        self._band: np.ndarray | None = None
        self._band_z: tuple[int, int] | None = None
        self._missing = 0
        self._written = 0

    def _encode(self, probability: np.ndarray) -> np.ndarray:
        if self.task == "multiclass":
            if probability.dtype == np.uint8 and probability.ndim == 3:  # labels already
                return probability
            return np.argmax(probability, axis=-1).astype(np.uint8)
        if self.task == "regression":
            return probability.astype(np.float32, copy=False)
        if self.content == "mask":
            return encode_mask(probability, self.threshold)
        return encode_probability(probability, str(self.dtype))

    def add(self, block: Block, probability: np.ndarray) -> None:
        """Take one block (blocks must arrive slice-range by slice-range)."""
        data = self._encode(probability)
        if self.plan.resize is not None or len(self.plan.blocks) == self._bands():
            self._append(data)
            return
        if self._band_z != block.z:
            self._band_z = block.z
            depth = block.z[1] - block.z[0]
            self._band = np.zeros((depth, *self.plan.shape[1:]), self.dtype)
            self._missing = sum(1 for b in self.plan.blocks if b.z == block.z)
        assert self._band is not None
        self._band[:, slice(*block.y), slice(*block.x)] = data
        self._missing -= 1
        if self._missing == 0:
            self._append(self._band)
            self._band = None

    def _bands(self) -> int:
        return len({b.z for b in self.plan.blocks})

    def _append(self, slices: np.ndarray) -> None:
        for page in slices:
            self._writer.write(
                np.ascontiguousarray(page),
                contiguous=True,
                photometric="minisblack",
                metadata={"axes": "ZYX"},
            )
            self._written += 1

    def finish(self) -> Path:
        """Close the file and rename it into place."""
        self._writer.close()
        if self._written != self.plan.shape[0]:
            raise UserInputError(
                f"internal error: {self._written} of {self.plan.shape[0]} TIFF pages written"
            )
        fsync_tree(self.tmp)
        if self.overwrite:
            os.replace(self.tmp, self.path)
        else:
            try:
                rename_noreplace(self.tmp, self.path)
            except FileExistsError:
                raise UserInputError(
                    f"{self.path} appeared while predicting; it was not replaced "
                    "(choose another name or allow overwriting)"
                ) from None
        with contextlib.suppress(OSError):  # best effort: the file is complete and in place
            fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file (a no-op after :meth:`finish`)."""
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(OSError):
            self.tmp.unlink()


def zarr_to_tiff(path: Path, plan: BlockPlan, tiff: TiffTarget) -> None:
    """Append the pages of a finished zarr output to the TIFF, slice range by range."""
    import zarr

    group = zarr.open_group(str(path), mode="r")
    for block in plan.blocks:
        if block.y[0] != 0 or block.x[0] != 0:
            continue
        region = slice(*block.z)
        if tiff.content == "mask" and "mask" in group:
            data = np.asarray(group["mask"][region])
            tiff._append(data)
        elif "probability" in group:
            stored = np.asarray(group["probability"][region])
            prob = stored.astype(np.float32)
            if stored.dtype == np.uint8 and tiff.task != "regression":
                prob /= 255.0
            tiff._append(tiff._encode(prob))
