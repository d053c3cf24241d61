"""Metrics section of the Correct & retrain tab: per-slice EM metrics or uncertainty.

"Compute metrics" compares ``<image> probability`` with a ground-truth Labels
layer slice by slice (worst first, with change columns against the previous
model version); "Rank by uncertainty" orders the slices by how unsure the
model is. Both run in workers, read the layers one slice at a time (lazy stacks
stay on disk) and fill the :class:`.MetricsTable`.

A sparse ground truth (0 unlabeled, 1 background, 2 foreground) is scored on its
labelled pixels only, and slices without labels are left out
(:func:`~napari_unet.engine.evaluation.annotation_evaluation.evaluate_annotation`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container
from napari.layers import Image, Labels
from qtpy.QtWidgets import QLabel, QPushButton, QWidget

from napari_unet.engine.errors import UserInputError

from . import notify
from .layer_utils import (
    find_layer,
    layer_choices,
    layer_data,
    layer_in_viewer,
    layer_stack_shape,
    require_layer,
    stack_view,
)
from .loop_section import LoopSection, row
from .metrics_table import MetricsTable
from .workers import Job, start_job

if TYPE_CHECKING:
    from .dock_context import DockContext, Predictor

__all__ = ["MASK_KINDS", "MetricsPanel", "metrics_job", "uncertainty_job"]


# These run in worker threads: no Qt, no layers.


#: The dock's annotation conventions as engine mask kinds.
MASK_KINDS = {"dense": "binary", "sparse": "sparse", "instances": "instances", "empty": "binary"}


def metrics_job(probability: Any, truth: Any, threshold: float) -> dict[str, Any]:
    """Per-slice and overall EM metrics of a probability stack against a ground truth
    of any convention (sparse: on the labelled pixels only)."""
    from napari_unet.engine.evaluation.annotation_evaluation import evaluate_annotation

    from .loop_corrections import convention_job

    kind = MASK_KINDS[convention_job(truth, [])]
    return evaluate_annotation(probability, truth, threshold, mask_kind=kind)


def uncertainty_job(probability: Any) -> list[dict[str, float]]:
    """Slices ranked most uncertain first (read one slice at a time), each with its place
    in the suggested correction order (``"pick"``: 1 first; see ``ranking.spread_order``)."""
    from napari_unet.engine.evaluation.ranking import rank_by_uncertainty, spread_order

    stack = stack_view(probability)
    records = []
    for z in range(int(stack.shape[0])):
        part = stack[z]
        plane = np.asarray(
            part.compute(scheduler="synchronous") if hasattr(part, "compute") else part
        )
        records.append({**rank_by_uncertainty(plane[None])[0], "slice": z})
    ranked = sorted(records, key=lambda r: -r["entropy"])
    order = {z: place for place, z in enumerate(spread_order(ranked), start=1)}
    return [{**record, "pick": order[int(record["slice"])]} for record in ranked]


class MetricsPanel(LoopSection):
    """Ground-truth picker, Compute metrics / Rank by uncertainty and the metrics table.

    Parameters
    ----------
    context
        The dock's shared state (viewer, jobs, current model folder).
    predictor
        The Predict tab (threshold, last probability layer).
    image_layer
        The image layer the corrections are on (its ``<image> probability`` is used).
    on_evaluated
        Called after a ground-truth evaluation is shown (e.g. to refresh the versions).
    """

    def __init__(
        self,
        context: DockContext,
        predictor: Predictor,
        image_layer: Callable[[], Image | None],
        on_evaluated: Callable[[], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Metrics", parent)
        self.context = context
        self.viewer = context.viewer
        self.predictor = predictor
        self._image_layer = image_layer
        self._on_evaluated = on_evaluated
        self._metrics_history: list[tuple[str, dict[str, Any]]] = []
        self._eval_by_version: dict[str, dict[str, Any]] = {}
        self.metrics_job: Job | None = None

        self.truth = ComboBox(
            label="Ground truth", choices=self._labels_choices, nullable=True, value=None
        )
        self.metrics_form = Container(widgets=[self.truth], labels=True)
        self.metrics_button = QPushButton("Compute metrics")
        self.rank_button = QPushButton("Rank by uncertainty")
        self.metrics_table = MetricsTable()
        self.metrics_label = QLabel("")
        self.metrics_label.setWordWrap(True)
        self.add_widgets(
            [
                self.metrics_form.native,
                row(self.metrics_button, self.rank_button),
                self.metrics_label,
                self.metrics_table,
            ]
        )
        self.metrics_button.clicked.connect(lambda *_: self.compute_metrics())
        self.rank_button.clicked.connect(lambda *_: self.rank_uncertainty())

    def _labels_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return layer_choices(self.viewer, [Labels])

    def reset_choices(self) -> None:
        """Refresh the ground-truth picker."""
        self.metrics_form.reset_choices()

    def evaluation(self, version: str) -> dict[str, Any] | None:
        """The last ground-truth metrics computed with model `version`, or None."""
        return self._eval_by_version.get(version)

    def probability_layer(self) -> Image:
        """``<image> probability`` of the chosen image (else the Predict tab's last one).

        Raises
        ------
        UserInputError
            If there is no probability layer (predict first).
        """
        image = self._image_layer()
        if image is not None:
            name = f"{image.name} probability"
            if name in self.viewer.layers and isinstance(self.viewer.layers[name], Image):
                return self.viewer.layers[name]
        layer = self.predictor.probability_layer
        if layer_in_viewer(self.viewer, layer):
            return layer
        raise UserInputError("no probability layer: predict the image first (Predict tab)")

    def _current_version_name(self) -> str:
        folder = self.context.model_dir()
        return Path(folder).name if folder is not None else "(unknown model)"

    def compute_metrics(self) -> Job | None:
        """Per-slice and overall metrics of the probability layer against the ground truth."""
        if self.metrics_job is not None and self.metrics_job.running:
            notify.info("metrics are already being computed")
            return None
        try:
            truth = require_layer(
                find_layer(self.viewer, self.truth.value), "a ground-truth Labels layer"
            )
            prob = self.probability_layer()
            if layer_stack_shape(prob) != layer_stack_shape(truth):
                raise UserInputError(
                    f"ground truth {truth.name!r} {layer_stack_shape(truth)} "
                    f"and {prob.name!r} {layer_stack_shape(prob)} differ in "
                    "shape"
                )
        except UserInputError as exc:
            notify.error(str(exc))
            return None
        version = self._current_version_name()
        threshold = float(self.predictor.threshold.value)
        self.metrics_label.setText(f"computing metrics of {prob.name!r}…")

        def on_returned(result: dict[str, Any]) -> None:
            self._show_metrics(result, version, prob.name, truth.name)

        self.metrics_job = start_job(
            self.context.jobs,
            "metrics",
            metrics_job,
            stack_view(layer_data(prob)),
            stack_view(layer_data(truth)),
            threshold,
            on_returned=on_returned,
            on_errored=lambda exc: self._metrics_failed(exc, "computing metrics"),
        )
        return self.metrics_job

    def _show_metrics(self, result: dict[str, Any], version: str, prob: str, truth: str) -> None:
        previous = next(
            (
                (name, res)
                for name, res in reversed(self._metrics_history)
                if name != version and res.get("n_slices") == result.get("n_slices")
            ),
            None,
        )
        self._metrics_history.append((version, result))
        self._metrics_history = self._metrics_history[-10:]
        self._eval_by_version[version] = result
        self.metrics_table.show_metrics(
            result, previous[1] if previous else None, previous[0] if previous else ""
        )
        text = (
            f"{prob} vs {truth} ({version}): Rand F {result['rand_fscore']:.3f}, "
            f"Dice {result['dice']:.3f}; worst slices first"
        )
        if result.get("mask_kind") == "sparse":
            text += (
                f"; sparse ground truth: scored on its labelled pixels "
                f"({result['labelled_fraction']:.1%}) of {result['n_slices']} labelled slices"
            )
        if previous:
            text += f"; Δ columns: change since {previous[0]}"
        self.metrics_label.setText(text)
        self._on_evaluated()

    def rank_uncertainty(self) -> Job | None:
        """Rank the slices by the model's uncertainty (no ground truth needed)."""
        if self.metrics_job is not None and self.metrics_job.running:
            notify.info("metrics are already being computed")
            return None
        try:
            prob = self.probability_layer()
        except UserInputError as exc:
            notify.error(str(exc))
            return None
        self.metrics_label.setText(f"ranking the slices of {prob.name!r} by uncertainty…")

        def on_returned(ranking: list[dict[str, float]]) -> None:
            self.metrics_table.show_ranking(ranking)
            self.metrics_label.setText(
                f"{prob.name}: slices in the order to correct them (pick order: the "
                "most uncertain first, spread through the stack)"
            )

        self.metrics_job = start_job(
            self.context.jobs,
            "metrics",
            uncertainty_job,
            layer_data(prob),
            on_returned=on_returned,
            on_errored=lambda exc: self._metrics_failed(exc, "ranking slices"),
        )
        return self.metrics_job

    def _metrics_failed(self, exc: BaseException, doing: str) -> None:
        self.metrics_label.setText(f"failed: {notify.report_exception(exc, doing)}")
