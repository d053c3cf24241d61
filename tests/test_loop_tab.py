"""The "Correct & retrain" tab of the dock on tiny data (``xvfb-run -a python -m pytest``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pyqtgraph")

pytestmark = pytest.mark.gui

TIMEOUT = 120_000  # ms


def _layer_state(viewer) -> list[tuple[str, str, int]]:
    return [(layer.name, type(layer).__name__, id(layer.data)) for layer in viewer.layers]


def _wait(qtbot, job, timeout: int = TIMEOUT) -> None:
    assert job is not None
    qtbot.waitUntil(lambda: job.finished, timeout=timeout)


@pytest.fixture
def loop(unet_dock, viewer_with_em):
    """The tab with ``em prediction`` (a copy of the mask) as its corrections layer and a
    fake ``em probability`` layer."""
    viewer = viewer_with_em
    masks = viewer.layers["em mask"].data
    viewer.add_labels(masks.copy(), name="em prediction")
    rng = np.random.default_rng(0)
    probability = np.clip(masks * 0.8 + rng.normal(0.1, 0.05, masks.shape), 0, 1)
    probability[1] = 0.5 + 0.02 * rng.standard_normal(masks.shape[1:])  # the unsure slice
    viewer.add_image(probability.astype(np.float32), name="em probability")
    tab = unet_dock.loop_tab
    assert tab.corrections.value is viewer.layers["em prediction"]  # picked when it appeared
    assert tab.image.value is viewer.layers["em"]
    return tab


@pytest.fixture
def project(tmp_path, gui_model_dir, unet_dock):
    """A project folder with v001 (the tiny trained model), current in the dock."""
    folder = tmp_path / "project"
    shutil.copytree(gui_model_dir, folder / "v001")
    unet_dock.set_model_dir(folder / "v001", "loaded")
    unet_dock.loop_tab.refresh_versions()
    return folder


def test_convention_and_conversion_to_sparse(loop, viewer_with_em, notifications):
    assert "dense" in loop.convention_label.text()
    viewer_with_em.dims.set_current_step(0, 2)
    sparse = loop.convert_to_sparse()
    assert sparse.name == "em prediction sparse"
    mask = viewer_with_em.layers["em prediction"].data
    assert set(np.unique(sparse.data[[0, 1]])) == {0}
    np.testing.assert_array_equal(sparse.data[2], np.where(mask[2] > 0, 2, 1))
    loop.corrections.value = sparse
    assert loop.convention() == "sparse" and "sparse" in loop.convention_label.text()
    assert loop.convert_to_sparse() is None  # already sparse
    assert "already a sparse" in notifications.messages("error")[-1]


def test_edited_and_reviewed_slices(loop, viewer_with_em, qtbot):
    layer = viewer_with_em.layers["em prediction"]
    assert loop.edited_slices() == []
    layer.data[1, 5:15, 5:15] = 1 - layer.data[1, 5:15, 5:15]  # a brush stroke, in place
    layer.refresh()
    assert loop.edited_slices() == [1]
    viewer_with_em.dims.set_current_step(0, 2)
    assert loop.mark_reviewed() == 2
    assert loop.training_slices() == [1, 2]
    texts = [loop.edits_list.item(i).text() for i in range(loop.edits_list.count())]
    assert texts == ["slice 1: corrected", "slice 2: reviewed"]
    # a new prediction (data replaced) is a new baseline
    layer.data = layer.data.copy()
    assert loop.training_slices() == []


def test_finetune_through_the_tab(loop, project, unet_dock, viewer_with_em, qtbot, notifications):
    layer = viewer_with_em.layers["em prediction"]
    layer.data[0, :10, :10] = 0
    layer.refresh()
    viewer_with_em.dims.set_current_step(0, 2)
    loop.mark_reviewed()
    loop.budget.value = 0.05
    assert loop.version_names() == ["v001"]
    job = loop.finetune()
    assert job is not None
    with qtbot.waitSignal(job.worker.finished, timeout=TIMEOUT):
        pass
    _wait(qtbot, job)
    assert not notifications.messages("error"), notifications.messages("error")
    assert loop.version_names() == ["v001", "v002"]
    assert unet_dock.model_dir == project / "v002"
    from napari_unet.engine.model.versions import VersionStore

    store = VersionStore(project)
    assert store.current().name == "v002" and store.current().parent == "v001"
    row = loop.version_names().index("v002")
    assert loop.versions_table.item(row, 1).text() == "✓"
    assert len(loop.plot.data["train_y"]) > 0
    meta = (project / "v002" / "metadata.json").read_text()
    assert '"finetuned_on_slices": [\n    0,\n    2\n  ]' in meta or "[0, 2]" in meta
    assert any("v002 is now in use" in m for m in notifications.messages("info"))
    # predict with the new version: the prediction is replaced, so it is a new baseline
    job = loop.predict_with_version("v002")
    _wait(qtbot, job)
    assert unet_dock.model_dir == project / "v002"
    assert viewer_with_em.layers["em prediction"] is layer and loop.training_slices() == []
    # go back to v001
    assert loop.use_version("v001") == project / "v001"
    assert store.current().name == "v001" and unet_dock.model_dir == project / "v001"


def test_finetune_without_corrections_is_an_error(loop, project, viewer_with_em, notifications):
    before = _layer_state(viewer_with_em)
    assert loop.finetune() is None
    assert "no corrected slices" in notifications.messages("error")[-1]
    assert _layer_state(viewer_with_em) == before
    assert loop.version_names() == ["v001"]


def test_metrics_table_and_uncertainty_ranking(loop, unet_dock, viewer_with_em, qtbot):
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
    unet_dock.model_dir = Path("/somewhere/v002")
    _wait(qtbot, loop.compute_metrics())
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert "Δ Rand F" in headers and table.item(0, headers.index("Δ Dice")).text() == "+0.000"

    _wait(qtbot, loop.rank_uncertainty())
    assert table.mode == "uncertainty" and table.row_labels()[0] == "1"
    entropies = [float(table.item(r, 1).text()) for r in range(table.rowCount())]
    assert entropies == sorted(entropies, reverse=True)
    table.cellDoubleClicked.emit(2, 0)
    assert viewer.dims.current_step[0] == int(table.row_labels()[2])


def test_instances_layer(loop, viewer_with_em, qtbot):
    loop.min_size.value = 5
    _wait(qtbot, loop.make_instances())
    layer = viewer_with_em.layers["em instances"]
    assert type(layer).__name__ == "Labels" and layer.data.dtype == np.int32
    assert layer.data.shape == (3, 48, 48) and layer.data.max() > 1
    _wait(qtbot, loop.make_instances())  # updated in place
    assert viewer_with_em.layers["em instances"] is layer


def test_autosave_round_trip(loop, viewer_with_em, tmp_path, notifications):
    loop.project_folder.value = str(tmp_path / "proj")
    layer = viewer_with_em.layers["em prediction"]
    layer.data[2, :4, :4] = 1 - layer.data[2, :4, :4]
    layer.refresh()
    version = loop.autosave_now()
    assert version is not None and version.edited_slices == (2,)
    assert loop.autosave_now() is None  # unchanged: not written again
    restored = loop.restore_autosave()
    assert restored.name.startswith("em prediction (autosave ")
    np.testing.assert_array_equal(restored.data, layer.data)
    assert loop.corrections.value is restored and loop.training_slices() == [2]
    assert not notifications.messages("error")


def test_closing_the_dock_autosaves(loop, unet_dock, viewer_with_em, tmp_path):
    from napari_unet.engine.autosave import Autosaver

    loop.project_folder.value = str(tmp_path / "proj")
    layer = viewer_with_em.layers["em prediction"]
    layer.data[0, :3, :3] = 1 - layer.data[0, :3, :3]
    layer.refresh()
    unet_dock.shutdown()
    latest = Autosaver(tmp_path / "proj").latest("em prediction")
    assert latest is not None and latest.edited_slices == (0,)
