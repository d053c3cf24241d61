"""The "Correct & retrain" tab of the dock on tiny data (``xvfb-run -a python -m pytest``).

The dock is opened the way napari opens it for a user (Plugins menu:
``viewer.window.add_plugin_dock_widget``), so the widgets see napari's proxy of the
viewer and its layers, as in real use.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import napari  # noqa: F401  (a test dependency: missing fails)
import numpy as np
import pyqtgraph  # noqa: F401  (a test dependency: missing fails)
import pytest

from .conftest import gui_tiny_settings

pytestmark = pytest.mark.gui

TIMEOUT = 120_000  # ms
DISPLAY_NAME = "U-Net"  # napari_unet/napari.yaml: contributions.widgets[0].display_name


def _layer_state(viewer) -> list[tuple[str, str, int]]:
    return [(layer.name, type(layer).__name__, id(layer.data)) for layer in viewer.layers]


def _wait(qtbot, job, timeout: int = TIMEOUT) -> None:
    assert job is not None
    qtbot.waitUntil(lambda: job.finished, timeout=timeout)


def _same(a, b) -> bool:
    from napari_unet.widgets.layer_utils import same_layer

    return same_layer(a, b)


def _paint(layer, z: int, rows: slice, cols: slice, value: int) -> None:
    """A brush stroke through napari's own editing API (emits the ``paint`` event)."""
    zz, yy, xx = np.meshgrid([z], np.arange(48)[rows], np.arange(48)[cols], indexing="ij")
    layer.data_setitem((zz.ravel(), yy.ravel(), xx.ravel()), value)


@pytest.fixture
def plugin_dock(viewer_with_em, qtbot, tmp_path, monkeypatch):
    """The dock opened through napari's plugin manager (it gets the proxy viewer).

    The working and home folders are the test's own: autosaves without a project folder
    go there (``./<model>-finetuned``, ``~/napari-unet-models``), never into the checkout.
    """
    from napari.utils._proxies import PublicOnlyProxy

    (tmp_path / "cwd").mkdir()
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _, dock = viewer_with_em.window.add_plugin_dock_widget("napari-unet", DISPLAY_NAME)
    assert isinstance(dock.viewer, PublicOnlyProxy)  # what plugins get from napari
    gui_tiny_settings(dock, tmp_path)
    yield dock
    dock.shutdown()
    qtbot.waitUntil(lambda: not dock.jobs.running(), timeout=TIMEOUT)


@pytest.fixture
def loop(plugin_dock, viewer_with_em):
    """The tab with ``em prediction`` (a copy of the mask) as its corrections layer and a
    fake ``em probability`` layer."""
    viewer = viewer_with_em
    masks = viewer.layers["em mask"].data
    viewer.add_labels(masks.copy(), name="em prediction")
    rng = np.random.default_rng(0)
    probability = np.clip(masks * 0.8 + rng.normal(0.1, 0.05, masks.shape), 0, 1)
    probability[1] = 0.5 + 0.02 * rng.standard_normal(masks.shape[1:])  # the unsure slice
    viewer.add_image(probability.astype(np.float32), name="em probability")
    tab = plugin_dock.loop_tab
    assert _same(tab.corrections.value, viewer.layers["em prediction"])  # picked when added
    assert _same(tab.image.value, viewer.layers["em"])
    return tab


@pytest.fixture
def project(tmp_path, gui_model_dir, plugin_dock):
    """A project folder with v001 (the tiny trained model), current in the dock."""
    folder = tmp_path / "project"
    shutil.copytree(gui_model_dir, folder / "v001")
    plugin_dock.set_model_dir(folder / "v001", "loaded")
    plugin_dock.loop_tab.refresh_versions()
    return folder


def _predict(dock, qtbot, model_dir) -> None:
    """Predict ``em`` on the Predict tab and wait for the prediction layer to be written."""
    tab = dock.predict_tab
    tab.source.value = "model folder"
    tab.model_folder.value = str(model_dir)
    tab.image.value = next(layer for layer in dock.viewer.layers if layer.name == "em")
    _wait(qtbot, tab.predict())
    qtbot.waitUntil(lambda: not tab.labels_writer.busy, timeout=TIMEOUT)


