"""tf.data input pipelines for training and validation.

Training (:func:`make_train_dataset`): an endless stream of random patches.
Each element is drawn from its own stateless seed ``(seed, element index)``,
so the stream is reproducible from ``TrainConfig.seed`` while elements are
still produced in parallel (``deterministic=False`` only changes the order in
which finished elements are batched).

Per element: choose a slice and a patch position (centred on a labelled pixel
when labels are sparse, uniform otherwise), read a source window around it
(about 1.5 patch sides when affine/elastic augmentation is on, so rotated
patches see real context), augment it with :func:`augment_patch` and emit a
``P x P`` patch.

Data come from a :class:`PatchSource`. :class:`ArraySource` serves in-memory
numpy stacks (read with ``tf.slice``, no Python in the loop); a lazy source
(e.g. dask/zarr) only needs to implement :meth:`PatchSource.read` and is
called through ``tf.numpy_function``.

Validation (:func:`make_val_dataset`): every validation slice cut into
non-overlapping ``P x P`` tiles; border tiles are padded (image reflected)
with weight 0, so every real pixel counts exactly once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from ..errors import UserInputError
from .augment import augment_patch, geometry_enabled, intensity_enabled, source_margin
from .patch_arrays import check_stacks, count_val_batches, pad_stack, val_tiles

__all__ = [
    "ArraySource",
    "PatchSource",
    "SamplingTable",
    "constant_dataset",
    "count_val_batches",
    "make_train_dataset",
    "make_val_dataset",
    "pad_stack",
    "val_tiles",
]

#: Labelled fraction below which patch centres are drawn from labelled pixels.
SPARSE_FRACTION = 0.5
#: Training batches made ahead of the model (fixed: see :func:`_options`).
PREFETCH_BATCHES = 2
#: At most this many labelled pixels are kept for centre sampling (a random subset).
MAX_POINTS = 4_000_000


# ----------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class SamplingTable:
    """Where patches are drawn from.

    ``slices``: slice indices with at least one labelled pixel (uniform
    sampling inside them), or ``points``: flat indices into ``(Z, H, W)`` of
    labelled pixels (sparse labels: each patch is centred near one of them).
    """

    slices: np.ndarray | None = None
    points: np.ndarray | None = None


class PatchSource:
    """A ``(Z, H, W)`` stack of image, mask and weight that can be read by window.

    Subclasses implement :meth:`read` (numpy) and :meth:`sampling_table`;
    :meth:`tf_read` may be overridden with a pure TensorFlow implementation.
    """

    shape: tuple[int, int, int]

    def read(self, z: int, y0: int, x0: int, h: int, w: int) -> tuple[np.ndarray, ...]:
        """Return ``(image float32, mask uint8, weight float32)``, each ``(h, w)``."""
        raise NotImplementedError

    def sampling_table(self, max_points: int = MAX_POINTS, seed: int = 0) -> SamplingTable:
        """Slices/pixels that patches should be drawn from (see :class:`SamplingTable`)."""
        return SamplingTable(slices=np.arange(self.shape[0]))

    def tf_read(self, z: Any, y0: Any, x0: Any, h: int, w: int) -> tuple[tf.Tensor, ...]:
        """Read a window inside a tf.data map function. ``h``, ``w`` are static
        ints; returns float32 image, mask, weight tensors of shape ``(h, w)``."""

        def _read(z_, y_, x_):
            img, msk, wgt = self.read(int(z_), int(y_), int(x_), h, w)
            return (
                np.asarray(img, np.float32),
                np.asarray(msk, np.float32),
                np.asarray(wgt, np.float32),
            )

        out = tf.numpy_function(_read, [z, y0, x0], [tf.float32] * 3, stateful=False)
        return tuple(tf.ensure_shape(t, [h, w]) for t in out)


class ArraySource(PatchSource):
    """In-memory numpy stacks, read with ``tf.slice`` (no Python per patch).

    Images are ``(Z, H, W)`` or ``(Z, H, W, C)``; a float target (regression) stays
    float32, any other target is stored as uint8 (binary or class indices)."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, weights: np.ndarray | None = None):
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        target_dtype = np.float32 if np.asarray(masks).dtype.kind == "f" else np.uint8
        self.masks = np.ascontiguousarray(masks, dtype=target_dtype)
        self.weights = None if weights is None else np.ascontiguousarray(weights, np.float32)
        self.shape = tuple(int(s) for s in self.images.shape)
        self._tensors: tuple[tf.Tensor, tf.Tensor, tf.Tensor | None] | None = None

    def read(self, z, y0, x0, h, w):
        win = (z, slice(y0, y0 + h), slice(x0, x0 + w))  # images keep their channel axis
        weight = np.ones((h, w), np.float32) if self.weights is None else self.weights[win]
        return self.images[win], self.masks[win], weight

    def sampling_table(self, max_points: int = MAX_POINTS, seed: int = 0) -> SamplingTable:
        if self.weights is None:
            return SamplingTable(slices=np.arange(self.shape[0]))
        labelled = self.weights > 0
        per_slice = labelled.reshape(self.shape[0], -1).mean(axis=1)
        slices = np.flatnonzero(per_slice > 0)
        if slices.size == 0:
            raise UserInputError("no labelled pixels: every training weight is 0")
        if per_slice[slices].min() >= SPARSE_FRACTION:
            return SamplingTable(slices=slices)
        points = np.flatnonzero(labelled)
        if points.size > max_points:
            rng = np.random.default_rng(seed)
            points = np.sort(rng.choice(points, size=max_points, replace=False))
        return SamplingTable(points=points.astype(np.int64))

    def _as_tensors(self):
        if self._tensors is None:
            self._tensors = (
                tf.convert_to_tensor(self.images),
                tf.convert_to_tensor(self.masks),
                None if self.weights is None else tf.convert_to_tensor(self.weights),
            )
        return self._tensors

    def tf_read(self, z, y0, x0, h, w):
        images, masks, weights = self._as_tensors()
        begin = tf.stack([tf.cast(z, tf.int32), tf.cast(y0, tf.int32), tf.cast(x0, tf.int32)])
        size = [1, h, w]
        if len(self.shape) == 4:  # (h, w, C)
            channels = self.shape[3]
            img = tf.slice(images, tf.concat([begin, [0]], 0), [*size, channels])
            img = tf.reshape(img, [h, w, channels])
        else:
            img = tf.reshape(tf.slice(images, begin, size), [h, w])
        msk = tf.reshape(tf.cast(tf.slice(masks, begin, size), tf.float32), [h, w])
        if weights is None:
            wgt = tf.ones([h, w], tf.float32)
        else:
            wgt = tf.reshape(tf.slice(weights, begin, size), [h, w])
        return img, msk, wgt


