"""Tests of napari_unet.engine.data.augment (TensorFlow ops; tiny patches)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from napari_unet.engine.config import AugmentConfig
from napari_unet.engine.data.augment import (
    augment_patch,
    elastic_field,
    geometry_enabled,
    intensity_enabled,
    preview_augmentations,
    source_margin,
)

P = 48


def _blobs(shape, seed=0, sigma=4.0):
    """Binary mask of smooth random blobs (large structures)."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return (field > 0).astype(np.float32)


def _all_off() -> AugmentConfig:
    cfg = AugmentConfig(flips=False, rot90=False)
    cfg.affine.enabled = False
    cfg.elastic.enabled = False
    cfg.intensity.enabled = False
    return cfg


def _geometry_always() -> AugmentConfig:
    """Every geometric op on with probability 1, intensity off."""
    cfg = AugmentConfig()
    cfg.affine.probability = 1.0
    cfg.elastic.probability = 1.0
    cfg.intensity.enabled = False
    return cfg


def _everything_always() -> AugmentConfig:
    cfg = _geometry_always()
    cfg.intensity.enabled = True
    cfg.intensity.noise_probability = 1.0
    cfg.intensity.blur_probability = 1.0
    return cfg


def _only(op: str) -> AugmentConfig:
    """Config with a single operation switched on (always applied)."""
    cfg = _all_off()
    if op in ("flips", "rot90"):
        setattr(cfg, op, True)
    elif op == "affine":
        cfg.affine.enabled = True
        cfg.affine.probability = 1.0
    elif op == "elastic":
        cfg.elastic.enabled = True
        cfg.elastic.probability = 1.0
    else:
        cfg.intensity.enabled = True
        i = cfg.intensity
        i.brightness = 0.0
        i.contrast = (1.0, 1.0)
        i.gamma = (1.0, 1.0)
        i.noise_std = 0.0
        i.blur_sigma = 0.0
        if op == "brightness":
            i.brightness = 0.2
        elif op == "contrast":
            i.contrast = (0.5, 0.7)
        elif op == "gamma":
            i.gamma = (0.5, 0.7)
        elif op == "noise":
            i.noise_std, i.noise_probability = 0.1, 1.0
        elif op == "blur":
            i.blur_sigma, i.blur_probability = 2.0, 1.0
        else:  # pragma: no cover
            raise ValueError(op)
    return cfg


def _run(image, mask, weight, cfg, seed, output_size=None, center=None):
    out = augment_patch(
        image[..., None],
        mask[..., None],
        weight[..., None],
        cfg,
        tf.constant(seed, tf.int64),
        output_size,
        center,
    )
    return tuple(t.numpy()[..., 0] for t in out)


def test_shapes_and_dtypes():
    rng = np.random.default_rng(0)
    src = rng.random((72, 80)).astype(np.float32)
    mask = _blobs((72, 80))
    weight = np.ones_like(mask)
    out = augment_patch(
        src[..., None],
        mask[..., None],
        weight[..., None],
        _everything_always(),
        tf.constant([1, 2], tf.int64),
        P,
        (35.5, 39.5),
    )
    for t in out:
        assert t.shape == (P, P, 1)
        assert t.dtype == tf.float32
    # default output size: the source size
    out = augment_patch(src[..., None], mask[..., None], weight[..., None], AugmentConfig(), [3, 4])
    assert [tuple(t.shape) for t in out] == [(72, 80, 1)] * 3


@pytest.mark.parametrize("seed", [[0, 1], [5, 7], [11, 13]])
def test_image_and_mask_stay_aligned(seed):
    mask = _blobs((96, 96), seed=seed[0])
    image = mask.copy()
    weight = np.ones_like(mask)
    img, msk, _ = _run(image, mask, weight, _geometry_always(), seed, P, (47.5, 47.5))
    agree = np.mean((img > 0.5) == (msk > 0.5))
    assert agree > 0.99, agree
    # something did happen
    assert not np.array_equal(msk, mask[24:72, 24:72])


