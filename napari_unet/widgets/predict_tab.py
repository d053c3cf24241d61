"""Predict tab: apply a model to an image layer; threshold the probability live.

In-memory images are predicted whole (:func:`~.predict_jobs.predict_job`); lazily
opened ones (dask, zarr) block by block into a scratch zarr group
(:func:`~.predict_jobs.predict_lazy_job`), shown as dask-backed layers, so memory stays
bounded whatever the stack size. The labels are written by a :class:`~.predict_labels.
LabelsWriter`, which never overwrites a slice the user edited or marked as reviewed
(the :class:`~.loop_edits.EditTracker` of this tab knows which). The threshold slider
starts at the model's stored threshold (``predict.threshold`` in its ``config.yaml``,
calibrated by training and fine-tuning).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    PushButton,
    SpinBox,
)
from napari.layers import Image
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from napari_unet.engine.config import PredictConfig
from napari_unet.engine.errors import UserInputError

from . import notify
from .layer_utils import (
    add_or_update_layer,
    find_layer,
    is_lazy_layer,
    layer_choices,
    layer_data,
    require_layer,
    safe_name,
)
from .loop_edits import EditTracker
from .predict_jobs import predict_job, predict_lazy_job, scratch_folder
from .predict_labels import LabelsWriter
from .progress import TaskProgress
from .workers import Job, start_job

if TYPE_CHECKING:
    from .dock_context import DockContext

__all__ = ["SOURCE_FOLDER", "SOURCE_PRETRAINED", "SOURCE_TRAINED", "PredictTab"]

SOURCE_TRAINED = "model just trained"
SOURCE_FOLDER = "model folder"
SOURCE_PRETRAINED = "shipped ISBI 2012 model"


class PredictTab(QWidget):
    """Model source, image layer, tiling/TTA, Predict/Stop and a live threshold.

    Prediction adds ``<image> probability`` (Image, float32) and
    ``<image> prediction`` (Labels, uint8 {0, 1}); if they exist they are
    updated. Moving the threshold re-thresholds the stored probability (no
    model run). Neither touches slices the user edited or marked as reviewed
    (:attr:`edits`); a notification names them.

    Attributes
    ----------
    edits
        Which slices of the labels layers were edited (shared with the Correct &
        retrain tab).
    labels_writer
        Writes the prediction layer from the probability and the threshold.

    Parameters
    ----------
    context
        The dock's shared state (viewer, model state and cache, jobs, status).
    """

    def __init__(self, context: DockContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        p = PredictConfig()
        self.source = ComboBox(label="Model", choices=self._sources, value=SOURCE_FOLDER)
        self.model_folder = FileEdit(
            label="Model folder",
            mode="d",
            value="",
            tooltip="A folder written by training (config.yaml, best.keras), or a "
            "bioimage.io package (its folder, rdf.yaml or .zip; imported once, in the "
            "background, on the first prediction)",
        )
        self.image = ComboBox(label="Image", choices=self._images)
        self.tile_size = SpinBox(label="Tile size", min=16, max=8192, step=16, value=p.tile_size)
        self.tta = CheckBox(text="Test-time augmentation (8x slower)", value=p.tta)
        self.threshold = FloatSlider(
            label="Threshold", min=0.01, max=0.99, step=0.01, value=p.threshold
        )
        self.predict_button = PushButton(text="Predict")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.form = Container(
            widgets=[
                self.source,
                self.model_folder,
                self.image,
                self.tile_size,
                self.tta,
                self.threshold,
            ],
            labels=True,
        )
        buttons = Container(
            widgets=[self.predict_button, self.stop_button], layout="horizontal", labels=False
        )
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.progress = TaskProgress("Predicting", self.progress_bar, self.status_label)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addWidget(buttons.native)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addStretch(1)

        self.predict_button.changed.connect(self._on_predict_clicked)
        self.stop_button.changed.connect(self._on_stop_clicked)
        self.source.changed.connect(self._update_visibility)
        self._threshold_timer = QTimer(self)
        self._threshold_timer.setSingleShot(True)
        self._threshold_timer.setInterval(40)
        self._threshold_timer.timeout.connect(self.apply_threshold)
        self.threshold.changed.connect(lambda *_: self._threshold_timer.start())

        self.job: Job | None = None
        self._counting_tiles = False
        self.probability_layer: Any = None
        self.prediction_layer: Any = None
        self.edits = EditTracker(context.jobs, self)
        self.labels_writer = LabelsWriter(
            context.viewer, context.jobs, self.edits, self.progress_bar, self.status_label
        )
        self._scratch: dict[str, Path] = {}  # image name -> zarr group of its lazy prediction
        self._slider_model: Path | None = None  # whose stored threshold the slider shows
        self._imported: dict[Path, Path] = {}  # bioimage.io package -> its imported folder
        self.source.changed.connect(lambda *_: self._sync_threshold())
        self.model_folder.changed.connect(lambda *_: self._sync_threshold())
        self._update_visibility()
        self._sync_threshold()

    # ----------------------------------------------------------------- choices

    def _sources(self, _widget: Any = None) -> list[str]:
        from napari_unet.sample import PRETRAINED_MODEL

        sources = [SOURCE_FOLDER]
        if self.context.trained_dir() is not None:
            sources.insert(0, SOURCE_TRAINED)
        if (PRETRAINED_MODEL / "config.yaml").exists():
            sources.append(SOURCE_PRETRAINED)
        return sources

    def _images(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return layer_choices(self.context.viewer, [Image])

    def reset_choices(self) -> None:
        """Refresh the pickers (layers and model sources)."""
        self.form.reset_choices()
        self._update_visibility()
        self._sync_threshold()
        self.edits.forget(self.context.viewer.layers)

    # ----------------------------------------------------------------- threshold of the model

    def _sync_threshold(self) -> None:
        """Show the chosen model's stored threshold, unless a prediction is on screen
        (then it is applied with the model's first prediction)."""
        try:
            folder = self.model_source_dir()
        except UserInputError:
            return
        if (
            folder != self._slider_model
            and find_layer(self.context.viewer, self.prediction_layer) is None
        ):
            self._use_model_threshold(folder)

    def _use_model_threshold(self, folder: Path) -> None:
        """Set the slider (without re-thresholding) to `folder`'s ``predict.threshold``."""
        self._slider_model = folder
        threshold = model_threshold(folder)
        if threshold is not None:
            with self.threshold.changed.blocked():
                self.threshold.value = min(max(threshold, 0.01), 0.99)

    def _update_visibility(self, *_: Any) -> None:
        self.model_folder.visible = self.source.value == SOURCE_FOLDER

    def model_source_dir(self) -> Path:
        """The model folder chosen by the Model picker.

        Raises
        ------
        UserInputError
            If it is not set, missing, or not a model folder.
        """
        from napari_unet.engine.model.model_folder import ModelFolder
        from napari_unet.engine.model.model_source import is_bioimageio_package
        from napari_unet.sample import PRETRAINED_MODEL

        choice = self.source.value
        trained = self.context.trained_dir()
        if choice == SOURCE_TRAINED and trained is not None:
            folder = Path(trained)
        elif choice == SOURCE_PRETRAINED:
            folder = PRETRAINED_MODEL
        else:
            text = str(self.model_folder.value or "").strip()
            if text in ("", "."):
                raise UserInputError("choose a model folder (or train a model first)")
            folder = Path(text).expanduser()
            if folder.exists() and is_bioimageio_package(folder):
                # imported in the prediction worker (it loads Keras); then its folder
                return self._imported.get(folder, folder)
        if not folder.is_dir():
            raise UserInputError(f"model folder {folder} does not exist")
        if not (folder / "config.yaml").exists():
            raise UserInputError(f"{folder} is not a model folder: config.yaml is missing")
        ModelFolder(folder).weights_file()  # raises if there is no checkpoint
        return folder

    # ----------------------------------------------------------------- actions

    def _on_predict_clicked(self, *_: Any) -> None:
        self.predict()

    def _on_stop_clicked(self, *_: Any) -> None:
        if self.job is not None and self.job.running:
            self.job.request_stop()
            self.stop_button.enabled = False

    def predict(self) -> Job | None:
        """Start predicting the chosen image layer with the chosen model.

        Returns the job, or None if the inputs were not usable (a notification
        says why; no layer is changed).
        """
        if self.job is not None and self.job.running:
            notify.info("a prediction is already running")
            return None
        try:
            image = require_layer(self.image.value, "an image layer on the Predict tab")
            folder = self.model_source_dir()
            predict_config = self.context.predict_config()
        except UserInputError as exc:
            notify.error(str(exc))
            return None
        model = self.context.cached_model(folder) or folder
        data = layer_data(image)  # the image is only read: no copy on the GUI thread
        name = image.name
        placement = {"scale": tuple(image.scale), "translate": tuple(image.translate)}
        ndim = image.ndim
        lazy = is_lazy_layer(image)
        self.progress.start(1, f"loading the model from {folder}…")
        self._counting_tiles = False
        self.predict_button.enabled = False
        self.stop_button.enabled = True

        def on_returned(prediction: Any) -> None:
            stopped = job.stop_event.is_set() or getattr(
                getattr(prediction, "result", None), "stopped", False
            )
            if prediction is None or stopped:
                notify.info("Prediction stopped; no layer was changed")
            elif lazy:
                self._show_lazy_prediction(prediction, name, placement, folder)
            elif getattr(prediction, "task", "binary") != "binary":
                self._show_task_prediction(prediction, name, ndim, placement)
            else:
                self._show_prediction(prediction, name, ndim, placement, folder)

        args = (model, data, predict_config)
        if lazy:
            args = (*args, scratch_folder(safe_name(name)))
        job = self.job = start_job(
            self.context.jobs,
            "prediction",
            predict_lazy_job if lazy else predict_job,
            *args,
            on_yielded=lambda event: self._on_event(event, folder),
            on_returned=on_returned,
            on_errored=self._on_errored,
            on_finished=self._on_finished,
            pass_events=True,
        )
        return self.job

    # ----------------------------------------------------------------- events (main thread)

    def _on_event(self, event: Any, folder: Path) -> None:
        from napari_unet.engine.events import PredictEvent

        if isinstance(event, PredictEvent):
            if not self._counting_tiles:  # the first tile event: now the total is known
                self._counting_tiles = True
                self.progress.start(event.total)
            self.progress.update(event.done, f"{event.done}/{event.total} tiles", event.eta)
        else:  # the LoadedModel: keep it for the next prediction
            loaded_from = Path(event.folder) if event.folder is not None else folder
            if loaded_from != folder:  # a bioimage.io package, imported now
                self._imported[folder] = loaded_from
            self.context.remember_model(loaded_from, event)

    def _show_prediction(
        self, prediction: Any, name: str, ndim: int, placement: dict[str, Any], folder: Path
    ) -> None:
        probability = np.asarray(prediction.probability, dtype=np.float32)
        if ndim == 2 and probability.shape[0] == 1:
            probability = probability[0]
        self._scratch.pop(name, None)
        self._show(probability, name, placement, folder, None)
        self.progress.close(f"done: '{name}' predicted")

    def _show_task_prediction(
        self, prediction: Any, name: str, ndim: int, placement: dict[str, Any]
    ) -> None:
        """A multiclass (class Labels layer) or regression (float Image) prediction."""
        from .task_outputs import show_task_prediction

        layer = show_task_prediction(self.context.viewer, prediction, name, placement, ndim == 2)
        self.progress.close(f"done: '{name}' predicted ({prediction.task}: '{layer.name}')")

    def _show_lazy_prediction(
        self, lazy: Any, name: str, placement: dict[str, Any], folder: Path
    ) -> None:
        self._scratch[name] = lazy.group
        self._show(lazy.result.probability_float(), name, placement, folder, lazy.group)
        result = lazy.result
        self.progress.close(
            f"done blockwise: {result.blocks} blocks in {result.elapsed:.0f} s ({lazy.group})"
        )

    def _show(
        self,
        probability: Any,
        name: str,
        placement: dict[str, Any],
        folder: Path,
        scratch: Path | None,
    ) -> None:
        """Show the probability, then write the labels (keeping edited slices)."""
        viewer = self.context.viewer
        folder = self._imported.get(folder, folder)  # a package: its imported folder
        if folder != self._slider_model:  # a new model: its calibrated threshold
            self._use_model_threshold(folder)
        if len(placement["scale"]) != probability.ndim:
            placement = {}
        prob_layer, updated = add_or_update_layer(
            viewer,
            f"{name} probability",
            probability,
            "image",
            colormap="magma",
            contrast_limits=(0.0, 1.0),
            blending="additive",
            opacity=0.6,
            visible=False,
            **placement,
        )
        self.probability_layer = prob_layer
        labels_name = f"{name} prediction"
        self.prediction_layer = self.labels_writer.labels_layer(labels_name)
        if updated:
            notify.info(f"Updated the existing layers '{labels_name}' and '{prob_layer.name}'")
        self.labels_writer.write(
            probability,
            labels_name,
            float(self.threshold.value),
            "prediction",
            placement,
            scratch,
            on_written=self._on_labels_written,
        )
        self.context.status(f"prediction of '{name}' added; correct it with the brush and eraser")

    def _on_labels_written(self, layer: Any) -> None:
        self.prediction_layer = layer

    def _on_errored(self, exc: BaseException) -> None:
        message = notify.report_exception(exc, "prediction")
        self.progress.close(f"failed: {message}")

    def _on_finished(self) -> None:
        self.progress.close()
        self.predict_button.enabled = True
        self.stop_button.enabled = False

    # ----------------------------------------------------------------- threshold

    def apply_threshold(self) -> bool:
        """Re-threshold the last probability into its prediction layer (in a worker),
        keeping the slices the user edited or marked as reviewed.

        Returns
        -------
        bool
            False if there is no prediction (or its layers were deleted).
        """
        viewer = self.context.viewer
        prob = find_layer(viewer, self.probability_layer)
        pred = find_layer(viewer, self.prediction_layer)
        if prob is None or pred is None:
            return False
        if tuple(prob.data.shape) != tuple(pred.data.shape):
            notify.warning("the probability and prediction layers no longer match; predict again")
            return False
        base = prob.name[: -len(" probability")] if prob.name.endswith(" probability") else ""
        self.labels_writer.write(
            prob.data,
            pred.name,
            float(self.threshold.value),
            "threshold",
            scratch=self._scratch.get(base),
            on_written=self._on_labels_written,
        )
        return True

    def shutdown(self) -> None:
        """Stop tracking edits and close the progress (idempotent)."""
        self.labels_writer.shutdown()
        self.edits.shutdown()
        self.progress.close()


def model_threshold(folder: Path) -> float | None:
    """``predict.threshold`` stored in a model folder's ``config.yaml`` (None if unreadable)."""
    from napari_unet.engine.model.model_folder import ModelFolder

    try:
        return float(ModelFolder(Path(folder)).load_config().predict.threshold)
    except Exception:  # an unreadable config: the slider keeps its value
        return None
