"""Tests of the numpy metrics (and the U-Net border weights) on tiny arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import adapted_rand_error
from skimage.metrics import variation_of_information as sk_vi

from napari_unet.engine.data import weights as W
from napari_unet.engine.errors import UserInputError
from napari_unet.engine.evaluation import metrics as m

# ---------------------------------------------------------------- pixel level


def test_pixel_measures_known_values():
    true = np.array([[1, 1, 0, 0]], np.uint8)
    pred = np.array([[1, 0, 1, 0]], np.uint8)
    assert m.pixel_error(pred, true) == 0.5
    assert m.pixel_accuracy(pred, true) == 0.5
    assert m.dice(pred, true) == pytest.approx(0.5)  # 2*1 / (2+2)
    assert m.iou(pred, true) == pytest.approx(1 / 3)
    assert m.dice(pred, true, smooth=1.0) == pytest.approx(3 / 5)


def test_empty_masks_are_perfect():
    empty = np.zeros((3, 3), np.uint8)
    assert m.dice(empty, empty) == 1.0
    assert m.iou(empty, empty) == 1.0
    assert m.pixel_error(empty, empty) == 0.0
    assert m.dice(empty, np.ones_like(empty)) == 0.0


def test_pixel_difference_percent():
    mask = np.array([1, 0, 1, 0], np.uint8)
    prob = np.array([0.5, 0.5, 1.0, 0.0], np.float32)
    assert m.pixel_difference_percent(mask, prob) == pytest.approx(25.0)


@pytest.mark.parametrize(
    "fn", [m.pixel_error, m.dice, m.iou, m.pixel_difference_percent, m.evaluate]
)
def test_shape_mismatch_is_user_error(fn):
    with pytest.raises(UserInputError):
        fn(np.zeros((2, 3)), np.zeros((3, 2)))


# ---------------------------------------------------------------- segments


def test_segment_interiors_grows_into_boundary():
    prob = np.zeros((5, 7), np.float32)
    prob[:, :2] = 0.9  # left cell
    prob[:, 5:] = 0.8  # right cell
    prob[:, 3] = 0.5  # exactly at threshold: boundary (strict >)
    labels = m.segment_interiors(prob)
    assert labels.dtype == np.int32
    assert set(np.unique(labels)) == {1, 2}
    assert (labels[:, :3] == labels[0, 0]).all()  # column 2 is nearer the left cell
    assert (labels[:, 4:] == labels[0, 6]).all()  # column 4 is nearer the right cell
    assert labels[0, 0] != labels[0, 6]


def test_segment_interiors_mask_and_empty():
    mask = np.array([[1, 0, 1]], np.uint8)
    assert len(np.unique(m.segment_interiors(mask))) == 2
    assert not m.segment_interiors(np.zeros((4, 4), np.float32)).any()
    assert (m.segment_interiors(np.ones((2, 2), np.uint8)) == 1).all()
    with pytest.raises(UserInputError):
        m.segment_interiors(np.zeros((2, 2, 2)))


def test_gt_segments_four_connected_not_grown():
    true = np.array([[1, 0], [0, 1]], np.uint8)  # diagonal neighbours: two segments
    labels = m.gt_segments(true)
    assert labels.dtype == np.int32
    assert labels[0, 1] == 0 and labels[1, 0] == 0
    assert labels[0, 0] != labels[1, 1] and labels[0, 0] > 0 and labels[1, 1] > 0


# ---------------------------------------------------------------- Rand / VI


def _brute_force_rand(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
    """Ordered pixel pairs (self-pairs included) over gt foreground."""
    inside = gt.ravel() > 0
    g = gt.ravel()[inside]
    p = pred.ravel()[inside]
    same_g = g[:, None] == g[None, :]
    same_p = p[:, None] == p[None, :]
    both = np.count_nonzero(same_g & same_p)
    precision = both / np.count_nonzero(same_p)
    recall = both / np.count_nonzero(same_g)
    return 2 * precision * recall / (precision + recall), precision, recall


def _two_cells() -> np.ndarray:
    gt = np.zeros((4, 9), np.int32)
    gt[:, :4] = 1
    gt[:, 5:] = 2  # column 4 is membrane (0)
    return gt


def test_identical_segmentations():
    gt = _two_cells()
    relabelled = np.where(gt == 1, 7, np.where(gt == 2, 3, 0))
    score = m.rand_fscore(relabelled, gt)
    assert score.fscore == pytest.approx(1.0)
    assert score.error == pytest.approx(0.0)
    assert m.rand_error(relabelled, gt) == pytest.approx(0.0)
    vi = m.variation_of_information(relabelled, gt)
    assert vi.vi == pytest.approx(0.0) and vi.split == 0.0 and vi.merge == 0.0


def test_merge_loses_precision_only():
    gt = _two_cells()
    merged = np.ones_like(gt)
    score = m.rand_fscore(merged, gt)
    assert score.recall == pytest.approx(1.0)
    assert score.precision == pytest.approx(0.5)  # two equal cells merged
    vi = m.variation_of_information(merged, gt)
    assert vi.split == pytest.approx(0.0)
    assert vi.merge == pytest.approx(math.log(2))


def test_split_loses_recall_only():
    gt = _two_cells()
    split = gt.copy()
    split[:2, :4] = 5  # cut cell 1 in halves
    score = m.rand_fscore(split, gt)
    assert score.precision == pytest.approx(1.0)
    assert score.recall < 1.0
    vi = m.variation_of_information(split, gt)
    assert vi.merge == pytest.approx(0.0)
    assert vi.split == pytest.approx(0.5 * math.log(2))  # half the pixels, 1 bit


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rand_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 4, size=(6, 7))  # 0 = ignored background
    pred = rng.integers(0, 5, size=(6, 7))
    score = m.rand_fscore(pred, gt)
    f, p, r = _brute_force_rand(pred, gt)
    assert score.fscore == pytest.approx(f)
    assert score.precision == pytest.approx(p)
    assert score.recall == pytest.approx(r)
    assert score.n == np.count_nonzero(gt)


@pytest.mark.parametrize("seed", [0, 1])
def test_rand_agrees_with_skimage(seed):
    """skimage counts pairs of distinct pixels (n^2 - n) and returns precision and
    recall swapped (scikit-image issue #6485); otherwise the same definition."""
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 5, size=(12, 10))
    pred = rng.integers(1, 6, size=(12, 10))
    s = m.rand_fscore(pred, gt)
    are, sk_prec, sk_rec = adapted_rand_error(gt, pred)
    n = s.n
    assert sk_prec == pytest.approx((s.sum_ab - n) / (s.sum_a - n))  # = our recall
    assert sk_rec == pytest.approx((s.sum_ab - n) / (s.sum_b - n))  # = our precision
    assert 1 - are == pytest.approx(2 * (s.sum_ab - n) / (s.sum_a + s.sum_b - 2 * n))


