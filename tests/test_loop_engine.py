"""Engine side of the correct-and-retrain loop: sparse labels, post-processing,
ranking, model versions and fine-tuning on corrected slices."""

import numpy as np
import pytest

from napari_unet.engine.data.synthetic import synthetic_em
from napari_unet.engine.errors import UserInputError
from napari_unet.engine.evaluation.ranking import (
    rank_by_metric,
    rank_by_uncertainty,
    spread_order,
)
from napari_unet.engine.inference.postprocess import (
    annotation_convention,
    instances_from_probability,
    to_sparse_annotation,
)
from napari_unet.engine.model.model_folder import load_model
from napari_unet.engine.model.versions import VersionStore
from napari_unet.engine.training.finetune import finetune, mix_for_finetuning


def test_instances_min_size_and_holes():
    prob = np.zeros((1, 20, 20), np.float32)
    prob[0, 2:10, 2:10] = 0.9
    prob[0, 5, 5] = 0.1  # a hole
    prob[0, 15:17, 15:17] = 0.9  # 4 px: below min size
    labels = instances_from_probability(prob, 0.5, min_size=5)
    assert labels.dtype == np.int32
    assert set(np.unique(labels)) == {0, 1}
    assert labels[0, 5, 5] == 1  # hole filled
    assert labels[0, 16, 16] == 0
    two = instances_from_probability(np.concatenate([prob, prob]), min_size=5)
    assert set(np.unique(two)) == {0, 1, 2}  # unique across slices


def test_annotation_conventions_and_conversion():
    assert annotation_convention(np.zeros((2, 3), np.uint8)) == "empty"
    assert annotation_convention(np.array([[0, 255]])) == "dense"
    assert annotation_convention(np.array([[0, 1, 2]])) == "sparse"
    assert annotation_convention(np.arange(9).reshape(3, 3)) == "instances"
    dense = np.array([[[0, 1]], [[1, 1]]], np.uint8)
    sparse = to_sparse_annotation(dense, labelled_slices=[1])
    np.testing.assert_array_equal(sparse, [[[0, 0]], [[2, 2]]])
    np.testing.assert_array_equal(to_sparse_annotation(dense), [[[1, 2]], [[2, 2]]])


def test_uncertainty_ranks_the_unsure_slice_first():
    prob = np.stack([np.full((8, 8), 0.99), np.full((8, 8), 0.5), np.full((8, 8), 0.8)])
    ranking = rank_by_uncertainty(prob)
    assert [r["slice"] for r in ranking] == [1, 2, 0]
    assert ranking[0]["uncertain_fraction"] == 1.0
    per_slice = [
        {"slice": 0, "rand_fscore": 0.9},
        {"slice": 1, "rand_fscore": float("nan")},
        {"slice": 2, "rand_fscore": 0.5},
    ]
    assert [r["slice"] for r in rank_by_metric(per_slice)] == [2, 0, 1]


def test_suggested_order_spreads_the_uncertain_slices_through_the_stack():
    # 20 slices; the most uncertain are the neighbours 4 and 5, then 6, then 15
    entropy = np.linspace(0.1, 0.2, 20)
    entropy[[4, 5, 6, 15]] = [0.9, 0.89, 0.88, 0.5]
    prob = 0.5 + 0.5 * (1 - entropy)[:, None, None]  # nearer 0.5 = more uncertain
    ranking = rank_by_uncertainty(np.broadcast_to(prob, (20, 4, 4)).copy())
    assert [r["slice"] for r in ranking][:3] == [4, 5, 6]
    order = spread_order(ranking)
    assert order[:2] == [4, 15]  # not the neighbour 5: at least 20 // 4 = 5 slices apart
    assert sorted(order) == list(range(20))  # every slice once
    assert spread_order(ranking, min_gap=0) == [r["slice"] for r in ranking]
    assert spread_order([]) == []


