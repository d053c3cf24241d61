"""Blockwise prediction on a ``dask.distributed`` cluster.

The client plans the blocks (:func:`~napari_unet.engine.inference.blocks.make_plan`)
and submits one task per block; each task reads its block (workers open a
path source themselves; other sources are read by the client and sent),
predicts it with the same code as the single-process path
(:mod:`~napari_unet.engine.inference.block_predict`) and writes it straight
into the temporary zarr output
(:class:`~napari_unet.engine.inference.block_store.ZarrTarget`; blocks own
whole zarr chunks, so workers never write the same chunk). Workers therefore
need the model folder, a path source and the output folder on a shared file
system.

This module imports only the lower block modules (``blocks``,
``block_predict``, ``block_store``); the driver
(:mod:`~napari_unet.engine.inference.blockwise`) imports this one.

Every worker loads the model once: :func:`worker_model` keeps loaded models
in a module-level dict of the worker process, keyed by the model folder (and
the weights file's modification time, so a retrained model is reloaded).
:func:`model_loads` reports how often each worker loaded each model
(``client.run(model_loads)``).

Usage::

    from distributed import Client
    from napari_unet.engine.inference.blockwise import predict_blockwise

    client = Client("tcp://scheduler:8786")           # or LocalCluster()
    predict_blockwise("models/unet", "volume.zarr", "prediction.zarr", client=client)

CLI: ``napari-unet predict MODEL volume.zarr -o prediction.zarr --scheduler tcp://scheduler:8786``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError
from ..events import PredictEvent, drain
from ..io.lazy import as_lazy, read_region
from .block_predict import block_stats, predict_block, prepare_block
from .block_store import ZarrTarget
from .blocks import Block, BlockPlan, block_tiles

__all__ = ["connect", "model_loads", "predict_block_task", "run_blocks", "worker_model"]

_LOCK = threading.Lock()
_MODELS: dict[tuple[str, float], Any] = {}
_LOADS: dict[str, int] = {}
_VOLUMES: dict[str, Any] = {}


def connect(address: str) -> Any:
    """A ``distributed.Client`` for the scheduler at `address` (one clear error if not)."""
    try:
        from distributed import Client
    except ImportError:
        raise UserInputError(
            "--scheduler needs dask.distributed: pip install 'dask[distributed]'"
        ) from None
    try:
        return Client(address, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise UserInputError(f"cannot reach the dask scheduler at {address}: {exc}") from None


def worker_model(folder: str) -> Any:
    """The model in `folder`, loaded at most once per process (worker)."""
    from ..model.model_folder import ModelFolder, load_model

    key = str(Path(folder).resolve())
    try:
        stamp = ModelFolder(Path(key)).weights_file().stat().st_mtime
    except (OSError, UserInputError):
        stamp = 0.0
    with _LOCK:
        if (key, stamp) not in _MODELS:
            for old in [k for k in _MODELS if k[0] == key]:
                del _MODELS[old]
            from ..model.precision import for_prediction

            loaded = load_model(key)
            _MODELS[(key, stamp)] = for_prediction(loaded, loaded.config.predict.precision)
            _LOADS[key] = _LOADS.get(key, 0) + 1
        return _MODELS[(key, stamp)]


def model_loads() -> dict[str, int]:
    """How many times this process loaded each model folder."""
    with _LOCK:
        return dict(_LOADS)


def _worker_volume(path: str) -> Any:
    with _LOCK:
        if path not in _VOLUMES:
            _VOLUMES[path] = as_lazy(path, path)
        return _VOLUMES[path]


def predict_block_task(
    folder: str,
    source: Any,
    plan: BlockPlan,
    block: Block,
    stats: tuple[np.ndarray, ...],
    target: ZarrTarget,
) -> dict[str, Any]:
    """Worker task: read, predict and write one block.

    Parameters
    ----------
    folder
        Model folder (loaded once per worker).
    source
        A path the worker opens lazily, or the block's raw source region.
    plan, block
        The block plan and this block.
    stats
        The block's normalization ``(lo, hi)``.
    target
        The zarr output being written.

    Returns
    -------
    dict
        ``tiles`` predicted and ``seconds`` taken.
    """
    from .predict import _Runner

    started = time.perf_counter()
    model = worker_model(folder)
    if isinstance(source, str):
        raw = read_region(_worker_volume(source), plan.read_window(block))
    else:
        raw = np.asarray(source)
    region = prepare_block(raw, plan, block, stats)
    probability = drain(predict_block(_Runner(model.keras_model, plan.tta), region, plan, block))
    target.write(plan, block, probability)
    return {"tiles": block_tiles(plan, block), "seconds": time.perf_counter() - started}


def run_blocks(
    client: Any,
    folder: str,
    source: Any,
    volume: Any,
    plan: BlockPlan,
    stats: tuple[np.ndarray, np.ndarray],
    target: ZarrTarget,
    stop: threading.Event | None,
    total: int,
) -> Generator[PredictEvent, None, bool]:
    """Run every block of `plan` on the cluster; yields after each block.

    At most about two blocks per worker thread are in flight, so a source read
    by the client (not a path) never piles up in memory. Returns True if
    `stop` ended the run (outstanding tasks are cancelled).
    """
    from distributed import as_completed

    path = str(Path(source).expanduser().resolve()) if isinstance(source, (str, Path)) else None
    token = uuid.uuid4().hex[:8]
    threads = max(1, sum(client.nthreads().values()))
    in_flight = 2 * threads
    [plan_future] = client.scatter([plan], broadcast=True, hash=False)
    blocks = iter(plan.blocks)

    def submit(block: Block) -> Any:
        src = path if path is not None else read_region(volume, plan.read_window(block))
        return client.submit(
            predict_block_task,
            folder,
            src,
            plan_future,
            block,
            block_stats(stats, block),
            target,
            key=f"napari-unet-block-{token}-{block.index}",
            pure=False,
        )

    outstanding = {submit(b) for _, b in zip(range(in_flight), blocks)}
    pending = as_completed(list(outstanding))
    started = time.perf_counter()
    done = 0
    try:
        for future in pending:
            outstanding.discard(future)
            if stop is not None and stop.is_set():
                return True
            result = future.result()
            done += int(result["tiles"])
            nxt = next(blocks, None)
            if nxt is not None:
                new = submit(nxt)
                outstanding.add(new)
                pending.add(new)
            elapsed = time.perf_counter() - started
            yield PredictEvent(
                done=done,
                total=total,
                elapsed=elapsed,
                eta=elapsed / done * (total - done) if done else None,
                message=f"{threads} worker threads",
            )
    finally:
        if outstanding:
            client.cancel(list(outstanding))
            pending.clear()
        client.cancel([plan_future])
    return False