def test_convention_and_conversion_to_sparse(loop, viewer_with_em, notifications):
    assert "dense" in loop.convention_label.text()
    viewer_with_em.dims.set_current_step(0, 2)
    sparse = loop.convert_to_sparse()
    assert sparse.name == "em prediction sparse"
    mask = viewer_with_em.layers["em prediction"].data
    assert set(np.unique(sparse.data[[0, 1]])) == {0}
    np.testing.assert_array_equal(sparse.data[2], np.where(mask[2] > 0, 2, 1))
    loop.corrections.value = viewer_with_em.layers[sparse.name]
    assert loop.convention() == "sparse" and "sparse" in loop.convention_label.text()
    assert loop.convert_to_sparse() is None  # already sparse
    assert "already a sparse" in notifications.messages("error")[-1]


def test_edited_and_reviewed_slices(loop, viewer_with_em, qtbot):
    layer = viewer_with_em.layers["em prediction"]
    assert loop.edited_slices() == []
    _paint(layer, 1, slice(5, 15), slice(5, 15), 2)  # the brush
    assert loop.edited_slices() == [1]
    layer.undo()  # back to the prediction: not edited any more
    assert loop.edited_slices() == []
    layer.data[1, 5:15, 5:15] = 1 - layer.data[1, 5:15, 5:15]  # in place, from the console
    layer.refresh()
    assert loop.edited_slices() == [1]
    viewer_with_em.dims.set_current_step(0, 2)
    assert loop.mark_reviewed() == 2
    assert loop.training_slices() == [1, 2]
    qtbot.waitUntil(lambda: loop.edits_list.count() == 2)
    texts = [loop.edits_list.item(i).text() for i in range(loop.edits_list.count())]
    assert texts == ["slice 1: corrected", "slice 2: reviewed"]
    # new data set from outside the dock (the console, another plugin) is a new baseline
    layer.data = layer.data.copy()
    assert loop.training_slices() == []


def test_threshold_and_new_predictions_keep_edited_slices(
    plugin_dock, viewer_with_em, gui_model_dir, tmp_path, qtbot, notifications
):
    """Issue 11.3: the threshold slider works through the Plugins-menu dock, and neither
    it nor a new prediction overwrites slices the user edited or reviewed."""
    import yaml

    model = tmp_path / "model"
    shutil.copytree(gui_model_dir, model)
    config = yaml.safe_load((model / "config.yaml").read_text())
    config.setdefault("predict", {})["threshold"] = 0.37  # as calibrated by training
    (model / "config.yaml").write_text(yaml.safe_dump(config))
    tab, loop = plugin_dock.predict_tab, plugin_dock.loop_tab
    tab.model_folder.value = str(model)
    assert tab.threshold.value == pytest.approx(0.37)  # starts at the model's threshold

    _predict(plugin_dock, qtbot, model)
    viewer = viewer_with_em
    pred, prob = viewer.layers["em prediction"], viewer.layers["em probability"]
    np.testing.assert_array_equal(pred.data, prob.data > 0.37)
    assert _same(loop.corrections.value, pred)

    _paint(pred, 1, slice(0, 20), slice(0, 20), 1)
    _paint(pred, 1, slice(20, 30), slice(20, 30), 0)
    viewer.dims.set_current_step(0, 2)
    loop.mark_reviewed()
    edited = np.array(pred.data[[1, 2]])
    qtbot.waitUntil(lambda: loop.edits_list.count() == 2)

    tab.threshold.value = 0.6  # the slider, as the user drags it
    qtbot.waitUntil(
        lambda: np.array_equal(viewer.layers["em prediction"].data[0], prob.data[0] > 0.6),
        timeout=TIMEOUT,
    )
    pred = viewer.layers["em prediction"]
    np.testing.assert_array_equal(pred.data[[1, 2]], edited)  # kept
    kept = [m for m in notifications.messages("info") if m.startswith("Kept your corrections")]
    assert kept and "slices 1, 2" in kept[-1] and "threshold 0.60" in kept[-1]
    assert loop.training_slices() == [1, 2]  # the corrected-slice list survives
    texts = [loop.edits_list.item(i).text() for i in range(loop.edits_list.count())]
    assert texts == ["slice 1: corrected", "slice 2: reviewed"]

    _paint(pred, 0, slice(0, 5), slice(0, 5), 1)  # an edit on a rewritten slice counts too
    _predict(plugin_dock, qtbot, model)  # Predict again
    pred = viewer.layers["em prediction"]
    assert len([la for la in viewer.layers if la.name.startswith("em prediction")]) == 1
    np.testing.assert_array_equal(pred.data[[1, 2]], edited)
    assert (pred.data[0, :5, :5] == 1).all()
    assert loop.training_slices() == [0, 1, 2]
    assert any(
        "slices 0, 1, 2" in m and "new prediction" in m for m in notifications.messages("info")
    )
    assert not notifications.messages("error")


