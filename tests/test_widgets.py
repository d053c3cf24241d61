"""The U-Net dock end to end on tiny data (run under Xvfb: ``xvfb-run -a python -m pytest``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import napari  # noqa: F401  (a test dependency: missing fails)
import numpy as np
import pyqtgraph  # noqa: F401  (a test dependency: missing fails)
import pytest

pytestmark = pytest.mark.gui

TRAIN_TIMEOUT = 300_000  # ms; the machine may be busy


def _layer_state(viewer) -> list[tuple[str, str, int]]:
    """Names, types and data identities: "no layer changed" means this is equal."""
    return [(layer.name, type(layer).__name__, id(layer.data)) for layer in viewer.layers]


def _wait(qtbot, job, timeout: int = TRAIN_TIMEOUT) -> None:
    """Wait for a job's worker to finish (race-free even for very short jobs)."""
    assert job is not None
    qtbot.waitUntil(lambda: job.finished, timeout=timeout)


# --------------------------------------------------------------------------- import hygiene


def test_opening_the_dock_and_reading_do_not_import_tensorflow(tmp_path):
    """Every manifest entry point imports without TensorFlow; so does opening the dock,
    reading a file and loading the sample."""
    code = textwrap.dedent(
        f"""
        import importlib, sys
        import npe2, numpy as np, tifffile
        manifest = npe2.PluginManifest.from_distribution("napari-unet")
        for command in manifest.contributions.commands:
            module = command.python_name.split(":")[0]
            importlib.import_module(module)
        assert "tensorflow" not in sys.modules, "entry point modules imported TensorFlow"
        import napari
        viewer = napari.Viewer(show=False)
        widget, dock = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net")
        dock.tabs.setCurrentIndex(2)
        path = {str(tmp_path / "stack.tif")!r}
        tifffile.imwrite(path, np.zeros((2, 16, 16), np.uint8))
        viewer.open(path, plugin="napari-unet")
        viewer.open_sample("napari-unet", "isbi2012")
        print(len(viewer.layers), "tensorflow" in sys.modules, "keras" in sys.modules)
        viewer.close()
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "3 False False"


def test_workflow_in_a_fresh_napari_process(tmp_path):
    """The real order of events: napari's canvas (and Mesa's LLVM) first, TensorFlow
    imported later by the first worker. Train twice (in a child process, which leaves
    this one without TensorFlow), predict twice, preview twice (in this process): no
    crash (LLVM symbol clash) and no deadlock (reused worker threads)."""
    code = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        import napari
        from qtpy.QtWidgets import QApplication
        from conftest import gui_tiny_settings
        from napari_unet.engine.data.synthetic import synthetic_em
        viewer = napari.Viewer()
        images, masks = synthetic_em(slices=3, size=48, cells=8, seed=1)
        viewer.add_image(images, name="em")
        viewer.add_labels(masks, name="em mask")
        widget, dock = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net")
        gui_tiny_settings(dock, Path({str(tmp_path)!r}))
        dock.train_tab.epochs.value = 1
        app = QApplication.instance()
        assert "tensorflow" not in sys.modules

        def run(job):
            deadline = time.time() + 240
            while not job.finished:
                app.processEvents()
                time.sleep(0.005)
                assert time.time() < deadline, "job did not finish"

        for _ in range(2):
            run(dock.train_tab.train())
            assert dock.train_tab.last_event.kind == "done", dock.train_tab.last_event
        # training ran in a child process: this one has not imported TensorFlow yet
        assert "tensorflow" not in sys.modules
        for _ in range(2):
            run(dock.predict_tab.predict())
            run(dock.augment_tab.preview())
        print(sorted(layer.name for layer in viewer.layers))
        viewer.close()
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == str(
        sorted(
            [
                "em",
                "em mask",
                "em prediction",
                "em probability",
                "em augmented",
                "em augmented mask",
            ]
        )
    )


# --------------------------------------------------------------------------- data tab / settings


def test_pickers_follow_the_layer_list(unet_dock, viewer_with_em):
    data = unet_dock.data_tab
    assert data.image.value.name == "em"
    assert data.mask.value.name == "em mask"
    viewer_with_em.add_image(np.zeros((3, 48, 48), np.float32), name="other")
    assert [layer.name for layer in data.image.choices] == ["em", "other"]
    viewer_with_em.layers["other"].name = "renamed"
    assert any(layer.name == "renamed" for layer in data.image.choices)
    viewer_with_em.layers.remove("renamed")
    assert all(layer.name != "renamed" for layer in data.image.choices)
    assert [layer.name for layer in unet_dock.export_tab.mask.choices] == ["em mask"]


def test_settings_gather_every_tab_into_one_config(unet_dock):
    unet_dock.augment_tab.rotation.value = 33.0
    unet_dock.augment_tab.elastic_enabled.value = False
    unet_dock.train_tab.loss.value = "dice"
    unet_dock.train_tab.max_minutes.value = 2.5
    unet_dock.data_tab.normalization.value = "slice"
    config = unet_dock.build_config(output="somewhere")
    assert config.augment.affine.rotation_degrees == 33.0
    assert config.augment.elastic.enabled is False
    assert config.train.loss == "dice" and config.train.max_minutes == 2.5
    assert config.train.patch_size == 32 and config.data.normalization == "slice"
    assert (config.model.depth, config.model.base_filters) == (2, 4)
    assert config.output == "somewhere"
    unet_dock.config_overrides = {}
    unet_dock.train_tab.preset.value = "cpu"
    assert unet_dock.build_config().model.base_filters == 24


def test_invalid_settings_are_a_notification(unet_dock, notifications):
    unet_dock.config_overrides = {}  # depth 4 from the preset: patch 40 is not a multiple of 16
    unet_dock.data_tab.patch_size.value = 40
    assert unet_dock.train_tab.train() is None
    assert any("multiple" in m for m in notifications.messages("error"))


# --------------------------------------------------------------------------- errors


def test_train_without_layers_notifies_and_changes_nothing(
    make_napari_viewer, notifications, tmp_path
):
    from napari_unet.widgets.dock import UNetDock

    viewer = make_napari_viewer()
    dock = UNetDock(viewer)
    viewer.window.add_dock_widget(dock)
    assert dock.train_tab.train() is None
    assert dock.augment_tab.preview() is None
    assert dock.predict_tab.predict() is None
    assert len(viewer.layers) == 0
    errors = notifications.messages("error")
    assert len(errors) == 3 and "no layer is selected" in errors[0]
    dock.shutdown()


def test_shape_mismatch_notifies_and_changes_nothing(unet_dock, viewer_with_em, notifications):
    viewer_with_em.add_labels(np.zeros((3, 40, 40), np.uint8), name="small mask")
    unet_dock.data_tab.mask.value = viewer_with_em.layers["small mask"]
    before = _layer_state(viewer_with_em)
    assert unet_dock.train_tab.train() is None
    assert unet_dock.augment_tab.preview() is None
    assert _layer_state(viewer_with_em) == before
    errors = notifications.messages("error")
    assert len(errors) == 2 and "40x40" in errors[0] and "48x48" in errors[0]


def test_same_layer_as_image_and_mask_is_refused(unet_dock, viewer_with_em, notifications):
    data = unet_dock.data_tab
    # the mask picker never offers the image layer itself...
    assert "em" not in [layer.name for layer in data.mask.choices]
    with pytest.raises(ValueError):
        data.mask.value = viewer_with_em.layers["em"]
    # ...and training refuses the pair should it arrive another way
    data.mask.native.setItemData(0, viewer_with_em.layers["em"])
    assert unet_dock.train_tab.train() is None
    assert "two different layers" in notifications.messages("error")[0]


def test_training_fault_event_is_an_error_notification(unet_dock, notifications):
    from napari_unet.engine.events import TrainEvent

    unet_dock.train_tab._on_event(
        TrainEvent(
            kind="stopped",
            message="the loss became nan at step 3; try a lower learning rate",
            model_dir="/tmp/m",
        )
    )
    unet_dock.train_tab._on_event(
        TrainEvent(kind="stopped", message="out of memory: lower the batch size or the patch size")
    )
    errors = notifications.messages("error")
    assert "loss became nan" in errors[0] and "out of memory" in errors[1]


def test_worker_exception_is_a_notification_not_a_traceback(
    unet_dock, qtbot, notifications, tmp_path
):
    """A broken model folder fails inside the worker: one notification, no new layer."""
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.yaml").write_text(
        "model: {depth: 2, base_filters: 4}\ntrain: {patch_size: 32}\n"
    )
    (folder / "best.keras").write_bytes(b"not a keras file")
    before = _layer_state(unet_dock.viewer)
    tab = unet_dock.predict_tab
    tab.model_folder.value = str(folder)
    job = tab.predict()
    _wait(qtbot, job)
    assert _layer_state(unet_dock.viewer) == before
    errors = notifications.messages("error")
    assert len(errors) == 1 and "cannot load model" in errors[0]
    assert "Traceback" not in errors[0]
    assert tab.predict_button.enabled


# --------------------------------------------------------------------------- train


def test_train_through_the_dock_updates_the_plot(unet_dock, qtbot, notifications):
    tab = unet_dock.train_tab
    job = tab.train()
    assert job is not None and not tab.train_button.enabled and tab.stop_button.enabled
    with qtbot.waitSignal(job.worker.finished, timeout=TRAIN_TIMEOUT):
        pass
    qtbot.waitUntil(lambda: job.finished)
    tab.plot.flush()
    data = tab.plot.data
    assert len(data["train_x"]) == 6  # 2 epochs x 3 steps, one event per step
    assert np.all(np.isfinite(data["train_y"]))
    assert len(data["val_x"]) == 2 and len(data["dice_x"]) == 2
    curve_x, _ = tab.plot.train_curve.getData()
    assert len(curve_x) == 6
    assert tab.last_event.kind == "done"
    folder = tab.model_dir
    assert (folder / "best.keras").exists() and (folder / "config.yaml").exists()
    assert folder.parent.name == "models" and folder.name.startswith("em-")
    assert str(folder / "logs") in tab.folder_label.text()
    assert unet_dock.trained_dir == folder and unet_dock.model_dir == folder
    assert unet_dock.predict_tab.source.value == "model just trained"
    assert any("Training finished" in m for m in notifications.messages("info"))
    assert tab.train_button.enabled and not tab.stop_button.enabled
    assert not tab.progress.active


def test_stop_keeps_the_best_checkpoint(unet_dock, qtbot, notifications):
    tab = unet_dock.train_tab
    tab.epochs.value = 200
    job = tab.train()
    qtbot.waitUntil(lambda: len(tab.plot.data["train_x"]) >= 4, timeout=TRAIN_TIMEOUT)
    tab.stop()
    assert job.stop_event.is_set()
    _wait(qtbot, job)
    assert tab.last_event.kind == "stopped"
    assert tab.last_event.message == "stopped by the user"
    assert tab.last_event.step < 600
    assert (tab.model_dir / "best.keras").exists()
    assert (tab.model_dir / "metadata.json").exists()
    assert any("stopped by the user" in m for m in notifications.messages("info"))


def test_closing_the_viewer_stops_training(unet_dock, qtbot, viewer_with_em):
    tab = unet_dock.train_tab
    tab.epochs.value = 200
    job = tab.train()
    qtbot.waitUntil(lambda: len(tab.plot.data["train_x"]) >= 2, timeout=TRAIN_TIMEOUT)
    viewer_with_em.close()
    assert job.stop_event.is_set() and job.closing.is_set()
    _wait(qtbot, job)
    assert (tab.model_dir / "metadata.json").exists()


def test_explicit_validation_layers(unet_dock, qtbot, viewer_with_em, em_stack):
    from napari_unet.engine.data.synthetic import synthetic_em

    val_images, val_masks = synthetic_em(slices=2, size=48, cells=8, seed=5)
    viewer_with_em.add_image(val_images, name="val")
    viewer_with_em.add_labels(val_masks, name="val mask")
    data = unet_dock.data_tab
    data.val_mode.value = "separate layers"
    assert not data.val_image.native.isHidden() and data.val_fraction.native.isHidden()
    data.val_image.value = viewer_with_em.layers["val"]
    data.val_mask.value = viewer_with_em.layers["val mask"]
    unet_dock.train_tab.epochs.value = 1
    job = unet_dock.train_tab.train()
    _wait(qtbot, job)
    metadata = (unet_dock.train_tab.model_dir / "metadata.json").read_text()
    assert '"val_slices": 2' in metadata and '"val_image": "val"' in metadata
    assert len(unet_dock.train_tab.plot.data["val_x"]) == 1


def test_closing_the_dock_stops_training(unet_dock, qtbot):
    tab = unet_dock.train_tab
    tab.epochs.value = 200
    job = tab.train()
    qtbot.waitUntil(lambda: len(tab.plot.data["train_x"]) >= 2, timeout=TRAIN_TIMEOUT)
    unet_dock.close()
    assert job.stop_event.is_set() and job.closing.is_set()
    _wait(qtbot, job)
    # the engine ran its stop path to the end: checkpoint and metadata are there
    assert (tab.model_dir / "metadata.json").exists()


# --------------------------------------------------------------------------- augment


def test_augmentation_preview_adds_layers(unet_dock, qtbot, viewer_with_em):
    tab = unet_dock.augment_tab
    tab.preview_count.value = 3
    job = tab.preview()
    _wait(qtbot, job)
    images = viewer_with_em.layers["em augmented"]
    masks = viewer_with_em.layers["em augmented mask"]
    assert images.data.shape == (3, 32, 32) and images.data.dtype == np.float32
    assert masks.data.shape == (3, 32, 32) and set(np.unique(masks.data)) <= {0, 1}
    assert type(masks).__name__ == "Labels"
    job = tab.preview()  # again: the layers are updated, not duplicated
    _wait(qtbot, job)
    assert len(viewer_with_em.layers) == 4


# --------------------------------------------------------------------------- predict


def _predict(dock, qtbot, model_dir):
    tab = dock.predict_tab
    tab.source.value = "model folder"
    tab.model_folder.value = str(model_dir)
    job = tab.predict()
    with qtbot.waitSignal(job.worker.finished, timeout=TRAIN_TIMEOUT):
        pass
    qtbot.waitUntil(lambda: job.finished)
    # the labels are thresholded in a worker too (keeping edited slices)
    qtbot.waitUntil(lambda: not tab.labels_writer.busy, timeout=TRAIN_TIMEOUT)
    return tab


def test_predict_adds_layers_and_threshold_updates_them(
    unet_dock, qtbot, gui_model_dir, notifications
):
    viewer = unet_dock.viewer
    tab = _predict(unet_dock, qtbot, gui_model_dir)
    probability = viewer.layers["em probability"]
    prediction = viewer.layers["em prediction"]
    assert type(probability).__name__ == "Image" and type(prediction).__name__ == "Labels"
    assert probability.data.shape == (3, 48, 48) and probability.data.dtype == np.float32
    assert prediction.data.dtype == np.uint8 and set(np.unique(prediction.data)) <= {0, 1}
    np.testing.assert_array_equal(prediction.data, probability.data > 0.5)
    assert unet_dock.model_dir == Path(gui_model_dir)

    threshold = float(np.median(probability.data))
    tab.threshold.value = round(threshold, 2)
    qtbot.waitUntil(lambda: np.array_equal(prediction.data, probability.data > tab.threshold.value))
    assert viewer.layers["em prediction"] is prediction

    # predicting again reuses the loaded model and updates the layers in place
    assert unet_dock.cached_model(Path(gui_model_dir)) is not None
    _predict(unet_dock, qtbot, gui_model_dir)
    assert len(viewer.layers) == 4
    assert any("Updated the existing layers" in m for m in notifications.messages("info"))


def test_predict_a_2d_image(unet_dock, qtbot, gui_model_dir, viewer_with_em):
    viewer_with_em.add_image(viewer_with_em.layers["em"].data[0], name="one slice")
    unet_dock.predict_tab.image.value = viewer_with_em.layers["one slice"]
    _predict(unet_dock, qtbot, gui_model_dir)
    assert viewer_with_em.layers["one slice prediction"].data.shape == (48, 48)


def test_missing_model_folder_is_a_notification(unet_dock, notifications, tmp_path):
    tab = unet_dock.predict_tab
    tab.model_folder.value = str(tmp_path / "nowhere")
    assert tab.predict() is None
    tab.model_folder.value = str(tmp_path)
    assert tab.predict() is None
    errors = notifications.messages("error")
    assert "does not exist" in errors[0] and "config.yaml is missing" in errors[1]


# --------------------------------------------------------------------------- export


def test_export_mask_tiff_and_png_read_back_equal(
    unet_dock, qtbot, tmp_path, em_stack, notifications
):
    from napari_unet.engine.io.stacks import read_mask, read_stack
    from napari_unet.widgets.export_tab import FORMAT_PNG, FORMAT_TIFF

    _, masks = em_stack
    tab = unet_dock.export_tab
    tab.mask.value = unet_dock.viewer.layers["em mask"]
    job = tab.export_mask(tmp_path / "mask.tif", FORMAT_TIFF)
    _wait(qtbot, job)
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.tif"), masks)
    assert set(np.unique(read_stack(tmp_path / "mask.tif"))) == {0, 255}

    job = tab.export_mask(tmp_path / "mask_png", FORMAT_PNG)
    _wait(qtbot, job)
    assert len(list((tmp_path / "mask_png").glob("*.png"))) == 3
    np.testing.assert_array_equal(read_mask(tmp_path / "mask_png"), masks)

    # never silently overwrite
    unet_dock.viewer.layers["em mask"].data = np.zeros_like(masks)
    unet_dock.allow_overwrite = False
    assert tab.export_mask(tmp_path / "mask.tif", FORMAT_TIFF) is None
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.tif"), masks)
    assert any("exists" in m for m in notifications.messages("warning"))
    unet_dock.allow_overwrite = True
    _wait(qtbot, tab.export_mask(tmp_path / "mask.tif", FORMAT_TIFF))
    assert read_mask(tmp_path / "mask.tif").max() == 0
    assert not list(tmp_path.glob(".*tmp*"))  # no half-written leftovers


def test_copy_model_folder(unet_dock, qtbot, tmp_path, gui_model_dir, notifications):
    tab = unet_dock.export_tab
    assert tab.copy_model(tmp_path / "copy") is None  # no model yet
    unet_dock.set_model_dir(Path(gui_model_dir), "loaded")
    _wait(qtbot, tab.copy_model(tmp_path / "copy"))
    source = sorted(p.relative_to(gui_model_dir) for p in Path(gui_model_dir).rglob("*"))
    copied = sorted(p.relative_to(tmp_path / "copy") for p in (tmp_path / "copy").rglob("*"))
    assert copied == source
    assert (tmp_path / "copy" / "best.keras").read_bytes() == (
        Path(gui_model_dir) / "best.keras"
    ).read_bytes()
    unet_dock.allow_overwrite = False
    assert tab.copy_model(tmp_path / "copy") is None
    _wait(qtbot, tab.copy_model(Path(gui_model_dir) / "inside"))
    assert any("into itself" in m for m in notifications.messages("error"))
    assert not (Path(gui_model_dir) / "inside").exists()


def test_dock_opens_from_the_manifest_and_segment_menu(make_napari_viewer):
    import npe2

    manifest = npe2.PluginManifest.from_distribution("napari-unet")
    menus = manifest.contributions.menus
    assert [item.command for item in menus["napari/layers/segment"]] == ["napari-unet.make_dock"]
    viewer = make_napari_viewer()
    from napari._app_model import get_app_model

    segment_menu = get_app_model().menus.get_menu("napari/layers/segment")
    assert any(
        getattr(getattr(item, "command", None), "id", "") == "napari-unet.make_dock"
        for item in segment_menu
    )
    _, dock = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net")
    assert [dock.tabs.tabText(i) for i in range(dock.tabs.count())][:5] == [
        "Data",
        "Augment",
        "Train",
        "Predict",
        "Export",
    ]