def test_rand_close_to_skimage_on_large_segments():
    gt = np.zeros((60, 60), np.int32)
    gt[:, :29] = 1
    gt[:, 31:] = 2
    pred = np.zeros_like(gt) + 1
    pred[:, 45:] = 2  # merge part of cell 2 into cell 1
    s = m.rand_fscore(pred, gt)
    are, sk_prec, sk_rec = adapted_rand_error(gt, pred)
    assert s.fscore == pytest.approx(1 - are, abs=1e-3)
    assert s.precision == pytest.approx(sk_rec, abs=1e-3)
    assert s.recall == pytest.approx(sk_prec, abs=1e-3)


@pytest.mark.parametrize("seed", [0, 1])
def test_vi_agrees_with_skimage(seed):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 4, size=(9, 8))
    pred = rng.integers(0, 5, size=(9, 8))
    vi = m.variation_of_information(pred, gt)
    sk_split, sk_merge = sk_vi(gt, pred, ignore_labels=(0,)) * math.log(2)  # bits -> nats
    assert vi.split == pytest.approx(sk_split)
    assert vi.merge == pytest.approx(sk_merge)
    assert vi.vi == pytest.approx(sk_split + sk_merge)


def test_pred_zero_conventions():
    gt = _two_cells()
    nothing = np.zeros_like(gt)
    as_segment = m.rand_fscore(nothing, gt)
    assert as_segment.recall == pytest.approx(1.0) and as_segment.precision < 1
    singles = m.rand_fscore(nothing, gt, pred_zero="singletons")
    assert singles.precision == pytest.approx(1.0) and singles.recall < 0.1
    f, _, _ = _brute_force_rand(np.arange(gt.size).reshape(gt.shape) + 1, gt)
    assert singles.fscore == pytest.approx(f)
    with pytest.raises(ValueError):
        m.rand_fscore(nothing, gt, pred_zero="other")


def test_empty_ground_truth_is_nan():
    empty = np.zeros((3, 3), np.int32)
    assert math.isnan(m.rand_fscore(np.ones_like(empty), empty).fscore)
    assert math.isnan(m.variation_of_information(np.ones_like(empty), empty).vi)


# ---------------------------------------------------------------- evaluate


def _tiny_stack() -> np.ndarray:
    true = np.zeros((2, 10, 12), np.uint8)
    true[:, 1:9, 1:5] = 1
    true[:, 1:9, 7:11] = 1
    return true


def test_evaluate_perfect_probability_and_mask():
    true = _tiny_stack()
    prob = np.where(true == 1, 0.9, 0.1).astype(np.float32)
    for pred in (prob, true):
        result = m.evaluate(pred, true)
        assert result["n_slices"] == 2 and len(result["per_slice"]) == 2
        assert result["pixel_error"] == 0.0
        assert result["dice"] == pytest.approx(1.0)
        assert result["iou"] == pytest.approx(1.0)
        assert result["rand_fscore"] == pytest.approx(1.0)
        assert result["rand_error"] == pytest.approx(0.0)
        assert result["vi"] == pytest.approx(0.0)
    assert m.evaluate(prob, true)["pixel_difference_percent"] == pytest.approx(10.0)
    assert m.evaluate(true, true)["pixel_difference_percent"] == 0.0