def test_masks_stay_binary_and_weights_keep_their_values():
    mask = _blobs((64, 64), seed=3)
    rng = np.random.default_rng(1)
    image = rng.random((64, 64)).astype(np.float32)
    weight = np.where(_blobs((64, 64), seed=4) > 0, 2.5, 0.0).astype(np.float32)
    for k in range(4):
        _, msk, wgt = _run(image, mask, weight, _everything_always(), [k, 0])
        assert set(np.unique(msk)) <= {0.0, 1.0}
        assert set(np.unique(wgt)) <= {0.0, 2.5}


def test_weight_zero_regions_stay_zero():
    labelled = _blobs((96, 96), seed=5)
    weight = labelled.copy()  # 1 where labelled, 0 elsewhere
    image = labelled.copy()  # image marks the labelled region
    mask = _blobs((96, 96), seed=6) * labelled
    for k in range(3):
        img, msk, wgt = _run(image, mask, weight, _geometry_always(), [k, 9], P, (47.5, 47.5))
        unlabelled = img < 0.5
        assert np.mean(wgt[unlabelled] == 0) > 0.98
        assert np.all(msk[wgt == 0] == 0)  # mask was 0 wherever weight was 0


def test_all_off_is_identity():
    rng = np.random.default_rng(2)
    image = rng.random((64, 64)).astype(np.float32)
    mask = _blobs((64, 64))
    weight = rng.random((64, 64)).astype(np.float32)
    for cfg in (_all_off(), AugmentConfig(enabled=False)):
        assert not geometry_enabled(cfg) and not intensity_enabled(cfg)
        img, msk, wgt = _run(image, mask, weight, cfg, [1, 2])
        np.testing.assert_array_equal(img, image)
        np.testing.assert_array_equal(msk, mask)
        np.testing.assert_array_equal(wgt, weight)
        # with a smaller output and a centre: an exact crop
        img, msk, wgt = _run(image, mask, weight, cfg, [1, 2], 32, (10 + 15.5, 20 + 15.5))
        np.testing.assert_allclose(img, image[10:42, 20:52], atol=1e-6)
        np.testing.assert_array_equal(msk, mask[10:42, 20:52])
        np.testing.assert_array_equal(wgt, weight[10:42, 20:52])


OPS = ["flips", "rot90", "affine", "elastic", "brightness", "contrast", "gamma", "noise", "blur"]


@pytest.mark.parametrize("op", OPS)
def test_each_op_acts_alone(op):
    rng = np.random.default_rng(3)
    image = ndimage.gaussian_filter(rng.random((P, P)), 1.0).astype(np.float32) * 0.8 + 0.1
    image[5:20, 3:9] = 1.0  # asymmetric structure
    mask = (image > 0.5).astype(np.float32)
    weight = np.ones_like(mask)
    cfg = _only(op)
    changed = False
    for k in range(4):  # flips/rot90 may draw the identity for one seed
        img, msk, wgt = _run(image, mask, weight, cfg, [k, 42])
        assert img.shape == (P, P)
        if op in ("brightness", "contrast", "gamma", "noise", "blur"):
            np.testing.assert_array_equal(msk, mask)  # intensity ops leave the mask alone
            np.testing.assert_array_equal(wgt, weight)
        if not np.allclose(img, image, atol=1e-4):
            changed = True
    assert changed, f"{op} never changed the image"


def test_flips_and_rot90_are_exact_dihedral_transforms():
    rng = np.random.default_rng(4)
    image = rng.random((P, P)).astype(np.float32)
    mask = (image > 0.5).astype(np.float32)
    cfg = _all_off()
    cfg.flips = True
    cfg.rot90 = True
    candidates = []
    for flip in (False, True):
        base = image[:, ::-1] if flip else image
        candidates += [np.rot90(base, k) for k in range(4)]
    seen = set()
    for k in range(24):
        img, msk, _ = _run(image, mask, np.ones_like(mask), cfg, [k, 3])
        matches = [i for i, c in enumerate(candidates) if np.allclose(img, c, atol=1e-6)]
        assert len(matches) == 1
        np.testing.assert_array_equal(msk, (img > 0.5).astype(np.float32))
        seen.add(matches[0])
    assert len(seen) >= 6  # all eight are reachable; 24 draws see most of them


