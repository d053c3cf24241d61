"""Photometric augmentation of the image only: gamma, contrast, brightness, blur,
noise (TensorFlow ops).

Random operations (blur, noise) sit behind ``tf.cond``: when not drawn they cost
nothing. An operation switched off in the config is not built into the graph.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import tensorflow as tf

from ..config import AugmentConfig
from .augment_switches import (
    _BLUR_ON,
    _BLUR_SIGMA,
    _BRIGHT,
    _CONTRAST,
    _GAMMA,
    _NOISE_ON,
    _NOISE_STD,
)


def _gaussian_blur(image2d: tf.Tensor, sigma: tf.Tensor, radius: int) -> tf.Tensor:
    """Separable Gaussian blur with reflected borders.

    Parameters
    ----------
    image2d
        float32 ``(H, W)`` image.
    sigma
        Gaussian std in pixels (at least 1e-3).
    radius
        Kernel half-width: the kernel has ``2 * radius + 1`` taps.

    Returns
    -------
    tf.Tensor
        Blurred float32 ``(H, W)`` image.
    """
    x = tf.cast(tf.range(-radius, radius + 1), tf.float32)
    kernel = tf.exp(-0.5 * tf.square(x / tf.maximum(sigma, 1e-3)))
    kernel = kernel / tf.reduce_sum(kernel)
    img = image2d[None, :, :, None]
    mode = "REFLECT"
    img = tf.pad(img, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode=mode)
    img = tf.nn.conv2d(img, tf.reshape(kernel, [-1, 1, 1, 1]), 1, "VALID")
    img = tf.nn.conv2d(img, tf.reshape(kernel, [1, -1, 1, 1]), 1, "VALID")
    return img[0, :, :, 0]


_NOISE_BANK_SIDE = 1024


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed ``1024 x 1024`` field of iid standard normal values.

    Returns
    -------
    numpy.ndarray
        float32 ``(_NOISE_BANK_SIDE, _NOISE_BANK_SIDE)``, the same in every process.
    """
    rng = np.random.default_rng(20150518)  # U-Net paper date; any fixed seed
    return rng.standard_normal((_NOISE_BANK_SIDE, _NOISE_BANK_SIDE), dtype=np.float32)


def _gaussian_noise(shape: tf.TensorShape, seed: tf.Tensor) -> tf.Tensor:
    """iid N(0, 1) noise of ``shape`` (h, w).

    ``stateless_normal`` costs ~10 ns per pixel on CPU, which is most of the
    augmentation budget; for patches up to half the bank side we take a random
    crop of a fixed normal field instead, with a random sign and transpose
    (~600k distinct crops; within a patch the values are exactly iid normal).

    Parameters
    ----------
    shape
        Static ``(h, w)`` of the noise.
    seed
        Stateless seed, int tensor of shape ``[2]``.

    Returns
    -------
    tf.Tensor
        float32 ``(h, w)``.
    """
    h, w = int(shape[0]), int(shape[1])
    side = _NOISE_BANK_SIDE
    if max(h, w) > side // 2:
        return tf.random.stateless_normal([h, w], seed)
    r = tf.random.stateless_uniform([4], seed)
    n = max(h, w)
    bank = tf.constant(_noise_bank())
    y0 = tf.cast(r[0] * (side - n + 1), tf.int32)
    x0 = tf.cast(r[1] * (side - n + 1), tf.int32)
    crop = tf.slice(bank, tf.stack([y0, x0]), [n, n])
    crop = tf.cond(r[2] < 0.5, lambda: tf.transpose(crop), lambda: crop)
    sign = tf.where(r[3] < 0.5, -1.0, 1.0)
    return sign * crop[:h, :w]


def _intensity(
    config: AugmentConfig, image2d: tf.Tensor, u: tf.Tensor, seed_noise: tf.Tensor
) -> tf.Tensor:
    """Apply gamma, contrast, brightness, then (randomly) blur and noise to the image.

    Parameters
    ----------
    config
        Augmentation settings; operations switched off are not built.
    image2d
        float32 ``(h, w)`` image (the mask and weight are never touched).
    u
        float32 ``[_N_SCALARS]`` uniform draws, indexed by the slots of
        :mod:`.augment_switches`.
    seed_noise
        Stateless seed of the noise.

    Returns
    -------
    tf.Tensor
        float32 ``(h, w)``.
    """
    i = config.intensity
    x = image2d
    glo, ghi = max(min(i.gamma), 1e-3), max(max(i.gamma), 1e-3)
    if (glo, ghi) != (1.0, 1.0):
        gamma = tf.exp(math.log(glo) + u[_GAMMA] * (math.log(ghi) - math.log(glo)))
        # gamma on the positive part; values below 0 (normalization tails) stay linear
        # exp(g log x) is ~6x faster than tf.pow on CPU; log(0) = -inf -> 0
        x = tf.exp(gamma * tf.math.log(tf.maximum(x, 0.0))) + tf.minimum(x, 0.0)
    clo, chi = min(i.contrast), max(i.contrast)
    if (clo, chi) != (1.0, 1.0):
        contrast = clo + u[_CONTRAST] * (chi - clo)
        mean = tf.reduce_mean(x)
        x = (x - mean) * contrast + mean
    if i.brightness > 0:
        x = x + (2.0 * u[_BRIGHT] - 1.0) * i.brightness
    if i.blur_sigma > 0 and i.blur_probability > 0 and min(x.shape) > 1:
        radius = max(1, math.ceil(2.5 * i.blur_sigma))
        radius = min(radius, min(x.shape) - 1)
        sigma = tf.maximum(u[_BLUR_SIGMA] * i.blur_sigma, 0.1)
        x = tf.cond(
            u[_BLUR_ON] < i.blur_probability,
            lambda: _gaussian_blur(x, sigma, radius),
            lambda: x,
        )
    if i.noise_std > 0 and i.noise_probability > 0:
        std = u[_NOISE_STD] * i.noise_std
        x = tf.cond(
            u[_NOISE_ON] < i.noise_probability,
            lambda: x + std * _gaussian_noise(x.shape, seed_noise),
            lambda: x,
        )
    return x
