"""Geometric augmentation: one dense sampling map and one resampling (TensorFlow ops).

A random flip, a random 90-degree rotation, a random affine (rotation, shear,
zoom, shift) and an elastic deformation as in the U-Net paper are composed into
**one** map ``output pixel -> source coordinate`` (:func:`_geometry`). Image,
mask and weight are then resampled once with a gather-based sampler
(:func:`_resample`): the image bilinearly, the mask and the weight
nearest-neighbour from the same source pixel. Coordinates outside the source
are reflected (:func:`_reflect`).

The elastic field (:func:`elastic_field`) is random normal displacements on a
coarse grid, interpolated to every pixel with separable bicubic (Catmull-Rom)
weights precomputed as two small matrices.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import tensorflow as tf

from ..config import AugmentConfig
from .augment_switches import (
    _AFFINE_ON,
    _ANGLE,
    _ELASTIC_ON,
    _FLIP,
    _ROT90,
    _SHEAR,
    _SHIFT_X,
    _SHIFT_Y,
    _ZOOM,
    _affine_on,
    _elastic_on,
)

__all__ = ["elastic_field"]


# ----------------------------------------------------------------------------- elastic field


def _cubic_weights(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys cubic convolution kernel at distances ``t``.

    Parameters
    ----------
    t
        Distances from the sample position, in grid steps.
    a
        Kernel parameter; -0.5 gives Catmull-Rom.

    Returns
    -------
    numpy.ndarray
        Weights, same shape as ``t``; 0 for ``|t| >= 2``.
    """
    t = np.abs(t)
    w = np.zeros_like(t)
    near = t <= 1
    far = (t > 1) & (t < 2)
    w[near] = (a + 2) * t[near] ** 3 - (a + 3) * t[near] ** 2 + 1
    w[far] = a * t[far] ** 3 - 5 * a * t[far] ** 2 + 8 * a * t[far] - 4 * a
    return w


@lru_cache(maxsize=32)
def _interp_matrix(n_out: int, n_grid: int) -> np.ndarray:
    """Bicubic interpolation matrix from ``n_grid`` control points to ``n_out`` pixels.

    The grid points span the output: the first and last control point sit on
    the first and last pixel.

    Parameters
    ----------
    n_out
        Number of output pixels along the axis.
    n_grid
        Number of control points along the axis.

    Returns
    -------
    numpy.ndarray
        float32 ``(n_out, n_grid)``; every row sums to 1.
    """
    if n_out == 1:
        return np.full((1, n_grid), 1.0 / n_grid, np.float32)
    pos = np.arange(n_out, dtype=np.float64) * (n_grid - 1) / (n_out - 1)
    base = np.floor(pos).astype(int)
    m = np.zeros((n_out, n_grid), np.float64)
    for k in range(-1, 3):
        idx = base + k
        w = _cubic_weights(pos - idx)
        np.add.at(m, (np.arange(n_out), np.clip(idx, 0, n_grid - 1)), w)
    m /= m.sum(axis=1, keepdims=True)
    return m.astype(np.float32)


def elastic_field(
    shape: tuple[int, int], grid_points: int, sigma_pixels: float, seed: Any
) -> tf.Tensor:
    """Dense elastic displacement field ``(H, W, 2)`` (dy, dx) in pixels.

    Random normal displacements with std ``sigma_pixels`` on a
    ``grid_points x grid_points`` grid spanning the patch, bicubically
    interpolated (separable, Catmull-Rom) to every pixel.

    Parameters
    ----------
    shape
        ``(H, W)`` of the field.
    grid_points
        Control points per axis.
    sigma_pixels
        Std of the control-point displacements, in pixels.
    seed
        Stateless seed, int tensor of shape ``[2]``.

    Returns
    -------
    tf.Tensor
        float32 ``(H, W, 2)``.
    """
    field = _elastic_yx(shape, grid_points, sigma_pixels, seed)
    return tf.stack([field[0], field[1]], axis=-1)


def _elastic_yx(
    shape: tuple[int, int], grid_points: int, sigma_pixels: float, seed: Any
) -> tf.Tensor:
    """Elastic field channel-first, as used by :func:`_geometry`.

    Parameters
    ----------
    shape, grid_points, sigma_pixels, seed
        As for :func:`elastic_field`.

    Returns
    -------
    tf.Tensor
        float32 ``(2, H, W)``: dy, then dx.
    """
    h, w = int(shape[0]), int(shape[1])
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    coarse = tf.random.stateless_normal([2, grid_points, grid_points], seed) * sigma_pixels
    my = tf.constant(_interp_matrix(h, grid_points))  # (H, g)
    mx_t = tf.constant(_interp_matrix(w, grid_points).T)  # (g, W)
    # (2, H, g) @ (g, W): two tiny matmuls
    rows = tf.einsum("hg,cgk->chk", my, coarse)
    return tf.matmul(rows, mx_t)


