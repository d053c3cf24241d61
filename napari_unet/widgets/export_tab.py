"""Export tab: corrected masks to a TIFF stack or PNG slices, and the model folder.

Nothing is overwritten without the user's consent (a confirmation dialog, or
``dock.allow_overwrite`` in scripts and tests), and every write is atomic.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton
from napari.layers import Labels
from qtpy.QtWidgets import QFileDialog, QLabel, QVBoxLayout, QWidget

from napari_unet.engine.errors import UserInputError

from . import notify
from .layer_utils import layer_choices, require_layer, safe_name
from .workers import Job, copy_model_job, start_job, write_mask_job

if TYPE_CHECKING:
    from .dock_context import DockContext

__all__ = ["FORMAT_PNG", "FORMAT_TIFF", "ExportTab"]

FORMAT_TIFF = "TIFF stack (.tif)"
FORMAT_PNG = "PNG slices (folder)"


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
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addWidget(self.model_label)
        layout.addWidget(self.copy_button.native)
        layout.addStretch(1)
        self.job: Job | None = None
        self.last_written: Path | None = None

    def _labels(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return layer_choices(self.context.viewer, [Labels])

    def reset_choices(self) -> None:
        """Refresh the Labels picker."""
        self.form.reset_choices()

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

    # ----------------------------------------------------------------- worker

    def _start(self, what: str, func: Any, *args: Any) -> Job | None:
        if self.job is not None and self.job.running:
            notify.info("an export is already running")
            return None
        self.export_button.enabled = self.copy_button.enabled = False

        def done(path: Path) -> None:
            self.last_written = Path(path)
            notify.info(f"Wrote {path}")

        def finished() -> None:
            self.export_button.enabled = self.copy_button.enabled = True

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
