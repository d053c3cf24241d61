"""Shapes, normalization, resizing and splitting (napari_unet.engine.data.preprocess)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_unet.engine.data.preprocess import (
    apply_normalization,
    as_stack,
    looks_rgb,
    normalization_stats,
    normalize_percentile,
    resize_stack,
    rgb_to_grey,
    split_train_val,
)
from napari_unet.engine.errors import UserInputError
from napari_unet.engine.io import percentiles

# --------------------------------------------------------------------------- as_stack


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((5, 6), (1, 5, 6)),
        ((3, 5, 6), (3, 5, 6)),
        ((2, 4, 4), (2, 4, 4)),  # tiny grey stack, not RGBA
        ((5, 6, 1), (1, 5, 6)),  # trailing singleton channel
        ((1, 3, 1, 5, 6), (3, 5, 6)),  # TZCYX, T = C = 1
        ((3, 1, 5, 6), (3, 5, 6)),
        ((10, 12, 3), (1, 10, 12)),  # RGB image
        ((2, 10, 12, 4), (2, 10, 12)),  # RGBA stack
    ],
)
def test_as_stack_shapes(shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    assert as_stack(np.zeros(shape, np.uint8)).shape == expected


def test_as_stack_rgb_override_and_errors() -> None:
    assert as_stack(np.zeros((10, 12, 3)), rgb=False).shape == (10, 12, 3)
    assert as_stack(np.zeros((2, 4, 4)), rgb=True).shape == (1, 2, 4)
    with pytest.raises(UserInputError, match="shape"):
        as_stack(np.zeros((2, 3, 5, 6)))
    with pytest.raises(UserInputError, match="at least 2"):
        as_stack(np.zeros(4))


def test_rgb_to_grey_values_and_dtypes() -> None:
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = 255
    assert rgb_to_grey(rgb).dtype == np.uint8
    assert np.all(rgb_to_grey(rgb) == round(0.2125 * 255))
    white = np.full((2, 2, 4), 65535, np.uint16)  # alpha ignored, no overflow
    assert np.all(rgb_to_grey(white) == 65535)
    assert rgb_to_grey(np.ones((2, 2, 3), np.float16)).dtype == np.float32
    np.testing.assert_allclose(rgb_to_grey(np.ones((2, 2, 2, 3))), 1.0)
    assert looks_rgb((8, 8, 3)) and not looks_rgb((3, 8, 8)) and not looks_rgb((4, 4, 4))


# --------------------------------------------------------------------------- normalization


def test_normalize_maps_percentiles_to_0_and_1() -> None:
    stack = np.arange(1000, dtype=np.uint16).reshape(10, 10, 10)
    out = normalize_percentile(stack, 0.0, 100.0)
    assert out.dtype == np.float32 and out.shape == stack.shape
    assert out.min() == 0.0 and out.max() == pytest.approx(1.0)
    out = normalize_percentile(stack, 1.0, 99.0)
    lo, hi = np.percentile(stack, [1.0, 99.0])
    np.testing.assert_allclose(out, (stack - lo) / (hi - lo), rtol=1e-5, atol=1e-6)
    assert out.min() < 0 and out.max() > 1  # no clipping by default
    clipped = normalize_percentile(stack, 1.0, 99.0, clip=True)
    assert clipped.min() == 0.0 and clipped.max() == 1.0


@pytest.mark.parametrize(
    "dtype", ["uint8", "uint16", "int16", "int32", "float16", "float32", "float64"]
)
def test_normalize_dtypes(dtype: str) -> None:
    stack = (np.arange(2 * 16 * 16) % 100).reshape(2, 16, 16).astype(dtype)
    out = normalize_percentile(stack, 0.0, 100.0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, stack.astype(np.float64) / 99.0, atol=1e-6)


def test_normalize_large_int32_values_are_exact() -> None:
    stack = (np.arange(64, dtype=np.int64).reshape(1, 8, 8) + 2**30).astype(np.int32)
    out = normalize_percentile(stack, 0.0, 100.0)
    np.testing.assert_allclose(out.ravel(), np.arange(64) / 63.0, atol=1e-6)


def test_normalize_nan_and_inf() -> None:
    stack = np.arange(100, dtype=np.float32).reshape(1, 10, 10)
    stack[0, 0, :3] = [np.nan, np.inf, -np.inf]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = normalize_percentile(stack, 0.0, 100.0)
    assert np.isfinite(out).all()
    assert out[0, 0, :3].tolist() == [0.0, 0.0, 0.0]
    assert out[0, 9, 9] == pytest.approx(1.0)
    assert out[0, 0, 3] == pytest.approx(0.0)  # 3 is the smallest finite value


def test_normalize_constant_and_all_nan_slices_without_warnings() -> None:
    stack = np.zeros((3, 4, 4), np.float32)
    stack[1] = 5.0
    stack[2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = normalize_percentile(stack, per_slice=True)
        whole = normalize_percentile(np.full((2, 3, 3), 7, np.uint8))
    assert np.all(out == 0.0)
    assert np.all(whole == 0.0) and whole.dtype == np.float32


def test_normalize_sparse_image_falls_back_to_min_max() -> None:
    stack = np.zeros((1, 100, 100), np.uint8)
    stack[0, 0, 0] = 200  # both percentiles are 0
    out = normalize_percentile(stack)
    assert out[0, 0, 0] == pytest.approx(1.0) and out[0, 1, 1] == 0.0


def test_normalize_per_slice() -> None:
    stack = np.stack([np.linspace(0, 10, 100), np.linspace(100, 300, 100)]).reshape(2, 10, 10)
    out = normalize_percentile(stack, 0.0, 100.0, per_slice=True)
    for z in range(2):
        assert out[z].min() == pytest.approx(0.0) and out[z].max() == pytest.approx(1.0)
    whole = normalize_percentile(stack, 0.0, 100.0)
    assert whole[0].max() < 0.05 and whole[1].max() == pytest.approx(1.0)


def test_normalization_stats_round_trip() -> None:
    stack = np.random.default_rng(0).normal(100, 10, (3, 20, 20))
    lo, hi = normalization_stats(stack, 2.0, 98.0)
    assert lo.shape == hi.shape == (1,)
    assert lo[0] == pytest.approx(np.percentile(stack, 2.0))
    np.testing.assert_array_equal(
        apply_normalization(stack, lo, hi), normalize_percentile(stack, 2, 98)
    )
    lo_s, hi_s = normalization_stats(stack, 2.0, 98.0, per_slice=True)
    assert lo_s.shape == (3,)
    other = stack[:2] + 5  # stored stats apply to new data
    out = apply_normalization(other, lo, hi)
    np.testing.assert_allclose(out, (other - lo[0]) / (hi[0] - lo[0]), rtol=1e-5)
    with pytest.raises(UserInputError, match="3 values"):
        apply_normalization(stack[:2], lo_s, hi_s)
    with pytest.raises(UserInputError, match="percentiles"):
        normalization_stats(stack, 50.0, 10.0)


def test_normalize_2d_input_keeps_shape() -> None:
    out = normalize_percentile(np.arange(20.0).reshape(4, 5), 0.0, 100.0)
    assert out.shape == (4, 5) and out.max() == pytest.approx(1.0)


def test_big_stacks_use_a_subsample(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(percentiles, "MAX_STATS_PIXELS", 1000)
    stack = np.random.default_rng(1).uniform(0, 1, (4, 64, 64)).astype(np.float32)
    lo, hi = normalization_stats(stack, 1.0, 99.0)
    assert lo[0] == pytest.approx(0.01, abs=0.02) and hi[0] == pytest.approx(0.99, abs=0.02)
    columns = np.broadcast_to(np.arange(64), (4, 64, 64)).copy()  # value = column index
    sample = percentiles._stats_sample(columns)
    assert sample.size <= 1000
    assert len(np.unique(sample)) == 64  # the stride does not alias with the row length


# --------------------------------------------------------------------------- resize


def test_resize_image_and_mask() -> None:
    image = np.random.default_rng(2).uniform(0, 255, (2, 20, 30)).astype(np.uint8)
    out = resize_stack(image, (10, 15), order=1)
    assert out.shape == (2, 10, 15) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 255
    mask = np.zeros((2, 20, 30), np.uint8)
    mask[:, 5:15, 10:20] = 3
    small = resize_stack(mask, (10, 15), order=0)
    assert small.dtype == np.uint8 and set(np.unique(small)) == {0, 3}
    big = resize_stack(mask.astype(bool), (40, 60), order=0)
    assert big.dtype == bool and big.sum() == mask.astype(bool).sum() * 4
    same = resize_stack(mask, (20, 30), order=0)
    np.testing.assert_array_equal(same, mask)
    assert resize_stack(np.zeros((5, 6)), (10, 12)).shape == (1, 10, 12)
    with pytest.raises(UserInputError, match="height, width"):
        resize_stack(mask, (0, 5))


def test_resize_downsampling_is_anti_aliased() -> None:
    checker = (np.indices((1, 64, 64)).sum(axis=0) % 2).astype(np.float32)
    out = resize_stack(checker, (16, 16), order=1)
    assert np.abs(out - 0.5).max() < 0.1


# --------------------------------------------------------------------------- split


@pytest.mark.parametrize("n", [2, 3, 7, 30, 100])
@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5, 0.9])
def test_split_properties(n: int, fraction: float) -> None:
    train, val = split_train_val(n, fraction, seed=3)
    assert len(val) >= 1 and len(train) >= 1
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(n))
    assert not set(train) & set(val)
    assert list(train) == sorted(train) and list(val) == sorted(val)


def test_split_fraction_rounding_and_determinism() -> None:
    train, val = split_train_val(30, 0.1, seed=0)
    assert len(val) == 3 and len(train) == 27
    again = split_train_val(30, 0.1, seed=0)
    np.testing.assert_array_equal(val, again[1])
    others = {tuple(split_train_val(30, 0.1, seed=s)[1]) for s in range(5)}
    assert len(others) > 1


def test_split_empty_validation() -> None:
    train, val = split_train_val(5, 0.0, seed=0)
    assert train.tolist() == [0, 1, 2, 3, 4] and val.size == 0
    train, val = split_train_val(1, 0.5, seed=0)
    assert train.tolist() == [0] and val.size == 0
    with pytest.raises(UserInputError):
        split_train_val(0, 0.1)
    with pytest.raises(UserInputError):
        split_train_val(5, 1.0)