def test_evaluate_merge_and_means():
    true = _tiny_stack()
    pred = true.copy()
    pred[1, 4, 5:7] = 1  # bridge the two cells in slice 1 only
    result = m.evaluate(pred, true)
    first, second = result["per_slice"]
    assert first["rand_fscore"] == pytest.approx(1.0)
    assert second["rand_fscore"] < 1.0 and second["rand_recall"] == pytest.approx(1.0)
    assert second["vi_merge"] > 0 and second["vi_split"] == pytest.approx(0.0)
    for key in ("rand_fscore", "pixel_error", "dice", "vi"):
        assert result[key] == pytest.approx((first[key] + second[key]) / 2)


def test_evaluate_2d_and_empty_slice():
    true = _tiny_stack()
    assert m.evaluate(true[0], true[0])["n_slices"] == 1
    stack = true.copy()
    stack[1] = 0  # no ground-truth foreground: Rand/VI undefined on that slice
    result = m.evaluate(stack, stack)
    assert math.isnan(result["per_slice"][1]["rand_fscore"])
    assert result["rand_fscore"] == pytest.approx(1.0)  # mean ignores the NaN slice
    assert result["dice"] == pytest.approx(1.0)
    with pytest.raises(UserInputError):
        m.evaluate(np.zeros((1, 2, 3, 4)), np.zeros((1, 2, 3, 4)))


def test_evaluate_threshold():
    true = _tiny_stack()
    prob = np.where(true == 1, 0.6, 0.1).astype(np.float32)
    assert m.evaluate(prob, true, threshold=0.5)["dice"] == pytest.approx(1.0)
    assert m.evaluate(prob, true, threshold=0.7)["dice"] == pytest.approx(0.0)


# ---------------------------------------------------------------- border weights


def _brute_force_weights(mask: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    labels, n = ndimage.label(mask, structure=ndimage.generate_binary_structure(2, 1))
    dists = np.sort(
        np.stack([ndimage.distance_transform_edt(labels != i) for i in range(1, n + 1)]), 0
    )
    term = w0 * np.exp(-((dists[0] + dists[1]) ** 2) / (2 * sigma**2))
    return W.class_balance_weights(mask) + np.where(mask == 0, term, 0.0)


def _random_cells(seed: int, shape=(40, 48)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    return (noise > 0).astype(np.uint8)


@pytest.mark.parametrize("seed", [0, 1])
def test_border_weights_match_brute_force(seed):
    mask = _random_cells(seed)
    assert ndimage.label(mask)[1] >= 3
    w = W.border_weights(mask, w0=10.0, sigma=3.0)
    assert w.dtype == np.float32 and w.shape == mask.shape
    np.testing.assert_allclose(w, _brute_force_weights(mask, 10.0, 3.0), atol=1e-3 * 10.0)


def test_border_weights_high_in_thin_gaps():
    mask = np.zeros((20, 31), np.uint8)
    mask[:, :14] = 1
    mask[:, 16:30] = 1  # gap of two pixels between two cells, one at the right edge
    w = W.border_weights(mask, w0=10.0, sigma=5.0, balance=False)
    assert (w[mask == 1] == 1.0).all()  # border term on background only
    d = 1.0 + 2.0  # distances 1 and 2 from a gap pixel to the two cells
    assert w[0, 14] == pytest.approx(1 + 10 * math.exp(-(d**2) / 50), rel=1e-5)
    assert w[0, 14] > w[0, 30]  # thin gap beats the outer border (d1=1, d2=15)


def test_border_weights_single_object_and_balance():
    mask = np.zeros((10, 10), np.uint8)
    mask[2:5, 2:5] = 1  # 9 fg / 91 bg -> ratio capped at 10
    w = W.border_weights(mask)
    assert w.mean() == pytest.approx(1.0, rel=1e-5)
    assert w[3, 3] / w[0, 0] == pytest.approx(10.0)
    np.testing.assert_array_equal(W.border_weights(mask, balance=False), 1.0)
    half = np.zeros((4, 4), np.uint8)
    half[:, :1] = 1  # 4 fg / 12 bg -> ratio 3
    wc = W.class_balance_weights(half)
    assert wc.mean() == pytest.approx(1.0) and wc[0, 0] / wc[0, 3] == pytest.approx(3.0)
    np.testing.assert_array_equal(W.class_balance_weights(np.zeros((3, 3))), 1.0)


def test_border_weights_stack_and_validation():
    masks = np.stack([_random_cells(0, (16, 16)), np.zeros((16, 16), np.uint8)])
    out = W.border_weights_stack(masks, w0=5.0, sigma=2.0)
    assert out.shape == masks.shape and out.dtype == np.float32
    np.testing.assert_allclose(out[0], W.border_weights(masks[0], w0=5.0, sigma=2.0))
    assert W.border_weights_stack(masks[0]).shape == (1, 16, 16)
    with pytest.raises(UserInputError):
        W.border_weights(masks)
    with pytest.raises(UserInputError):
        W.border_weights(masks[0], sigma=0.0)
