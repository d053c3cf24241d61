"""Autosave section of the Correct & retrain tab: timed saves, save on close, restore.

The corrections layer is saved (only when it changed) every few minutes, on
"Save now" and when the dock closes, as versioned files in ``<project>/autosave/``
(:class:`napari_unet.engine.autosave.Autosaver`); "Restore autosave" adds the
latest one as a new Labels layer whose saved edited slices count as corrected.

The project is the Correct & retrain tab's project folder; when there is none, or
it is inside the installed package or not writable (the shipped model's folder),
the autosaves go to ``~/napari-unet-models/autosave/`` (``./napari-unet-models``
if the home folder is read-only). Restore looks in both. Saving and restoring run
in workers; whether anything changed is decided from the edit tracker's per-slice
digests, without reading the layer. Only the save on close runs on the GUI thread
(the workers are stopped then), and only if something changed since the last save.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import Container, FloatSpinBox
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel, QPushButton, QWidget

from napari_unet.engine.errors import UserInputError

from . import notify
from .layer_utils import find_layer, is_user_writable, user_folder
from .loop_section import LoopSection, row
from .workers import Job, start_job

if TYPE_CHECKING:
    from napari.layers import Labels

    from napari_unet.engine.autosave import Autosaver, AutosaveVersion, RestoredLabels

    from .dock_context import DockContext
    from .loop_corrections import CorrectionsPanel

__all__ = ["AutosavePanel", "autosave_job", "fallback_project", "restore_job"]


def fallback_project() -> Path:
    """Where autosaves go without a writable project folder: ``~/napari-unet-models``."""
    return user_folder()


def autosave_job(saver: Autosaver, name: str, data: Any, kwargs: dict[str, Any]) -> Any:
    """Save one layer's labels (runs in a worker; lazy labels are read slice by slice)."""
    return saver.save(name, data, **kwargs)


def restore_job(savers: list[Autosaver], name: str | None) -> RestoredLabels:
    """Read the newest autosave of `name` (else of any layer) among `savers`' folders."""
    versions: list[AutosaveVersion] = []
    for saver in savers:
        versions += saver.versions(name) if name is not None else []
    if not versions:
        for saver in savers:
            versions += saver.versions()
    if not versions:
        folders = " or ".join(str(saver.folder) for saver in savers)
        raise UserInputError(f"there is no autosave in {folders}")
    newest = max(versions, key=lambda v: (v.saved_at, v.path.name))
    owner = next(saver for saver in savers if newest.path.parent == saver.folder)
    return owner.restore(newest)


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
        self.job: Job | None = None
        self.restore_job: Job | None = None
        self.last_version: AutosaveVersion | None = None
        self.restored_layer: Labels | None = None
        self._saved: tuple[str, str] | None = None  # (layer name, digest) of the last save

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

    def autosave_project(self) -> Path:
        """The project whose ``autosave/`` folder is written: the project folder if it
        is the user's and writable, else :func:`fallback_project`."""
        project = self._project_dir()
        if project is not None and is_user_writable(project):
            return Path(project)
        return fallback_project()

    def autosaver(self) -> Autosaver:
        """The Autosaver of :meth:`autosave_project`."""
        from napari_unet.engine.autosave import Autosaver

        project = self.autosave_project()
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

    def _request(self, force: bool) -> tuple[Labels, Autosaver, dict[str, Any]] | None:
        """What to save now (None: no layer, or nothing changed since the last save)."""
        layer = self.corrections.corrections_layer()
        if layer is None:
            if force:
                notify.error("choose a corrections layer to save")
            return None
        edits = self.corrections.edits.track(layer)
        edited = self.corrections.training_slices(layer)
        digest = edits.state()
        if not force and self._saved == (layer.name, f"{digest}{edited}"):
            return None
        image = self.corrections.image_layer()
        model_dir = self.context.model_dir()
        kwargs = {
            "edited_slices": edited,
            "metadata": {
                "image": image.name if image is not None else None,
                "model": str(model_dir) if model_dir else None,
            },
            "force": force,
            "digest": digest,
        }
        return layer, self.autosaver(), kwargs

    def autosave_now(self, force: bool = False) -> Job | None:
        """Save the corrections layer in a worker if it changed since the last save.

        Returns the job (its result: the new AutosaveVersion, also kept in
        :attr:`last_version`), or None (nothing to save, unchanged, or a save running).
        """
        if self.job is not None and self.job.running:
            return None
        request = self._request(force)
        if request is None:
            return None
        layer, saver, kwargs = request
        name, marker = layer.name, f"{kwargs['digest']}{kwargs['edited_slices']}"

        def on_returned(version: AutosaveVersion | None) -> None:
            self._saved = (name, marker)
            self._show_saved(version, saver)

        self.job = start_job(
            self.context.jobs,
            "autosave",
            autosave_job,
            saver,
            name,
            layer.data,
            kwargs,
            on_returned=on_returned,
            on_errored=lambda exc: notify.error(f"autosave failed: {exc}"),
        )
        return self.job

    def _show_saved(self, version: AutosaveVersion | None, saver: Autosaver) -> None:
        if version is None:
            return
        self.last_version = version
        stamp = version.saved_at.astimezone().strftime("%H:%M:%S")
        self.autosave_label.setText(f"saved '{version.layer}' at {stamp} in {saver.folder}")

    def save_on_close(self) -> None:
        """Autosave once more when the dock closes, on this thread, if anything changed
        since the last save; never raises."""
        try:
            request = self._request(False)
            if request is None:
                return
            layer, saver, kwargs = request
            self._show_saved(saver.save(layer.name, layer.data, **kwargs), saver)
        except Exception as exc:  # closing must not fail
            notify.report_exception(exc, "autosaving on close")

    def _savers(self) -> list[Autosaver]:
        from napari_unet.engine.autosave import Autosaver

        projects = [self.autosave_project(), fallback_project()]
        chosen = self._project_dir()
        if chosen is not None:
            projects.append(Path(chosen))  # older autosaves written there
        unique = list(dict.fromkeys(Path(p).expanduser().resolve() for p in projects))
        return [Autosaver(project) for project in unique]

    def restore_autosave(self) -> Job | None:
        """Read the latest autosave (of the corrections layer, else of any layer) in a
        worker and add it as a new Labels layer (:attr:`restored_layer`); its edited
        slices count as corrected. Returns the job."""
        if self.restore_job is not None and self.restore_job.running:
            return None
        layer = self.corrections.corrections_layer()
        name = layer.name if layer is not None else None
        self.autosave_label.setText("reading the latest autosave…")
        self.restore_job = start_job(
            self.context.jobs,
            "restore autosave",
            restore_job,
            self._savers(),
            name,
            on_returned=self._add_restored,
            on_errored=lambda exc: self.autosave_label.setText(
                notify.report_exception(exc, "restoring the autosave")
            ),
        )
        return self.restore_job

    def _add_restored(self, restored: RestoredLabels) -> None:
        name = restored.version.layer
        stamp = restored.version.saved_at.astimezone().strftime("%Y-%m-%d %H:%M")
        new = self.viewer.add_labels(restored.labels, name=f"{name} (autosave {stamp})")
        self._reset_choices()
        new = find_layer(self.viewer, new) or new
        self.restored_layer = new
        self.corrections.adopt(new, {int(z) for z in restored.edited_slices})
        self.autosave_label.setText(f"restored {restored.version.path}")
        notify.info(f"Restored the autosave of '{name}' from {stamp} as '{new.name}'")

    def shutdown(self) -> None:
        """Stop the autosave timer."""
        self._autosave_timer.stop()
