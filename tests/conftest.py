"""Shared fixtures: tiny synthetic EM data and a tiny trained model folder."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

from napari_unet.engine.config import Config
from napari_unet.engine.data.synthetic import synthetic_em
from napari_unet.widgets.tf_loader import keep_symbols_local

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# TensorFlow's static build exports its private LLVM process-wide (RTLD_GLOBAL); the GUI
# tests later load Mesa's OpenGL driver, which would then call TensorFlow's LLVM and
# corrupt the heap ("free(): invalid pointer" and exit 134 when the interpreter exits).
# Keep TensorFlow's symbols local before any test imports it, as the plugin does
# (napari_unet/widgets/tf_loader.py); tests/test_tf_loader.py checks both orders.
keep_symbols_local()
# precision: auto measures once per machine and network and caches it in the user's cache
# folder; the tests measure in a folder of their own (also for the CLI subprocesses)
os.environ.setdefault("NAPARI_UNET_CACHE", tempfile.mkdtemp(prefix="napari-unet-test-cache-"))


def tiny_config(tmp_path, **train) -> Config:
    """A config that trains a depth-2, 4-filter U-Net for a few steps."""
    settings = {
        "epochs": 2,
        "steps_per_epoch": 3,
        "batch_size": 2,
        "patch_size": 32,
        "precision": "float32",
        "tensorboard": False,
        "val_em_metrics": True,
    }
    settings.update(train)
    return Config.model_validate(
        {
            "model": {"depth": 2, "base_filters": 4},
            "train": settings,
            "predict": {"tile_size": 64, "overlap": 8, "batch_size": 2},
            "data": {"val_fraction": 0.34},
            "output": str(tmp_path / "model"),
        }
    )


@pytest.fixture
def em_stack() -> tuple[np.ndarray, np.ndarray]:
    """Three 48x48 EM-like slices (uint8) and their {0,1} masks."""
    return synthetic_em(slices=3, size=48, cells=8, seed=1)


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory):
    """A tiny model folder trained once per test session."""
    from napari_unet.engine.training.train import train

    tmp = tmp_path_factory.mktemp("trained")
    images, masks = synthetic_em(slices=3, size=48, cells=8, seed=2)
    result = train(tiny_config(tmp), images, masks)
    return result.model_dir


# --------------------------------------------------------------------------- GUI (napari) fixtures
# Used by tests/test_widgets*.py and tests/test_reader.py; napari/Qt are imported
# inside the fixtures so the engine tests never load them.


class NotificationLog:
    """napari notifications shown since the fixture started."""

    def __init__(self) -> None:
        from napari.utils.notifications import notification_manager

        self._manager = notification_manager
        self._start = len(notification_manager.records)

    def records(self, severity: str | None = None) -> list:
        new = self._manager.records[self._start :]
        return [n for n in new if severity is None or str(n.severity).lower() == severity]

    def messages(self, severity: str | None = None) -> list[str]:
        return [str(n.message) for n in self.records(severity)]


@pytest.fixture
def notifications() -> NotificationLog:
    """Collects napari notifications (``.messages("error")``)."""
    return NotificationLog()


def gui_tiny_settings(dock, tmp_path) -> None:
    """Make the dock train a depth-2, 4-filter U-Net for 2x3 steps on 32 px patches."""
    dock.config_overrides = {
        "model.depth": 2,
        "model.base_filters": 4,
        "train.precision": "float32",
        "train.val_em_metrics": True,
    }
    dock.data_tab.patch_size.value = 32
    dock.data_tab.val_fraction.value = 0.34
    tab = dock.train_tab
    tab.epochs.value = 2
    tab.steps_per_epoch.value = 3
    tab.batch_size.value = 2
    tab.models_dir.value = str(tmp_path / "models")
    dock.predict_tab.tile_size.value = 64


@pytest.fixture
def viewer_with_em(make_napari_viewer, em_stack):
    """A napari viewer holding the synthetic stack ``em`` and its mask ``em mask``."""
    viewer = make_napari_viewer()
    images, masks = em_stack
    viewer.add_image(images, name="em")
    viewer.add_labels(masks, name="em mask")
    return viewer


@pytest.fixture
def unet_dock(viewer_with_em, qtbot, tmp_path, monkeypatch):
    """The U-Net dock docked in `viewer_with_em`, set up for tiny, fast runs (in a
    working folder of its own: autosaves of models without a project land there)."""
    from napari_unet.widgets.dock import UNetDock

    (tmp_path / "cwd").mkdir(exist_ok=True)
    monkeypatch.chdir(tmp_path / "cwd")

    dock = UNetDock(viewer_with_em)
    viewer_with_em.window.add_dock_widget(dock, name="U-Net")
    gui_tiny_settings(dock, tmp_path)
    yield dock
    dock.shutdown()
    qtbot.waitUntil(lambda: not dock.jobs.running(), timeout=120_000)


@pytest.fixture
def gui_model_dir(request):
    """`trained_model_dir` for GUI tests: TensorFlow is imported the plugin's way first.

    A napari viewer maps Mesa's libLLVM; importing TensorFlow plainly after that
    segfaults (see ``napari_unet/widgets/tf_loader.py``), and the session fixture
    trains in this process.
    """
    from napari_unet.widgets.tf_loader import ensure_tensorflow

    ensure_tensorflow()
    return request.getfixturevalue("trained_model_dir")
