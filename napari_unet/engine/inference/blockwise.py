"""Blockwise prediction of volumes larger than memory, to zarr (and TIFF).

The volume is cut into blocks: runs of whole slices (the default while a slice
has at most :data:`WHOLE_SLICE_PIXELS` pixels), or ``(z, Y-block, X-block)``
boxes for huge slices. Every block is predicted with the tiles of the *global*
tile grid of a slice that touch it -- the block plus a halo reaching to the
edges of those tiles -- and the same blending as in-memory tiled prediction
(:func:`~napari_unet.engine.inference.predict.predict_tiles`), so the result equals
:func:`~napari_unet.engine.inference.predict.predict` given the same normalization.
The normalization percentiles come from a strided subsample of the whole
volume (:func:`~napari_unet.engine.io.lazy.volume_stats`).

Only one block (plus the next one being read, and the previous one being
written) is in memory at a time, whatever the volume size. Results go to a
zarr group (``probability`` as uint8 ``round(255 p)``, float16 or float32, and
``mask`` as uint8 ``{0, 255}``, chunked one slice deep) written in a temporary
``<name>.zarr.tmp-XXXX`` folder renamed into place at the end; a TIFF stack is
written page by page under a temporary name and renamed likewise.

The same blocks run on a ``dask.distributed`` cluster when a client is given
(see :mod:`napari_unet.engine.inference.distributed`): every worker loads the model once
and writes its blocks straight into the zarr output.

TensorFlow is imported only when a block is predicted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..atomic import check_writable
from ..config import DataConfig, PredictConfig
from ..data.preprocess import apply_normalization, resize_stack
from ..errors import UserInputError
from ..events import PredictEvent, drain
from ..io.lazy import as_lazy, read_region, volume_stats
from .tiling import Tile, blend_window, pad_to_multiple, padded_indices, tile_grid

__all__ = [
    "BlockPlan",
    "BlockwiseOptions",
    "BlockwiseResult",
    "make_plan",
    "predict_blockwise",
    "predict_blockwise_iter",
    "predict_lazy_iter",
]

#: Slices up to this many pixels are predicted whole (blocks are runs of slices).
WHOLE_SLICE_PIXELS = 4096 * 4096
#: Default block side along Y and X for larger slices.
DEFAULT_BLOCK_SIZE = 4096
#: Blocks of whole slices hold about this many pixels (several slices if small).
TARGET_BLOCK_PIXELS = 2**22
ProbabilityDtype = Literal["uint8", "float16", "float32"]
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf2", ".tf8")


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class BlockwiseOptions:
    """How a volume is cut into blocks and what is written.

    Attributes
    ----------
    block_slices
        Slices per block; None = about :data:`TARGET_BLOCK_PIXELS` pixels per
        block (a whole number of the source's z-chunks where possible).
    block_size
        Side of a block along Y and X; None = whole slices up to
        :data:`WHOLE_SLICE_PIXELS` pixels, else :data:`DEFAULT_BLOCK_SIZE`.
        Every block boundary costs about one extra row/column of tiles.
    probability_dtype
        ``uint8`` (``round(255 p)``), ``float16`` or ``float32``.
    write_probability, write_mask
        Which arrays the zarr output holds (at least one).
    tiff
        Also write a TIFF stack here, page by page (None: no TIFF).
    tiff_content
        ``mask`` (uint8 ``{0, 255}``) or ``probability`` (`tiff_dtype`).
    tiff_dtype
        Probability dtype in the TIFF (default float32, like in-memory prediction).
    z_range
        Predict only slices ``z_range[0]:z_range[1]`` (the output holds just
        those); normalization statistics still come from the whole volume.
    stats
        Normalization ``(lo, hi)`` to use instead of :func:`volume_stats`.
    overwrite
        Replace existing outputs.
    prefetch
        Read the next block and write the previous one in background threads.
    """

    block_slices: int | None = None
    block_size: int | None = None
    probability_dtype: ProbabilityDtype = "uint8"
    write_probability: bool = True
    write_mask: bool = True
    tiff: str | Path | None = None
    tiff_content: Literal["mask", "probability"] = "mask"
    tiff_dtype: ProbabilityDtype = "float32"
    z_range: tuple[int, int] | None = None
    stats: tuple[Any, Any] | None = None
    overwrite: bool = False
    prefetch: bool = True

    def __post_init__(self) -> None:
        if self.block_slices is not None and self.block_slices < 1:
            raise UserInputError(f"block_slices must be at least 1, got {self.block_slices}")
        if self.block_size is not None and self.block_size < 16:
            raise UserInputError(f"block_size must be at least 16 pixels, got {self.block_size}")
        for name in ("probability_dtype", "tiff_dtype"):
            if getattr(self, name) not in ("uint8", "float16", "float32"):
                raise UserInputError(
                    f"{name} must be uint8, float16 or float32, got {getattr(self, name)!r}"
                )
        if not (self.write_probability or self.write_mask):
            raise UserInputError("nothing to write: enable the probability or the mask")


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Block:
    """One block: output slices ``z``, rows ``y`` and columns ``x`` (half-open)
    in network-input coordinates, and the indices of the grid tiles it needs."""

    index: int
    z: tuple[int, int]
    y: tuple[int, int]
    x: tuple[int, int]
    tiles: tuple[int, ...]


@dataclass(frozen=True)
class BlockPlan:
    """Everything a block needs besides the data: shapes, tiles, blocks.

    Attributes
    ----------
    shape
        Output ``(Z, Y, X)`` (the source's slices ``z_offset:z_offset + Z``).
    z_offset
        First source slice.
    net_shape
        Slice shape fed to the network (``resize`` or the source's).
    multiple
        The network's size multiple.
    resize
        ``DataConfig.resize`` (then blocks are whole slices).
    tiles, windows
        The global tile grid of a padded slice and its blending windows.
    rows, cols
        Index maps of the padding (:func:`~napari_unet.engine.inference.tiling.padded_indices`).
    blocks
        All blocks, slice-major.
    chunks
        Chunk shape of the zarr output (one slice deep, block-aligned).
    """

    shape: tuple[int, int, int]
    z_offset: int
    net_shape: tuple[int, int]
    multiple: int
    resize: tuple[int, int] | None
    tiles: tuple[Tile, ...]
    windows: tuple[np.ndarray, ...]
    rows: np.ndarray
    cols: np.ndarray
    blocks: tuple[Block, ...]
    chunks: tuple[int, int, int]
    batch_size: int
    tta: bool

    @property
    def total_tiles(self) -> int:
        """Network tiles over all blocks (the progress total)."""
        return sum(block_tiles(self, b) for b in self.blocks)

    def read_window(self, block: Block) -> tuple[slice, slice, slice]:
        """Source region (in source coordinates) that `block` reads."""
        z0, z1 = block.z[0] + self.z_offset, block.z[1] + self.z_offset
        if self.resize is not None:
            return slice(z0, z1), slice(None), slice(None)
        box_y, box_x = _tile_box(self, block)
        rows = self.rows[box_y[0] : box_y[1]]
        cols = self.cols[box_x[0] : box_x[1]]
        return (
            slice(z0, z1),
            slice(int(rows.min()), int(rows.max()) + 1),
            slice(int(cols.min()), int(cols.max()) + 1),
        )


def block_tiles(plan: BlockPlan, block: Block) -> int:
    """Network tiles `block` runs."""
    return (block.z[1] - block.z[0]) * len(block.tiles)


def _tile_box(plan: BlockPlan, block: Block) -> tuple[tuple[int, int], tuple[int, int]]:
    tiles = [plan.tiles[i] for i in block.tiles]
    return (
        (min(t.y for t in tiles), max(t.y + t.height for t in tiles)),
        (min(t.x for t in tiles), max(t.x + t.width for t in tiles)),
    )


def _axis_blocks(length: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, length)) for start in range(0, length, size)]


def _auto_block_slices(volume: Any, slice_pixels: int, depth: int) -> int:
    """About TARGET_BLOCK_PIXELS per block, in whole source z-chunks when they are small."""
    target = max(1, TARGET_BLOCK_PIXELS // max(slice_pixels, 1))
    chunks = getattr(volume, "chunks", None)
    chunk_z = int(chunks[0][0]) if chunks and isinstance(chunks[0], tuple) else 1
    if 1 < chunk_z and chunk_z * slice_pixels <= 4 * TARGET_BLOCK_PIXELS:
        target = chunk_z * max(1, target // chunk_z)
    return min(target, depth)


def make_plan(
    volume: Any,
    data_config: DataConfig,
    config: PredictConfig,
    multiple: int,
    options: BlockwiseOptions | None = None,
) -> BlockPlan:
    """Cut `volume` (``(Z, Y, X)``) into blocks for a network of size `multiple`."""
    options = options or BlockwiseOptions()
    depth, height, width = (int(s) for s in volume.shape)
    z0, z1 = options.z_range or (0, depth)
    if not 0 <= z0 < z1 <= depth:
        raise UserInputError(f"z_range {options.z_range} is outside the volume's {depth} slices")
    depth = z1 - z0
    resize = tuple(data_config.resize) if data_config.resize is not None else None
    net_shape = resize or (height, width)
    rows, cols = padded_indices(net_shape, multiple)
    padded = (len(rows), len(cols))
    tiles = tuple(tile_grid(padded, config.tile_size, config.overlap, multiple))
    windows = tuple(blend_window(t, config.overlap) for t in tiles)
    side = options.block_size
    if resize is not None or (side is None and height * width <= WHOLE_SLICE_PIXELS):
        ys, xs = [(0, net_shape[0])], [(0, net_shape[1])]
    else:
        side = side or DEFAULT_BLOCK_SIZE
        ys, xs = _axis_blocks(height, side), _axis_blocks(width, side)
    if options.block_slices is not None:
        block_slices = min(options.block_slices, depth)
    else:
        pixels = (ys[0][1] - ys[0][0]) * (xs[0][1] - xs[0][0])
        block_slices = _auto_block_slices(volume, pixels, depth)
    blocks = []
    for zs in _axis_blocks(depth, block_slices):
        for y in ys:
            for x in xs:
                needed = tuple(
                    i
                    for i, t in enumerate(tiles)
                    if t.y < y[1] and t.y + t.height > y[0] and t.x < x[1] and t.x + t.width > x[0]
                )
                blocks.append(Block(len(blocks), zs, y, x, needed))
    out_y = ys[0][1] - ys[0][0] if resize is None else height
    out_x = xs[0][1] - xs[0][0] if resize is None else width
    return BlockPlan(
        shape=(depth, height, width),
        z_offset=z0,
        net_shape=net_shape,
        multiple=multiple,
        resize=resize,
        tiles=tiles,
        windows=windows,
        rows=rows,
        cols=cols,
        blocks=tuple(blocks),
        chunks=(1, out_y, out_x),
        batch_size=config.batch_size,
        tta=config.tta,
    )


# --------------------------------------------------------------------------- one block


def block_stats(stats: tuple[np.ndarray, np.ndarray], block: Block) -> tuple[np.ndarray, ...]:
    """The (lo, hi) values of `block`'s slices (per-slice stats) or the global pair."""
    lo, hi = (np.asarray(s, dtype=np.float64).reshape(-1) for s in stats)
    if lo.size == 1:
        return lo, hi
    return lo[block.z[0] : block.z[1]], hi[block.z[0] : block.z[1]]


def prepare_block(
    raw: np.ndarray, plan: BlockPlan, block: Block, stats: tuple[np.ndarray, ...]
) -> np.ndarray:
    """Normalize the raw source region of `block` and lay it out as the padded
    slices' tile box (what :func:`~napari_unet.engine.inference.predict.predict_tiles` reads)."""
    lo, hi = stats
    normalized = apply_normalization(raw, lo, hi)
    if plan.resize is not None:
        normalized = resize_stack(normalized, plan.resize, order=1)
        return pad_to_multiple(normalized, plan.multiple)[0]
    window = plan.read_window(block)
    box_y, box_x = _tile_box(plan, block)
    rows = plan.rows[box_y[0] : box_y[1]] - window[1].start
    cols = plan.cols[box_x[0] : box_x[1]] - window[2].start
    if rows.size == raw.shape[1] and (rows == np.arange(rows.size)).all():
        out = normalized
    else:
        out = np.take(normalized, rows, axis=1)
    if cols.size != raw.shape[2] or not (cols == np.arange(cols.size)).all():
        out = np.take(out, cols, axis=2)
    return np.ascontiguousarray(out, dtype=np.float32)


def predict_block(
    runner: Callable[[np.ndarray], np.ndarray],
    region: np.ndarray,
    plan: BlockPlan,
    block: Block,
    stop: threading.Event | None = None,
) -> Generator[PredictEvent, None, np.ndarray]:
    """Predict one prepared block; returns float32 ``(z, y, x)`` of the block
    in output coordinates (back at the source size when resizing)."""
    from .predict import predict_tiles

    tiles = [plan.tiles[i] for i in block.tiles]
    windows = [plan.windows[i] for i in block.tiles]
    if plan.resize is not None:
        crop = (slice(0, plan.net_shape[0]), slice(0, plan.net_shape[1]))
    else:
        crop = (slice(*block.y), slice(*block.x))
    depth = block.z[1] - block.z[0]
    probability = yield from predict_tiles(
        runner, region.__getitem__, depth, tiles, windows, crop, plan.batch_size, stop
    )
    if plan.resize is not None:
        probability = resize_stack(probability, plan.shape[1:], order=1).astype(np.float32)
    return probability


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


def output_region(plan: BlockPlan, block: Block) -> tuple[slice, slice, slice]:
    """Where `block` goes in the output arrays."""
    if plan.resize is not None:
        return slice(*block.z), slice(None), slice(None)
    return slice(*block.z), slice(*block.y), slice(*block.x)


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class ZarrTarget:
    """A zarr output group being written (picklable: workers open it by path)."""

    path: str
    probability_dtype: str
    write_probability: bool
    write_mask: bool
    threshold: float

    def write(self, plan: BlockPlan, block: Block, probability: np.ndarray) -> None:
        """Write one block's probability and mask."""
        region = output_region(plan, block)
        arrays = _open_arrays(self.path)
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
    with _ARRAYS_LOCK:
        _ARRAYS.pop(path, None)


def _create_group(
    path: Path, plan: BlockPlan, options: BlockwiseOptions, attrs: dict[str, Any]
) -> None:
    import zarr

    group = zarr.open_group(str(path), mode="w")
    if hasattr(group, "create_array"):  # zarr 3: blosc-lz4 writes ~2x faster than zstd
        from zarr.codecs import BloscCodec

        def create(name: str, dtype: str) -> None:
            compressor = BloscCodec(cname="lz4", clevel=5)
            group.create_array(
                name, shape=plan.shape, chunks=plan.chunks, dtype=dtype, compressors=[compressor]
            )
    else:  # pragma: no cover - zarr 2

        def create(name: str, dtype: str) -> None:
            group.create_dataset(name, shape=plan.shape, chunks=plan.chunks, dtype=dtype)

    if options.write_probability:
        create("probability", options.probability_dtype)
    if options.write_mask:
        create("mask", "uint8")
    group.attrs.update({"napari_unet": attrs})


class _TiffTarget:
    """Writes a TIFF stack page by page under a temporary name; slices are
    appended when every block of their slice range has arrived."""

    def __init__(self, path: Path, plan: BlockPlan, options: BlockwiseOptions, threshold: float):
        import tifffile

        from ..io.stacks import BIGTIFF_THRESHOLD

        self.path = path
        self.plan = plan
        self.content = options.tiff_content
        self.dtype = np.dtype("uint8" if self.content == "mask" else options.tiff_dtype)
        self.threshold = threshold
        check_writable(path, options.overwrite)
        self.tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{id(self):x}{path.suffix}")
        nbytes = int(np.prod(plan.shape, dtype=np.int64)) * self.dtype.itemsize
        self._writer = tifffile.TiffWriter(self.tmp, bigtiff=nbytes > BIGTIFF_THRESHOLD)
        self._band: np.ndarray | None = None
        self._band_z: tuple[int, int] | None = None
        self._missing = 0
        self._written = 0

    def _encode(self, probability: np.ndarray) -> np.ndarray:
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
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(OSError):
            self.tmp.unlink()


@contextlib.contextmanager
def _atomic_zarr(target: Path, overwrite: bool) -> Iterator[Path]:
    """A ``<name>.zarr.tmp-XXXX`` folder beside `target`, renamed to it on success."""
    check_writable(target, overwrite)
    tmp = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        _forget_arrays(str(tmp))


# --------------------------------------------------------------------------- result


@dataclass
class BlockwiseResult:
    """What blockwise prediction wrote.

    Attributes
    ----------
    path
        The zarr group (None if only a TIFF was asked for, or when stopped).
    tiff
        The TIFF stack, if one was written.
    shape
        Output ``(Z, Y, X)``.
    threshold
        Mask threshold used.
    stats
        Normalization ``(lo, hi)`` used.
    elapsed
        Seconds.
    stopped
        True if a stop request ended the run (nothing was written then).
    probability_dtype
        dtype of the stored probability.
    """

    path: Path | None
    tiff: Path | None
    shape: tuple[int, int, int]
    threshold: float
    stats: tuple[np.ndarray, np.ndarray]
    elapsed: float
    stopped: bool = False
    probability_dtype: str = "uint8"
    tiles: int = 0
    blocks: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def _array(self, name: str) -> Any:
        import dask.array as da
        import zarr

        if self.path is None:
            raise UserInputError("no zarr output was written")
        return da.from_zarr(zarr.open_array(str(self.path / name), mode="r"))

    @property
    def probability(self) -> Any:
        """Lazy dask array of the stored probability (stored dtype)."""
        return self._array("probability")

    @property
    def mask(self) -> Any:
        """Lazy dask array of the stored mask (uint8 ``{0, 255}``)."""
        return self._array("mask")

    def probability_float(self) -> Any:
        """Lazy float32 probability in ``[0, 1]`` (uint8 storage rescaled)."""
        prob = self.probability
        if prob.dtype == np.uint8:
            return prob.astype(np.float32) / np.float32(255)
        return prob.astype(np.float32)

    def labels(self) -> Any:
        """Lazy uint8 ``{0, 1}`` mask (for a napari Labels layer)."""
        return (self.mask > 0).astype(np.uint8)


# --------------------------------------------------------------------------- driver


def _resolve_output(
    output: str | Path | None, options: BlockwiseOptions
) -> tuple[Path | None, Path | None]:
    """(zarr target or None, tiff target or None)."""
    tiff = Path(options.tiff).expanduser() if options.tiff is not None else None
    if output is None:
        folder = Path(tempfile.mkdtemp(prefix="napari-unet-"))
        return folder / "prediction.zarr", tiff
    output = Path(output).expanduser()
    if output.suffix.lower() in TIFF_SUFFIXES:
        if tiff is not None and tiff != output:
            raise UserInputError("give the TIFF output either as `output` or as options.tiff")
        return None, output
    if output.suffix.lower() != ".zarr":
        raise UserInputError(
            f"blockwise output {output} must end in .zarr (or .tif/.tiff for a TIFF stack)"
        )
    return output, tiff


def predict_blockwise_iter(
    model: Any,
    source: Any,
    output: str | Path | None = None,
    config: PredictConfig | None = None,
    stop: threading.Event | None = None,
    options: BlockwiseOptions | None = None,
    client: Any = None,
) -> Generator[PredictEvent, None, BlockwiseResult]:
    """Predict a volume block by block into zarr (and/or a TIFF stack).

    Parameters
    ----------
    model
        A :class:`~napari_unet.engine.model.model_folder.LoadedModel` or a model
        folder (a folder is required with `client`).
    source
        Path (TIFF, zarr, OME-Zarr, folder of slices), dask, zarr or numpy array.
    output
        ``.zarr`` folder (``probability`` and ``mask`` arrays), a ``.tif``
        stack (the mask, or the probability with ``options.tiff_content``), or
        None: a new folder under the system's temporary directory.
    config
        Tiling options (default: the model's ``predict`` section).
    stop
        Set it to end after the current batch; the outputs are then discarded.
    options
        Blocks and outputs (:class:`BlockwiseOptions`).
    client
        A ``dask.distributed.Client``: run the blocks on its cluster.

    Yields
    ------
    PredictEvent
        After each batch of tiles (after each block on a cluster).

    Returns
    -------
    BlockwiseResult
        Paths written and the statistics used.
    """
    started = time.perf_counter()
    options = options or BlockwiseOptions()
    zarr_path, tiff_path = _resolve_output(output, options)
    loaded, folder, model_config = _resolve_model(model, need_folder=client is not None)
    config = config or model_config.predict
    volume = as_lazy(source, "images")
    plan = make_plan(volume, model_config.data, config, model_config.model.multiple, options)
    stats = _stats(volume, plan, model_config.data, options)
    attrs = {
        "model": str(folder) if folder else None,
        "threshold": config.threshold,
        "probability_dtype": options.probability_dtype,
        "probability_scale": 1 / 255 if options.probability_dtype == "uint8" else 1.0,
        "mask_values": [0, 255],
        "normalization": {"lo": stats[0].tolist(), "hi": stats[1].tolist()},
        "tile_size": config.tile_size,
        "overlap": config.overlap,
        "z_offset": plan.z_offset,
    }
    total = plan.total_tiles
    yield PredictEvent(done=0, total=total, elapsed=0.0, message="normalization statistics ready")
    try:
        with contextlib.ExitStack() as stack:
            target: ZarrTarget | None = None
            if zarr_path is not None or client is not None:
                target_path = zarr_path
                if target_path is None:  # TIFF only, on a cluster: zarr in a scratch folder
                    assert tiff_path is not None
                    check_writable(tiff_path, options.overwrite)
                    scratch = Path(tempfile.mkdtemp(prefix=".napari-unet-", dir=tiff_path.parent))
                    stack.callback(shutil.rmtree, scratch, True)
                    target_path = scratch / "blocks.zarr"
                tmp = stack.enter_context(_atomic_zarr(target_path, options.overwrite))
                _create_group(tmp, plan, options, attrs)
                target = ZarrTarget(
                    str(tmp),
                    options.probability_dtype,
                    options.write_probability,
                    options.write_mask,
                    config.threshold,
                )
            tiff_target: _TiffTarget | None = None
            if tiff_path is not None:
                tiff_target = _TiffTarget(tiff_path, plan, options, config.threshold)
                stack.callback(tiff_target.abort)
            if client is not None:
                from .distributed import run_blocks

                assert target is not None
                stopped = yield from run_blocks(
                    client, str(folder), source, volume, plan, stats, target, stop, total
                )
                if not stopped and tiff_target is not None:
                    _zarr_to_tiff(Path(target.path), plan, tiff_target)
            else:
                stopped = yield from _run_local(
                    loaded, volume, plan, stats, target, tiff_target, options, stop, total
                )
            if stopped:
                raise _Stopped
            if tiff_target is not None:
                tiff_target.finish()
        stopped = False
    except _Stopped:
        zarr_path = tiff_path = None
        stopped = True
    except OSError as exc:  # full disk, read-only folder: one clear line (outputs cleaned up)
        from ..atomic import write_error

        raise write_error(zarr_path or tiff_path, exc) from None
    return BlockwiseResult(
        path=zarr_path,
        tiff=tiff_path,
        shape=plan.shape,
        threshold=config.threshold,
        stats=stats,
        elapsed=time.perf_counter() - started,
        stopped=stopped,
        probability_dtype=options.probability_dtype,
        tiles=total,
        blocks=len(plan.blocks),
    )


class _Stopped(Exception):
    """Internal: unwinds the output context managers (discarding them) after a stop."""


def _resolve_model(model: Any, need_folder: bool) -> tuple[Any, Path | None, Any]:
    """(loaded model or None, model folder or None, its Config).

    On a cluster only the folder matters (workers load it), so the model is
    not loaded here then.
    """
    from ..model.model_folder import LoadedModel, ModelFolder, load_model

    if isinstance(model, LoadedModel):
        if need_folder and model.folder is None:
            raise UserInputError("prediction on a cluster needs a model folder, not a model")
        return model, model.folder, model.config
    folder = Path(model).expanduser()
    if need_folder:
        if not (folder / "config.yaml").exists():
            raise UserInputError(f"{folder} is not a model folder: config.yaml is missing")
        return None, folder.resolve(), ModelFolder(folder).load_config()
    loaded = load_model(folder)
    return loaded, loaded.folder, loaded.config


def _stats(
    volume: Any, plan: BlockPlan, data_cfg: DataConfig, options: BlockwiseOptions
) -> tuple[np.ndarray, np.ndarray]:
    """Normalization statistics: given, or from a subsample of the volume."""
    if options.stats is not None:
        lo, hi = (np.asarray(s, dtype=np.float64).reshape(-1) for s in options.stats)
        if lo.size not in (1, plan.shape[0]) or hi.size != lo.size:
            raise UserInputError(
                f"normalization statistics have {lo.size} values for {plan.shape[0]} slices"
            )
        return lo, hi
    low, high = data_cfg.percentiles
    if data_cfg.normalization == "slice":
        part = volume[plan.z_offset : plan.z_offset + plan.shape[0]]
        return volume_stats(part, low, high, per_slice=True)
    return volume_stats(volume, low, high, per_slice=False)


def _zarr_to_tiff(path: Path, plan: BlockPlan, tiff: _TiffTarget) -> None:
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
            if stored.dtype == np.uint8:
                prob /= 255.0
            tiff._append(tiff._encode(prob))


def _run_local(
    loaded: Any,
    volume: Any,
    plan: BlockPlan,
    stats: tuple[np.ndarray, np.ndarray],
    target: ZarrTarget | None,
    tiff: _TiffTarget | None,
    options: BlockwiseOptions,
    stop: threading.Event | None,
    total: int,
) -> Generator[PredictEvent, None, bool]:
    """Predict the blocks in this process; returns True if stopped."""
    from .predict import _Runner

    runner = _Runner(loaded.keras_model, plan.tta)

    def load(block: Block) -> np.ndarray:
        raw = read_region(volume, plan.read_window(block))
        return prepare_block(raw, plan, block, block_stats(stats, block))

    def write(block: Block, probability: np.ndarray) -> None:
        if target is not None:
            target.write(plan, block, probability)
        if tiff is not None:
            tiff.add(block, probability)

    start = time.perf_counter()
    done_before = 0
    workers = 2 if options.prefetch else 0
    pool = ThreadPoolExecutor(max_workers=workers) if workers else None
    pending_read: Future | None = None
    pending_write: Future | None = None
    try:
        for position, block in enumerate(plan.blocks):
            if stop is not None and stop.is_set():
                return True
            if pool is None:
                region = load(block)
            else:
                if pending_read is None:
                    pending_read = pool.submit(load, block)
                region = pending_read.result()
                nxt = plan.blocks[position + 1] if position + 1 < len(plan.blocks) else None
                pending_read = pool.submit(load, nxt) if nxt is not None else None
            generator = predict_block(runner, region, plan, block, stop)
            while True:
                try:
                    event = next(generator)
                except StopIteration as finished:
                    probability = finished.value
                    break
                elapsed = time.perf_counter() - start
                done = done_before + event.done
                yield PredictEvent(
                    done=done,
                    total=total,
                    elapsed=elapsed,
                    eta=elapsed / done * (total - done) if done else None,
                    message=f"block {position + 1}/{len(plan.blocks)}",
                )
            if stop is not None and stop.is_set():
                return True
            del region
            done_before += block_tiles(plan, block)
            if pool is None:
                write(block, probability)
            else:
                if pending_write is not None:
                    pending_write.result()
                pending_write = pool.submit(write, block, probability)
        if pending_write is not None:
            pending_write.result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return False


def predict_blockwise(
    model: Any,
    source: Any,
    output: str | Path | None = None,
    config: PredictConfig | None = None,
    options: BlockwiseOptions | None = None,
    client: Any = None,
    callback: Callable[[PredictEvent], None] | None = None,
    stop: threading.Event | None = None,
) -> BlockwiseResult:
    """Blocking form of :func:`predict_blockwise_iter`; `callback(event)` sees each event."""
    return drain(
        predict_blockwise_iter(model, source, output, config, stop, options, client), callback
    )


def predict_lazy_iter(
    model: Any,
    images: Any,
    config: PredictConfig | None = None,
    stop: threading.Event | None = None,
    output: str | Path | None = None,
    options: BlockwiseOptions | None = None,
) -> Generator[PredictEvent, None, BlockwiseResult]:
    """Predict a (dask-backed) napari layer lazily, for the GUI.

    Writes to `output` (default: a new ``prediction.zarr`` under the system's
    temporary folder) and returns a :class:`BlockwiseResult` whose
    :meth:`~BlockwiseResult.probability_float` and :meth:`~BlockwiseResult.labels`
    are dask arrays backed by that zarr store, ready for napari layers.
    """
    return (yield from predict_blockwise_iter(model, images, output, config, stop, options))
