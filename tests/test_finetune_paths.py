"""One fine-tuning path: the dock, ``napari-unet finetune`` and ``train --init-from`` hand the
engine the same config and data mix; versions appear only complete; the threshold is chosen
on held-back corrections."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile

from napari_unet.engine.errors import UserInputError
from napari_unet.engine.model.versions import VersionStore
from napari_unet.engine.training.calibration import choose_threshold, holdout_bands

TIMEOUT = 120_000  # ms


class _Recorder:
    """Stands in for train_iter: records what fine-tuning asked to train, then refuses."""

    def __init__(self):
        self.calls = []

    def __call__(self, config, images, masks, **kwargs):
        self.calls.append((config.to_dict(), np.array(images), np.array(masks)))
        raise UserInputError("recorded")
        yield  # a generator, like train_iter


def _without_output(config: dict) -> dict:
    config = dict(config)
    config.pop("output")
    return config


def test_calibration_prefers_the_threshold_that_splits_touching_cells():
    # two cells (0.9) parted by a membrane at 0.6: below 0.6 they merge (Rand F drops)
    truth = np.zeros((64, 64), np.uint8)
    truth[4:60, 4:30] = 1
    truth[4:60, 34:60] = 1
    probability = np.where(truth > 0, 0.9, 0.05).astype(np.float32)
    probability[4:60, 30:34] = 0.6
    calibration = choose_threshold([probability], [truth])
    assert 0.6 <= calibration.threshold < 0.9
    assert calibration.scores["0.50"]["rand_fscore"] < calibration.scores["0.65"]["rand_fscore"]
    # too few labelled pixels: the default stays
    few = choose_threshold([probability[:8, :8]], [truth[:8, :8]], default=0.4)
    assert few.threshold == 0.4


def test_band_calibration_puts_pixel_error_first():
    # a weak membrane (0.85) splits the cells only above 0.85, where most of their interior
    # (0.8) is lost: Rand-first takes that; pixel-error-first keeps the interior
    truth = np.zeros((64, 64), np.uint8)
    truth[4:60, 4:30] = 1
    truth[4:60, 32:60] = 1
    probability = np.where(truth > 0, 0.8, 0.05).astype(np.float32)
    probability[20:40, 10:24] = 0.97
    probability[20:40, 38:54] = 0.97
    probability[4:60, 30:32] = 0.85
    rand_first = choose_threshold([probability], [truth], rule="rand")
    pixels_first = choose_threshold([probability], [truth], rule="pixel_error")
    assert rand_first.threshold >= 0.85
    assert pixels_first.threshold < 0.8
    errors = {k: v["pixel_error"] for k, v in pixels_first.scores.items()}
    assert errors[f"{pixels_first.threshold:.2f}"] == min(errors.values())
    assert "pixel error" in pixels_first.as_metadata()["rule"]


def test_holdout_bands_are_seeded_and_inside_the_slice():
    bands = holdout_bands((50, 100), 3, 0.2, seed=1)
    assert bands == holdout_bands((50, 100), 3, 0.2, seed=1)
    for rows, cols in bands:
        assert rows == slice(0, 50) and cols.stop - cols.start == 20 and cols.stop <= 100


def test_cli_finetune_and_train_init_from_give_the_engine_the_same_run(
    trained_model_dir, tmp_path, monkeypatch
):
    from napari_unet.cli.main import main
    from napari_unet.engine.data.synthetic import synthetic_em
    from napari_unet.engine.training import train as train_module

    images, masks = synthetic_em(slices=3, size=48, cells=8, seed=21)
    tifffile.imwrite(tmp_path / "img.tif", images, photometric="minisblack")
    tifffile.imwrite(tmp_path / "masks.tif", masks * 255, photometric="minisblack")
    recorder = _Recorder()
    monkeypatch.setattr(train_module, "train_iter", recorder)
    common = ["--images", str(tmp_path / "img.tif"), "--masks", str(tmp_path / "masks.tif")]
    common += ["--slices", "0,2", "--max-minutes", "1", "--quiet"]
    assert main(["finetune", str(trained_model_dir), *common, "-o", str(tmp_path / "a")]) == 2
    assert (
        main(["train", "--init-from", str(trained_model_dir), *common, "-o", str(tmp_path / "b")])
        == 2
    )
    (config_a, images_a, masks_a), (config_b, images_b, masks_b) = recorder.calls
    assert _without_output(config_a) == _without_output(config_b)
    np.testing.assert_array_equal(images_a, images_b)
    np.testing.assert_array_equal(masks_a, masks_b)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    # the parent's recipe, fine-tuning settings on top
    assert config_a["train"]["freeze_batch_norm"] and config_a["train"]["monitor"] == "last"
    assert config_a["train"]["freeze_encoder"]
    assert (
        config_a["train"]["border_weights"]
        == __import__("yaml").safe_load((trained_model_dir / "config.yaml").read_text())["train"][
            "border_weights"
        ]
    )
    assert set(np.unique(masks_a)) <= {0, 1, 2}  # sparse: held-back bands are unlabeled (0)
    assert (masks_a == 0).any()


def test_a_version_is_listed_only_when_complete(trained_model_dir, tmp_path, monkeypatch):
    from napari_unet.engine.data.synthetic import synthetic_em
    from napari_unet.engine.training import train as train_module
    from napari_unet.engine.training.finetune import finetune

    project = tmp_path / "project"
    shutil.copytree(trained_model_dir, project / "v001")
    real_train_iter = train_module.train_iter
    seen = {}

    def watching(config, *args, **kwargs):
        seen["during"] = [v.name for v in VersionStore(project).versions()]
        seen["normalization"] = config.data.normalization
        return (yield from real_train_iter(config, *args, **kwargs))

    monkeypatch.setattr(train_module, "train_iter", watching)
    images, masks = synthetic_em(slices=3, size=48, cells=8, seed=22)
    result = finetune(project / "v001", images, masks, slices=[1], max_minutes=0.05)
    assert seen == {"during": ["v001"], "normalization": "none"}
    assert result.model_dir == project / "v002"
    assert [v.name for v in VersionStore(project).versions()] == ["v001", "v002"]
    from napari_unet.engine.model.model_folder import load_model

    child = load_model(project / "v002")
    assert child.config.data.normalization == "stack"  # the parent's, never "none"
    assert child.metadata["complete"] and "calibration" in child.metadata
    assert child.config.predict.threshold == child.metadata["calibration"]["threshold"]
    assert not [p for p in project.iterdir() if p.name.startswith(".")]
    with pytest.raises(UserInputError, match="exists"):
        finetune(project / "v001", images, masks, slices=[1], output=project / "v002")


@pytest.mark.gui
def test_dock_and_cli_finetune_give_the_engine_the_same_run(
    unet_dock, viewer_with_em, gui_model_dir, tmp_path, monkeypatch, qtbot
):
    from napari_unet.cli.main import main
    from napari_unet.engine.training import train as train_module

    project = tmp_path / "project"
    shutil.copytree(gui_model_dir, project / "v001")
    unet_dock.set_model_dir(project / "v001", "loaded")
    loop = unet_dock.loop_tab
    loop.refresh_versions()
    viewer = viewer_with_em
    viewer.add_labels(viewer.layers["em mask"].data.copy(), name="em prediction")
    loop.corrections.value = viewer.layers["em prediction"]
    for z in (0, 2):
        viewer.dims.set_current_step(0, z)
        loop.mark_reviewed()
    loop.budget.value = 1.0
    recorder = _Recorder()
    monkeypatch.setattr(train_module, "train_iter", recorder)
    # the recorder replaces the engine in this process: keep the dock's job here (a
    # child gets the very same call, see child_jobs.engine_job)
    monkeypatch.setenv("NAPARI_UNET_JOB_PROCESS", "0")
    job = loop.finetune()
    assert job is not None
    qtbot.waitUntil(lambda: job.finished, timeout=TIMEOUT)
    image = np.asarray(viewer.layers["em"].data)
    corrections = np.asarray(viewer.layers["em prediction"].data)
    tifffile.imwrite(tmp_path / "img.tif", image, photometric="minisblack")
    tifffile.imwrite(tmp_path / "corr.tif", corrections, photometric="minisblack")
    args = ["finetune", str(project / "v001"), "--images", str(tmp_path / "img.tif")]
    args += ["--masks", str(tmp_path / "corr.tif"), "--slices", "0,2", "--mask-kind", "binary"]
    args += ["--max-minutes", "1", "-o", str(project / "v002"), "--quiet"]
    assert main(args) == 2
    (dock_config, dock_images, dock_masks), (cli_config, cli_images, cli_masks) = recorder.calls
    assert _without_output(dock_config) == _without_output(cli_config)
    np.testing.assert_array_equal(dock_images, cli_images)
    np.testing.assert_array_equal(dock_masks, cli_masks)
