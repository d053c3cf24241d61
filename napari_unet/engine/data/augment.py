"""Data augmentation for 2D EM patches, in pure TensorFlow ops.

Everything here runs inside ``tf.data.Dataset.map`` (graph mode) as well as
eagerly (the GUI preview). All randomness is *stateless*: the same seed tensor
always gives the same augmentation, so a run is reproducible from
``TrainConfig.seed``.

Design (speed and border quality):

* The geometric part — a random flip, a random 90-degree rotation, a random
  affine (rotation, shear, zoom, shift) and an elastic deformation as in the
  U-Net paper — is composed into **one** dense sampling map
  ``output pixel -> source coordinate``. Image, mask and weight are resampled
  once, with a gather-based sampler: the image bilinearly, the mask and the
  weight nearest-neighbour (from the same source pixel, so binary masks stay
  binary and weight-0 "unlabelled" regions stay exactly 0).
* The source may be larger than the output patch (the data pipeline crops a
  window of about 1.5 patch sides around the patch centre), so rotated and
  deformed patches take real neighbouring pixels; coordinates that still fall
  outside the source are reflected (EM texture continues).
* The elastic field is random normal displacements (std ``sigma_pixels``) on a
  ``grid_points x grid_points`` grid spanning the patch, interpolated to the
  dense field with bicubic (Catmull-Rom) weights. The interpolation is
  separable and precomputed as two small matrices, so it costs two tiny matmuls.
* Intensity operations (gamma, contrast, brightness, blur, noise) touch the
  image only. Random ones (blur, noise) sit behind ``tf.cond``: when not drawn
  they cost nothing. An operation that is switched off in the config is not
  even built into the graph.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import tensorflow as tf

from ..config import AugmentConfig

__all__ = [
    "augment_patch",
    "elastic_field",
    "geometry_enabled",
    "intensity_enabled",
    "preview_augmentations",
    "source_margin",
]

# Slots of the vector of uniform random scalars drawn once per patch. Fixed
# positions mean that switching one operation off does not change the random
# draws of the others.
_FLIP, _ROT90, _AFFINE_ON, _ANGLE, _SHEAR, _ZOOM, _SHIFT_Y, _SHIFT_X = range(8)
_ELASTIC_ON, _BRIGHT, _CONTRAST, _GAMMA, _NOISE_ON, _NOISE_STD, _BLUR_ON, _BLUR_SIGMA = range(8, 16)
_N_SCALARS = 16


# ----------------------------------------------------------------------------- config helpers


def _affine_on(config: AugmentConfig) -> bool:
    a = config.affine
    if not (config.enabled and a.enabled and a.probability > 0):
        return False
    return bool(
        a.rotation_degrees > 0 or a.shift > 0 or a.shear_degrees > 0 or tuple(a.zoom) != (1.0, 1.0)
    )


def _elastic_on(config: AugmentConfig) -> bool:
    e = config.elastic
    return bool(config.enabled and e.enabled and e.probability > 0 and e.sigma_pixels > 0)


def geometry_enabled(config: AugmentConfig) -> bool:
    """True if any geometric transform (and hence resampling) is switched on."""
    geometric = config.flips or config.rot90 or _affine_on(config) or _elastic_on(config)
    return bool(config.enabled and geometric)


def intensity_enabled(config: AugmentConfig) -> bool:
    """True if any photometric operation is switched on."""
    i = config.intensity
    if not (config.enabled and i.enabled):
        return False
    return bool(
        i.brightness > 0
        or tuple(i.contrast) != (1.0, 1.0)
        or tuple(i.gamma) != (1.0, 1.0)
        or (i.noise_std > 0 and i.noise_probability > 0)
        or (i.blur_sigma > 0 and i.blur_probability > 0)
    )


def source_margin(config: AugmentConfig, patch_size: int) -> int:
    """Side of the source window the data pipeline should crop around a patch
    of side ``patch_size`` so that augmented patches rarely need reflection.

    Flips and 90-degree rotations need no margin; affine and elastic transforms
    get about 1.5 patch sides (rounded up to an even number).
    """
    if not config.enabled or not (_affine_on(config) or _elastic_on(config)):
        return int(patch_size)
    side = math.ceil(patch_size * 1.5)
    return side + (side % 2)


# ----------------------------------------------------------------------------- elastic field


def _cubic_weights(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys cubic convolution kernel (a = -0.5: Catmull-Rom) at distances ``t``."""
    t = np.abs(t)
    w = np.zeros_like(t)
    near = t <= 1
    far = (t > 1) & (t < 2)
    w[near] = (a + 2) * t[near] ** 3 - (a + 3) * t[near] ** 2 + 1
    w[far] = a * t[far] ** 3 - 5 * a * t[far] ** 2 + 8 * a * t[far] - 4 * a
    return w


