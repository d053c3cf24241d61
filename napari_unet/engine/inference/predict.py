"""Tiled prediction of 2D slices and stacks with blended overlapping tiles.

Memory stays bounded by one batch of tiles plus the output arrays; tiles of
all slices are batched together for throughput. Long work is the generator
:func:`predict_iter` (yielding :class:`PredictEvent`); :func:`predict` drains it.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import PredictConfig
from ..events import PredictEvent, drain
from ..model.model_folder import LoadedModel, load_model
from ..model.precision import for_prediction
from .prediction import Prediction, normalized_input, resize_output
from .tiling import Tile, blend_window, pad_to_multiple, tile_grid

__all__ = [
    "Prediction",
    "drain",
    "predict",
    "predict_iter",
    "predict_normalized",
    "predict_tiles",
]


def _as_model(model: LoadedModel | str | Path) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    from ..model.devices import configure_devices_for_model

    configure_devices_for_model(model)
    return load_model(model)


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
    """One tf.function per Keras model, reused across calls (no retracing).

    The function reaches the model through a weak reference: a cached value that
    held the model itself would keep its key, and every model predicted with in a
    napari session, alive for good.
    """
    if keras_model not in _COMPILED:
        import tensorflow as tf

        model_ref = weakref.ref(keras_model)

        def call(x: Any) -> Any:
            return model_ref()(x, training=False)

        channels = _input_channels(keras_model)
        _COMPILED[keras_model] = tf.function(
            call, input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32)]
        )
    return _COMPILED[keras_model]


def _input_channels(keras_model: Any) -> int:
    """Channels of the model's input (1 for a grey U-Net)."""
    try:
        return int(keras_model.inputs[0].shape[-1] or 1)
    except (AttributeError, IndexError, TypeError):
        return 1


class _Runner:
    """Runs the Keras model on (B, H, W) or (B, H, W, C) float32 batches, optionally
    with TTA; returns (B, H, W) for a one-channel output, else (B, H, W, K)."""

    def __init__(self, keras_model: Any, tta: bool) -> None:
        import tensorflow as tf

        self._tf = tf
        self._tta = tta
        self._call = _compiled_call(keras_model)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        transforms = range(8) if self._tta else range(1)
        total: Any = 0.0
        for k in transforms:
            view = np.ascontiguousarray(_dihedral(batch, k))
            out = self._call(self._tf.constant(view[..., None] if view.ndim == 3 else view))
            out = np.asarray(out, dtype=np.float32)
            prob = out[..., 0] if out.shape[-1] == 1 else out  # (B, H, W) or (B, H, W, K)
            total = total + _dihedral(prob, k, inverse=True)
        return total / len(transforms)


def predict_normalized(
    keras_model: Any,
    stack: np.ndarray,
    config: PredictConfig,
    multiple: int,
    stop: threading.Event | None = None,
) -> Generator[PredictEvent, None, np.ndarray]:
    """Predict an already-normalized float32 (Z, Y, X) or (Z, Y, X, C) stack tile by tile.

    Yields a :class:`PredictEvent` after each batch and returns the float32
    output stack: ``(Z, Y, X)`` for a one-channel output, else ``(Z, Y, X, K)``.
    A set `stop` event ends the work after the current batch with the slices done
    so far (the rest stays 0).
    """
    runner = _Runner(keras_model, config.tta)
    height, width = stack.shape[1:3]
    padded_shape = pad_to_multiple(np.zeros((1, height, width), np.float32), multiple)[0].shape
    tiles = tile_grid(padded_shape[-2:], config.tile_size, config.overlap, multiple)
    windows = [blend_window(tile, config.overlap) for tile in tiles]

    def padded_slice(z: int) -> np.ndarray:
        plane = np.asarray(stack[z], dtype=np.float32)
        if plane.ndim == 3:  # (Y, X, C): pad the spatial axes of every channel
            padded = pad_to_multiple(np.moveaxis(plane, -1, 0), multiple)[0]
            return np.ascontiguousarray(np.moveaxis(padded, 0, -1))
        return pad_to_multiple(plane, multiple)[0]

    return (
        yield from predict_tiles(
            runner,
            padded_slice,
            stack.shape[0],
            tiles,
            windows,
            (slice(0, height), slice(0, width)),
            config.batch_size,
            stop,
        )
    )


