"""A 3-class EM model trained and predicted from the dock, opened as napari opens it.

The config is loaded with the dock's own Load config (``UNetDock.load_config``), its data
files open as layers, Train runs the engine's training on those layers, and Predict shows
the result as one Labels layer of class indices with a colour per class.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_unet.engine.data.synthetic import EM_CLASSES, synthetic_em_classes

pytestmark = pytest.mark.gui

TIMEOUT = 600_000  # ms; the machine may be busy


@pytest.fixture
def plugin_dock(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net")
    dock.allow_overwrite = True
    dock.open_config_layers = True
    yield viewer, dock
    dock.shutdown()
    qtbot.waitUntil(lambda: not dock.jobs.running(), timeout=120_000)


def test_three_class_model_trains_and_predicts_from_the_dock(plugin_dock, qtbot, tmp_path):
    viewer, dock = plugin_dock
    images, labels = synthetic_em_classes(slices=4, size=48, seed=5)
    tifffile.imwrite(tmp_path / "em.tif", images, photometric="minisblack")
    tifffile.imwrite(tmp_path / "classes.tif", labels, photometric="minisblack")
    (tmp_path / "three-class.yaml").write_text(
        "data: {images: em.tif, masks: classes.tif, val_fraction: 0.25}\n"
        "model: {depth: 2, base_filters: 4, task: multiclass,"
        " classes: [background, membrane, mitochondria]}\n"
        "train: {epochs: 1, steps_per_epoch: 3, batch_size: 2, patch_size: 32,"
        " precision: float32, tensorboard: false, max_minutes: 2}\n"
        "predict: {tile_size: 32, overlap: 8, batch_size: 2, precision: float32}\n"
    )
    assert dock.load_config(tmp_path / "three-class.yaml") is not None
    assert dock.data_tab.mask.value.name == "classes"
    train = dock.train_tab
    train.models_dir.value = str(tmp_path / "models")
    job = train.train()
    assert job is not None
    qtbot.waitUntil(lambda: job.finished, timeout=TIMEOUT)
    assert train.last_event.kind == "done", train.last_event

    predict = dock.predict_tab
    predict.source.value = "model folder"
    predict.model_folder.value = str(train.model_dir)
    predict.image.value = viewer.layers["em"]
    job = predict.predict()
    assert job is not None
    qtbot.waitUntil(lambda: job.finished, timeout=TIMEOUT)
    layer = viewer.layers["em classes"]
    assert type(layer).__name__ == "Labels" and layer.metadata["classes"] == list(EM_CLASSES)
    assert layer.data.shape == images.shape and set(np.unique(layer.data)) <= {0, 1, 2}
    colours = layer.colormap.map(np.array([0, 1, 2]))
    assert colours[0][3] == 0 and not np.allclose(colours[1], colours[2])
    assert "em prediction" not in viewer.layers  # no binary threshold of a 3-class output
