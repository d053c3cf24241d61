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

Layout: :mod:`.augment_switches` (which operations are on, random-draw slots,
:func:`source_margin`), :mod:`.augment_geometry` (sampling map, elastic field,
resampler), :mod:`.augment_intensity` (photometric operations); this module
composes them (:func:`augment_patch`, :func:`preview_augmentations`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from ..config import AugmentConfig
from .augment_geometry import _geometry, _resample, elastic_field
from .augment_intensity import _intensity
from .augment_switches import _N_SCALARS, geometry_enabled, intensity_enabled, source_margin

__all__ = [
    "augment_patch",
    "elastic_field",
    "geometry_enabled",
    "intensity_enabled",
    "preview_augmentations",
    "source_margin",
]


def _as_hw(size: Any, default: tuple[int, int]) -> tuple[int, int]:
    """An output size as ``(h, w)``.

    Parameters
    ----------
    size
        ``None``, one side, or ``(h, w)``.
    default
        Returned when ``size`` is None.

    Returns
    -------
    tuple of int
        ``(h, w)``.
    """
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
    float_target: bool = False,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Randomly augment one patch; image, mask and weight move together.

    Parameters
    ----------
    image, mask, weight
        float32: normalized image ``(H, W, C)`` (~[0, 1]; every channel moves the same
        way), target ``(H, W, 1)`` (binary mask {0, 1}, class indices, or a float image
        with `float_target`), pixel weights ``(H, W, 1)`` (>= 0; 0 = ignored pixel).
        This is the *source*: it may
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
    float_target
        The target is a float image (regression): it is resampled bilinearly like the
        image instead of nearest-neighbour. Intensity changes touch the image only.

    Returns
    -------
    image, mask, weight
        float32 ``(h, w, C)``, ``(h, w, 1)``, ``(h, w, 1)``. The image is resampled
        bilinearly, mask and weight nearest-neighbour from the same source pixel: masks
        stay binary (or class indices) and weight-0 regions stay 0.
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
    channels = image.shape[-1] or 1
    if not geometry_enabled(config) and same_size and centered:
        planes = [image[..., c] for c in range(channels)]
        out_mask, out_weight = mask[..., 0], weight[..., 0]
    else:
        # with everything off this is an exact crop (reflected outside the source)
        sy, sx = _geometry(config, u, seeds[1], (ph, pw), center)
        first, out_mask, out_weight = _resample(image[..., 0], mask[..., 0], weight[..., 0], sy, sx)
        # the other channels (and a float target) at the same source coordinates
        planes = [first] + [
            _resample(image[..., c], mask[..., 0], weight[..., 0], sy, sx)[0]
            for c in range(1, channels)
        ]
        if float_target:
            out_mask = _resample(mask[..., 0], mask[..., 0], weight[..., 0], sy, sx)[0]
    if intensity_enabled(config):
        planes = [
            _intensity(config, plane, u, _channel_seed(seeds[2], c))
            for c, plane in enumerate(planes)
        ]
    return tf.stack(planes, axis=-1), out_mask[..., None], out_weight[..., None]


def _channel_seed(seed: tf.Tensor, channel: int) -> tf.Tensor:
    """The noise seed of `channel`: `seed` itself for the first, so one-channel patches
    are augmented exactly as before channels existed."""
    return seed if channel == 0 else tf.random.experimental.stateless_fold_in(seed, channel)


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
