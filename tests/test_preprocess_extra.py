"""Flat-field correction, foreground-masked (restricted/weighted) losses, Dice smoothing,
and the on-disk patch cache."""

import os

import numpy as np
import pytest
import tifffile

from napari_unet.engine.config import Config, ForegroundConfig, TrainConfig
from napari_unet.engine.data.flatfield import correct_flat_field, estimate_flat_field
from napari_unet.engine.data.foreground import apply_foreground, otsu_foreground
from napari_unet.engine.data.patch_cache import cache_key, tile_stacks
from napari_unet.engine.data.synthetic import synthetic_em
from napari_unet.engine.training.train import prepare_data

from .conftest import tiny_config


def _vignetted(seed=0, size=96):
    """Flat texture times a smooth left-to-right illumination ramp (0.4 .. 1.6)."""
    rng = np.random.default_rng(seed)
    texture = 100 + 10 * rng.random((3, size, size))
    ramp = np.linspace(0.4, 1.6, size)[None, None, :]
    return (texture * ramp).astype(np.float32)


def test_flat_field_removes_uneven_illumination():
    stack = _vignetted()
    field = estimate_flat_field(stack, 0.125)
    assert field.shape == (96, 96) and field.dtype == np.float32
    assert field.mean() == pytest.approx(1.0, abs=1e-5) and field.min() > 0
    corrected = correct_flat_field(stack, field)
    before = stack[:, :, :20].mean() / stack[:, :, -20:].mean()
    after = corrected[:, :, :20].mean() / corrected[:, :, -20:].mean()
    assert before < 0.45 and after == pytest.approx(1.0, abs=0.1)
    # no positive signal: nothing to correct
    assert np.all(estimate_flat_field(np.zeros((2, 8, 8))) == 1)
    # another slice size: the field is estimated from the stack itself
    assert correct_flat_field(stack[:, :50, :50], field).shape == (3, 50, 50)


def test_otsu_foreground_restrict_and_weight():
    images = np.zeros((2, 10, 10), np.float32)
    images[:, :, 6:] = 1.0  # bright right part
    images[1] = 0.5  # a constant slice is all foreground
    fg = otsu_foreground(images)
    assert fg[0, :, 6:].all() and not fg[0, :, :6].any() and fg[1].all()
    weights = np.ones_like(images)
    off = apply_foreground(weights, images, ForegroundConfig(mode="off"))
    assert off is weights
    restricted = apply_foreground(weights, images, ForegroundConfig(mode="restrict"))
    assert restricted[0, :, :6].max() == 0 and restricted[0, :, 6:].min() == 1
    weighted = apply_foreground(weights * 2, images, ForegroundConfig(mode="weight", weight=0.1))
    np.testing.assert_allclose(weighted[0, :, :6], 0.2)
    np.testing.assert_allclose(weighted[0, :, 6:], 2.0)


def test_prepare_data_applies_flat_field_and_foreground(tmp_path):
    images = _vignetted(size=48).astype(np.uint16)
    masks = np.zeros(images.shape, np.uint8)
    masks[:, 10:30, 10:30] = 1
    config = tiny_config(tmp_path).with_overrides(
        {"data.flat_field": True, "data.foreground": {"mode": "restrict"}, "data.val_fraction": 0.0}
    )
    prepared = prepare_data(config, images, masks)
    flat = prepared.train_images
    assert abs(flat[:, :, :10].mean() - flat[:, :, -10:].mean()) < 0.15
    expected = otsu_foreground(flat)
    np.testing.assert_array_equal(prepared.train_weights > 0, expected)


def test_masked_loss_ignores_pixels_outside_the_foreground():
    import tensorflow as tf

    from napari_unet.engine.model.losses import make_loss

    rng = np.random.default_rng(0)
    y = (rng.random((1, 8, 8, 1)) > 0.5).astype(np.float32)
    image = rng.random((1, 8, 8)).astype(np.float32)
    w = apply_foreground(np.ones((1, 8, 8), np.float32), image, ForegroundConfig(mode="restrict"))
    w = w[..., None]
    p = rng.uniform(0.05, 0.95, (1, 8, 8, 1)).astype(np.float32)
    changed = np.where(w > 0, p, 1 - p).astype(np.float32)  # differ only outside
    for loss in ("bce", "dice", "bce_dice"):
        fn = make_loss(TrainConfig(loss=loss))
        a = float(fn(tf.constant(y), tf.constant(p), tf.constant(w)))
        b = float(fn(tf.constant(y), tf.constant(changed), tf.constant(w)))
        assert a == pytest.approx(b, rel=1e-6), loss


