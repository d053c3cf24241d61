"""Intensity percentiles of a stack, the statistics behind percentile normalization.

:func:`normalization_stats` gives the values at two percentiles (ignoring NaN and
infinity, on a strided subsample above :data:`MAX_STATS_PIXELS` pixels). It lives
in the I/O stage because :func:`~napari_unet.engine.io.lazy.volume_stats` computes
the same statistics for volumes read lazily; normalization itself
(:func:`~napari_unet.engine.data.preprocess.apply_normalization`) is in the data
stage, which re-exports these names.

Pure numpy; never imports TensorFlow, napari or Qt.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UserInputError

__all__ = ["MAX_STATS_PIXELS", "normalization_stats"]

#: Above this many pixels, percentiles are estimated on a strided subsample.
MAX_STATS_PIXELS = 2**24


def _stats_sample(values: np.ndarray) -> np.ndarray:
    """Return all of `values` or, when large, a strided 1-D subsample.

    The stride is chosen coprime with the row length so that the sample walks
    through every column instead of repeating a few of them.
    """
    size = values.size
    if size <= MAX_STATS_PIXELS:
        return values
    step = math.ceil(size / MAX_STATS_PIXELS)
    width = values.shape[-1] if values.ndim else 1
    while math.gcd(step, width) != 1:
        step += 1
    return values.flat[::step]  # copies only the sampled elements


def _percentiles(values: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """(low, high) percentiles of the finite values; (0, 0) if none are finite.

    Falls back to (min, max) when the two percentiles coincide but the data is
    not constant (e.g. mostly-zero padding with a little content).
    """
    sample = _stats_sample(values)
    if sample.dtype.kind == "f":
        finite = np.isfinite(sample)
        if not finite.all():
            sample = sample[finite]
    elif sample.dtype.kind == "b":
        sample = sample.astype(np.uint8)
    if sample.size == 0:
        return 0.0, 0.0
    lo, hi = np.percentile(sample, [low, high])
    if hi <= lo:
        lo, hi = sample.min(), sample.max()
    return float(lo), float(hi)


def normalization_stats(
    stack: np.ndarray, low: float = 1.0, high: float = 99.8, per_slice: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Intensity values at the `low` and `high` percentiles.

    NaN and infinite values are ignored. Stacks larger than
    :data:`MAX_STATS_PIXELS` (per slice with `per_slice`) are subsampled.

    Parameters
    ----------
    stack
        ``(Z, Y, X)`` stack (a 2D image counts as one slice).
    low, high
        Percentiles in ``[0, 100]``, ``low < high``.
    per_slice
        One (lo, hi) pair per slice instead of one for the whole stack.

    Returns
    -------
    lo, hi : numpy.ndarray
        float64 arrays of shape ``(Z,)`` with `per_slice`, else ``(1,)``.
        Store them to apply the same mapping later with
        :func:`~napari_unet.engine.data.preprocess.apply_normalization`.
    """
    if not 0.0 <= low < high <= 100.0:
        raise UserInputError(f"percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}")
    stack = np.asarray(stack)
    if stack.ndim == 2:
        stack = stack[np.newaxis]
    parts = list(stack) if per_slice else [stack]
    pairs = [_percentiles(part, low, high) for part in parts]
    if not pairs:
        return np.zeros(0), np.zeros(0)
    lo, hi = np.array(pairs, dtype=np.float64).T
    return lo, hi
