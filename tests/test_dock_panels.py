"""The dock's panels: mask picker defaults, time budget, schedule preview, LR finder,
loss plot, and the Export tab's prediction and model exports (run under Xvfb)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import napari  # noqa: F401  (a test dependency: missing fails)
import numpy as np
import pyqtgraph  # noqa: F401  (a test dependency: missing fails)
import pytest

pytestmark = pytest.mark.gui

TIMEOUT = 600_000  # ms; the machine may be busy


def test_mask_picker_defaults_to_a_labels_layer_never_the_image(make_napari_viewer):
    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net")  # a proxy viewer
    data = dock.data_tab
    viewer.add_image(np.zeros((2, 32, 32), np.uint8), name="em")
    assert data.image.value.name == "em"
    assert data.mask.value is None  # the image itself is never offered as its mask
    viewer.add_image(np.zeros((2, 32, 32), np.uint8), name="other image")
    viewer.add_labels(np.zeros((2, 32, 32), np.uint8), name="em mask")
    assert data.mask.value.name == "em mask"  # Labels first
    assert sorted(layer.name for layer in data.mask.choices) == ["em mask", "other image"]
    data.image.value = viewer.layers["other image"]
    assert "other image" not in [layer.name for layer in data.mask.choices]


def test_default_time_budget_is_ten_minutes(unet_dock):
    config = unet_dock.build_config()
    assert config.train.max_minutes == 10.0
    unet_dock.train_tab.max_minutes.value = 0
    assert unet_dock.build_config().train.max_minutes is None


def test_schedule_preview_follows_the_schedule_fields(unet_dock, qtbot):
    tab = unet_dock.train_tab
    preview = tab.schedule_preview
    tab.schedule_kind.value = "constant"
    qtbot.waitUntil(lambda: preview.rates.size and np.ptp(preview.rates) == 0, timeout=5000)
    assert np.allclose(preview.rates, tab.learning_rate.get())
    tab.schedule_kind.value = "step"
    unet_dock.set_value("train.schedule.drop_every", 1.0)
    unet_dock.set_value("train.schedule.drop", 0.5)
    qtbot.waitUntil(
        lambda: preview.rates.size and preview.rates[-1] < preview.rates[0], timeout=5000
    )
    assert preview.rates[-1] == pytest.approx(
        tab.learning_rate.get() * 0.5 ** (tab.epochs.value - 1)
    )
    assert "step" in preview.label.text()
    unet_dock.config_overrides = {}  # the preset's depth 4: patch 40 is not a multiple of 16
    unet_dock.data_tab.patch_size.value = 40
    preview.refresh()
    assert preview.rates.size == 0 and "multiple" in preview.label.text()


def test_lr_finder_runs_in_a_worker_and_its_suggestion_is_used(unet_dock, qtbot):
    finder = unet_dock.train_tab.lr_finder
    finder.min_lr.value, finder.max_lr.value, finder.steps.value = 1e-4, 1.0, 12
    job = finder.find()
    assert job is not None and not finder.find_button.enabled
    qtbot.waitUntil(lambda: job.finished, timeout=TIMEOUT)
    assert len(finder.data["lr"]) >= 3
    x, _ = finder.curve.getData()
    assert x is not None and len(x) == len(finder.data["lr"])
    assert finder.suggestion is not None and finder.use_button.enabled
    assert finder.result is not None and Path(finder.result.data_path).exists()
    assert Path(finder.result.data_path).parent.parent == Path(unet_dock.train_tab.models_dir.value)
    finder.use_suggestion()
    assert unet_dock.build_config().train.learning_rate == pytest.approx(finder.suggestion.max_lr)
    unet_dock.train_tab.schedule_kind.value = "triangular"
    finder.use_suggestion()
    config = unet_dock.build_config()
    assert config.train.learning_rate == pytest.approx(finder.suggestion.base_lr)
    assert config.train.schedule.max_lr == pytest.approx(finder.suggestion.max_lr)


def _step(step, loss, epoch, kind="step", val=None):
    return SimpleNamespace(kind=kind, step=step, loss=loss, epoch=epoch, val=val or {})


def test_loss_plot_smooths_over_an_epoch_and_labels_what_it_draws(qtbot):
    from napari_unet.widgets.loss_plot import LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.flush()
    assert not plot.legend.items  # nothing drawn, nothing listed
    per_epoch = 4
    batch = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]  # falling batch losses
    for i, _ in enumerate(batch, start=1):
        epoch = (i - 1) // per_epoch + 1
        first = (epoch - 1) * per_epoch
        running = float(np.mean(batch[first:i]))  # what a step event carries
        plot.add_event(_step(i, running, epoch), per_epoch)
    plot.add_event(_step(8, 0.45, 2, kind="epoch", val={"loss": 0.5, "dice": 0.8}), per_epoch)
    plot.flush()
    assert np.allclose(plot.data["raw_y"], batch)  # the batch losses are recovered
    smoothed = plot.data["train_y"]
    assert smoothed[-1] == pytest.approx(np.mean(batch[-4:]))
    assert np.all(np.diff(smoothed) < 0)  # no restart at the epoch boundary
    names = [label.text for _, label in plot.legend.items]
    assert names == ["train loss (batches)", "train loss (1-epoch mean)", "validation loss"]
    assert plot.plot_widget.getPlotItem().getAxis("bottom").labelText == "epoch"
    assert "Dice 0.800" in plot.metrics_label.text()
    plot.clear()
    assert not plot.legend.items


def test_export_prediction_as_npy_and_rle_csv(
    unet_dock, qtbot, viewer_with_em, tmp_path, notifications
):
    from napari_unet.engine.io.export import read_rle_csv

    unet_dock.allow_overwrite = True
    tab = unet_dock.export_tab
    probability = np.random.default_rng(0).random((3, 48, 48), dtype=np.float32)
    viewer_with_em.add_image(probability, name="em probability")
    tab.prediction.value = viewer_with_em.layers["em probability"]
    job = tab.export_prediction(tmp_path / "prob", "NumPy array (.npy)")
    qtbot.waitUntil(lambda: job.finished, timeout=60_000)
    assert np.array_equal(np.load(tmp_path / "prob.npy"), probability)
    assert tab.export_prediction(tmp_path / "prob.csv", "RLE CSV (.csv, masks only)") is None
    assert any("RLE CSV holds masks" in m for m in notifications.messages("error"))
    tab.prediction.value = viewer_with_em.layers["em mask"]
    job = tab.export_prediction(tmp_path / "mask.csv", "RLE CSV (.csv, masks only)")
    qtbot.waitUntil(lambda: job.finished, timeout=60_000)
    ids, masks = read_rle_csv(tmp_path / "mask.csv", (48, 48))
    assert ids == ["0", "1", "2"]
    assert np.array_equal(masks, (viewer_with_em.layers["em mask"].data != 0).astype(np.uint8))
    unet_dock.allow_overwrite = False
    assert tab.export_prediction(tmp_path / "mask.csv", "RLE CSV (.csv, masks only)") is None
    assert any("nothing was written" in m for m in notifications.messages("warning"))


def test_export_model_from_the_export_tab(unet_dock, qtbot, gui_model_dir, tmp_path, notifications):
    tab = unet_dock.export_tab
    assert tab.export_model(tmp_path / "x.onnx", "onnx") is None  # no model yet
    unet_dock.set_model_dir(Path(gui_model_dir), "loaded")
    job = tab.export_model(tmp_path / "model.onnx", "onnx")
    assert job is not None and not tab.model_export_button.enabled
    qtbot.waitUntil(lambda: job.finished, timeout=TIMEOUT)
    assert (tmp_path / "model.onnx").stat().st_size > 0
    assert "wrote" in tab.model_status.text() and tab.model_export_button.enabled
    assert any("Exported the model" in m for m in notifications.messages("info"))
    job = tab.export_model(tmp_path / "model.zip", "onnx")  # wrong suffix: one notification
    qtbot.waitUntil(lambda: job.finished, timeout=TIMEOUT)
    assert any(".onnx file" in m for m in notifications.messages("error"))
