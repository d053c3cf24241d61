"""Train tab: model preset and recipe, Train/Pause/Stop, progress against the time budget
and a live loss plot; below, the learning-rate schedule preview, the learning-rate finder
and the generated Advanced section (network, training and prediction fields)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, PushButton, SpinBox
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFormLayout,
    QLabel,
    QProgressBar,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from napari_unet.engine.config import MODEL_PRESETS, Config, ScheduleConfig, TrainConfig
from napari_unet.engine.errors import UserInputError

from . import notify
from .advanced_panel import Collapsible
from .config_fields import make_editor
from .dock_jobs import Phase, train_job
from .layer_utils import default_model_dir, snapshot
from .loss_plot import LossPlot
from .lr_finder_panel import LRFinderPanel
from .progress import TaskProgress, format_seconds
from .schedule_preview import SchedulePreview
from .settings import CUSTOM_PRESET
from .workers import Job, start_job

if TYPE_CHECKING:
    from .data_tab import DataTab
    from .dock_context import DockContext

__all__ = ["DEFAULT_BUDGET_MINUTES", "TrainTab", "default_models_parent"]

DEFAULT_PRESET = "cpu-small"
#: The dock's wall-clock budget unless a loaded config says otherwise.
DEFAULT_BUDGET_MINUTES = 10.0


def default_models_parent() -> Path:
    """``~/napari-unet-models``, or ``./napari-unet-models`` if the home folder is read-only."""
    home = Path.home()
    if home.is_dir() and os.access(home, os.W_OK):
        return home / "napari-unet-models"
    return Path.cwd() / "napari-unet-models"


def _choices(model: Any, name: str) -> list[Any]:
    return list(get_args(model.model_fields[name].annotation))


class TrainTab(QWidget):
    """Model preset, main hyper-parameters, Train/Pause/Stop, progress and the loss plot.

    Parameters
    ----------
    context
        The dock's shared state (config builder, jobs, current model, main window).
    data_tab
        The Data tab (the layers to train on).
    """

    def __init__(
        self, context: DockContext, data_tab: DataTab, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.context = context
        self.data_tab = data_tab
        t = TrainConfig()
        self.preset = ComboBox(
            label="Model",
            choices=[*MODEL_PRESETS, CUSTOM_PRESET],
            value=DEFAULT_PRESET,
            tooltip="\n".join(
                f"{k}: depth {v['depth']}, {v['base_filters']} filters"
                for k, v in MODEL_PRESETS.items()
            )
            + f"\n{CUSTOM_PRESET}: the network fields of Advanced > model",
        )
        self.epochs = SpinBox(label="Epochs", min=1, max=100_000, value=t.epochs)
        self.steps_per_epoch = SpinBox(
            label="Steps per epoch", min=1, max=100_000, value=t.steps_per_epoch
        )
        rate_field = TrainConfig.model_fields["learning_rate"]
        self.learning_rate = make_editor(rate_field.annotation, rate_field, "train.learning_rate")
        self.learning_rate.set(t.learning_rate)
        self.learning_rate.widget.setToolTip("Base learning rate (train.learning_rate)")
        self.batch_size = SpinBox(label="Batch size", min=1, max=1024, value=t.batch_size)
        self.loss = ComboBox(label="Loss", choices=_choices(TrainConfig, "loss"), value=t.loss)
        self.schedule_kind = ComboBox(
            label="LR schedule",
            choices=_choices(ScheduleConfig, "kind"),
            value=t.schedule.kind,
            tooltip="Learning-rate schedule; its parameters are under Advanced > train > schedule",
        )
        self.max_minutes = FloatSpinBox(
            label="Time budget (min)",
            min=0,
            max=100_000,
            step=1,
            value=DEFAULT_BUDGET_MINUTES,
            tooltip="Training ends when this wall-clock time is spent (paused time does not "
            "count); 0 = no time limit",
        )
        self.models_dir = FileEdit(
            label="Save models in",
            mode="d",
            value=str(default_models_parent()),
            tooltip="Each run writes <image>-<date-time>/ here",
        )
        self.train_button = PushButton(text="Train")
        self.pause_button = PushButton(text="Pause", enabled=False)
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.train_button.changed.connect(lambda *_: self.train())
        self.pause_button.changed.connect(lambda *_: self.toggle_pause())
        self.stop_button.changed.connect(lambda *_: self.stop())
        form_widget = QWidget()
        form = QFormLayout(form_widget)
        form.setContentsMargins(0, 0, 0, 0)
        for widget in (self.preset, self.epochs, self.steps_per_epoch):
            form.addRow(widget.label, widget.native)
        form.addRow("Learning rate", self.learning_rate.widget)
        for widget in (
            self.batch_size,
            self.loss,
            self.schedule_kind,
            self.max_minutes,
            self.models_dir,
        ):
            form.addRow(widget.label, widget.native)
        buttons = Container(
            widgets=[self.train_button, self.pause_button, self.stop_button],
            layout="horizontal",
            labels=False,
        )
        self.schedule_preview = SchedulePreview(context.build_config)
        self.lr_finder = LRFinderPanel(context, data_tab, lambda: self.models_dir.value)

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.folder_label = QLabel("Model folder: (set when training starts)")
        self.folder_label.setWordWrap(True)
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.plot = LossPlot()
        self.progress = TaskProgress("Training", self.progress_bar, self.status_label)

        settings = QWidget()
        self._settings_layout = QVBoxLayout(settings)
        self._settings_layout.setContentsMargins(0, 0, 0, 0)
        self._settings_layout.addWidget(form_widget)
        self._settings_layout.addWidget(Collapsible("LR schedule preview", self.schedule_preview))
        self._settings_layout.addWidget(Collapsible("Learning-rate finder", self.lr_finder))
        self._settings_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(settings)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, stretch=1)
        layout.addWidget(buttons.native)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addWidget(self.folder_label)
        layout.addWidget(self.plot, stretch=1)

        self.job: Job | None = None
        self.model_dir: Path | None = None
        self.last_event: Any = None
        self._pause_event = threading.Event()
        self._steps_per_epoch = 1
        self._budget_seconds: float | None = None
        self._clock: dict[str, float] = {}
        self._task_id: Any = None

    def add_advanced(self, panel: QWidget) -> None:
        """Place the generated Advanced section above the schedule preview."""
        self._settings_layout.insertWidget(1, panel)

    # ----------------------------------------------------------------- actions

    def train(self) -> Job | None:
        """Start training on the Data tab's layers with every tab's settings.

        Returns the job, or None if the inputs were not usable (a
        notification says why; no layer is changed).
        """
        if self.job is not None and self.job.running:
            notify.info("training is already running; press Stop first")
            return None
        try:
            layers = self.data_tab.selected_layers()
            folder = default_model_dir(self.models_dir.value, layers["image"].name)
            config = _bind_layer_sources(self.context.build_config(output=str(folder)), layers)
        except UserInputError as exc:
            notify.error(str(exc))
            return None
        arrays = {k: (snapshot(v) if v is not None else None) for k, v in layers.items()}
        metadata = {"napari_layers": {k: v.name for k, v in layers.items() if v is not None}}
        self._steps_per_epoch = config.train.steps_per_epoch
        self._budget_seconds = config.train.max_minutes * 60 if config.train.max_minutes else None
        self._clock = {}
        self.plot.clear()
        self.last_event = None
        self.model_dir = Path(config.output)
        self.folder_label.setText(_folder_text(self.model_dir))
        self.progress.start(1, "starting…")
        self.progress_bar.setRange(0, 0)  # busy until the engine's start event
        self._pause_event = threading.Event()
        self._set_running(True)
        self.job = start_job(
            self.context.jobs,
            "training",
            train_job,
            config,
            arrays["image"],
            arrays["mask"],
            arrays["val_image"],
            arrays["val_mask"],
            metadata,
            self._pause_event,
            on_yielded=self._on_event,
            on_returned=self._on_returned,
            on_errored=self._on_errored,
            on_finished=self._on_finished,
            pass_events=True,
        )
        self._register_task()
        return self.job

    def stop(self) -> None:
        """Ask training to stop after the current batch (also while paused; the best
        checkpoint is kept)."""
        if self.job is None or not self.job.running:
            return
        self.job.request_stop()
        self.stop_button.enabled = self.pause_button.enabled = False
        self.status_label.setText("stopping after the current batch…")

    @property
    def paused(self) -> bool:
        """True while training is paused."""
        return self._pause_event.is_set()

    def toggle_pause(self) -> None:
        """Pause training before its next batch, or resume it."""
        if self.job is None or not self.job.running:
            return
        now = time.perf_counter()
        if not self.paused:
            self._pause_event.set()
            self._clock["paused_at"] = now
            self.pause_button.text = "Resume"
            self.status_label.setText(
                "paused after the current batch (the time budget waits too); Resume or Stop"
            )
        else:
            self._pause_event.clear()
            started = self._clock.pop("paused_at", now)
            self._clock["paused"] = self._clock.get("paused", 0.0) + now - started
            self.pause_button.text = "Pause"
            self.status_label.setText("resumed")

    def _set_running(self, running: bool) -> None:
        self.train_button.enabled = not running
        self.stop_button.enabled = self.pause_button.enabled = running
        self.pause_button.text = "Pause"

    # ----------------------------------------------------------------- events (main thread)

    def _on_event(self, event: Any) -> None:
        if isinstance(event, Phase):
            self.status_label.setText(f"start-up {event.index}/{event.total}: {event.text}…")
            return
        self.last_event = event
        kind = event.kind
        if kind == "start":
            self.model_dir = Path(event.model_dir) if event.model_dir else self.model_dir
            self.folder_label.setText(_folder_text(self.model_dir))
            self.progress.start(event.total_steps, f"start-up 3/3: {event.message}")
            self._clock["start"] = time.perf_counter()
        elif kind in ("step", "epoch"):
            self.plot.add_event(event, self._steps_per_epoch)
            if not self.paused:
                done = round(self._fraction(event) * event.total_steps)
                self.progress.update(done, _event_text(event, self._budget_seconds), event.eta)
        elif kind == "done":
            self.progress.close(f"done: {event.message} ({format_seconds(event.elapsed)})")
            notify.info(f"Training finished ({event.message}); model saved in {event.model_dir}")
        elif kind == "stopped":
            self.progress.close(f"stopped: {event.message}")
            _report_stop(event)

    def _fraction(self, event: Any) -> float:
        """Done: of the planned steps or of the time budget (paused time excluded)."""
        fraction = event.step / max(event.total_steps, 1)
        if self._budget_seconds and "start" in self._clock:
            clock = time.perf_counter() - self._clock["start"] - self._clock.get("paused", 0.0)
            fraction = max(fraction, clock / self._budget_seconds)
        return min(fraction, 1.0)

    def _on_returned(self, result: Any) -> None:
        folder = Path(result.model_dir)
        if (folder / "best.keras").exists() or (folder / "last.keras").exists():
            self.context.set_model_dir(folder, "trained")

    def _on_errored(self, exc: BaseException) -> None:
        message = notify.report_exception(exc, "training")
        self.progress.close(f"failed: {message}")

    def _on_finished(self) -> None:
        self.progress.close()
        self.progress_bar.setRange(0, max(self.progress_bar.maximum(), 1))
        self.plot.flush()
        self._pause_event.clear()
        self._set_running(False)
        self._finish_task()

    # ----------------------------------------------------------------- napari task status

    def _register_task(self) -> None:
        """Let napari ask before closing the window while training runs (and stop it then)."""
        register = getattr(self.context.main_window(), "_register_task_status", None)
        if register is None:
            return
        try:
            from napari.utils.task_status import Status

            job = self.job
            self._task_id = register(
                "napari-unet",
                Status.BUSY,
                "U-Net training",
                cancel_callback=lambda: job.shutdown() or True,
            )
        except Exception:  # private napari API: best effort only
            self._task_id = None

    def _finish_task(self) -> None:
        if self._task_id is None:
            return
        update = getattr(self.context.main_window(), "_update_task_status", None)
        try:
            from napari.utils.task_status import Status

            if update is not None:
                update(self._task_id, Status.COMPLETED, "U-Net training")
        except Exception:
            pass
        self._task_id = None


def _bind_layer_sources(config: Config, layers: dict[str, Any]) -> Config:
    """The config's data paths as trained: each layer's source file, or None.

    A layer opened from a file (e.g. a loaded config's data) keeps that path in
    the model folder's ``config.yaml``; data that only exists in napari is
    stored there by the engine instead. Validation layers not in use clear
    ``val_images``/``val_masks``, so the config says what training validated on.
    """
    roles = {"image": "images", "mask": "masks", "val_image": "val_images"}
    roles["val_mask"] = "val_masks"
    update = {key: _source_file(layers.get(role)) for role, key in roles.items()}
    return config.model_copy(update={"data": config.data.model_copy(update=update)})


def _source_file(layer: Any) -> str | None:
    path = getattr(getattr(layer, "source", None), "path", None) if layer is not None else None
    if path and Path(path).is_file():
        return str(Path(path).resolve())
    return None


def _folder_text(folder: Path | None) -> str:
    if folder is None:
        return "Model folder: (set when training starts)"
    return f"Model folder: {folder}\nTensorBoard logs: {folder / 'logs'}"


def _event_text(event: Any, budget: float | None) -> str:
    text = f"epoch {event.epoch}/{event.total_epochs}, step {event.step}/{event.total_steps}"
    if event.loss is not None:
        text += f", loss {event.loss:.4f}"
    if event.kind == "epoch" and event.val:
        parts = [
            f"val {k} {v:.3f}" for k, v in event.val.items() if k in ("loss", "dice", "rand_fscore")
        ]
        text += ", " + ", ".join(parts)
    text += f"; budget {format_seconds(budget)}" if budget else "; no time limit"
    return text


def _report_stop(event: Any) -> None:
    """One notification saying why training ended early."""
    message = event.message or "training stopped"
    where = f"; the best checkpoint is kept in {event.model_dir}" if event.model_dir else ""
    if message.startswith(("stopped by the user", "early stopping")):
        notify.info(f"Training {message}{where}")
    else:
        notify.error(f"Training stopped: {message}{where}")