def test_finetune_through_the_tab(loop, project, plugin_dock, viewer_with_em, qtbot, notifications):
    layer = viewer_with_em.layers["em prediction"]
    _paint(layer, 0, slice(0, 10), slice(0, 10), 0)
    viewer_with_em.dims.set_current_step(0, 2)
    loop.mark_reviewed()
    corrected = np.array(layer.data[[0, 2]])
    loop.budget.value = 0.05
    assert loop.version_names() == ["v001"]
    job = loop.finetune()
    assert job is not None
    _wait(qtbot, job)
    assert not notifications.messages("error"), notifications.messages("error")
    assert loop.version_names() == ["v001", "v002"]
    assert plugin_dock.model_dir == project / "v002"
    from napari_unet.engine.model.versions import VersionStore

    store = VersionStore(project)
    assert store.current().name == "v002" and store.current().parent == "v001"
    row = loop.version_names().index("v002")
    assert loop.versions_table.item(row, 1).text() == "✓"
    assert len(loop.plot.data["train_y"]) > 0
    meta = (project / "v002" / "metadata.json").read_text()
    assert '"finetuned_on_slices": [\n    0,\n    2\n  ]' in meta or "[0, 2]" in meta
    assert any("v002 is now in use" in m for m in notifications.messages("info"))
    # "Predict with it": the corrected and reviewed slices are kept, and still listed
    _wait(qtbot, loop.predict_with_version("v002"))
    qtbot.waitUntil(lambda: not plugin_dock.predict_tab.labels_writer.busy, timeout=TIMEOUT)
    assert plugin_dock.model_dir == project / "v002"
    now = viewer_with_em.layers["em prediction"]
    assert _same(now, layer) and loop.training_slices() == [0, 2]
    np.testing.assert_array_equal(now.data[[0, 2]], corrected)
    assert any("slices 0, 2" in m for m in notifications.messages("info"))
    # go back to v001
    assert loop.use_version("v001") == project / "v001"
    assert store.current().name == "v001" and plugin_dock.model_dir == project / "v001"


def test_finetune_without_corrections_is_an_error(loop, project, viewer_with_em, notifications):
    before = _layer_state(viewer_with_em)
    assert loop.finetune() is None
    assert "no corrected slices" in notifications.messages("error")[-1]
    assert _layer_state(viewer_with_em) == before
    assert loop.version_names() == ["v001"]


def test_metrics_table_and_uncertainty_ranking(loop, plugin_dock, viewer_with_em, qtbot):
    viewer = viewer_with_em
    loop.truth.value = viewer.layers["em mask"]
    _wait(qtbot, loop.compute_metrics())
    table = loop.metrics_table
    assert table.mode == "metrics"
    labels = table.row_labels()
    assert labels[0] == "overall" and sorted(labels[1:]) == ["0", "1", "2"]
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert headers[:5] == ["slice", "pixel error", "Dice", "Rand F", "VI"]
    rand = [table.item(r, 3).text() for r in range(1, 4)]
    values = [float(v) if v != "n/a" else np.inf for v in rand]
    assert values == sorted(values)  # worst first
    assert labels[1] == "1"  # the noisy slice

    # a second evaluation (another model version) adds change columns
    plugin_dock.model_dir = Path("/somewhere/v002")
    _wait(qtbot, loop.compute_metrics())
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert "Δ Rand F" in headers and table.item(0, headers.index("Δ Dice")).text() == "+0.000"

    _wait(qtbot, loop.rank_uncertainty())
    assert table.mode == "uncertainty" and table.row_labels()[0] == "1"
    picks = [int(table.item(r, 1).text()) for r in range(table.rowCount())]
    assert picks == [1, 2, 3]  # sorted by the suggested order
    entropies = [float(table.item(r, 2).text()) for r in range(table.rowCount())]
    assert entropies == sorted(entropies, reverse=True)  # 3 slices: no spreading to do
    table.cellDoubleClicked.emit(2, 0)
    assert viewer.dims.current_step[0] == int(table.row_labels()[2])