def predict_tiles(
    runner: Callable[[np.ndarray], np.ndarray],
    read_slice: Callable[[int], np.ndarray],
    depth_z: int,
    tiles: Sequence[Tile],
    windows: Sequence[np.ndarray],
    crop: tuple[slice, slice],
    batch_size: int,
    stop: threading.Event | None = None,
) -> Generator[PredictEvent, None, np.ndarray]:
    """Blend the predictions of `tiles` over `depth_z` slices and return a crop.

    The shared core of in-memory tiled prediction (:func:`predict_normalized`,
    all tiles of a slice) and blockwise prediction (the tiles of a global grid
    that touch one block). Tiles of all slices are batched together; a pixel's
    value is the window-weighted mean of the tiles covering it, accumulated in
    tile order, so a block computed from a subset of a grid's tiles equals the
    same pixels of the whole-slice result.

    Parameters
    ----------
    runner
        Maps a float32 ``(B, h, w)`` (or ``(B, h, w, C)``) batch to outputs
        ``(B, h, w)`` or ``(B, h, w, K)``.
    read_slice
        ``read_slice(z)`` returns slice `z` (float32, normalized, padded)
        covering the bounding box of `tiles`, in coordinates relative to it.
    depth_z
        Number of slices.
    tiles, windows
        Tiles (coordinates of the padded slice) and their blending windows.
    crop
        Region to return, in the same coordinates as the tiles; every pixel
        of it must be covered by some tile.
    batch_size
        Tiles per network call.
    stop
        Set it to end after the current batch (unfinished slices stay 0).

    Returns
    -------
    numpy.ndarray
        float32 ``(depth_z, crop height, crop width)``, with a trailing axis of K for
        outputs of K channels.
    """
    y0 = min(t.y for t in tiles)
    x0 = min(t.x for t in tiles)
    box = (max(t.y + t.height for t in tiles) - y0, max(t.x + t.width for t in tiles) - x0)
    local = [slice(t.y - y0, t.y - y0 + t.height, None) for t in tiles]
    local_x = [slice(t.x - x0, t.x - x0 + t.width, None) for t in tiles]
    out_crop = (
        slice(crop[0].start - y0, crop[0].stop - y0),
        slice(crop[1].start - x0, crop[1].stop - x0),
    )
    jobs = [(z, i) for z in range(depth_z) for i in range(len(tiles))]
    out_hw = (crop[0].stop - crop[0].start, crop[1].stop - crop[1].start)
    probability = np.zeros((depth_z, *out_hw), dtype=np.float32)
    start = time.perf_counter()
    slice_cache: dict[int, np.ndarray] = {}
    accum = np.zeros(box, dtype=np.float32)
    weight = np.zeros(box, dtype=np.float32)
    channel_axis: tuple[Any, ...] = ()  # (None,) once the output has K channels
    current_z = 0
    done = 0
    for begin in range(0, len(jobs), batch_size):
        if stop is not None and stop.is_set():
            break
        chunk = jobs[begin : begin + batch_size]
        for z, _ in chunk:
            if z not in slice_cache:
                slice_cache[z] = read_slice(z)
        batch = np.stack([slice_cache[z][local[i], local_x[i]] for z, i in chunk])
        result = runner(batch)
        if result.ndim == 4 and not channel_axis:  # K output channels: blend each
            channel_axis = (None,)
            accum = np.zeros((*box, result.shape[-1]), dtype=np.float32)
            probability = np.zeros((depth_z, *out_hw, result.shape[-1]), dtype=np.float32)
        for (z, i), prob in zip(chunk, result):
            if z != current_z:
                probability[current_z] = accum[out_crop] / weight[out_crop][(..., *channel_axis)]
                accum.fill(0)
                weight.fill(0)
                slice_cache.pop(current_z, None)
                current_z = z
            sl = (local[i], local_x[i])
            accum[sl] += prob * windows[i][(..., *channel_axis)]
            weight[sl] += windows[i]
        done += len(chunk)
        elapsed = time.perf_counter() - start
        eta = elapsed / done * (len(jobs) - done)
        yield PredictEvent(done=done, total=len(jobs), elapsed=elapsed, eta=eta)
    if done == len(jobs):
        probability[current_z] = accum[out_crop] / weight[out_crop][(..., *channel_axis)]
    return probability


def predict_iter(
    model: LoadedModel | str | Path,
    images: np.ndarray,
    config: PredictConfig | None = None,
    stop: threading.Event | None = None,
    stats: tuple[Any, Any] | None = None,
) -> Generator[PredictEvent, None, Prediction]:
    """Predict a stack (or one 2D image) with a trained model.

    Parameters
    ----------
    model
        A loaded model or a model folder.
    images
        Raw (Z, Y, X) stack or (Y, X) image of any real dtype (``(Z, C, Y, X)`` for a
        network of several input channels); normalized here exactly as in training.
    config
        Tiling options; defaults to the model's own ``predict`` section.
    stop
        Set it to stop after the current batch.
    stats
        Normalization ``(lo, hi)`` to use instead of the percentiles of
        `images` (e.g. :func:`~napari_unet.engine.inference.blockwise.volume_stats` of the
        whole volume when `images` is part of it).

    Returns
    -------
    Prediction
        float32 output at the input's (Z, Y, X) size (``(Z, Y, X, K)`` class
        probabilities for a multiclass model), with the model's task and classes.
    """
    from ..io.stacks import check_image

    loaded = _as_model(model)
    config = config or loaded.config.predict
    loaded = for_prediction(loaded, config.precision)
    check_image(images, "images")
    normalized, original_hw = normalized_input(images, loaded.config, stats)
    probability = yield from predict_normalized(
        loaded.keras_model, normalized, config, loaded.multiple, stop
    )
    model_cfg = loaded.config.model
    return Prediction(
        probability=resize_output(probability, loaded.config, original_hw),
        threshold=config.threshold,
        task=model_cfg.task,
        classes=tuple(model_cfg.classes) if model_cfg.classes else None,
    )


def predict(
    model: LoadedModel | str | Path,
    images: np.ndarray,
    config: PredictConfig | None = None,
    callback: Any = None,
) -> Prediction:
    """Blocking form of :func:`predict_iter`; `callback(event)` sees each event."""
    return drain(predict_iter(model, images, config), callback)
