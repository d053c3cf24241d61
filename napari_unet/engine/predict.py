"""Tiled prediction of 2D slices and stacks with blended overlapping tiles.

Memory stays bounded by one batch of tiles plus the output arrays; tiles of
all slices are batched together for throughput. Long work is the generator
:func:`predict_iter` (yielding :class:`PredictEvent`); :func:`predict` drains it.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import PredictConfig
from .events import PredictEvent, drain
from .model_folder import LoadedModel, load_model
from .preprocess import as_stack, normalize_percentile, resize_stack
from .tiling import Tile, blend_window, pad_to_multiple, tile_grid

__all__ = ["Prediction", "predict_iter", "predict", "predict_normalized", "drain"]


@dataclass
class Prediction:
    """Result of prediction.

    Attributes
    ----------
    probability
        float32 (Z, Y, X) probability of the mask's nonzero class.
    threshold
        Threshold used by :meth:`mask` by default.
    """

    probability: np.ndarray
    threshold: float = 0.5

    def mask(self, threshold: float | None = None) -> np.ndarray:
        """uint8 {0, 1} mask: probability above the threshold."""
        value = self.threshold if threshold is None else threshold
        return (self.probability > value).astype(np.uint8)


def _as_model(model: LoadedModel | str | Path) -> LoadedModel:
    return model if isinstance(model, LoadedModel) else load_model(model)


def _dihedral(batch: np.ndarray, k: int, inverse: bool = False) -> np.ndarray:
    """One of the 8 flips/rotations of a (B, H, W) batch (or its inverse)."""
    flip, rot = divmod(k, 4)
    if not inverse:
        out = np.rot90(batch, rot, axes=(1, 2))
        return out[:, :, ::-1] if flip else out
    out = batch[:, :, ::-1] if flip else batch
    return np.rot90(out, -rot, axes=(1, 2))


_COMPILED: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _compiled_call(keras_model: Any) -> Any:
    """One tf.function per Keras model, reused across calls (no retracing)."""
    if keras_model not in _COMPILED:
        import tensorflow as tf

        _COMPILED[keras_model] = tf.function(
            lambda x: keras_model(x, training=False),
            input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32)],
        )
    return _COMPILED[keras_model]


class _Runner:
    """Runs the Keras model on (B, H, W) float32 batches, optionally with TTA."""

    def __init__(self, keras_model: Any, tta: bool) -> None:
        import tensorflow as tf

        self._tf = tf
        self._tta = tta
        self._call = _compiled_call(keras_model)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        transforms = range(8) if self._tta else range(1)
        total = np.zeros(batch.shape, dtype=np.float32)
        for k in transforms:
            view = np.ascontiguousarray(_dihedral(batch, k))
            out = self._call(self._tf.constant(view[..., None]))
            prob = np.asarray(out, dtype=np.float32)[..., 0]
            total += _dihedral(prob, k, inverse=True)
        return total / len(transforms)


def predict_normalized(
    keras_model: Any,
    stack: np.ndarray,
    config: PredictConfig,
    multiple: int,
    stop: threading.Event | None = None,
) -> Generator[PredictEvent, None, np.ndarray]:
    """Predict an already-normalized float32 (Z, Y, X) stack tile by tile.

    Yields a :class:`PredictEvent` after each batch and returns the float32
    probability stack. A set `stop` event ends the work after the current
    batch with the slices done so far (the rest stays 0).
    """
    runner = _Runner(keras_model, config.tta)
    depth_z = stack.shape[0]
    padded_shape = pad_to_multiple(stack[:1], multiple)[0].shape[-2:]
    tiles = tile_grid(padded_shape, config.tile_size, config.overlap, multiple)
    windows = [blend_window(tile, config.overlap) for tile in tiles]
    jobs = [(z, i) for z in range(depth_z) for i in range(len(tiles))]
    height, width = stack.shape[-2:]
    probability = np.zeros(stack.shape, dtype=np.float32)
    start = time.perf_counter()
    padded_cache: dict[int, np.ndarray] = {}
    accum = np.zeros(padded_shape, dtype=np.float32)
    weight = np.zeros(padded_shape, dtype=np.float32)
    current_z = 0
    done = 0
    for begin in range(0, len(jobs), config.batch_size):
        if stop is not None and stop.is_set():
            break
        chunk = jobs[begin : begin + config.batch_size]
        batch = np.stack([_read_tile(stack, padded_cache, multiple, z, tiles[i]) for z, i in chunk])
        result = runner(batch)
        for (z, i), prob in zip(chunk, result):
            if z != current_z:
                probability[current_z] = (accum / weight)[:height, :width]
                accum.fill(0)
                weight.fill(0)
                padded_cache.pop(current_z, None)
                current_z = z
            sl = tiles[i].slices
            accum[sl] += prob * windows[i]
            weight[sl] += windows[i]
        done += len(chunk)
        elapsed = time.perf_counter() - start
        eta = elapsed / done * (len(jobs) - done)
        yield PredictEvent(done=done, total=len(jobs), elapsed=elapsed, eta=eta)
    if done == len(jobs):
        probability[current_z] = (accum / weight)[:height, :width]
    return probability


def _read_tile(
    stack: np.ndarray, cache: dict[int, np.ndarray], multiple: int, z: int, tile: Tile
) -> np.ndarray:
    if z not in cache:
        cache[z] = pad_to_multiple(np.asarray(stack[z], dtype=np.float32), multiple)[0]
    return cache[z][tile.slices]


def predict_iter(
    model: LoadedModel | str | Path,
    images: np.ndarray,
    config: PredictConfig | None = None,
    stop: threading.Event | None = None,
) -> Generator[PredictEvent, None, Prediction]:
    """Predict a stack (or one 2D image) with a trained model.

    Parameters
    ----------
    model
        A loaded model or a model folder.
    images
        Raw (Z, Y, X) stack or (Y, X) image of any real dtype; normalized here
        exactly as in training.
    config
        Tiling options; defaults to the model's own ``predict`` section.
    stop
        Set it to stop after the current batch.

    Returns
    -------
    Prediction
        float32 probability with the input's (Z, Y, X) shape.
    """
    from .io import check_image

    loaded = _as_model(model)
    config = config or loaded.config.predict
    check_image(images, "images")
    stack = as_stack(np.asarray(images))
    original_hw = stack.shape[-2:]
    data_cfg = loaded.config.data
    low, high = data_cfg.percentiles
    normalized = normalize_percentile(
        stack, low, high, per_slice=data_cfg.normalization == "slice"
    )
    if data_cfg.resize is not None:
        normalized = resize_stack(normalized, tuple(data_cfg.resize), order=1)
    probability = yield from predict_normalized(
        loaded.keras_model, normalized, config, loaded.multiple, stop
    )
    if data_cfg.resize is not None:
        probability = resize_stack(probability, original_hw, order=1).astype(np.float32)
    return Prediction(probability=probability, threshold=config.threshold)


def predict(
    model: LoadedModel | str | Path,
    images: np.ndarray,
    config: PredictConfig | None = None,
    callback: Any = None,
) -> Prediction:
    """Blocking form of :func:`predict_iter`; `callback(event)` sees each event."""
    return drain(predict_iter(model, images, config), callback)