@lru_cache(maxsize=32)
def _interp_matrix(n_out: int, n_grid: int) -> np.ndarray:
    """(n_out, n_grid) bicubic interpolation matrix; grid points span the output
    (first and last control point on the first and last pixel)."""
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
    """
    field = _elastic_yx(shape, grid_points, sigma_pixels, seed)
    return tf.stack([field[0], field[1]], axis=-1)


def _elastic_yx(
    shape: tuple[int, int], grid_points: int, sigma_pixels: float, seed: Any
) -> tf.Tensor:
    """Elastic field channel-first: ``(2, H, W)``."""
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
    """
    last = tf.cast(n - 1, tf.float32)

    def once():
        return last - tf.abs(last - tf.abs(t))

    def general():
        period = tf.maximum(2.0 * last, 1.0)
        return last - tf.abs(tf.math.floormod(t, period) - last)

    inside = tf.logical_and(tf.reduce_min(t) >= -last, tf.reduce_max(t) <= 2.0 * last)
    # clip: rounding can leave last + ulp
    return tf.clip_by_value(tf.cond(inside, once, general), 0.0, last)


@lru_cache(maxsize=32)
def _output_axes(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred output coordinates as a column (h, 1) and a row (1, w)."""
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
    """Source coordinates (sy, sx), each (h, w), of every output pixel."""
    ph, pw = out_hw
    uy_np, ux_np = _output_axes(ph, pw)
    uy = tf.constant(uy_np)
    ux = tf.constant(ux_np)
    one = tf.constant(1.0)
    zero = tf.constant(0.0)
    ty, tx = zero, zero

    def matmul(a, b):
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

        def deform():
            field = _elastic_yx((ph, pw), e.grid_points, e.sigma_pixels, seed_elastic)
            return sy + field[0], sx + field[1]

        sy, sx = tf.cond(u[_ELASTIC_ON] < e.probability, deform, lambda: (sy, sx))
    return sy, sx


# ----------------------------------------------------------------------------- intensity


def _gaussian_blur(image2d: tf.Tensor, sigma: tf.Tensor, radius: int) -> tf.Tensor:
    """Separable Gaussian blur of an (H, W) image with a (2*radius+1) kernel."""
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
    """A fixed ``1024 x 1024`` field of iid standard normal values."""
    rng = np.random.default_rng(20150518)  # U-Net paper date; any fixed seed
    return rng.standard_normal((_NOISE_BANK_SIDE, _NOISE_BANK_SIDE), dtype=np.float32)


def _gaussian_noise(shape: tf.TensorShape, seed: tf.Tensor) -> tf.Tensor:
    """iid N(0, 1) noise of ``shape`` (h, w).

    ``stateless_normal`` costs ~10 ns per pixel on CPU, which is most of the
    augmentation budget; for patches up to half the bank side we take a random
    crop of a fixed normal field instead, with a random sign and transpose
    (~600k distinct crops; within a patch the values are exactly iid normal).
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


# ----------------------------------------------------------------------------- public


def _as_hw(size: Any, default: tuple[int, int]) -> tuple[int, int]:
    if size is None:
        return default
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def augment_patch(
    image: Any,
    mask: Any,
    weight: Any,
    config: AugmentConfig,
    seed: Any,
    output_size: int | tuple[int, int] | None = None,
    center: tuple[Any, Any] | None = None,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Randomly augment one patch; image, mask and weight move together.

    Parameters
    ----------
    image, mask, weight
        ``(H, W, 1)`` float32: normalized image (~[0, 1]), binary mask {0, 1},
        pixel weights (>= 0; 0 = ignored pixel). This is the *source*: it may
        be larger than the output patch (recommended: see
        :func:`source_margin`) so that rotated/deformed patches sample real
        neighbouring pixels; anything outside it is reflected.
    config
        :class:`AugmentConfig`; every operation can be switched off.
    seed
        Stateless seed, int tensor of shape ``[2]``. Same seed, same result.
    output_size
        Output patch side (or ``(h, w)``); default: the source size.
    center
        Source coordinate ``(y, x)`` of the output patch centre; default: the
        source centre. Use half-integers for even sizes (``y0 + (P - 1) / 2``)
        so that the identity transform is an exact crop.

    Returns
    -------
    image, mask, weight
        ``(h, w, 1)`` float32. The image is resampled bilinearly, mask and
        weight nearest-neighbour from the same source pixel: masks stay binary
        and weight-0 regions stay 0.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    mask = tf.convert_to_tensor(mask, tf.float32)
    weight = tf.convert_to_tensor(weight, tf.float32)
    static = image.shape
    src_h = static[0] if static[0] is not None else None
    src_w = static[1] if static[1] is not None else None
    if output_size is None and (src_h is None or src_w is None):
        raise ValueError("augment_patch needs output_size when the source shape is dynamic")
    ph, pw = _as_hw(output_size, (src_h, src_w))
    centered = center is None
    if center is None:
        dyn = tf.shape(image)
        center = (
            (tf.cast(dyn[0], tf.float32) - 1.0) / 2.0,
            (tf.cast(dyn[1], tf.float32) - 1.0) / 2.0,
        )

    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    u = tf.random.stateless_uniform([_N_SCALARS], seeds[0])

    same_size = (ph, pw) == (src_h, src_w)
    if not geometry_enabled(config) and same_size and centered:
        out_img, out_mask, out_weight = image[..., 0], mask[..., 0], weight[..., 0]
    else:
        # with everything off this is an exact crop (reflected outside the source)
        sy, sx = _geometry(config, u, seeds[1], (ph, pw), center)
        out_img, out_mask, out_weight = _resample(
            image[..., 0], mask[..., 0], weight[..., 0], sy, sx
        )
    if intensity_enabled(config):
        out_img = _intensity(config, out_img, u, seeds[2])
    return out_img[..., None], out_mask[..., None], out_weight[..., None]


def preview_augmentations(
    image2d: Any,
    mask2d: Any,
    config: Any,
    n: int = 8,
    seed: int = 0,
    patch_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Preview ``n`` random augmentations of one 2D image and its mask.

    Runs the same TensorFlow ops as training, eagerly. ``config`` is an
    :class:`AugmentConfig` or a whole ``Config`` (then ``train.patch_size``
    is the default patch size). Each preview is a patch of side
    ``patch_size`` (default: the whole image) centred on the image centre and
    sampled from the whole image, so rotations pull in real context.

    Returns
    -------
    images
        ``(n, h, w)`` float32.
    masks
        ``(n, h, w)`` uint8 {0, 1}.
    """
    aug = getattr(config, "augment", config)
    if patch_size is None and hasattr(config, "train"):
        patch_size = config.train.patch_size
    img = np.asarray(image2d, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"preview_augmentations needs a 2D image, got shape {img.shape}")
    if mask2d is None:
        msk = np.zeros(img.shape, np.float32)
    else:
        msk = (np.asarray(mask2d) > 0).astype(np.float32)
        if msk.shape != img.shape:
            raise ValueError(f"mask shape {msk.shape} differs from image shape {img.shape}")
    out_hw = img.shape if patch_size is None else (int(patch_size), int(patch_size))
    image_t = tf.constant(img[..., None])
    mask_t = tf.constant(msk[..., None])
    weight_t = tf.ones_like(mask_t)
    center = ((img.shape[0] - 1) / 2.0, (img.shape[1] - 1) / 2.0)
    images, masks = [], []
    for k in range(int(n)):
        s = tf.constant([int(seed), k], tf.int64)
        out_i, out_m, _ = augment_patch(image_t, mask_t, weight_t, aug, s, out_hw, center)
        images.append(out_i.numpy()[..., 0])
        masks.append(out_m.numpy()[..., 0])
    if not images:
        return np.zeros((0, *out_hw), np.float32), np.zeros((0, *out_hw), np.uint8)
    return np.stack(images).astype(np.float32), (np.stack(masks) > 0.5).astype(np.uint8)