def test_same_seed_same_result_and_seeds_differ():
    rng = np.random.default_rng(5)
    image = rng.random((64, 64)).astype(np.float32)
    mask = _blobs((64, 64))
    weight = np.ones_like(mask)
    cfg = _everything_always()
    a = _run(image, mask, weight, cfg, [7, 8], P, (31.5, 31.5))
    b = _run(image, mask, weight, cfg, [7, 8], P, (31.5, 31.5))
    c = _run(image, mask, weight, cfg, [7, 9], P, (31.5, 31.5))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a[0], c[0])


def test_runs_in_graph_mode():
    cfg = _everything_always()
    src = tf.random.stateless_uniform([64, 64, 1], [0, 0])

    @tf.function
    def f(i):
        seed = tf.stack([tf.constant(0, tf.int64), i])
        return augment_patch(src, tf.round(src), tf.ones_like(src), cfg, seed, 32, (31.5, 31.5))

    out = f(tf.constant(3, tf.int64))
    assert [tuple(t.shape) for t in out] == [(32, 32, 1)] * 3
    assert np.all(np.isfinite(out[0].numpy()))


def test_tiny_source_reflects():
    # a source much smaller than the output: coordinates reflect many times
    image = np.arange(12, dtype=np.float32).reshape(3, 4) / 11.0
    mask = (image > 0.5).astype(np.float32)
    img, msk, _ = _run(image, mask, np.ones_like(mask), _geometry_always(), [1, 1], 16)
    assert img.shape == (16, 16)
    assert img.min() >= 0.0 and img.max() <= 1.0
    assert set(np.unique(msk)) <= {0.0, 1.0}
    one_pixel = np.ones((1, 1), np.float32)
    img, _, _ = _run(one_pixel, one_pixel, one_pixel, _geometry_always(), [1, 1], 8)
    np.testing.assert_allclose(img, 1.0)


def test_elastic_field_is_smooth():
    sigma, grid = 10.0, 3
    fields = [elastic_field((128, 128), grid, sigma, [s, 0]).numpy() for s in range(4)]
    for field in fields:
        assert field.shape == (128, 128, 2)
        dy = np.abs(np.diff(field, axis=0)).max()
        dx = np.abs(np.diff(field, axis=1)).max()
        # control points ~64 px apart: neighbouring displacements differ by far less than 1 px
        assert dy < 1.0 and dx < 1.0
    spread = np.std(np.stack(fields))
    assert 0.3 * sigma < spread < 2.0 * sigma
    # corners are control points: the field is not trivially zero there
    assert np.abs(np.stack(fields)[:, 0, 0]).max() > 1.0


def test_intensity_does_not_touch_mask_and_noise_is_reproducible():
    rng = np.random.default_rng(6)
    image = rng.random((P, P)).astype(np.float32)
    mask = (image > 0.5).astype(np.float32)
    cfg = _all_off()
    cfg.intensity = _everything_always().intensity
    a = _run(image, mask, np.ones_like(mask), cfg, [1, 5])
    b = _run(image, mask, np.ones_like(mask), cfg, [1, 5])
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], mask)


def test_source_margin():
    assert source_margin(AugmentConfig(), 256) == 384
    assert source_margin(_all_off(), 256) == 256
    assert source_margin(_only("rot90"), 256) == 256
    assert source_margin(_only("elastic"), 255) % 2 == 0


def test_preview_augmentations():
    rng = np.random.default_rng(7)
    image = rng.random((40, 50)).astype(np.float32)
    mask = _blobs((40, 50))
    images, masks = preview_augmentations(image, mask, AugmentConfig(), n=3, seed=1)
    assert images.shape == (3, 40, 50) and images.dtype == np.float32
    assert masks.shape == (3, 40, 50) and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 1}
    again, _ = preview_augmentations(image, mask, AugmentConfig(), n=3, seed=1)
    np.testing.assert_array_equal(images, again)
    crops, _ = preview_augmentations(image, None, AugmentConfig(), n=2, seed=1, patch_size=32)
    assert crops.shape == (2, 32, 32)
    with pytest.raises(ValueError):
        preview_augmentations(image[None], mask, AugmentConfig(), n=1)
