"""The "U-Net" dock widget: Data, Augment, Train, Predict and Export tabs.

The dock owns what the tabs share: the viewer, the background jobs, the
current model folder (trained here or loaded on Predict), a cache of the
loaded Keras model, the overwrite policy and the settings: the base config
(loaded with "Load config…", else the defaults) and the widgets bound to its
fields (see :mod:`.settings`), including the generated Advanced sections.
"Load config…"/"Save config…" read and write the YAML file the CLI uses. The
tabs reach the dock only through a :class:`~.dock_context.DockContext` (and
the sibling tabs they need). Opening it imports neither TensorFlow nor any
engine module that needs it.
"""

from __future__ import annotations

import itertools
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import Container, PushButton
from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import (
    QApplication,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from napari_unet.engine.config import Config

from .advanced_panel import AdvancedPanel
from .augment_tab import AugmentTab
from .data_tab import DataTab
from .dock_context import DockContext
from .export_tab import ExportTab
from .loop_tab import LoopTab
from .predict_tab import SOURCE_TRAINED, PredictTab
from .train_tab import TrainTab
from .workers import JobRegistry

if TYPE_CHECKING:
    import napari

    from napari_unet.engine.config import PredictConfig

    from .settings import Bound

__all__ = ["UNetDock", "open_docks"]

#: Every U-Net dock not yet closed (the YAML reader loads a dropped config into one).
_OPEN_DOCKS: weakref.WeakSet[UNetDock] = weakref.WeakSet()
_OPENED = itertools.count()


def open_docks() -> list[UNetDock]:
    """The U-Net docks that are open, oldest first."""
    return sorted(_OPEN_DOCKS, key=lambda dock: dock.opened_at)


class UNetDock(QWidget):
    """Train and apply U-Nets to EM stacks, one tab per step of the workflow.

    Parameters
    ----------
    napari_viewer
        The viewer (napari passes it when the widget is opened from a menu).

    Attributes
    ----------
    config_overrides
        Dotted Config keys applied over the widget values, e.g.
        ``{"model.depth": 2}`` (see :mod:`.settings`).
    allow_overwrite
        None: ask with a dialog before replacing a file; True/False: answer
        without asking (scripts, tests).
    open_config_layers
        None: ask whether to open a loaded config's data files as layers;
        True/False: answer without asking.
    base_config
        The config the settings start from: the last one loaded, else the defaults.
    bindings
        ``{dotted key: Bound}``: the widget of every config field the dock shows.
    """

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.jobs = JobRegistry()
        self.config_overrides: dict[str, Any] = {}
        self.allow_overwrite: bool | None = None
        self.open_config_layers: bool | None = None
        self.base_config = Config()
        self.bindings: dict[str, Bound] = {}
        self.loading_config = False
        self.opened_at = next(_OPENED)
        self.trained_dir: Path | None = None
        self.model_dir: Path | None = None
        self._model_cache: tuple[tuple[str, float], Any] | None = None

        self.context = DockContext(
            viewer=napari_viewer,
            jobs=self.jobs,
            status=self.status,
            model_dir=lambda: self.model_dir,
            set_model_dir=self.set_model_dir,
            trained_dir=lambda: self.trained_dir,
            build_config=self.build_config,
            predict_config=self.predict_config,
            cached_model=self.cached_model,
            remember_model=self.remember_model,
            confirm_overwrite=self.confirm_overwrite,
            main_window=self.main_window,
            set_value=self.set_value,
        )

        self.tabs = QTabWidget()
        self.data_tab = DataTab(napari_viewer)
        self.augment_tab = AugmentTab(self.context, self.data_tab)
        self.train_tab = TrainTab(self.context, self.data_tab)
        self.predict_tab = PredictTab(self.context)
        self.export_tab = ExportTab(self.context)
        self.loop_tab = LoopTab(self.context, self.predict_tab)
        for tab, title in (
            (self.data_tab, "Data"),
            (self.augment_tab, "Augment"),
            (self.train_tab, "Train"),
            (self.predict_tab, "Predict"),
            (self.export_tab, "Export"),
            (self.loop_tab, "Correct & retrain"),
        ):
            self.tabs.addTab(tab, title.replace("&", "&&"))  # a literal '&', not a shortcut
        self._bind_settings()
        self.load_button = PushButton(text="Load config…", tooltip="Read a YAML config")
        self.save_button = PushButton(
            text="Save config…", tooltip="Write the settings as a YAML config (napari-unet train)"
        )
        self.load_button.changed.connect(self._on_load_clicked)
        self.save_button.changed.connect(self._on_save_clicked)
        self.data_tab.open_data_button.changed.connect(lambda *_: self.open_config_data())
        config_row = Container(
            widgets=[self.load_button, self.save_button], layout="horizontal", labels=False
        )
        config_row.margins = (0, 0, 0, 0)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(config_row.native)
        layout.addWidget(self.tabs)
        layout.addWidget(self.status_label)
        self.setMinimumWidth(360)

        self._layer_events = [
            getattr(napari_viewer.layers.events, name)
            for name in ("inserted", "removed", "reordered", "renamed")
            if hasattr(napari_viewer.layers.events, name)
        ]
        for emitter in self._layer_events:
            emitter.connect(self._on_layers_changed)
        # Stop background work however the widget goes away. The handler only
        # captures the job registry, never the (possibly deleted) widget.
        jobs = self.jobs
        self.destroyed.connect(lambda *_: jobs.shutdown_all())
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(jobs.shutdown_all)
        self._main_window_ref: weakref.ref[QMainWindow] | None = None  # no cycle to the window
        self._closed = False
        self.refresh_layers()
        _OPEN_DOCKS.add(self)

    def _bind_settings(self) -> None:
        """Bind every config field to a widget: the tabs' own, then generated Advanced ones."""
        from .settings import editor_binding, visible_bindings, wire_model_preset

        visible = visible_bindings(self)
        shown = {bound.key for bound in visible}
        panels = (
            (self.data_tab, AdvancedPanel(["data"], shown)),
            (self.augment_tab, AdvancedPanel(["augment"], shown)),
            (self.train_tab, AdvancedPanel(None, shown, others=["data", "augment"])),
        )
        self.bindings = {bound.key: bound for bound in visible}
        for tab, panel in panels:
            tab.add_advanced(panel)
            self.bindings.update({k: editor_binding(k, e) for k, e in panel.editors.items()})
        self.advanced_panels = [panel for _, panel in panels]
        wire_model_preset(self)
        preview = self.train_tab.schedule_preview
        for bound in self.bindings.values():
            bound.on_change(preview.schedule_refresh)
        preview.refresh()

    # ----------------------------------------------------------------- config files

    def load_config(self, path: str | Path) -> Config | None:
        """Load a YAML config (the CLI's format) into every tab.

        Fields no widget shows are kept as loaded; if the config's data files
        exist they can be opened as layers (see :attr:`open_config_layers`).

        Returns
        -------
        Config or None
            The loaded config, or None if it could not be read (a notification
            says why; nothing changed).
        """
        from .config_io import load_into_dock

        return load_into_dock(self, path)

    def save_config(self, path: str | Path) -> Path | None:
        """Write the current settings as a YAML config for ``napari-unet train``.

        Returns
        -------
        Path or None
            The file written (``.yaml`` appended if needed), or None if nothing
            was written (a notification says why).
        """
        from .config_io import save_from_dock

        return save_from_dock(self, path)

    def open_config_data(self) -> dict[str, Any]:
        """Open the base config's data files as layers and choose them on the Data tab."""
        from .config_io import open_config_data

        return open_config_data(self)

    def set_value(self, key: str, value: Any) -> None:
        """Show `value` in the widget of the dotted config `key` (as a user edit)."""
        if key not in self.bindings:
            raise KeyError(f"no widget shows the config field {key!r}")
        self.bindings[key].show(value)

    def _on_load_clicked(self, *_: Any) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load a U-Net config", str(Path.cwd()), "YAML config (*.yaml *.yml)"
        )
        if path:
            self.load_config(path)

    def _on_save_clicked(self, *_: Any) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Save the settings as a U-Net config",
            str(Path.cwd() / "unet-config.yaml"),
            "YAML config (*.yaml *.yml)",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if path:
            self.save_config(path)

    # ----------------------------------------------------------------- shared state

    def build_config(self, output: str | None = None) -> Config:
        """The engine Config from every tab's widgets (see :mod:`.settings`)."""
        from .settings import build_config

        return build_config(self, output)

    def predict_config(self) -> PredictConfig:
        """Tiling, TTA and threshold of the Predict tab (see :mod:`.settings`)."""
        from .settings import build_predict_config

        return build_predict_config(self)

    def set_model_dir(self, folder: Path, origin: str) -> None:
        """Make `folder` the current model (``origin``: ``"trained"`` or ``"loaded"``)."""
        self.model_dir = Path(folder)
        if origin == "trained":
            self.trained_dir = Path(folder)
            self.predict_tab.reset_choices()
            self.predict_tab.source.value = SOURCE_TRAINED
        self.export_tab.show_model(self.model_dir)

    def cached_model(self, folder: Path) -> Any:
        """The LoadedModel of `folder` if it was loaded before and its weights are unchanged."""
        key = _model_key(folder)
        if key is not None and self._model_cache is not None and self._model_cache[0] == key:
            return self._model_cache[1]
        return None

    def remember_model(self, folder: Path, loaded: Any) -> None:
        """Keep a LoadedModel (from a prediction worker) for the next prediction."""
        key = _model_key(folder)
        if key is not None:
            self._model_cache = (key, loaded)
        self.set_model_dir(folder, "loaded")

    def confirm_overwrite(self, target: Path) -> bool:
        """Ask before replacing `target` (or answer with :attr:`allow_overwrite`)."""
        if self.allow_overwrite is not None:
            return bool(self.allow_overwrite)
        answer = QMessageBox.question(
            self,
            "Replace?",
            f"{target} already exists.\nReplace it?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def main_window(self) -> QMainWindow | None:
        """The viewer's main window once the dock is docked in it (else None).

        The first call also starts watching it, so that closing the viewer
        stops background work.
        """
        window = self._main_window_ref() if self._main_window_ref is not None else None
        if window is None and not self._closed:
            widget = self.parentWidget()
            while widget is not None and not isinstance(widget, QMainWindow):
                widget = widget.parentWidget()
            if widget is not None:
                window = widget
                self._main_window_ref = weakref.ref(widget)
                widget.installEventFilter(self)
        return window

    def status(self, text: str) -> None:
        """A one-line status under the tabs."""
        self.status_label.setText(text)

    # ----------------------------------------------------------------- layers

    def _on_layers_changed(self, *_: Any) -> None:
        if not self._closed:
            self.refresh_layers()

    def refresh_layers(self) -> None:
        """Update every layer picker from the viewer's layer list."""
        for tab in (self.data_tab, self.predict_tab, self.export_tab, self.loop_tab):
            tab.reset_choices()

    # ----------------------------------------------------------------- closing

    def shutdown(self) -> None:
        """Stop every job and disconnect from the viewer (idempotent)."""
        self.jobs.shutdown_all()
        if self._closed:
            return
        self._closed = True
        _OPEN_DOCKS.discard(self)
        window = self._main_window_ref() if self._main_window_ref is not None else None
        if window is not None:
            try:
                window.removeEventFilter(self)
            except RuntimeError:  # already deleted
                pass
        for emitter in self._layer_events:
            try:
                emitter.disconnect(self._on_layers_changed)
            except (TypeError, ValueError, RuntimeError):
                pass
        self.loop_tab.shutdown()  # autosaves the corrections once more
        self.train_tab.plot.stop_timer()
        for progress in (self.train_tab.progress, self.predict_tab.progress):
            progress.close()

    def showEvent(self, event: Any) -> None:
        """Start watching the main window when first shown."""
        self.main_window()
        super().showEvent(event)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Closing the viewer window stops training and prediction cleanly."""
        if event.type() == QEvent.Type.Close and watched is self.main_window():
            self.shutdown()
        return False

    def closeEvent(self, event: Any) -> None:
        """Closing the widget stops training and prediction cleanly."""
        self.shutdown()
        super().closeEvent(event)


def _model_key(folder: Path) -> tuple[str, float] | None:
    """Identity of a model folder's checkpoint: path and modification time."""
    from napari_unet.engine.errors import UserInputError
    from napari_unet.engine.model.model_folder import ModelFolder

    try:
        weights = ModelFolder(Path(folder)).weights_file()
        return (str(weights.resolve()), weights.stat().st_mtime)
    except (UserInputError, OSError):
        return None
