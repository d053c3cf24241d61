"""Instances section of the Correct & retrain tab: ``<image> instances`` from the probability.

Connected components of the thresholded probability (small objects removed,
holes optionally filled), computed in a worker; moving the Predict tab's
threshold recomputes the layer once it exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, Container, SpinBox
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QPushButton, QWidget

from napari_unet.engine.errors import UserInputError

from . import notify
from .layer_utils import add_or_update_layer, is_lazy_layer, layer_data, layer_in_viewer
from .loop_section import LoopSection
from .workers import Job, start_job

if TYPE_CHECKING:
    from napari.layers import Image

    from .dock_context import DockContext, Predictor

__all__ = ["InstancesPanel", "instances_job"]


def instances_job(
    probability: np.ndarray, threshold: float, min_size: int, fill_holes: bool
) -> np.ndarray:
    """Instance labels of the predicted cell interiors (runs in a worker: no Qt, no layers)."""
    from napari_unet.engine.inference.postprocess import instances_from_probability

    return instances_from_probability(np.asarray(probability), threshold, min_size, fill_holes)


class InstancesPanel(LoopSection):
    """Min size, fill holes and the Instances button.

    Parameters
    ----------
    context
        The dock's shared state (viewer, jobs, status).
    predictor
        The Predict tab (its threshold).
    probability_layer
        The probability layer to split into instances (raises UserInputError if none).
    """

    def __init__(
        self,
        context: DockContext,
        predictor: Predictor,
        probability_layer: Callable[[], Image],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Instances", parent)
        self.context = context
        self.viewer = context.viewer
        self.predictor = predictor
        self._probability_layer = probability_layer
        self._closed = False
        self.instances_job: Job | None = None
        self.instances_layer: Any = None

        self.min_size = SpinBox(label="Min size (px)", min=0, max=10_000_000, value=20)
        self.fill_holes = CheckBox(text="Fill holes", value=True)
        self.instances_form = Container(widgets=[self.min_size, self.fill_holes], labels=True)
        self.instances_button = QPushButton("Instances")
        self.add_widgets([self.instances_form.native, self.instances_button])
        self.instances_button.clicked.connect(lambda *_: self.make_instances())

        self._instances_timer = QTimer(self)  # live threshold for the instances layer
        self._instances_timer.setSingleShot(True)
        self._instances_timer.setInterval(150)
        self._instances_timer.timeout.connect(self._rethreshold_instances)
        predictor.threshold.changed.connect(self._on_threshold_changed)

    def make_instances(self) -> Job | None:
        """``<image> instances``: connected components of the thresholded probability."""
        if self.instances_job is not None and self.instances_job.running:
            return None
        try:
            prob = self._probability_layer()
            if is_lazy_layer(prob):
                raise UserInputError(
                    f"{prob.name!r} is read lazily from disk: instances need the whole "
                    "probability in memory; predict a smaller stack (or a region) for them"
                )
        except UserInputError as exc:
            notify.error(str(exc))
            return None
        base = (
            prob.name[: -len(" probability")] if prob.name.endswith(" probability") else (prob.name)
        )
        name = f"{base} instances"
        placement = {"scale": tuple(prob.scale), "translate": tuple(prob.translate)}
        threshold = float(self.predictor.threshold.value)

        def on_returned(labels: np.ndarray) -> None:
            layer, _ = add_or_update_layer(self.viewer, name, labels, "labels", **placement)
            self.instances_layer = layer
            count = len(np.unique(labels)) - 1
            self.context.status(f"{name}: {count} objects (threshold {threshold:.2f})")

        self.instances_job = start_job(
            self.context.jobs,
            "instances",
            instances_job,
            layer_data(prob),
            threshold,
            int(self.min_size.value),
            bool(self.fill_holes.value),
            on_returned=on_returned,
            on_errored=lambda exc: notify.report_exception(exc, "finding instances"),
        )
        return self.instances_job

    def _on_threshold_changed(self, *_: Any) -> None:
        if not self._closed and layer_in_viewer(self.viewer, self.instances_layer):
            self._instances_timer.start()

    def _rethreshold_instances(self) -> None:
        if not self._closed and layer_in_viewer(self.viewer, self.instances_layer):
            self.make_instances()

    def shutdown(self) -> None:
        """Stop following the threshold."""
        self._closed = True
        self._instances_timer.stop()
        try:
            self.predictor.threshold.changed.disconnect(self._on_threshold_changed)
        except (TypeError, ValueError, RuntimeError):
            pass
