"""The dock on a lazily opened (zarr/dask) stack: blockwise prediction, bounded memory,
edits kept (``xvfb-run -a python -m pytest tests/test_dock_lazy.py``)."""

from __future__ import annotations

import dask.array as da
import napari  # noqa: F401  (a test dependency: missing fails)
import numpy as np
import pytest
import zarr

from .conftest import gui_tiny_settings

pytestmark = pytest.mark.gui

TIMEOUT = 180_000


@pytest.fixture
def lazy_viewer(make_napari_viewer, em_stack, tmp_path, monkeypatch):
    """A viewer showing ``em`` from a zarr array (through dask), as the reader opens a
    big stack; any load of the whole volume is recorded."""
    images, _ = em_stack
    store = zarr.create_array(
        str(tmp_path / "em.zarr"), shape=images.shape, chunks=(1, 48, 48), dtype=images.dtype
    )
    store[:] = images
    lazy = da.from_zarr(store)
    whole: list[tuple[int, ...]] = []
    original = da.Array.__array__

    def recording(self, *args, **kwargs):
        if tuple(self.shape) == tuple(images.shape):
            whole.append(tuple(self.shape))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(da.Array, "__array__", recording)
    viewer = make_napari_viewer()
    viewer.add_image(lazy, name="em", contrast_limits=(0, 255))
    return viewer, whole


@pytest.fixture
def lazy_dock(lazy_viewer, qtbot, tmp_path, gui_model_dir, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # autosaves without a project folder land here
    viewer, _ = lazy_viewer
    _, dock = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net")
    gui_tiny_settings(dock, tmp_path)
    tab = dock.predict_tab
    tab.source.value = "model folder"
    tab.model_folder.value = str(gui_model_dir)
    yield dock
    dock.shutdown()
    qtbot.waitUntil(lambda: not dock.jobs.running(), timeout=TIMEOUT)


def _predict(dock, qtbot) -> None:
    tab = dock.predict_tab
    tab.image.value = next(layer for layer in dock.viewer.layers if layer.name == "em")
    job = tab.predict()
    assert job is not None
    qtbot.waitUntil(lambda: job.finished, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not tab.labels_writer.busy, timeout=TIMEOUT)


def test_lazy_stack_is_predicted_blockwise_into_zarr(
    lazy_dock, lazy_viewer, em_stack, gui_model_dir, qtbot, tmp_path, notifications, monkeypatch
):
    from napari_unet.engine.inference import blockwise
    from napari_unet.engine.inference.predict import predict
    from napari_unet.engine.model.model_folder import load_model

    calls = []
    original = blockwise.predict_lazy_iter

    def spy(*args, **kwargs):
        calls.append(kwargs.get("output"))
        return (yield from original(*args, **kwargs))

    monkeypatch.setattr(blockwise, "predict_lazy_iter", spy)  # imported by the job when run
    lazy_viewer, whole_loads = lazy_viewer
    _predict(lazy_dock, qtbot)
    assert len(calls) == 1 and str(calls[0]).startswith(str(tmp_path / "cache"))
    assert not notifications.messages("error"), notifications.messages("error")
    prob = lazy_viewer.layers["em probability"]
    pred = lazy_viewer.layers["em prediction"]
    assert isinstance(prob.data, da.Array)  # dask-backed, from the scratch zarr
    assert isinstance(pred.data, zarr.Array)  # on disk, and the brush can paint on it
    assert whole_loads == []  # the volume was never loaded whole

    images, _ = em_stack
    threshold = float(lazy_dock.predict_tab.threshold.value)
    expected = predict(load_model(gui_model_dir), images, lazy_dock.predict_config()).probability
    got = np.asarray(prob.data)  # (test only) the stored uint8 probability
    assert np.abs(got - expected).max() <= 1 / 255 + 1e-3
    clear = np.abs(expected - threshold) > 2 / 255
    np.testing.assert_array_equal(np.asarray(pred.data)[clear], (expected > threshold)[clear])


def test_lazy_prediction_keeps_edits_on_threshold_changes(
    lazy_dock, lazy_viewer, qtbot, notifications
):
    lazy_viewer, whole_loads = lazy_viewer
    _predict(lazy_dock, qtbot)
    pred = lazy_viewer.layers["em prediction"]
    zz, yy, xx = np.meshgrid([2], np.arange(10), np.arange(10), indexing="ij")
    pred.data_setitem((zz.ravel(), yy.ravel(), xx.ravel()), 1)  # paint on the zarr labels
    loop = lazy_dock.loop_tab
    qtbot.waitUntil(lambda: loop.edited_slices() == [2], timeout=TIMEOUT)  # hashed in a worker
    painted = np.asarray(pred.data[2])
    tab = lazy_dock.predict_tab
    tab.threshold.value = 0.9
    qtbot.waitUntil(
        lambda: any("Kept your corrections on slice 2" in m for m in notifications.messages()),
        timeout=TIMEOUT,
    )
    pred = lazy_viewer.layers["em prediction"]
    assert isinstance(pred.data, zarr.Array)
    np.testing.assert_array_equal(np.asarray(pred.data[2]), painted)
    prob = np.asarray(lazy_viewer.layers["em probability"].data[0])
    np.testing.assert_array_equal(np.asarray(pred.data[0]), prob > 0.9)
    assert loop.edited_slices() == [2]
    assert whole_loads == []