# ----------------------------------------------------------------------------- sampling


def _reflect(t: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
    """Reflect float coordinates into [0, n-1] (numpy 'reflect' mode: the edge
    pixel is not repeated). Bilinear sampling at the reflected coordinate equals
    the reflection of the bilinearly interpolated image.

    The usual case (at most one reflection per side) costs two ``abs``; the
    general ``floormod`` (slow on CPU) runs only when a coordinate lies further
    out, e.g. a tiny source.

    Parameters
    ----------
    t
        float32 coordinates along one axis, any shape.
    n
        Number of pixels along that axis.

    Returns
    -------
    tf.Tensor
        Coordinates in ``[0, n - 1]``, same shape as ``t``.
    """
    last = tf.cast(n - 1, tf.float32)

    def once() -> tf.Tensor:
        return last - tf.abs(last - tf.abs(t))

    def general() -> tf.Tensor:
        period = tf.maximum(2.0 * last, 1.0)
        return last - tf.abs(tf.math.floormod(t, period) - last)

    inside = tf.logical_and(tf.reduce_min(t) >= -last, tf.reduce_max(t) <= 2.0 * last)
    # clip: rounding can leave last + ulp
    return tf.clip_by_value(tf.cond(inside, once, general), 0.0, last)


@lru_cache(maxsize=32)
def _output_axes(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Output pixel coordinates relative to the patch centre.

    Parameters
    ----------
    h, w
        Output patch size.

    Returns
    -------
    uy, ux : numpy.ndarray
        float32 column ``(h, 1)`` and row ``(1, w)``.
    """
    uy = np.arange(h, dtype=np.float32)[:, None] - (h - 1) / 2.0
    ux = np.arange(w, dtype=np.float32)[None, :] - (w - 1) / 2.0
    return uy, ux


def _resample(
    image: tf.Tensor,
    mask: tf.Tensor,
    weight: tf.Tensor,
    sy: tf.Tensor,
    sx: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Sample ``image`` (H, W) bilinearly and ``mask``, ``weight`` (H, W) at the
    nearest pixel, at source coordinates ``sy``, ``sx`` (any equal shapes).

    Gathers dominate the cost (a few ns per gathered element on CPU, nearly
    independent of the element size), so values are packed in pairs into
    complex64: (pixel, right neighbour) for the image -> 2 gathers for the 4
    bilinear corners; (mask, weight) -> 1 gather at the nearest pixel.

    Parameters
    ----------
    image, mask, weight
        float32 ``(H, W)`` source arrays.
    sy, sx
        float32 source coordinates of the output pixels; reflected into the source.

    Returns
    -------
    image, mask, weight : tf.Tensor
        float32, shaped like ``sy``.
    """
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    sy = _reflect(sy, h)
    sx = _reflect(sx, w)
    y0f = tf.floor(sy)
    x0f = tf.floor(sx)
    fy = sy - y0f
    fx = sx - x0f
    i00 = tf.cast(y0f, tf.int32) * w + tf.cast(x0f, tf.int32)
    # On the last row/column (only reached with fy/fx == 0, i.e. zero weight)
    # the neighbour index is clamped: the right neighbour of the last column is
    # itself, the row below the last row is clamped into the array.
    right = tf.concat([image[:, 1:], image[:, -1:]], axis=1)
    pairs = tf.reshape(tf.complex(image, right), [-1])
    top = tf.gather_nd(pairs, i00[..., None])
    bottom = tf.gather_nd(pairs, tf.minimum(i00 + w, h * w - 1)[..., None])
    t0, t1 = tf.math.real(top), tf.math.imag(top)
    b0, b1 = tf.math.real(bottom), tf.math.imag(bottom)
    upper = t0 + fx * (t1 - t0)
    lower = b0 + fx * (b1 - b0)
    out_image = upper + fy * (lower - upper)
    # fy >= 0.5 implies a row below exists (likewise for x)
    nearest = i00 + tf.where(fy >= 0.5, w, 0) + tf.where(fx >= 0.5, 1, 0)
    mw = tf.gather_nd(tf.reshape(tf.complex(mask, weight), [-1]), nearest[..., None])
    out_mask, out_weight = tf.math.real(mw), tf.math.imag(mw)
    return out_image, out_mask, out_weight


def _geometry(
    config: AugmentConfig,
    u: tf.Tensor,
    seed_elastic: tf.Tensor,
    out_hw: tuple[int, int],
    center: tuple[tf.Tensor, tf.Tensor],
) -> tuple[tf.Tensor, tf.Tensor]:
    """Source coordinate of every output pixel: flip, rot90, affine and elastic composed.

    Parameters
    ----------
    config
        Augmentation settings; parts switched off are not built.
    u
        float32 ``[_N_SCALARS]`` uniform draws, indexed by the slots of
        :mod:`.augment_switches`.
    seed_elastic
        Stateless seed of the elastic field.
    out_hw
        Output patch size ``(h, w)``.
    center
        Source coordinate ``(y, x)`` of the output patch centre.

    Returns
    -------
    sy, sx : tf.Tensor
        float32, each ``(h, w)``.
    """
    ph, pw = out_hw
    uy_np, ux_np = _output_axes(ph, pw)
    uy = tf.constant(uy_np)
    ux = tf.constant(ux_np)
    one = tf.constant(1.0)
    zero = tf.constant(0.0)
    ty, tx = zero, zero

    def matmul(a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[Any, ...]:
        """Product of two 2x2 matrices given as ``(m00, m01, m10, m11)``."""
        a00, a01, a10, a11 = a
        b00, b01, b10, b11 = b
        return (
            a00 * b00 + a01 * b10,
            a00 * b01 + a01 * b11,
            a10 * b00 + a11 * b10,
            a10 * b01 + a11 * b11,
        )

    # 2x2 matrix M (source offset = M @ output offset) as four scalars.
    mat = (one, zero, zero, one)
    if config.enabled and config.flips:
        sign = tf.where(u[_FLIP] < 0.5, -1.0, 1.0)
        mat = (one, zero, zero, sign)  # flip x
    if config.enabled and config.rot90:
        k = tf.minimum(tf.cast(u[_ROT90] * 4.0, tf.int32), 3)
        c = tf.gather(tf.constant([1.0, 0.0, -1.0, 0.0]), k)
        s = tf.gather(tf.constant([0.0, 1.0, 0.0, -1.0]), k)
        mat = matmul((c, -s, s, c), mat)
    if _affine_on(config):
        a = config.affine
        on = u[_AFFINE_ON] < a.probability
        theta = (2.0 * u[_ANGLE] - 1.0) * math.radians(a.rotation_degrees)
        shear = (2.0 * u[_SHEAR] - 1.0) * math.radians(a.shear_degrees)
        zlo, zhi = max(min(a.zoom), 1e-3), max(max(a.zoom), 1e-3)
        # log-uniform zoom: symmetric between magnification and reduction
        zoom = tf.exp(math.log(zlo) + u[_ZOOM] * (math.log(zhi) - math.log(zlo)))
        theta = tf.where(on, theta, 0.0)
        shear = tf.where(on, shear, 0.0)
        inv_zoom = tf.where(on, 1.0 / zoom, 1.0)
        cos, sin = tf.cos(theta), tf.sin(theta)
        rot = (cos, -sin, sin, cos)
        shr = (one, tf.tan(shear), zero, one)
        aff = matmul(rot, shr)
        aff = tuple(v * inv_zoom for v in aff)
        mat = matmul(mat, aff)
        ty = tf.where(on, (2.0 * u[_SHIFT_Y] - 1.0) * a.shift * ph, 0.0)
        tx = tf.where(on, (2.0 * u[_SHIFT_X] - 1.0) * a.shift * pw, 0.0)
    m00, m01, m10, m11 = mat
    cy = tf.cast(center[0], tf.float32) + ty
    cx = tf.cast(center[1], tf.float32) + tx
    # affine part: outer sums of a column and a row (one full-size op each)
    sy = (cy + m00 * uy) + m01 * ux
    sx = (cx + m10 * uy) + m11 * ux
    if _elastic_on(config):
        e = config.elastic

        def deform() -> tuple[tf.Tensor, tf.Tensor]:
            field = _elastic_yx((ph, pw), e.grid_points, e.sigma_pixels, seed_elastic)
            return sy + field[0], sx + field[1]

        sy, sx = tf.cond(u[_ELASTIC_ON] < e.probability, deform, lambda: (sy, sx))
    return sy, sx
