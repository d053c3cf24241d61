"""Fine-tune section of the Correct & retrain tab: the run, its progress and live loss plot.

"Fine-tune on corrections" warm-starts the current model on the corrected and
reviewed slices in a worker (:func:`napari_unet.engine.training.finetune.finetune_iter`)
and makes the result the current model version. Nothing here imports
TensorFlow: the job runs in a child process (or, for data that cannot be sent there,
in its own worker thread).
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, Container, FloatSpinBox
from qtpy.QtWidgets import QLabel, QProgressBar, QPushButton, QWidget

from napari_unet.engine.errors import UserInputError

from . import notify
from .child_jobs import engine_job
from .layer_utils import layer_data, layer_stack_shape, require_layer
from .loop_section import LoopSection, row
from .loop_versions import VERSION_NAME
from .loss_plot import LossPlot
from .progress import TaskProgress, format_seconds
from .workers import Job, start_job

if TYPE_CHECKING:
    from .dock_context import DockContext, Predictor
    from .loop_corrections import CorrectionsPanel
    from .loop_versions import VersionsPanel

__all__ = ["FinetunePanel", "finetune_job"]


def finetune_job(
    parent: Path,
    images: np.ndarray,
    masks: np.ndarray,
    slices: list[int] | None,
    output: Path | None,
    max_minutes: float,
    metadata: dict[str, Any],
    mask_kind: str,
    stop: threading.Event,
    closing: threading.Event,
) -> Generator[Any, None, Any]:
    """Fine-tune `parent` on corrected slices, yielding TrainEvents; returns the TrainResult.

    Runs in a worker thread: no Qt, no layers. The engine runs in a child process
    (:func:`.child_jobs.engine_job`), or in a thread of this process when the data
    cannot be sent to one.
    """
    options = {
        "slices": slices,
        "output": output,
        "max_minutes": max_minutes,
        "metadata": metadata,
        "mask_kind": mask_kind,
    }
    corrections = np.array(masks)  # the copy is taken here, not on the GUI thread
    return (
        yield from engine_job(
            "napari_unet.engine.training.finetune:finetune_iter",
            (parent, images, corrections),
            options,
            stop,
            closing,
            "fine-tuning",
        )
    )


class FinetunePanel(LoopSection):
    """Budget, re-predict, project folder, Fine-tune/Stop, progress and the loss plot.

    Parameters
    ----------
    context
        The dock's shared state (jobs, current model folder, status).
    corrections
        The Corrections section (the layers and slices to learn from).
    versions
        The Model versions section (the parent model, where the new version goes,
        its project folder picker shown here).
    predictor
        The Predict tab ("Re-predict when done").
    """

    def __init__(
        self,
        context: DockContext,
        corrections: CorrectionsPanel,
        versions: VersionsPanel,
        predictor: Predictor,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Fine-tune", parent)
        self.context = context
        self.corrections = corrections
        self.versions = versions
        self.predictor = predictor
        self.job: Job | None = None
        self.last_result: Any = None
        self._budget_seconds = 120.0
        self._steps_per_epoch = 10

        self.budget = FloatSpinBox(
            label="Budget (minutes)", min=0.01, max=600.0, step=0.5, value=2.0
        )
        self.auto_predict = CheckBox(text="Re-predict when done", value=False)
        self.finetune_form = Container(
            widgets=[self.budget, self.auto_predict, versions.project_folder], labels=True
        )
        self.finetune_button = QPushButton("Fine-tune on corrections")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.progress = TaskProgress("Fine-tuning", self.progress_bar, self.status_label)
        self.plot = LossPlot()
        self.plot.plot_widget.setMinimumHeight(140)
        self.add_widgets(
            [
                self.finetune_form.native,
                row(self.finetune_button, self.stop_button),
                self.progress_bar,
                self.status_label,
                self.plot,
            ]
        )
        self.finetune_button.clicked.connect(lambda *_: self.finetune())
        self.stop_button.clicked.connect(lambda *_: self.stop())

    def finetune(self) -> Job | None:
        """Fine-tune the current model on the corrected and reviewed slices.

        Returns the job, or None if the inputs were not usable (a notification
        says why; no layer is changed).
        """
        if self.job is not None and self.job.running:
            notify.info("fine-tuning is already running; press Stop first")
            return None
        corrections = self.corrections
        try:
            layer = require_layer(corrections.corrections_layer(), "a corrections layer")
            image = require_layer(
                corrections.image_layer(), "the image layer the corrections are on"
            )
            if layer_stack_shape(image) != layer_stack_shape(layer):
                raise UserInputError(
                    f"corrections {layer.name!r} {layer_stack_shape(layer)} "
                    f"and image {image.name!r} {layer_stack_shape(image)} "
                    "differ in shape"
                )
            parent = self.versions.current_model_dir()
            masks = layer_data(layer)  # copied in the worker
            convention = corrections.convention()
            slices: list[int] | None = corrections.training_slices(layer)
            if convention == "empty":
                raise UserInputError(f"{layer.name!r} is empty: nothing to learn from")
            if convention == "sparse":
                slices = None  # every slice holding scribbles
            elif not slices:
                raise UserInputError(
                    "no corrected slices: paint corrections on the layer or mark slices as reviewed"
                )
            mask_kind = {"sparse": "sparse", "instances": "instances"}.get(convention, "binary")
            output = self.versions.next_version_path()
        except UserInputError as exc:
            notify.error(str(exc))
            return None
        images = layer_data(image)  # only read
        metadata = {
            "napari_layers": {"image": image.name, "corrections": layer.name},
            "corrected_slices": corrections.edited_slices(layer),
            "reviewed_slices": corrections.reviewed_slices(layer),
        }
        minutes = float(self.budget.value)
        self._budget_seconds = max(minutes * 60.0, 1.0)
        self.plot.clear()
        self.last_result = None
        self.progress.start(
            round(self._budget_seconds),
            f"fine-tuning {parent.name} on {'the labelled slices' if slices is None else slices}…",
        )
        self.finetune_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.job = start_job(
            self.context.jobs,
            "fine-tuning",
            finetune_job,
            parent,
            images,
            masks,
            slices,
            output,
            minutes,
            metadata,
            mask_kind,
            on_yielded=self._on_event,
            on_returned=self._on_returned,
            on_errored=self._on_errored,
            on_finished=self._on_finished,
            pass_events=True,
        )
        return self.job

    def stop(self) -> None:
        """Stop fine-tuning after the current batch (the new version is still written)."""
        if self.job is not None and self.job.running:
            self.job.request_stop()
            self.stop_button.setEnabled(False)
            self.status_label.setText("stopping after the current batch…")

    # ----------------------------------------------------------------- events (main thread)

    def _on_event(self, event: Any) -> None:
        kind = event.kind
        if kind == "start":
            if event.total_epochs:
                self._steps_per_epoch = max(event.total_steps // event.total_epochs, 1)
        elif kind in ("step", "epoch"):
            self.plot.add_event(event, self._steps_per_epoch)
            text = f"step {event.step}"
            if event.loss is not None:
                text += f", loss {event.loss:.4f}"
            left = max(self._budget_seconds - event.elapsed, 0.0)
            self.progress.update(int(event.elapsed), text, left)
        elif kind == "done":
            self.progress.close(f"done: {event.message} ({format_seconds(event.elapsed)})")
        elif kind == "stopped":
            self.progress.close(f"stopped: {event.message}")
            if not (event.message or "").startswith("stopped by the user"):
                notify.error(f"Fine-tuning stopped: {event.message}")

    def _on_returned(self, result: Any) -> None:
        self.last_result = result
        folder = Path(result.model_dir)
        if not ((folder / "best.keras").exists() or (folder / "last.keras").exists()):
            notify.error(f"fine-tuning wrote no checkpoint in {folder}")
            return
        if VERSION_NAME.match(folder.name):
            from napari_unet.engine.model.versions import VersionStore

            try:
                VersionStore(folder.parent).set_current(folder.name)
            except UserInputError as exc:
                notify.warning(str(exc))
        self.context.set_model_dir(folder, "trained")
        self.versions.refresh_versions()
        notify.info(
            f"Fine-tuned model {folder.name} is now in use; press 'Predict with it' "
            "to see its prediction"
        )
        self.context.status(f"fine-tuned model {folder.name} saved in {folder}")
        if self.auto_predict.value:
            if VERSION_NAME.match(folder.name):
                self.versions.predict_with_version(folder.name)
            else:
                self.predictor.predict()

    def _on_errored(self, exc: BaseException) -> None:
        message = notify.report_exception(exc, "fine-tuning")
        self.progress.close(f"failed: {message}")

    def _on_finished(self) -> None:
        self.progress.close()
        self.plot.flush()
        self.finetune_button.setEnabled(True)
        self.stop_button.setEnabled(False)

    def shutdown(self) -> None:
        """Stop the plot's timer and close the progress."""
        self.plot.stop_timer()
        self.progress.close()