def test_sparse_ground_truth_is_scored_on_labelled_pixels(loop, viewer_with_em, qtbot):
    """Issue: background (1) of a sparse ground truth counted as foreground."""
    viewer = viewer_with_em
    masks = viewer.layers["em mask"].data
    sparse = np.zeros_like(masks)
    sparse[2] = np.where(masks[2] > 0, 2, 1)  # slice 2 fully labelled, the others not at all
    sparse[0, :10, :10] = np.where(masks[0, :10, :10] > 0, 2, 1)  # a patch of slice 0
    viewer.add_labels(sparse, name="em sparse truth")
    perfect = np.where(sparse == 2, 0.9, 0.1).astype(np.float32)
    perfect[sparse == 0] = 0.9  # wrong everywhere unlabelled: must not count
    viewer.layers["em probability"].data = perfect
    loop.truth.value = viewer.layers["em sparse truth"]
    _wait(qtbot, loop.compute_metrics())
    table = loop.metrics_table
    assert sorted(table.row_labels()[1:]) == ["0", "2"]  # slice 1 has no labels: left out
    dice = float(table.item(0, 2).text())
    pixel_error = float(table.item(0, 1).text())
    assert dice == pytest.approx(1.0) and pixel_error == pytest.approx(0.0)
    assert "labelled pixels" in loop.metrics_label.text()


def test_instances_layer(loop, viewer_with_em, qtbot):
    loop.min_size.value = 5
    _wait(qtbot, loop.make_instances())
    layer = viewer_with_em.layers["em instances"]
    assert type(layer).__name__ == "Labels" and layer.data.dtype == np.int32
    assert layer.data.shape == (3, 48, 48) and layer.data.max() > 1
    _wait(qtbot, loop.make_instances())  # updated in place
    assert _same(viewer_with_em.layers["em instances"], layer)


def test_autosave_round_trip(loop, viewer_with_em, tmp_path, qtbot, notifications):
    loop.project_folder.value = str(tmp_path / "proj")
    layer = viewer_with_em.layers["em prediction"]
    _paint(layer, 2, slice(0, 4), slice(0, 4), 2)
    job = loop.autosave_now()
    _wait(qtbot, job)
    version = loop.autosave_panel.last_version
    assert version is not None and version.edited_slices == (2,)
    assert version.path.parent == tmp_path / "proj" / "autosave"
    assert loop.autosave_now() is None  # unchanged: not written again
    _wait(qtbot, loop.restore_autosave())
    restored = loop.autosave_panel.restored_layer
    assert restored.name.startswith("em prediction (autosave ")
    np.testing.assert_array_equal(restored.data, layer.data)
    assert _same(loop.corrections.value, restored) and loop.training_slices() == [2]
    assert not notifications.messages("error")


@pytest.mark.parametrize("cwd_writable", [True, False])
def test_autosave_of_the_shipped_model_goes_to_a_user_folder(
    loop, plugin_dock, viewer_with_em, tmp_path, qtbot, monkeypatch, cwd_writable
):
    """Never into the installed package: the shipped model's folder is not a project.
    The autosaves go where fine-tuning it would put v001 (``./model-finetuned``), or to
    ``~/napari-unet-models`` when the working folder is read-only."""
    import os

    import napari_unet
    from napari_unet.sample import PRETRAINED_MODEL

    home, work = tmp_path / "home2", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    if not cwd_writable:
        work.chmod(0o555)
        if os.access(work, os.W_OK):  # root ignores permissions: pretend
            from napari_unet.widgets import layer_utils, loop_versions

            real = layer_utils.is_user_writable

            def writable(folder):
                inside = Path(folder).resolve() == work.resolve() or work in Path(folder).parents
                return not inside and real(folder)

            monkeypatch.setattr(loop_versions, "is_user_writable", writable)
    try:
        plugin_dock.set_model_dir(PRETRAINED_MODEL, "loaded")
        _paint(viewer_with_em.layers["em prediction"], 1, slice(0, 6), slice(0, 6), 2)
        _wait(qtbot, loop.autosave_now())
        version = loop.autosave_panel.last_version
        package = Path(napari_unet.__file__).resolve().parent
        assert version is not None and package not in version.path.resolve().parents
        root = work if cwd_writable else home / "napari-unet-models"
        assert version.path.parent == root / "model-finetuned" / "autosave"
        _wait(qtbot, loop.restore_autosave())  # and Restore finds it there
        assert loop.autosave_panel.restored_layer is not None
        assert loop.training_slices() == [1]
    finally:
        work.chmod(0o755)


def test_closing_the_dock_autosaves(loop, plugin_dock, viewer_with_em, tmp_path):
    from napari_unet.engine.autosave import Autosaver

    loop.project_folder.value = str(tmp_path / "proj")
    _paint(viewer_with_em.layers["em prediction"], 0, slice(0, 3), slice(0, 3), 2)
    plugin_dock.shutdown()
    latest = Autosaver(tmp_path / "proj").latest("em prediction")
    assert latest is not None and latest.edited_slices == (0,)
