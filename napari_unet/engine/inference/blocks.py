"""Block planning for blockwise prediction: how a volume is cut into blocks.

A volume ``(Z, Y, X)`` is cut into blocks: runs of whole slices (the default
while a slice has at most :data:`WHOLE_SLICE_PIXELS` pixels), or
``(z, Y-block, X-block)`` boxes for huge slices. Every block is predicted with
the tiles of the *global* tile grid of a slice that touch it -- the block plus
a halo reaching to the edges of those tiles -- so blockwise prediction blends
exactly like in-memory tiled prediction.

:class:`BlockwiseOptions` (how blocks are cut and what is written),
:class:`Block`, :class:`BlockPlan` and :func:`make_plan` live here, below both
the single-process driver (:mod:`~napari_unet.engine.inference.blockwise`) and
the cluster runner (:mod:`~napari_unet.engine.inference.distributed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..config import DataConfig, PredictConfig
from ..errors import UserInputError
from .tiling import Tile, blend_window, padded_indices, tile_grid

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "TARGET_BLOCK_PIXELS",
    "WHOLE_SLICE_PIXELS",
    "Block",
    "BlockPlan",
    "BlockwiseOptions",
    "ProbabilityDtype",
    "block_tiles",
    "make_plan",
    "output_region",
    "tile_box",
]

#: Slices up to this many pixels are predicted whole (blocks are runs of slices).
WHOLE_SLICE_PIXELS = 4096 * 4096
#: Default block side along Y and X for larger slices.
DEFAULT_BLOCK_SIZE = 4096
#: Blocks of whole slices hold about this many pixels (several slices if small).
TARGET_BLOCK_PIXELS = 2**22
ProbabilityDtype = Literal["uint8", "float16", "float32"]


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
    batch_size
        Tiles per network call (``PredictConfig.batch_size``).
    tta
        Test-time augmentation (``PredictConfig.tta``).
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
        box_y, box_x = tile_box(self, block)
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


def tile_box(plan: BlockPlan, block: Block) -> tuple[tuple[int, int], tuple[int, int]]:
    """Rows and columns ``((y0, y1), (x0, x1))`` of the padded slice covered by
    the tiles `block` needs: the block plus its halo."""
    tiles = [plan.tiles[i] for i in block.tiles]
    return (
        (min(t.y for t in tiles), max(t.y + t.height for t in tiles)),
        (min(t.x for t in tiles), max(t.x + t.width for t in tiles)),
    )


def _axis_blocks(length: int, size: int) -> list[tuple[int, int]]:
    """Half-open ``(start, stop)`` runs of at most `size` covering ``0:length``."""
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
    """Cut `volume` (``(Z, Y, X)``) into blocks for a network of size `multiple`.

    Parameters
    ----------
    volume
        Anything with ``shape`` (and optionally dask-style ``chunks``).
    data_config
        The model's data section (``resize``).
    config
        Tiling options (tile size, overlap, batch size, TTA).
    multiple
        The network's size multiple.
    options
        Block sizes and the slice range (:class:`BlockwiseOptions`).

    Returns
    -------
    BlockPlan
        The tile grid, its blending windows and every block with its tiles.
    """
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


def output_region(plan: BlockPlan, block: Block) -> tuple[slice, slice, slice]:
    """Where `block` goes in the output arrays."""
    if plan.resize is not None:
        return slice(*block.z), slice(None), slice(None)
    return slice(*block.z), slice(*block.y), slice(*block.x)
