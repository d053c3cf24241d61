"""Issue 7.1 in napari: the in-memory corpus (tests/corpus.py ``array_corpus``)
through the dock's actions — predict, augmentation preview, train, export.

Each action gives a result or exactly one error notification, never raises,
and never changes the layers it was given (their data is hashed before and
after). Run under Xvfb: ``xvfb-run -a python -m pytest tests/test_corpus_widgets.py``.
"""

from __future__ import annotations

import hashlib

import napari  # noqa: F401  (a test dependency: missing fails)
import numpy as np
import pyqtgraph  # noqa: F401  (a test dependency: missing fails)
import pytest

from .corpus import array_corpus

pytestmark = pytest.mark.gui
TIMEOUT = 300_000  # ms
#: Valid pairs whose augmentation preview is run (each preview takes seconds).
PREVIEWED = {"smaller-than-tile", "single-2d", "mask-several-classes"}


def _digest(layer) -> str:
    data = np.asarray(layer.data)
    return hashlib.sha256(data.tobytes() + str((data.shape, data.dtype)).encode()).hexdigest()


def _state(viewer) -> dict[str, tuple[str, int, str]]:
    return {
        layer.name: (type(layer).__name__, id(layer.data), _digest(layer))
        for layer in viewer.layers
    }


def _finish(qtbot, job) -> None:
    if job is not None:
        qtbot.waitUntil(lambda: job.finished, timeout=TIMEOUT)


def _add(viewer, name, image, mask):
    image_layer = viewer.add_image(image, name=f"{name} image")
    mask_layer = viewer.add_labels(mask, name=f"{name} mask") if mask is not None else None
    return image_layer, mask_layer


def _new_errors(notifications, start: int) -> list[str]:
    return notifications.messages("error")[start:]


def test_predict_and_preview_every_corpus_array(unet_dock, qtbot, trained_model_dir, notifications):
    viewer = unet_dock.viewer
    tab = unet_dock.predict_tab
    tab.source.value = "model folder"
    tab.model_folder.value = str(trained_model_dir)
    for name, expect, pair_expect, image, mask in array_corpus():
        image_layer, mask_layer = _add(viewer, name, image, mask)
        inputs = {k: v for k, v in _state(viewer).items() if k.startswith(f"{name} ")}
        tab.image.value = image_layer
        start = len(notifications.messages("error"))
        before_names = set(_state(viewer))
        _finish(qtbot, tab.predict())
        qtbot.waitUntil(lambda: not tab.labels_writer.busy, timeout=TIMEOUT)  # labels written
        errors = _new_errors(notifications, start)
        added = set(_state(viewer)) - before_names
        assert len(errors) <= 1 and all("Traceback" not in e for e in errors), (name, errors)
        if expect == "ok":
            assert not errors and added, (name, errors)
        elif expect == "error":
            assert errors and not added, (name, added)
        if mask_layer is not None and (pair_expect == "error" or name in PREVIEWED):
            unet_dock.data_tab.image.value = image_layer
            unet_dock.data_tab.mask.value = mask_layer
            start = len(notifications.messages("error"))
            _finish(qtbot, unet_dock.augment_tab.preview())
            errors = _new_errors(notifications, start)
            assert len(errors) <= 1, (name, errors)
            if name.startswith("mask-") and pair_expect == "error":  # image and mask disagree
                assert len(errors) == 1, (name, errors)
        after = _state(viewer)
        assert {k: after[k] for k in inputs} == inputs, f"{name}: an input layer changed"
        for layer in list(viewer.layers):  # keep the viewer small
            viewer.layers.remove(layer)


def test_train_refuses_bad_arrays_and_trains_an_awkward_one(unet_dock, qtbot, notifications):
    viewer = unet_dock.viewer
    tried = 0
    for name, _, expect, image, mask in array_corpus():
        if mask is None or not (expect == "error" or name == "smaller-than-tile"):
            continue
        image_layer, mask_layer = _add(viewer, name, image, mask)
        unet_dock.data_tab.image.value = image_layer
        unet_dock.data_tab.mask.value = mask_layer
        inputs = _state(viewer)
        start = len(notifications.messages("error"))
        job = unet_dock.train_tab.train()
        _finish(qtbot, job)
        errors = _new_errors(notifications, start)
        if expect == "error":
            assert len(errors) == 1 and "Traceback" not in errors[0], (name, errors)
        else:
            assert job is not None and not errors, (name, errors)
        after = _state(viewer)
        assert {k: after[k] for k in inputs} == inputs, f"{name}: an input layer changed"
        tried += 1
        for layer in list(viewer.layers):
            viewer.layers.remove(layer)
    assert tried >= 4


def test_export_every_corpus_mask(unet_dock, qtbot, tmp_path, notifications):
    from napari_unet.engine.io.stacks import read_mask
    from napari_unet.widgets.export_tab import FORMAT_PNG, FORMAT_TIFF

    viewer = unet_dock.viewer
    tab = unet_dock.export_tab
    seen = set()
    for name, _, _, _image, mask in array_corpus():
        if mask is None or (mask.shape, mask.dtype, mask.max()) in seen:
            continue
        seen.add((mask.shape, mask.dtype, mask.max()))
        layer = viewer.add_labels(mask, name=f"{name} mask")
        before = _digest(layer)
        tab.mask.value = layer
        for fmt, target in (
            (FORMAT_TIFF, tmp_path / f"{name}.tif"),
            (FORMAT_PNG, tmp_path / f"{name}-png"),
        ):
            start = len(notifications.messages("error"))
            _finish(qtbot, tab.export_mask(target, fmt))
            errors = _new_errors(notifications, start)
            assert len(errors) <= 1, (name, errors)
            if not errors:
                np.testing.assert_array_equal(
                    read_mask(target), (np.atleast_3d(mask) != 0).reshape(read_mask(target).shape)
                )
        assert _digest(layer) == before
        viewer.layers.remove(layer)
    assert not list(tmp_path.glob(".*tmp*"))
