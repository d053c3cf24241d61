"""Screenshots of the U-Net dock for the README (docs/screenshots/*.png).

Run under a display: ``xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshots.py``.

Opens napari with the shipped ISBI 2012 sample, then walks through the dock: Data,
Augment (with a preview), Train (a short real training run with its live loss curve),
Predict (the model just trained, thresholded) and Export, saving one screenshot of the
whole window per tab. Takes a minute or two on a laptop CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # screenshot this checkout, whatever is installed

OUT = REPO / "docs" / "screenshots"


def _wait(app: Any, job: Any, timeout: float = 900.0) -> None:
    deadline = time.time() + timeout
    while job is not None and not job.finished:
        app.processEvents()
        time.sleep(0.01)
        if time.time() > deadline:
            raise TimeoutError("the job did not finish")
    _settle(app)


def _settle(app: Any, seconds: float = 0.5) -> None:
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.01)


def _shoot(viewer: Any, app: Any, name: str, out: Path) -> Path:
    import imageio.v3 as iio

    _settle(app)
    image = viewer.screenshot(canvas_only=False, flash=False)
    path = out / f"{name}.png"
    iio.imwrite(path, image)
    print(f"wrote {path} {image.shape[1]}x{image.shape[0]}")
    return path


def main(argv: list[str] | None = None) -> list[Path]:
    """Take the screenshots; return their paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--steps", type=int, default=15)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    # napari settings changed below go to a throw-away file, not the user's
    os.environ["NAPARI_CONFIG"] = str(Path(tempfile.mkdtemp()) / "settings.yaml")

    import napari
    from napari.settings import get_settings
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    get_settings().application.gui_notification_level = "error"  # no toasts on the shots
    viewer = napari.Viewer(title="napari-unet")
    app = QApplication.instance()
    viewer.window.resize(1560, 960)
    viewer.open_sample("napari-unet", "isbi2012")
    dock_widget, dock = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net")
    viewer.window._qt_window.resizeDocks([dock_widget], [500], Qt.Orientation.Horizontal)
    dock.allow_overwrite = True
    models = Path(tempfile.mkdtemp(prefix="napari-unet-shots-"))
    image = viewer.layers["EM"]
    viewer.dims.current_step = (2, *viewer.dims.current_step[1:])
    shots = []

    viewer.reset_view()
    viewer.layers.selection.active = image
    dock.tabs.setCurrentWidget(dock.data_tab)
    dock.data_tab.patch_size.value = 256
    shots.append(_shoot(viewer, app, "01_data", args.out))

    dock.tabs.setCurrentWidget(dock.augment_tab)
    dock.augment_tab.preview_count.value = 4
    _wait(app, dock.augment_tab.preview())
    viewer.reset_view()
    shots.append(_shoot(viewer, app, "02_augment", args.out))
    for name in ("EM augmented", "EM augmented mask"):
        viewer.layers.remove(name)
    viewer.reset_view()
    viewer.layers.selection.active = image
    dock.data_tab.patch_size.value = 128  # quick training for the pictures
    dock.status("")

    train = dock.train_tab
    dock.tabs.setCurrentWidget(train)
    train.epochs.value = args.epochs
    train.steps_per_epoch.value = args.steps
    train.batch_size.value = 4
    train.learning_rate.value = 0.002
    train.models_dir.value = str(models)
    job = train.train()
    _wait(app, job)
    train.plot.flush()
    shots.append(_shoot(viewer, app, "03_train", args.out))

    predict = dock.predict_tab
    dock.tabs.setCurrentWidget(predict)
    predict.image.value = image
    _wait(app, predict.predict())
    _wait(app, predict.labels_writer.job)  # the labels are thresholded in a worker too
    viewer.layers["EM mask"].visible = False
    viewer.layers["EM prediction"].opacity = 0.45
    predict.threshold.value = 0.5
    _settle(app, 0.2)
    _wait(app, predict.labels_writer.job)
    viewer.layers.selection.active = viewer.layers["EM prediction"]
    shots.append(_shoot(viewer, app, "04_predict", args.out))

    dock.tabs.setCurrentWidget(dock.export_tab)
    dock.export_tab.mask.value = viewer.layers["EM prediction"]
    shots.append(_shoot(viewer, app, "05_export", args.out))

    dock.shutdown()
    viewer.close()
    return shots


if __name__ == "__main__":
    main()
