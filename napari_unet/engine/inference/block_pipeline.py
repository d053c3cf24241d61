"""The single-process block pipeline: read ahead, predict, write behind.

Blocks are predicted one after the other in this process. With
``BlockwiseOptions.prefetch`` two background threads read (and normalize) the
next block and write the previous one while the current one is predicted, so
at most three blocks are in memory at a time, whatever the volume size.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ..events import PredictEvent
from ..io.lazy import read_region
from .block_predict import block_stats, predict_block, prepare_block
from .block_store import TiffTarget, ZarrTarget
from .blocks import Block, BlockPlan, BlockwiseOptions, block_tiles

__all__ = ["run_local"]


def run_local(
    loaded: Any,
    volume: Any,
    plan: BlockPlan,
    stats: tuple[np.ndarray, np.ndarray],
    target: ZarrTarget | None,
    tiff: TiffTarget | None,
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