# ----------------------------------------------------------------------------- helpers


def _stateless_int(seed: tf.Tensor, maxval: Any) -> tf.Tensor:
    """Uniform int64 in [0, maxval)."""
    return tf.random.stateless_uniform(
        [], seed, minval=tf.constant(0, tf.int64), maxval=tf.cast(maxval, tf.int64), dtype=tf.int64
    )


# ----------------------------------------------------------------------------- train


def make_train_dataset(
    images: Any,
    masks: Any,
    weights: Any,
    config: Any,
    seed: int | None = None,
    num_parallel_calls: int | None = None,
    deterministic: bool = False,
) -> tf.data.Dataset:
    """Endless training stream of ``(x, y, w)`` batches: ``x`` ``(B, P, P, C)``, ``y`` and
    ``w`` ``(B, P, P, 1)``, float32 (``y`` the target of ``model.task``).

    Parameters
    ----------
    images
        Normalized float32 ``(Z, Y, X)`` stack, or a :class:`PatchSource`
        (then ``masks`` and ``weights`` are ignored).
    masks
        uint8 {0, 1} ``(Z, Y, X)``.
    weights
        float32 ``(Z, Y, X)`` (0 = unlabelled/ignored) or None (all ones).
    config
        The whole ``Config`` (uses ``augment``, ``train.patch_size``,
        ``train.batch_size``, ``train.seed``).
    seed
        Overrides ``config.train.seed``.
    num_parallel_calls
        Parallel map calls; default the CPUs this process may run on.
    deterministic
        Keep the element order (slightly slower). Each element is a function
        of ``(seed, element index)`` either way; without it, parallel workers
        may finish out of order, so batches can be composed differently from
        run to run.

    Slices smaller than the patch are padded (reflected image, weight 0).
    When labels are sparse (some labelled slice is less than half labelled),
    patch centres are drawn near labelled pixels; otherwise uniformly within
    the slices that have labels.
    """
    p = int(config.train.patch_size)
    batch = int(config.train.batch_size)
    aug = config.augment
    seed = int(config.train.seed if seed is None else seed)

    if isinstance(images, PatchSource):
        source = images
        if source.shape[1] < p or source.shape[2] < p:
            raise UserInputError(
                f"slices ({source.shape[1]}x{source.shape[2]}) are smaller than the patch ({p})"
            )
    else:
        images, masks, weights = check_stacks(images, masks, weights, _task(config))
        if images.shape[1] < p or images.shape[2] < p:
            images, masks, weights = pad_stack(images, masks, weights, p, p)
        source = ArraySource(images, masks, weights)
    table = source.sampling_table(seed=seed)
    h, w = source.shape[1:3]
    channels = source.shape[3] if len(source.shape) == 4 else 1
    float_target = _task(config) == "regression"  # resampled like the image

    # source window around each patch (clamped to the slice)
    geometric = geometry_enabled(aug)
    augmenting = geometric or intensity_enabled(aug)
    side = source_margin(aug, p)
    win_h, win_w = min(side, h), min(side, w)
    half = (p - 1) / 2.0

    if table.points is not None:
        points = tf.constant(table.points, tf.int64)
        n_points = int(table.points.size)
        jitter = p // 4
    else:
        slices = tf.constant(np.asarray(table.slices, np.int64))
        n_slices = len(table.slices)

    def sample(index: tf.Tensor):
        element_seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(index, tf.int64)])
        seeds = tf.random.experimental.stateless_split(element_seed, num=4)
        if table.points is not None:
            flat = tf.gather(points, _stateless_int(seeds[0], n_points))
            z = flat // (h * w)
            py = (flat // w) % h
            px = flat % w
            jy = _stateless_int(seeds[1], 2 * jitter + 1)
            jx = _stateless_int(seeds[2], 2 * jitter + 1)
            y0 = tf.clip_by_value(py + jy - jitter - p // 2, 0, h - p)
            x0 = tf.clip_by_value(px + jx - jitter - p // 2, 0, w - p)
        else:
            z = tf.gather(slices, _stateless_int(seeds[0], n_slices))
            y0 = _stateless_int(seeds[1], h - p + 1)
            x0 = _stateless_int(seeds[2], w - p + 1)
        if not geometric:
            img, msk, wgt = source.tf_read(z, y0, x0, p, p)
            out = (_hwc(img), msk[..., None], wgt[..., None])
            if augmenting:  # intensity only: no resampling
                out = augment_patch(*out, aug, seeds[3])
            return out
        # window of win_h x win_w centred on the patch, clamped to the slice
        wy = tf.clip_by_value(y0 + p // 2 - win_h // 2, 0, h - win_h)
        wx = tf.clip_by_value(x0 + p // 2 - win_w // 2, 0, w - win_w)
        img, msk, wgt = source.tf_read(z, wy, wx, win_h, win_w)
        center = (
            tf.cast(y0 - wy, tf.float32) + half,
            tf.cast(x0 - wx, tf.float32) + half,
        )
        out = augment_patch(
            _hwc(img),
            msk[..., None],
            wgt[..., None],
            aug,
            seeds[3],
            p,
            center,
            float_target=float_target,
        )
        x = tf.ensure_shape(out[0], [p, p, channels])
        return (x, *(tf.ensure_shape(t, [p, p, 1]) for t in out[1:]))

    calls = _usable_cpus() if num_parallel_calls is None else num_parallel_calls
    ds = tf.data.Dataset.counter(dtype=tf.int64)
    ds = ds.map(sample, num_parallel_calls=calls, deterministic=deterministic)
    ds = ds.batch(batch, drop_remainder=True)
    ds = ds.prefetch(PREFETCH_BATCHES)
    return ds.with_options(_options(deterministic))


def _usable_cpus() -> int:
    """CPUs this process may run on (a cluster job's allocation, not the node's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no affinity call (macOS, Windows)
        return os.cpu_count() or 1


def _task(config: Any) -> str:
    """``config.model.task`` (``binary`` for configs without a model section)."""
    return getattr(getattr(config, "model", None), "task", "binary")


def _hwc(image: tf.Tensor) -> tf.Tensor:
    """An ``(h, w)`` window as ``(h, w, 1)``; an ``(h, w, C)`` window unchanged."""
    return image[..., None] if image.shape.rank == 2 else image


def _options(deterministic: bool = False) -> tf.data.Options:
    options = tf.data.Options()
    # single-threaded ops per element: the pipeline's parallelism comes from the
    # parallel map, and it does not fight the model's kernels for the cores
    options.threading.max_intra_op_parallelism = 1
    options.deterministic = deterministic
    # no autotuning thread: deleting the iterator at the end of a training waited for its
    # optimisation pass, 14 s after a 1-minute fine-tune and 55 s after a 5-minute one,
    # in about a third of the runs (measured on a 2-core AMD EPYC); the sizes are fixed
    options.autotune.enabled = False
    return options


# ----------------------------------------------------------------------------- validation


def make_val_dataset(images: Any, masks: Any, weights: Any, config: Any) -> tf.data.Dataset:
    """Finite, deterministic validation set of ``(x, y, w)`` batches ``(b, P, P, C)``
    (``y`` and ``w`` ``(b, P, P, 1)``).

    Every slice is tiled into non-overlapping patches; padding at the borders
    has weight 0, so each real pixel is counted exactly once. No augmentation.
    The last batch may be smaller than ``train.batch_size``.
    """
    x, y, w = val_tiles(images, masks, weights, config.train.patch_size, _task(config))
    ds = tf.data.Dataset.from_tensor_slices((x, y, w))
    ds = ds.batch(int(config.train.batch_size))
    return ds.prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------- benchmark


def constant_dataset(config: Any, seed: int = 0) -> tf.data.Dataset:
    """One fixed ``(x, y, w)`` batch with the training shapes, repeated forever.

    Feeding this instead of :func:`make_train_dataset` measures the model alone.
    """
    p = int(config.train.patch_size)
    b = int(config.train.batch_size)
    rng = np.random.default_rng(seed)
    channels = getattr(getattr(config, "model", None), "in_channels", None) or 1
    x = rng.random((b, p, p, channels), dtype=np.float32)
    y = (x[..., :1] > 0.5).astype(np.float32)
    w = np.ones_like(x)
    ds = tf.data.Dataset.from_tensors((tf.constant(x), tf.constant(y), tf.constant(w)))
    return ds.repeat().prefetch(tf.data.AUTOTUNE)
