"""Export tab: masks, predictions (mask or probabilities) and the model.

- a Labels layer as a TIFF stack or PNG slices (labels kept, binary as 0/255);
- a prediction, i.e. a probability Image layer or a mask Labels layer, as a
  TIFF, a ``.npy`` array, a run-length-encoded CSV (masks only) or PNG slices,
  through the engine's :func:`~napari_unet.engine.io.export.write_prediction`
  (as ``napari-unet predict --output``);
- the model folder copied, or exported as a bioimage.io package, ONNX or a
  TensorFlow SavedModel with :func:`~napari_unet.engine.model.exchange.export_model`
  (as ``napari-unet export-model``).

Nothing is overwritten without the user's consent (a confirmation dialog, or
``dock.allow_overwrite`` in scripts and tests), every write is atomic and runs
in a worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton
from napari.layers import Image, Labels
from qtpy.QtWidgets import QFileDialog, QLabel, QVBoxLayout, QWidget

from napari_unet.engine.errors import UserInputError

from . import notify
from .dock_jobs import ExportStep, export_model_job, write_prediction_job
from .layer_utils import layer_choices, require_layer, safe_name, snapshot
from .workers import Job, copy_model_job, start_job, write_mask_job

if TYPE_CHECKING:
    from .dock_context import DockContext

__all__ = ["FORMAT_PNG", "FORMAT_TIFF", "MODEL_FORMATS", "PREDICTION_FORMATS", "ExportTab"]

FORMAT_TIFF = "TIFF stack (.tif)"
FORMAT_PNG = "PNG slices (folder)"
#: Prediction export formats -> file suffix ("" = a folder of PNG slices).
PREDICTION_FORMATS = {
    FORMAT_TIFF: ".tif",
    "NumPy array (.npy)": ".npy",
    "RLE CSV (.csv, masks only)": ".csv",
    FORMAT_PNG: "",
}
#: Model export formats (engine names) and their labels.
MODEL_FORMATS = {
    "bioimageio": "bioimage.io package (.zip)",
    "onnx": "ONNX (.onnx)",
    "savedmodel": "TensorFlow SavedModel (folder)",
}


class ExportTab(QWidget):
    """Export a Labels layer and copy the current model folder.

    Parameters
    ----------
    context
        The dock's shared state (viewer, current model, jobs, overwrite policy).
    """

    def __init__(self, context: DockContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.mask = ComboBox(label="Mask layer", choices=self._labels)
        self.format = ComboBox(label="Format", choices=[FORMAT_TIFF, FORMAT_PNG], value=FORMAT_TIFF)
        self.export_button = PushButton(text="Export mask…")
        note = Label(
            value="Binary masks are written as 0/255 (the training convention);\n"
            "instance labels keep their values."
        )
        self.model_label = QLabel("Model folder: none yet (train or load one)")
        self.model_label.setWordWrap(True)
        self.copy_button = PushButton(text="Copy model folder to…")
        self.export_button.changed.connect(self._on_export_clicked)
        self.copy_button.changed.connect(self._on_copy_clicked)
        self.form = Container(
            widgets=[self.mask, self.format, note, self.export_button], labels=True
        )
        self.prediction = ComboBox(
            label="Prediction layer",
            choices=self._predictions,
            tooltip="An Image layer is written as probabilities (float32), "
            "a Labels layer as a mask (nonzero = foreground)",
        )
        self.prediction_format = ComboBox(
            label="Format", choices=list(PREDICTION_FORMATS), value=FORMAT_TIFF
        )
        self.prediction_button = PushButton(text="Export prediction…")
        self.prediction_button.changed.connect(self._on_prediction_clicked)
        self.prediction_form = Container(
            widgets=[self.prediction, self.prediction_format, self.prediction_button],
            labels=True,
        )
        self.model_format = ComboBox(
            label="Model format",
            choices=[(label, fmt) for fmt, label in MODEL_FORMATS.items()],
            value="bioimageio",
        )
        self.model_export_button = PushButton(text="Export model…")
        self.model_export_button.changed.connect(self._on_model_export_clicked)
        self.model_form = Container(
            widgets=[self.model_format, self.model_export_button], labels=True
        )
        self.model_status = QLabel("")
        self.model_status.setWordWrap(True)
        layout = QVBoxLayout(self)
        for title, form in (("Mask", self.form), ("Prediction", self.prediction_form)):
            layout.addWidget(_heading(title))
            layout.addWidget(form.native)
        layout.addWidget(_heading("Model"))
        layout.addWidget(self.model_label)
        layout.addWidget(self.copy_button.native)
        layout.addWidget(self.model_form.native)
        layout.addWidget(self.model_status)
        layout.addStretch(1)
        self.job: Job | None = None
        self.model_job: Job | None = None
        self.last_written: Path | None = None

    def _labels(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return layer_choices(self.context.viewer, [Labels])

    def _predictions(self, _widget: Any = None) -> list[tuple[str, Any]]:
        """Image layers (probabilities), most recent first, then Labels layers (masks)."""
        images = layer_choices(self.context.viewer, [Image])[::-1]
        return images + layer_choices(self.context.viewer, [Labels])

    def reset_choices(self) -> None:
        """Refresh the layer pickers."""
        self.form.reset_choices()
        self.prediction_form.reset_choices()

    def show_model(self, folder: Path | None) -> None:
        """Show which model folder :meth:`copy_model` copies."""
        self.model_label.setText(
            f"Model folder: {folder}" if folder else "Model folder: none yet (train or load one)"
        )

    # ----------------------------------------------------------------- masks

    def _on_export_clicked(self, *_: Any) -> None:
        layer = self.mask.value
        if layer is None:
            notify.error("choose a Labels layer to export")
            return
        png = self.format.value == FORMAT_PNG
        start = str(Path.home() / safe_name(layer.name))
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Export the mask as a folder of PNG slices" if png else "Export the mask",
            start if png else start + ".tif",
            "Folder (*)" if png else "TIFF (*.tif *.tiff)",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if path:
            self.export_mask(path)

    def export_mask(self, path: str | Path, fmt: str | None = None) -> Job | None:
        """Write the chosen Labels layer to `path` in a worker.

        Parameters
        ----------
        path
            ``.tif``/``.tiff`` file, or a folder for PNG slices.
        fmt
            ``FORMAT_TIFF`` or ``FORMAT_PNG``; default: the Format picker.

        Returns
        -------
        Job or None
            None if nothing is written (refused overwrite, bad input; a
            notification says why).
        """
        from napari_unet._writer import labels_for_writing

        fmt = fmt or self.format.value
        png = fmt == FORMAT_PNG
        target = Path(path).expanduser()
        if not png and target.suffix.lower() not in (".tif", ".tiff"):
            target = target.with_name(target.name + ".tif")
        try:
            layer = require_layer(self.mask.value, "a Labels layer on the Export tab")
            array = labels_for_writing(layer.data, png=png)
            if isinstance(layer.data, np.ndarray) and np.may_share_memory(array, layer.data):
                array = array.copy()  # the user may paint while the worker writes
        except UserInputError as exc:
            notify.error(str(exc))
            return None
        overwrite = False
        if target.exists():
            if not self.context.confirm_overwrite(target):
                notify.warning(f"{target} exists; nothing was written")
                return None
            overwrite = True
        return self._start(
            "export", write_mask_job, target, array, "png" if png else "tiff", overwrite
        )

    # ----------------------------------------------------------------- model folder

    def _on_copy_clicked(self, *_: Any) -> None:
        source = self.context.model_dir()
        if source is None:
            notify.error("there is no model to copy yet: train one or load one on Predict")
            return
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Copy the model folder to",
            str(Path.home() / Path(source).name),
            "Folder (*)",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if path:
            self.copy_model(path)

    def copy_model(self, target: str | Path) -> Job | None:
        """Copy the current model folder to `target` (a new folder) in a worker."""
        source = self.context.model_dir()
        if source is None:
            notify.error("there is no model to copy yet: train one or load one on Predict")
            return None
        target = Path(target).expanduser()
        overwrite = False
        if target.exists():
            if not self.context.confirm_overwrite(target):
                notify.warning(f"{target} exists; nothing was copied")
                return None
            overwrite = True
        return self._start("model copy", copy_model_job, Path(source), target, overwrite)

    # ----------------------------------------------------------------- predictions

    def _on_prediction_clicked(self, *_: Any) -> None:
        layer = self.prediction.value
        if layer is None:
            notify.error("choose a prediction layer (probability image or mask labels) to export")
            return
        suffix = PREDICTION_FORMATS[self.prediction_format.value]
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Export the prediction",
            str(Path.home() / safe_name(layer.name)) + suffix,
            f"*{suffix}" if suffix else "Folder (*)",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if path:
            self.export_prediction(path)

    def export_prediction(self, path: str | Path, fmt: str | None = None) -> Job | None:
        """Write the chosen prediction layer to `path` in a worker.

        Parameters
        ----------
        path
            Target file (``.tif``, ``.npy``, ``.csv``) or folder (PNG slices).
        fmt
            A key of :data:`PREDICTION_FORMATS`; default: the Format picker. The
            suffix is added to `path` if missing.

        Returns
        -------
        Job or None
            None if nothing is written (a notification says why).
        """
        from napari_unet.engine.io.export import prediction_target

        suffix = PREDICTION_FORMATS[fmt or self.prediction_format.value]
        target = Path(path).expanduser()
        if suffix and target.suffix.lower() != suffix:
            target = target.with_name(target.name + suffix)
        try:
            layer = require_layer(self.prediction.value, "a prediction layer on the Export tab")
            probability = isinstance(layer, Image)
            overwrite = False
            if target.exists():
                if not self.context.confirm_overwrite(target):
                    notify.warning(f"{target} exists; nothing was written")
                    return None
                overwrite = True
            spelled = str(target) + ("/" if not suffix else "")
            prediction_target(spelled, probabilities=probability, overwrite=overwrite)
        except UserInputError as exc:
            notify.error(str(exc))
            return None
        return self._start(
            "prediction export",
            write_prediction_job,
            spelled,  # a trailing "/" names a folder of PNG slices
            snapshot(layer),
            probability,
            overwrite,
        )

    # ----------------------------------------------------------------- model export

    def _on_model_export_clicked(self, *_: Any) -> None:
        from napari_unet.engine.model.exchange import default_output

        source = self.context.model_dir()
        if source is None:
            notify.error("there is no model to export yet: train one or load one on Predict")
            return
        fmt = self.model_format.value
        path, _ = QFileDialog.getSaveFileName(
            self,
            f"Export the model as {MODEL_FORMATS[fmt]}",
            str(default_output(source, fmt)),
            "Folder (*)" if fmt == "savedmodel" else f"*{default_output(source, fmt).suffix}",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if path:
            self.export_model(path, fmt)

    def export_model(self, output: str | Path | None = None, fmt: str | None = None) -> Job | None:
        """Export the current model folder (the CLI's ``export-model``) in a worker.

        Parameters
        ----------
        output
            File (``.zip``, ``.onnx``) or folder (``savedmodel``); default beside the
            model folder (``<model>.bioimageio.zip`` ...).
        fmt
            ``bioimageio``, ``onnx`` or ``savedmodel``; default: the picker.

        Returns
        -------
        Job or None
            None if the export cannot start (a notification says why).
        """
        from napari_unet.engine.model.exchange import default_output

        source = self.context.model_dir()
        if source is None:
            notify.error("there is no model to export yet: train one or load one on Predict")
            return None
        if self.model_job is not None and self.model_job.running:
            notify.info("a model export is already running")
            return None
        fmt = fmt or self.model_format.value
        target = Path(output).expanduser() if output else default_output(source, fmt)
        overwrite = False
        if target.exists():
            if not self.context.confirm_overwrite(target):
                notify.warning(f"{target} exists; the model was not exported")
                return None
            overwrite = True
        self.model_export_button.enabled = False
        self.model_status.setText(f"exporting {Path(source).name} as {MODEL_FORMATS[fmt]}…")

        def step(event: ExportStep) -> None:
            self.model_status.setText(f"{event.text}…")

        def done(path: Path) -> None:
            self.last_written = Path(path)
            self.model_status.setText(f"wrote {path}")
            notify.info(f"Exported the model to {path}")

        def failed(exc: BaseException) -> None:
            self.model_status.setText(notify.report_exception(exc, "the model export"))

        def finished() -> None:
            self.model_export_button.enabled = True

        self.model_job = start_job(
            self.context.jobs,
            "model export",
            export_model_job,
            Path(source),
            fmt,
            target,
            overwrite,
            on_yielded=step,
            on_returned=done,
            on_errored=failed,
            on_finished=finished,
            pass_events=True,
        )
        return self.model_job

    # ----------------------------------------------------------------- worker

    def _start(self, what: str, func: Any, *args: Any) -> Job | None:
        if self.job is not None and self.job.running:
            notify.info("an export is already running")
            return None
        buttons = (self.export_button, self.copy_button, self.prediction_button)
        for button in buttons:
            button.enabled = False

        def done(path: Path) -> None:
            self.last_written = Path(path)
            notify.info(f"Wrote {path}")

        def finished() -> None:
            for button in buttons:
                button.enabled = True

        self.job = start_job(
            self.context.jobs,
            what,
            func,
            *args,
            on_returned=done,
            on_errored=lambda exc: notify.report_exception(exc, f"the {what}"),
            on_finished=finished,
        )
        return self.job


def _heading(text: str) -> QLabel:
    return QLabel(f"<b>{text}</b>")
