"""The learning-rate range test from the dock: run it in a worker, plot it, use its suggestion.

The test is :func:`~napari_unet.engine.training.lr_finder.lr_find_iter` (the same
as ``napari-unet lr-find``) on the Data tab's layers with the dock's settings;
``lr_find.png`` and ``lr_find.json`` go to a new ``lr-find-<time>`` folder in
the Train tab's models folder. The live curve is the smoothed loss against the
learning rate on a log axis; the suggested range is shaded when it is done.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from magicgui.widgets import Container, FloatSpinBox, PushButton, SpinBox
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from napari_unet.engine.errors import UserInputError

from . import notify
from .dock_jobs import lr_find_job
from .layer_utils import default_model_dir, snapshot
from .workers import Job, start_job

if TYPE_CHECKING:
    from .data_tab import DataTab
    from .dock_context import DockContext

__all__ = ["LRFinderPanel"]


class LRFinderPanel(QWidget):
    """Range (min/max rate, steps), Find/Stop, the live curve and "Use suggestion".

    Parameters
    ----------
    context
        The dock's shared state (config builder, jobs, set_value).
    data_tab
        The layers to train on.
    models_dir
        Returns the folder in which the ``lr-find-<time>`` folder is made.
    """

    def __init__(
        self,
        context: DockContext,
        data_tab: DataTab,
        models_dir: Callable[[], Any],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.context = context
        self.data_tab = data_tab
        self._models_dir = models_dir
        self.min_lr = FloatSpinBox(label="Min rate", min=1e-9, max=1.0, step=1e-7, value=1e-6)
        self.max_lr = FloatSpinBox(label="Max rate", min=1e-6, max=10.0, step=0.1, value=1.0)
        self.steps = SpinBox(label="Steps", min=5, max=10_000, value=100)
        self.find_button = PushButton(text="Find learning rate")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.use_button = PushButton(text="Use suggestion", enabled=False)
        self.find_button.changed.connect(lambda *_: self.find())
        self.stop_button.changed.connect(lambda *_: self.stop())
        self.use_button.changed.connect(lambda *_: self.use_suggestion())
        form = Container(widgets=[self.min_lr, self.max_lr, self.steps], labels=True)
        buttons = Container(
            widgets=[self.find_button, self.stop_button, self.use_button],
            layout="horizontal",
            labels=False,
        )
        self.plot_widget = pg.PlotWidget(background=None)
        self.plot_widget.setFixedHeight(150)
        item = self.plot_widget.getPlotItem()
        item.setLogMode(x=True, y=False)
        item.setLabel("bottom", "learning rate")
        item.setLabel("left", "loss")
        item.showGrid(x=True, y=True, alpha=0.2)
        legend = item.addLegend(offset=(10, 5), labelTextSize="8pt")
        legend.setBrush(pg.mkBrush(20, 20, 20, 160))
        self.raw_curve = item.plot(name="loss", pen=pg.mkPen("#888888", width=1))
        self.curve = item.plot(name="smoothed loss", pen=pg.mkPen("#4da6ff", width=2))
        self.region = pg.LinearRegionItem(movable=False, brush=pg.mkBrush(80, 200, 80, 50))
        self.region.setVisible(False)
        item.addItem(self.region)
        self.label = QLabel("Runs a short training with a rising rate (the model is not kept).")
        self.label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(form.native)
        layout.addWidget(buttons.native)
        layout.addWidget(self.plot_widget)
        layout.addWidget(self.label)
        self.job: Job | None = None
        self.suggestion: Any = None
        self.result: Any = None
        self.data: dict[str, list[float]] = {"lr": [], "loss": [], "smoothed": []}

    # ----------------------------------------------------------------- actions

    def find(self) -> Job | None:
        """Start the range test on the Data tab's layers (None if the inputs are unusable)."""
        if self.job is not None and self.job.running:
            notify.info("the learning-rate finder is already running")
            return None
        try:
            layers = self.data_tab.selected_layers()
            config = self.context.build_config()
            folder = default_model_dir(self._models_dir(), f"lr-find-{layers['image'].name}")
            if not float(self.min_lr.value) < float(self.max_lr.value):
                raise UserInputError("the learning-rate finder needs min rate < max rate")
        except UserInputError as exc:
            notify.error(str(exc))
            return None
        options = {
            "min_lr": float(self.min_lr.value),
            "max_lr": float(self.max_lr.value),
            "steps": int(self.steps.value),
            "output": str(folder),
        }
        self.data = {"lr": [], "loss": [], "smoothed": []}
        self.suggestion = self.result = None
        self._redraw()
        self.region.setVisible(False)
        self.find_button.enabled = self.use_button.enabled = False
        self.stop_button.enabled = True
        self.label.setText("preparing the data and the network…")
        self.job = start_job(
            self.context.jobs,
            "lr-find",
            lr_find_job,
            config,
            snapshot(layers["image"]),
            snapshot(layers["mask"]),
            options,
            on_yielded=self._on_event,
            on_returned=self._on_returned,
            on_errored=lambda exc: self.label.setText(
                notify.report_exception(exc, "the learning-rate finder")
            ),
            on_finished=self._on_finished,
            pass_events=True,
        )
        return self.job

    def stop(self) -> None:
        """Stop the range test after the current batch."""
        if self.job is not None and self.job.running:
            self.job.request_stop()
            self.stop_button.enabled = False

    def use_suggestion(self) -> None:
        """Put the suggested rates into the settings.

        Constant, cosine and step schedules get ``max_lr`` as the learning rate;
        cyclical ones get ``base_lr`` as the learning rate and ``max_lr`` as the peak.
        """
        if self.suggestion is None:
            notify.info("run the learning-rate finder first")
            return
        from napari_unet.engine.training.schedules import CYCLICAL

        try:
            kind = self.context.build_config().train.schedule.kind
        except UserInputError:
            kind = "constant"
        s = self.suggestion
        if kind in CYCLICAL:
            self.context.set_value("train.learning_rate", float(s.base_lr))
            self.context.set_value("train.schedule.max_lr", float(s.max_lr))
            text = f"learning rate {s.base_lr:.3g}, cyclical peak {s.max_lr:.3g}"
        else:
            self.context.set_value("train.learning_rate", float(s.max_lr))
            text = f"learning rate {s.max_lr:.3g}"
        self.context.status(f"Using the LR finder's suggestion: {text}")

    # ----------------------------------------------------------------- events (main thread)

    def _on_event(self, event: Any) -> None:
        if event.kind == "step":
            self.data["lr"].append(float(event.learning_rate))
            self.data["loss"].append(float(event.loss))
            self.data["smoothed"].append(float(event.smoothed_loss))
            if event.step % 5 == 0 or event.step == event.total_steps:
                self._redraw()
            self.label.setText(
                f"step {event.step}/{event.total_steps}: rate {event.learning_rate:.3g}, "
                f"smoothed loss {event.smoothed_loss:.4f}"
            )
        elif event.kind in ("done", "stopped"):
            self._redraw()
            self.suggestion = event.suggestion
            if event.suggestion is not None:
                s = event.suggestion
                self.region.setRegion((math.log10(s.base_lr), math.log10(s.max_lr)))
                self.region.setVisible(True)
                note = f" ({s.note})" if s.note else ""
                self.label.setText(
                    f"suggested: learning rate {s.max_lr:.3g} (constant/cosine), or "
                    f"{s.base_lr:.3g} to {s.max_lr:.3g} (cyclical){note}"
                )
            else:
                self.label.setText(f"no suggestion: {event.message}")

    def _on_returned(self, result: Any) -> None:
        self.result = result
        if result.plot_path:
            self.label.setText(self.label.text() + f"\nplot: {Path(result.plot_path)}")

    def _on_finished(self) -> None:
        self.find_button.enabled = True
        self.stop_button.enabled = False
        self.use_button.enabled = self.suggestion is not None

    def _redraw(self) -> None:
        lrs = np.asarray(self.data["lr"])
        smoothed = np.asarray(self.data["smoothed"])
        raw = np.asarray(self.data["loss"])
        finite = np.isfinite(smoothed)
        self.curve.setData(lrs[finite], smoothed[finite])
        keep = np.isfinite(raw)
        self.raw_curve.setData(lrs[keep], raw[keep])
        if finite.any():  # keep the divergence off the scale
            low = float(smoothed[finite].min())
            high = min(float(smoothed[finite].max()), 4 * low)
            self.plot_widget.getPlotItem().setYRange(low, high * 1.05 + 1e-12, padding=0.02)
