"""Autosave section of the Correct & retrain tab: timed saves, save on close, restore.

The corrections layer is saved (only when it changed) every few minutes, on
"Save now" and when the dock closes, as versioned files in ``<project>/autosave/``
(:class:`napari_unet.engine.autosave.Autosaver`); "Restore autosave" adds the
latest one as a new Labels layer whose saved edited slices count as corrected.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import Container, FloatSpinBox
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel, QPushButton, QWidget

from napari_unet.engine.errors import UserInputError

from . import notify
from .layer_utils import snapshot
from .loop_section import LoopSection, row

if TYPE_CHECKING:
    from napari.layers import Labels

    from napari_unet.engine.autosave import Autosaver

    from .dock_context import DockContext
    from .loop_corrections import CorrectionsPanel

__all__ = ["AutosavePanel"]


class AutosavePanel(LoopSection):
    """Autosave interval, Save now / Restore autosave and the last save.

    Parameters
    ----------
    context
        The dock's shared state (viewer, current model folder).
    corrections
        The Corrections section (the layer saved, its image and edited slices).
    project_dir
        The project folder (autosaves go to its ``autosave/``), or None.
    reset_choices
        Refreshes the tab's layer pickers (after a restored layer is added).
    """

    def __init__(
        self,
        context: DockContext,
        corrections: CorrectionsPanel,
        project_dir: Callable[[], Path | None],
        reset_choices: Callable[[], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Autosave", parent)
        self.context = context
        self.viewer = context.viewer
        self.corrections = corrections
        self._project_dir = project_dir
        self._reset_choices = reset_choices
        self._autosaver: Autosaver | None = None

        self.autosave_minutes = FloatSpinBox(
            label="Autosave every (min)", min=0.0, max=600.0, step=1.0, value=3.0, tooltip="0 = off"
        )
        self.autosave_form = Container(widgets=[self.autosave_minutes], labels=True)
        self.autosave_button = QPushButton("Save now")
        self.restore_button = QPushButton("Restore autosave")
        self.autosave_label = QLabel("")
        self.autosave_label.setWordWrap(True)
        self.add_widgets(
            [
                self.autosave_form.native,
                row(self.autosave_button, self.restore_button),
                self.autosave_label,
            ]
        )
        self.autosave_button.clicked.connect(lambda *_: self.autosave_now(force=True))
        self.restore_button.clicked.connect(lambda *_: self.restore_autosave())

        self._autosave_timer = QTimer(self)
        self._autosave_timer.timeout.connect(self._on_autosave_timer)
        self.autosave_minutes.changed.connect(lambda *_: self._restart_autosave_timer())
        self._restart_autosave_timer()

    def autosaver(self) -> Autosaver | None:
        """The Autosaver of the project folder (None without a project)."""
        from napari_unet.engine.autosave import Autosaver

        project = self._project_dir()
        if project is None:
            return None
        if self._autosaver is None or self._autosaver.project != project:
            self._autosaver = Autosaver(project, keep=5)
        return self._autosaver

    def forget_autosaver(self) -> None:
        """The project folder changed: open a new Autosaver on the next save."""
        self._autosaver = None

    def _restart_autosave_timer(self) -> None:
        minutes = float(self.autosave_minutes.value)
        self._autosave_timer.stop()
        if minutes > 0:
            self._autosave_timer.start(int(minutes * 60_000))

    def _on_autosave_timer(self) -> None:
        self.autosave_now()

    def autosave_now(self, force: bool = False) -> Any:
        """Save the corrections layer if it changed since the last save.

        Returns the new AutosaveVersion, or None (nothing to save, unchanged, or
        an error, which is notified).
        """
        layer = self.corrections.corrections_layer()
        if layer is None:
            if force:
                notify.error("choose a corrections layer to save")
            return None
        saver = self.autosaver()
        if saver is None:
            if force:
                notify.error(
                    "no project folder for autosave: train or load a model, or "
                    "choose a project folder"
                )
            return None
        image = self.corrections.image_layer()
        model_dir = self.context.model_dir()
        metadata = {
            "image": image.name if image is not None else None,
            "model": str(model_dir) if model_dir else None,
        }
        try:
            version = saver.save(
                layer.name,
                np.asarray(snapshot(layer)),
                edited_slices=self.corrections.training_slices(layer),
                metadata=metadata,
                force=force,
            )
        except UserInputError as exc:
            notify.error(f"autosave failed: {exc}")
            return None
        if version is not None:
            stamp = version.saved_at.astimezone().strftime("%H:%M:%S")
            self.autosave_label.setText(f"saved '{layer.name}' at {stamp} in {saver.folder}")
        return version

    def save_on_close(self) -> None:
        """Autosave once more when the dock closes; never raises."""
        try:
            self.autosave_now()
        except Exception as exc:  # closing must not fail
            notify.report_exception(exc, "autosaving on close")

    def restore_autosave(self) -> Labels | None:
        """Add the latest autosave (of the corrections layer, else of any layer) as a new
        Labels layer; its edited slices count as corrected."""
        saver = self.autosaver()
        try:
            if saver is None:
                raise UserInputError("no project folder: choose one to restore autosaves from")
            layer = self.corrections.corrections_layer()
            names = saver.layers()
            if not names:
                raise UserInputError(f"there is no autosave in {saver.folder}")
            name = layer.name if layer is not None and layer.name in names else names[0]
            restored = saver.restore(layer=name)
        except UserInputError as exc:
            notify.error(str(exc))
            return None
        stamp = restored.version.saved_at.astimezone().strftime("%Y-%m-%d %H:%M")
        new = self.viewer.add_labels(restored.labels, name=f"{name} (autosave {stamp})")
        self._reset_choices()
        self.corrections.adopt(new, {int(z) for z in restored.edited_slices})
        notify.info(f"Restored the autosave of '{name}' from {stamp} as '{new.name}'")
        return new

    def shutdown(self) -> None:
        """Stop the autosave timer."""
        self._autosave_timer.stop()
