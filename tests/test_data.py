"""Tests of napari_unet.engine.data.pipeline (tf.data pipelines; tiny stacks)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_unet.engine.config import Config
from napari_unet.engine.data.pipeline import (
    ArraySource,
    PatchSource,
    constant_dataset,
    count_val_batches,
    make_train_dataset,
    make_val_dataset,
    pad_stack,
)
from napari_unet.engine.errors import UserInputError

P = 32
B = 4


def _config(augment: bool = True, **augment_overrides) -> Config:
    cfg = Config.model_validate(
        {"train": {"patch_size": P, "batch_size": B, "seed": 3}, "model": {"depth": 2}}
    )
    cfg.augment.enabled = augment
    for key, value in augment_overrides.items():
        setattr(cfg.augment, key, value)
    return cfg


def _coded_stack(z=2, h=48, w=56):
    """Image whose values encode (z, y, x) exactly; mask derived from it."""
    image = np.arange(z * h * w, dtype=np.float32).reshape(z, h, w)
    mask = (image.astype(np.int64) % 3 == 0).astype(np.uint8)
    return image, mask


def _blobs(shape, seed=0, sigma=3.0):
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), (0, sigma, sigma))
    return (field > 0).astype(np.uint8)


def _take(ds, n):
    return [tuple(t.numpy() for t in batch) for batch in ds.take(n)]


def test_train_batches_shapes_and_values():
    rng = np.random.default_rng(0)
    images = rng.random((3, 64, 64)).astype(np.float32)
    masks = _blobs((3, 64, 64))
    ds = make_train_dataset(images, masks, None, _config())
    for x, y, w in _take(ds, 2):
        for t in (x, y, w):
            assert t.shape == (B, P, P, 1)
            assert t.dtype == np.float32
        assert np.all(np.isfinite(x))
        assert set(np.unique(y)) <= {0.0, 1.0}
        assert set(np.unique(w)) <= {0.0, 1.0}  # ones (weights=None); no padding here
        assert np.all(w == 1.0)


def test_no_augmentation_yields_exact_crops():
    image, mask = _coded_stack()
    _, h, w = image.shape
    ds = make_train_dataset(image, mask, None, _config(augment=False))
    for x, y, wgt in _take(ds, 3):
        for k in range(B):
            patch = x[k, ..., 0]
            first = int(patch[0, 0])
            zz, rest = divmod(first, h * w)
            y0, x0 = divmod(rest, w)
            assert y0 + P <= h and x0 + P <= w
            np.testing.assert_array_equal(patch, image[zz, y0 : y0 + P, x0 : x0 + P])
            np.testing.assert_array_equal(y[k, ..., 0], mask[zz, y0 : y0 + P, x0 : x0 + P])
        assert np.all(wgt == 1.0)


def test_augmented_batches_stay_aligned():
    masks = _blobs((2, 80, 80), seed=1)
    images = masks.astype(np.float32)
    cfg = _config()
    cfg.augment.intensity.enabled = False
    cfg.augment.affine.probability = 1.0
    cfg.augment.elastic.probability = 1.0
    ds = make_train_dataset(images, masks, None, cfg)
    for x, y, _ in _take(ds, 2):
        agree = np.mean((x > 0.5) == (y > 0.5))
        assert agree > 0.99


def test_same_seed_same_stream():
    rng = np.random.default_rng(1)
    images = rng.random((2, 64, 64)).astype(np.float32)
    masks = _blobs((2, 64, 64))
    cfg = _config()

    def first(seed):
        ds = make_train_dataset(images, masks, None, cfg, seed=seed, deterministic=True)
        return _take(ds, 2)[1]

    a, b, c = first(5), first(5), first(6)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])


def test_sparse_labels_are_favoured():
    rng = np.random.default_rng(2)
    z, h, w = 2, 192, 192
    images = rng.random((z, h, w)).astype(np.float32)
    masks = np.zeros((z, h, w), np.uint8)
    weights = np.zeros((z, h, w), np.float32)
    weights[1, 150:158, 20:28] = 1.0  # one small labelled square
    masks[1, 150:154, 20:28] = 1
    source = ArraySource(images, masks, weights)
    table = source.sampling_table()
    assert table.points is not None and table.points.size == 64
    ds = make_train_dataset(images, masks, weights, _config())
    batches = _take(ds, 4)
    with_labels = [np.any(wb[k] > 0) for _, _, wb in batches for k in range(B)]
    # uniform sampling would hit the square in ~8% of patches
    assert np.mean(with_labels) > 0.8


def test_dense_labels_sample_uniformly_over_labelled_slices():
    images = np.zeros((3, 40, 40), np.float32)
    masks = np.zeros((3, 40, 40), np.uint8)
    weights = np.ones((3, 40, 40), np.float32)
    weights[0] = 0  # slice without labels: never drawn
    weights[2, :, :10] = 0  # 75 % labelled: dense
    table = ArraySource(images, masks, weights).sampling_table()
    assert table.points is None
    np.testing.assert_array_equal(table.slices, [1, 2])
    images[1] = 1.0
    images[2] = 2.0
    ds = make_train_dataset(images, masks, weights, _config(augment=False))
    values = {float(x[k, 0, 0, 0]) for x, _, _ in _take(ds, 4) for k in range(B)}
    assert values <= {1.0, 2.0}


@pytest.mark.parametrize("augment", [False, True])
def test_slices_smaller_than_patch(augment):
    rng = np.random.default_rng(3)
    images = rng.random((2, 10, 20)).astype(np.float32)
    masks = (images > 0.5).astype(np.uint8)
    ds = make_train_dataset(images, masks, None, _config(augment=augment))
    x, y, w = _take(ds, 1)[0]
    assert x.shape == y.shape == w.shape == (B, P, P, 1)
    assert np.all(np.isfinite(x))
    counted = w.reshape(B, -1).sum(axis=1)
    assert np.all(counted > 0)
    if not augment:  # the whole padded slice is the patch: only real pixels count
        np.testing.assert_array_equal(counted, 200)
    one_pixel = make_train_dataset(
        np.ones((1, 1, 1), np.float32), np.ones((1, 1, 1)), None, _config(augment=augment)
    )
    x, y, w = _take(one_pixel, 1)[0]
    assert x.shape == (B, P, P, 1) and np.all(np.isfinite(x))
    if not augment:  # (augmented, a zoom may skip the single real pixel)
        np.testing.assert_array_equal(w.reshape(B, -1).sum(axis=1), 1)


def test_pad_stack_reflects_image_and_zeroes_weight():
    image = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    img, msk, wgt = pad_stack(image, np.ones_like(image, np.uint8), None, 4, 5)
    assert img.shape == msk.shape == wgt.shape == (1, 4, 5)
    assert wgt.sum() == 6
    assert set(np.unique(img)) <= set(image.ravel())


def test_val_dataset_covers_every_pixel_once():
    z, h, w = 2, 40, 70  # not multiples of P: padded border tiles
    image = np.arange(z * h * w, dtype=np.float32).reshape(z, h, w)
    mask = (image.astype(np.int64) % 2).astype(np.uint8)
    weights = np.random.default_rng(4).random((z, h, w)).astype(np.float32) + 0.5
    cfg = _config()
    ds = make_val_dataset(image, mask, weights, cfg)
    batches = _take(ds, 1000)  # finite
    assert len(batches) == count_val_batches(image, cfg) == count_val_batches(image.shape, cfg)
    xs = np.concatenate([b[0] for b in batches])
    ys = np.concatenate([b[1] for b in batches])
    ws = np.concatenate([b[2] for b in batches])
    assert xs.shape[1:] == (P, P, 1)
    assert xs.shape[0] == z * 2 * 3
    counted = ws > 0
    values = xs[counted]
    np.testing.assert_array_equal(np.sort(values), image.ravel())  # each pixel exactly once
    np.testing.assert_allclose(ws.sum(), weights.sum(), rtol=1e-5)
    np.testing.assert_array_equal(ys[counted], values.astype(np.int64) % 2)
    # deterministic
    again = np.concatenate([b[0] for b in _take(make_val_dataset(image, mask, weights, cfg), 100)])
    np.testing.assert_array_equal(xs, again)


def test_val_dataset_without_weights_and_small_slices():
    image = np.random.default_rng(5).random((3, 10, 12)).astype(np.float32)
    mask = (image > 0.5).astype(np.uint8)
    cfg = _config()
    batches = _take(make_val_dataset(image, mask, None, cfg), 100)
    assert len(batches) == count_val_batches(image, cfg) == 1
    w = batches[0][2]
    assert w.shape == (3, P, P, 1) and w.sum() == 3 * 10 * 12


def test_constant_dataset():
    cfg = _config()
    batches = _take(constant_dataset(cfg), 3)
    for x, y, w in batches:
        assert x.shape == y.shape == w.shape == (B, P, P, 1)
        np.testing.assert_array_equal(x, batches[0][0])


def test_lazy_patch_source_through_numpy_function():
    rng = np.random.default_rng(6)
    images = rng.random((2, 40, 40)).astype(np.float32)
    masks = (images > 0.5).astype(np.uint8)
    inner = ArraySource(images, masks)

    class Lazy(PatchSource):
        shape = inner.shape

        def read(self, z, y0, x0, h, w):
            return inner.read(z, y0, x0, h, w)

    x, y, w = _take(make_train_dataset(Lazy(), None, None, _config(augment=False)), 1)[0]
    assert x.shape == (B, P, P, 1)
    np.testing.assert_array_equal(y, (x > 0.5).astype(np.float32))
    assert np.all(w == 1.0)
    x, _, _ = _take(make_train_dataset(Lazy(), None, None, _config()), 1)[0]
    assert x.shape == (B, P, P, 1)


def test_bad_inputs():
    images = np.zeros((2, 40, 40), np.float32)
    with pytest.raises(UserInputError):
        make_train_dataset(images, np.zeros((2, 40, 41), np.uint8), None, _config())
    with pytest.raises(UserInputError):
        make_train_dataset(
            images, np.zeros_like(images, np.uint8), np.zeros_like(images), _config()
        )
