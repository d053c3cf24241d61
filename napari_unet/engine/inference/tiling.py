"""Overlapping tiles and their blending windows (numpy only).

A slice is covered by equal-sized tiles (so they can be batched) whose size
is a multiple of the network's down-sampling factor. Where tiles overlap,
predictions are blended with a smooth (squared-sine) ramp so that no seam
shows; along the image's own border there is no ramp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Tile",
    "axis_tiles",
    "blend_window",
    "pad_mode",
    "pad_to_multiple",
    "padded_indices",
    "tile_grid",
]


@dataclass(frozen=True)
class Tile:
    """One tile: where to read it in the (padded) slice, and its ramps.

    Attributes
    ----------
    y, x
        Top-left corner in the padded slice.
    height, width
        Tile size (the same for every tile of a grid).
    ramp_top, ramp_bottom, ramp_left, ramp_right
        Whether the tile blends into a neighbour on that side.
    """

    y: int
    x: int
    height: int
    width: int
    ramp_top: bool
    ramp_bottom: bool
    ramp_left: bool
    ramp_right: bool

    @property
    def slices(self) -> tuple[slice, slice]:
        """Index into the padded slice."""
        return slice(self.y, self.y + self.height), slice(self.x, self.x + self.width)


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def axis_tiles(length: int, tile: int, overlap: int, multiple: int) -> tuple[list[int], int]:
    """Start positions and common size of tiles covering one axis.

    Parameters
    ----------
    length
        Axis length, already padded to a multiple of `multiple`.
    tile
        Largest tile size wanted.
    overlap
        Smallest overlap between neighbouring tiles.
    multiple
        Tile sizes are rounded up to a multiple of this.

    Returns
    -------
    starts, size
        The fewest equal tiles of at most about `tile` pixels that cover the
        axis with at least `overlap` pixels shared by neighbours.
    """
    tile = max(_round_up(tile, multiple), multiple)
    if length <= tile:
        return [0], length
    count = math.ceil((length - overlap) / (tile - overlap))
    size = min(_round_up(math.ceil((length + (count - 1) * overlap) / count), multiple), length)
    span = length - size
    starts = [round(i * span / (count - 1)) for i in range(count)]
    return starts, size


def tile_grid(shape: tuple[int, int], tile: int, overlap: int, multiple: int) -> list[Tile]:
    """Tiles covering a 2D slice of `shape` (already padded to `multiple`)."""
    ys, height = axis_tiles(shape[0], tile, overlap, multiple)
    xs, width = axis_tiles(shape[1], tile, overlap, multiple)
    tiles = []
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            tiles.append(
                Tile(
                    y=y,
                    x=x,
                    height=height,
                    width=width,
                    ramp_top=i > 0,
                    ramp_bottom=i < len(ys) - 1,
                    ramp_left=j > 0,
                    ramp_right=j < len(xs) - 1,
                )
            )
    return tiles


def _ramp_1d(size: int, ramp: int, start: bool, end: bool) -> np.ndarray:
    """1D window: squared-sine ramps of `ramp` pixels at the blended ends."""
    window = np.ones(size, dtype=np.float32)
    ramp = min(ramp, size // 2)
    if ramp <= 0:
        return window
    t = (np.arange(ramp, dtype=np.float32) + 0.5) / ramp
    rising = np.sin(0.5 * np.pi * t) ** 2
    if start:
        window[:ramp] = rising
    if end:
        window[-ramp:] = rising[::-1]
    return window


def blend_window(tile: Tile, overlap: int) -> np.ndarray:
    """Blending weights (height, width) for `tile`; positive everywhere."""
    wy = _ramp_1d(tile.height, overlap, tile.ramp_top, tile.ramp_bottom)
    wx = _ramp_1d(tile.width, overlap, tile.ramp_left, tile.ramp_right)
    return np.maximum(np.outer(wy, wx), 1e-6).astype(np.float32)


def pad_to_multiple(
    image: np.ndarray, multiple: int, min_size: int = 0
) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad the last two axes of `image` (reflecting) to a multiple of `multiple`.

    Returns the padded array and the original (height, width), so the caller
    can crop the result back with ``out[..., :height, :width]``.
    """
    height, width = image.shape[-2:]
    target_h = max(_round_up(height, multiple), _round_up(min_size, multiple))
    target_w = max(_round_up(width, multiple), _round_up(min_size, multiple))
    pad_h, pad_w = target_h - height, target_w - width
    if pad_h == 0 and pad_w == 0:
        return image, (height, width)
    pad = [(0, 0)] * (image.ndim - 2) + [(0, pad_h), (0, pad_w)]
    mode = pad_mode(height, width, pad_h, pad_w)
    return np.pad(image, pad, mode=mode), (height, width)


def pad_mode(height: int, width: int, pad_h: int, pad_w: int) -> str:
    """The ``np.pad`` mode :func:`pad_to_multiple` uses for this slice and padding."""
    mode = "reflect" if pad_h < height and pad_w < width else "symmetric"
    if mode == "symmetric" and (pad_h >= 2 * height or pad_w >= 2 * width):
        mode = "edge"  # tiny images: symmetric would need several reflections
    return mode


def padded_indices(shape: tuple[int, int], multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column index maps of :func:`pad_to_multiple`.

    ``padded[i, j] == image[rows[i], cols[j]]`` for a ``(height, width)`` =
    `shape` image, so any window of the padded slice can be read from the
    unpadded source (e.g. a lazy volume) without padding the whole slice.
    """
    height, width = shape
    target_h, target_w = _round_up(height, multiple), _round_up(width, multiple)
    mode = pad_mode(height, width, target_h - height, target_w - width)
    rows = np.pad(np.arange(height), (0, target_h - height), mode=mode)
    cols = np.pad(np.arange(width), (0, target_w - width), mode=mode)
    return rows, cols
