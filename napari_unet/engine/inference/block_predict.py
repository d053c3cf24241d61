"""One block of blockwise prediction: normalize, lay out and predict it.

Shared by the single-process pipeline
(:mod:`~napari_unet.engine.inference.block_pipeline`) and the cluster workers
(:mod:`~napari_unet.engine.inference.distributed`), so both give the same result
as in-memory tiled prediction
(:func:`~napari_unet.engine.inference.predict.predict_tiles` with the same
blending). TensorFlow is imported only when a block is predicted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator

import numpy as np

from ..data.preprocess import apply_normalization, resize_stack
from ..data.task_data import per_channel
from ..events import PredictEvent
from .blocks import Block, BlockPlan, tile_box
from .tiling import pad_to_multiple

__all__ = ["block_stats", "predict_block", "prepare_block"]


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
    box_y, box_x = tile_box(plan, block)
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
    (``(z, y, x, K)`` for K output channels) in output coordinates (back at the
    source size when resizing)."""
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
    if plan.resize is not None:  # every class channel of a multiclass output
        back = per_channel(lambda plane: resize_stack(plane, plan.shape[1:], order=1))
        probability = back(probability).astype(np.float32)
    return probability
