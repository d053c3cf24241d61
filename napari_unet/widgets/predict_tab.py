"""Predict tab: apply a model to an image layer; threshold the probability live."""

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
    layer_choices,
    layer_in_viewer,
    require_layer,
    snapshot,
)
from .progress import TaskProgress
from .workers import Job, predict_job, start_job

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
    model run); it replaces the prediction layer's data, including brush edits.

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
            tooltip="A folder written by training (config.yaml, best.keras)",
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
        self._update_visibility()

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
        data = snapshot(image)
        name = image.name
        placement = {"scale": tuple(image.scale), "translate": tuple(image.translate)}
        ndim = image.ndim
        self.progress.start(1, f"loading the model from {folder}…")
        self._counting_tiles = False
        self.predict_button.enabled = False
        self.stop_button.enabled = True

        def on_returned(prediction: Any) -> None:
            self._show_prediction(prediction, name, ndim, placement)

        self.job = start_job(
            self.context.jobs,
            "prediction",
            predict_job,
            model,
            data,
            predict_config,
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
            self.context.remember_model(folder, event)

    def _show_prediction(
        self, prediction: Any, name: str, ndim: int, placement: dict[str, Any]
    ) -> None:
        job = self.job
        if job is not None and job.stop_event.is_set():
            notify.info("Prediction stopped; no layer was changed")
            return
        probability = np.asarray(prediction.probability, dtype=np.float32)
        if ndim == 2 and probability.shape[0] == 1:
            probability = probability[0]
        mask = (probability > float(self.threshold.value)).astype(np.uint8)
        viewer = self.context.viewer
        if len(placement["scale"]) != probability.ndim:
            placement = {}
        prob_layer, updated_prob = add_or_update_layer(
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
        pred_layer, updated_pred = add_or_update_layer(
            viewer, f"{name} prediction", mask, "labels", opacity=0.5, **placement
        )
        self.probability_layer, self.prediction_layer = prob_layer, pred_layer
        fraction = float(mask.mean()) if mask.size else 0.0
        text = f"done: {fraction:.0%} of the pixels above the threshold"
        self.progress.close(text)
        if updated_prob or updated_pred:
            notify.info(
                f"Updated the existing layers '{pred_layer.name}' and "
                f"'{prob_layer.name}' with the new prediction"
            )
        self.context.status(f"prediction of '{name}' added; correct it with the brush and eraser")

    def _on_errored(self, exc: BaseException) -> None:
        message = notify.report_exception(exc, "prediction")
        self.progress.close(f"failed: {message}")

    def _on_finished(self) -> None:
        self.progress.close()
        self.predict_button.enabled = True
        self.stop_button.enabled = False

    # ----------------------------------------------------------------- threshold

    def apply_threshold(self) -> bool:
        """Re-threshold the last probability into its prediction layer.

        Returns
        -------
        bool
            False if there is no prediction (or its layers were deleted).
        """
        viewer = self.context.viewer
        prob, pred = self.probability_layer, self.prediction_layer
        if not (layer_in_viewer(viewer, prob) and layer_in_viewer(viewer, pred)):
            return False
        probability = np.asarray(prob.data)
        if probability.shape != tuple(pred.data.shape):
            notify.warning("the probability and prediction layers no longer match; predict again")
            return False
        pred.data = (probability > float(self.threshold.value)).astype(np.uint8)
        return True