def test_mixing_repeats_corrections_and_pads_shapes():
    corrected = np.zeros((1, 8, 8), np.float32)
    sparse = np.full((1, 8, 8), 2, np.uint8)
    replay = np.ones((4, 10, 12), np.float32)
    replay_sparse = np.ones((4, 10, 12), np.uint8)
    images, labels = mix_for_finetuning(corrected, sparse, replay, replay_sparse, 0.5, 4)
    assert images.shape == (8, 10, 12)  # 4 repeats of the correction + 4 replayed
    assert (labels[:4, 8:, :] == 0).all() and (labels[:4, :8, :8] == 2).all()  # padding unlabeled


def test_finetune_writes_next_version_with_lineage(trained_model_dir, tmp_path):
    import shutil

    project = tmp_path / "project"
    shutil.copytree(trained_model_dir, project / "v001")
    images, masks = synthetic_em(slices=3, size=48, cells=8, seed=11)
    events = []
    result = finetune(
        project / "v001",
        images,
        masks,
        slices=[0, 2],
        max_minutes=0.05,
        replay_images=images,
        replay_masks=masks,
        callback=events.append,
    )
    assert result.model_dir == project / "v002"
    assert events[-1].kind == "done"
    store = VersionStore(project)
    names = [v.name for v in store.versions()]
    assert names == ["v001", "v002"]
    child = store.get("v002")
    assert child.parent == "v001"
    meta = load_model(child.path).metadata
    assert meta["finetuned_on_slices"] == [0, 2]
    # the new version predicts raw input with the parent's normalization
    assert load_model(child.path).config.data.normalization == "stack"
    store.set_current("v001")
    assert store.current().name == "v001"
    with pytest.raises(UserInputError):
        store.set_current("v009")


def test_finetune_rejects_nothing_to_learn(trained_model_dir):
    images, _ = synthetic_em(slices=2, size=48, seed=12)
    with pytest.raises(UserInputError, match="no corrected slices"):
        finetune(trained_model_dir, images, np.zeros(images.shape, np.uint8))
    with pytest.raises(UserInputError, match="do not match"):
        finetune(trained_model_dir, images, np.zeros((1, 48, 48), np.uint8), slices=[0])


def test_cli_finetune_with_sparse_masks(trained_model_dir, tmp_path, capsys):
    import json

    import tifffile

    from napari_unet.cli.main import main

    images, masks = synthetic_em(slices=2, size=48, cells=8, seed=13)
    sparse = to_sparse_annotation(masks, labelled_slices=[1])  # slice 0 unlabeled
    tifffile.imwrite(tmp_path / "img.tif", images, photometric="minisblack")
    tifffile.imwrite(tmp_path / "sparse.tif", sparse, photometric="minisblack")
    code = main(
        [
            "train",
            "--images",
            str(tmp_path / "img.tif"),
            "--masks",
            str(tmp_path / "sparse.tif"),
            "--init-from",
            str(trained_model_dir),
            "--freeze-batch-norm",
            "--mask-kind",
            "sparse",
            "--output",
            str(tmp_path / "v2"),
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--patch-size",
            "32",
            "--batch-size",
            "2",
            "--learning-rate",
            "1e-4",
            "--quiet",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["model_dir"] == str(tmp_path / "v2")
    child = load_model(tmp_path / "v2")
    assert child.config.train.freeze_batch_norm
    assert child.metadata["parent"] == str(trained_model_dir)


def test_model_trained_from_arrays_keeps_its_data_for_replay(trained_model_dir, tmp_path):
    # the session model was trained from in-memory arrays: they are stored in its folder
    assert (trained_model_dir / "data" / "images.tif").exists()
    images, masks = synthetic_em(slices=2, size=48, cells=8, seed=14)
    result = finetune(
        trained_model_dir, images, masks, slices=[1], max_minutes=0.02, output=tmp_path / "child"
    )
    assert load_model(result.model_dir).metadata["replayed_original_slices"] > 0
