"""Train tab: model preset and recipe, Train/Stop, progress with ETA and a live loss plot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, PushButton, SpinBox
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from napari_unet.engine.config import MODEL_PRESETS, TrainConfig
from napari_unet.engine.errors import UserInputError

from . import notify
from .layer_utils import default_model_dir, snapshot
from .loss_plot import LossPlot
from .progress import TaskProgress, format_seconds
from .workers import Job, start_job, train_job

if TYPE_CHECKING:
    from .data_tab import DataTab
    from .dock_context import DockContext

__all__ = ["TrainTab", "default_models_parent"]

DEFAULT_PRESET = "cpu-small"


def default_models_parent() -> Path:
    """``~/napari-unet-models``, or ``./napari-unet-models`` if the home folder is read-only."""
    home = Path.home()
    if home.is_dir() and os.access(home, os.W_OK):
        return home / "napari-unet-models"
    return Path.cwd() / "napari-unet-models"


class TrainTab(QWidget):
    """Model preset, main hyper-parameters, Train/Stop, progress and the loss plot.

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
            choices=list(MODEL_PRESETS),
            value=DEFAULT_PRESET,
            tooltip="\n".join(
                f"{k}: depth {v['depth']}, {v['base_filters']} filters"
                for k, v in MODEL_PRESETS.items()
            ),
        )
        self.epochs = SpinBox(label="Epochs", min=1, max=100_000, value=t.epochs)
        self.steps_per_epoch = SpinBox(
            label="Steps per epoch", min=1, max=100_000, value=t.steps_per_epoch
        )
        self.learning_rate = FloatSpinBox(
            label="Learning rate", min=1e-5, max=0.5, step=1e-5, value=t.learning_rate
        )
        self.batch_size = SpinBox(label="Batch size", min=1, max=1024, value=t.batch_size)
        self.loss = ComboBox(label="Loss", choices=["bce", "dice", "bce_dice"], value=t.loss)
        self.max_minutes = FloatSpinBox(
            label="Max minutes",
            min=0,
            max=100_000,
            step=1,
            value=0.0,
            tooltip="Wall-clock budget; 0 = no limit",
        )
        self.models_dir = FileEdit(
            label="Save models in",
            mode="d",
            value=str(default_models_parent()),
            tooltip="Each run writes <image>-<date-time>/ here",
        )
        self.train_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.train_button.changed.connect(self._on_train_clicked)
        self.stop_button.changed.connect(self._on_stop_clicked)
        self.form = Container(
            widgets=[
                self.preset,
                self.epochs,
                self.steps_per_epoch,
                self.learning_rate,
                self.batch_size,
                self.loss,
                self.max_minutes,
                self.models_dir,
            ],
            labels=True,
        )
        buttons = Container(
            widgets=[self.train_button, self.stop_button], layout="horizontal", labels=False
        )

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

        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addWidget(buttons.native)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addWidget(self.folder_label)
        layout.addWidget(self.plot, stretch=1)

        self.job: Job | None = None
        self.model_dir: Path | None = None
        self.last_event: Any = None
        self._steps_per_epoch = 1
        self._task_id: Any = None

    # ----------------------------------------------------------------- actions

    def _on_train_clicked(self, *_: Any) -> None:
        self.train()

    def _on_stop_clicked(self, *_: Any) -> None:
        self.stop()

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
            config = self.context.build_config(output=str(folder))
        except UserInputError as exc:
            notify.error(str(exc))
            return None
        arrays = {k: (snapshot(v) if v is not None else None) for k, v in layers.items()}
        metadata = {"napari_layers": {k: v.name for k, v in layers.items() if v is not None}}
        self._steps_per_epoch = config.train.steps_per_epoch
        self.plot.clear()
        self.last_event = None
        self.model_dir = Path(config.output)
        self.folder_label.setText(_folder_text(self.model_dir))
        self.progress.start(
            config.train.epochs * config.train.steps_per_epoch,
            "preparing the data and building the network…",
        )
        self.train_button.enabled = False
        self.stop_button.enabled = True
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
            on_yielded=self._on_event,
            on_returned=self._on_returned,
            on_errored=self._on_errored,
            on_finished=self._on_finished,
            pass_events=True,
        )
        self._register_task()
        return self.job

    def stop(self) -> None:
        """Ask training to stop after the current batch (the best checkpoint is kept)."""
        if self.job is None or not self.job.running:
            return
        self.job.request_stop()
        self.stop_button.enabled = False
        self.status_label.setText("stopping after the current batch…")

    # ----------------------------------------------------------------- events (main thread)

    def _on_event(self, event: Any) -> None:
        self.last_event = event
        kind = event.kind
        if kind == "start":
            self.model_dir = Path(event.model_dir) if event.model_dir else self.model_dir
            self.folder_label.setText(_folder_text(self.model_dir))
            self.progress.start(event.total_steps, event.message)
        elif kind in ("step", "epoch"):
            self.plot.add_event(event, self._steps_per_epoch)
            self.progress.update(event.step, _event_text(event), event.eta)
        elif kind == "done":
            self.progress.close(f"done: {event.message} ({format_seconds(event.elapsed)})")
            notify.info(f"Training finished ({event.message}); model saved in {event.model_dir}")
        elif kind == "stopped":
            self.progress.close(f"stopped: {event.message}")
            _report_stop(event)

    def _on_returned(self, result: Any) -> None:
        folder = Path(result.model_dir)
        if (folder / "best.keras").exists() or (folder / "last.keras").exists():
            self.context.set_model_dir(folder, "trained")

    def _on_errored(self, exc: BaseException) -> None:
        message = notify.report_exception(exc, "training")
        self.progress.close(f"failed: {message}")

    def _on_finished(self) -> None:
        self.progress.close()
        self.plot.flush()
        self.train_button.enabled = True
        self.stop_button.enabled = False
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


def _folder_text(folder: Path | None) -> str:
    if folder is None:
        return "Model folder: (set when training starts)"
    return f"Model folder: {folder}\nTensorBoard logs: {folder / 'logs'}"


def _event_text(event: Any) -> str:
    text = f"epoch {event.epoch}/{event.total_epochs}, step {event.step}/{event.total_steps}"
    if event.loss is not None:
        text += f", loss {event.loss:.4f}"
    if event.kind == "epoch" and event.val:
        parts = [
            f"val {k} {v:.3f}" for k, v in event.val.items() if k in ("loss", "dice", "rand_fscore")
        ]
        text += ", " + ", ".join(parts)
    return text


def _report_stop(event: Any) -> None:
    """One notification saying why training ended early."""
    message = event.message or "training stopped"
    where = f"; the best checkpoint is kept in {event.model_dir}" if event.model_dir else ""
    if message.startswith(("stopped by the user", "early stopping")):
        notify.info(f"Training {message}{where}")
    else:
        notify.error(f"Training stopped: {message}{where}")
