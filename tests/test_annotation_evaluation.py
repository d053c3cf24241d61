"""Evaluation against sparse / binary / instance ground truth on labelled pixels only."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.engine.data.synthetic import synthetic_em
from napari_unet.engine.errors import UserInputError
from napari_unet.engine.evaluation.annotation_evaluation import evaluate_annotation
from napari_unet.engine.evaluation.metrics import evaluate


@pytest.fixture
def stack():
    _, masks = synthetic_em(slices=3, size=48, cells=8, seed=1)
    rng = np.random.default_rng(0)
    prob = np.clip(masks * 0.8 + rng.normal(0.1, 0.05, masks.shape), 0, 1).astype(np.float32)
    return prob, masks


def test_binary_ground_truth_matches_evaluate(stack):
    prob, masks = stack
    prob[1] = 0.5 + 0.1 * np.random.default_rng(1).standard_normal(prob.shape[1:])
    ours, theirs = evaluate_annotation(prob, masks, 0.5, "binary"), evaluate(prob, masks, 0.5)
    for key in ("pixel_error", "dice", "iou", "rand_fscore", "vi"):
        assert ours[key] == pytest.approx(theirs[key])
    assert ours["n_slices"] == 3 and ours["labelled_fraction"] == 1.0


def test_sparse_background_is_not_foreground_and_unlabelled_pixels_do_not_count(stack):
    _, masks = stack
    sparse = np.zeros_like(masks)
    sparse[0] = np.where(masks[0] > 0, 2, 1)  # a fully labelled slice
    sparse[2, :12, :12] = np.where(masks[2, :12, :12] > 0, 2, 1)  # a patch
    good = np.where(sparse == 2, 0.9, 0.1).astype(np.float32)
    good[sparse == 0] = 0.9  # wrong on every unlabelled pixel: must not matter
    result = evaluate_annotation(good, sparse, 0.5, "sparse")
    assert result["skipped_slices"] == [1] and result["n_slices"] == 2
    assert result["pixel_error"] == 0.0 and result["dice"] == pytest.approx(1.0)
    assert evaluate(good, sparse > 0, 0.5)["dice"] < 0.99  # the old way: 1 counted as fg
    assert [s["slice"] for s in result["per_slice"]] == [0, 2]
    assert 0 < result["labelled_fraction"] < 0.5


def test_lazy_inputs_are_read_slice_by_slice(stack):
    import dask.array as da

    prob, masks = stack
    result = evaluate_annotation(da.from_array(prob, chunks=(1, 48, 48)), da.from_array(masks))
    assert result["dice"] == pytest.approx(evaluate(prob, masks)["dice"])


def test_values_that_contradict_the_kind_are_an_error(stack):
    prob, masks = stack
    with pytest.raises(UserInputError, match="sparse"):
        evaluate_annotation(prob, masks * 5, 0.5, "sparse")
    with pytest.raises(UserInputError, match="differ in shape"):
        evaluate_annotation(prob[:2], masks, 0.5)