@pytest.mark.parametrize("smooth", [0.0, 1.0, 50.0])
def test_dice_smoothing_reaches_the_loss(smooth):
    import tensorflow as tf

    from napari_unet.engine.model.losses import make_loss

    y = np.zeros((1, 4, 4, 1), np.float32)
    y[0, :2] = 1
    p = np.full((1, 4, 4, 1), 0.3, np.float32)
    w = np.ones_like(y)
    fn = make_loss(Config(train={"loss": "dice", "dice_smooth": smooth}))
    expected = 1 - (2 * (p * y).sum() + smooth) / (p.sum() + y.sum() + smooth)
    assert float(fn(tf.constant(y), tf.constant(p), tf.constant(w))) == pytest.approx(expected)


def test_tile_stacks_cover_and_drop_unlabelled():
    images = np.arange(2 * 40 * 50, dtype=np.float32).reshape(2, 40, 50)
    masks = np.zeros(images.shape, np.uint8)
    weights = np.ones(images.shape, np.float32)
    weights[1] = 0  # nothing labelled on slice 1
    x, _, _ = tile_stacks(images, masks, weights, tile=32, overlap=8)
    assert x.shape[1:] == (32, 32) and x.shape[0] == 4  # 2 x 2 tiles of slice 0 only
    covered = np.zeros((40, 50), bool)
    starts = [(0, 0), (0, 18), (8, 0), (8, 18)]
    for tile, (ty, tx) in zip(x, starts):
        np.testing.assert_array_equal(tile, images[0, ty : ty + 32, tx : tx + 32])
        covered[ty : ty + 32, tx : tx + 32] = True
    assert covered.all()


def test_patch_cache_reuses_and_invalidates(tmp_path):
    images, masks = synthetic_em(slices=3, size=96, cells=10, seed=7)
    img_path, mask_path = tmp_path / "img.tif", tmp_path / "mask.tif"
    tifffile.imwrite(img_path, images, photometric="minisblack")
    tifffile.imwrite(mask_path, masks * 255, photometric="minisblack")
    config = tiny_config(tmp_path).with_overrides(
        {
            "data.patch_cache": str(tmp_path / "cache"),
            "data.images": str(img_path),
            "data.masks": str(mask_path),
        }
    )
    first = prepare_data(config)
    assert first.description["patch_cache"]["hit"] is False
    assert first.train_images.shape[1:] == (64, 64)  # tiles of 2 x patch_size
    assert first.val_images.shape[1:] == (96, 96)  # validation stays whole
    files = list((tmp_path / "cache").glob("prepared-*.npz"))
    assert len(files) == 1
    with np.load(files[0], allow_pickle=False) as stored:
        assert "train_images" in stored.files
    second = prepare_data(config)
    assert second.description["patch_cache"]["hit"] is True
    for name in ("train_images", "train_masks", "train_weights", "val_images", "val_masks"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    # another preprocessing setting misses the cache
    other = config.with_overrides({"data.percentiles": [2.0, 98.0]})
    assert prepare_data(other).description["patch_cache"]["hit"] is False
    # so does a changed data file (new modification time)
    key = cache_key(config, (None, None, None, None))
    stat = img_path.stat()
    os.utime(img_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache_key(config, (None, None, None, None)) != key
    assert prepare_data(config).description["patch_cache"]["hit"] is False
    # an unreadable cache file is rebuilt, not fatal
    for f in (tmp_path / "cache").glob("*.npz"):
        f.write_bytes(b"garbage")
    assert prepare_data(config).description["patch_cache"]["hit"] is False
    assert prepare_data(config).description["patch_cache"]["hit"] is True


def test_training_on_cached_tiles(tmp_path):
    from napari_unet.engine.training.train import train

    images, masks = synthetic_em(slices=2, size=80, cells=8, seed=8)
    config = tiny_config(tmp_path, epochs=1, steps_per_epoch=2, val_em_metrics=False)
    config = config.with_overrides(
        {
            "data.patch_cache": str(tmp_path / "cache"),
            "data.foreground": {"mode": "weight", "weight": 0.2},
        }
    )
    result = train(config, images, masks)
    assert result.stopped_reason == "finished"
    assert list((tmp_path / "cache").glob("*.npz"))
