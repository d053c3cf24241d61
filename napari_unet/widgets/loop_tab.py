"""Correct & retrain tab: the predict → correct → fine-tune → compare loop.

The tab tracks which slices of a corrections Labels layer (usually
``<image> prediction``) the user changed, by comparing the layer with a copy
taken when the prediction appeared; slices can also be marked as reviewed.
"Fine-tune on corrections" warm-starts the current model on those slices in a
worker (:func:`napari_unet.engine.training.finetune.finetune_iter`) and makes the
result the current model version. Versions, per-slice EM metrics (or model
uncertainty), instance post-processing and autosave of the corrections are
on the same tab.

Nothing here imports TensorFlow: the fine-tuning job imports it in its own
worker thread. Every slot that touches Qt or layers runs on the main thread.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, SpinBox
from napari.layers import Image, Labels
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_unet.engine.errors import UserInputError

from . import notify
from .layer_utils import (
    add_or_update_layer,
    current_slice,
    layer_choices,
    layer_in_viewer,
    layer_stack_shape,
    require_layer,
    snapshot,
)
from .loss_plot import LossPlot
from .metrics_table import MetricsTable
from .progress import TaskProgress, format_seconds
from .tf_loader import ensure_tensorflow
from .workers import Job, _forward, _in_own_thread, start_job

if TYPE_CHECKING:
    from napari_unet.engine.autosave import Autosaver
    from napari_unet.engine.model.versions import VersionStore

    from .dock import UNetDock

__all__ = ["LoopTab", "changed_slices", "finetune_job"]

_VERSION = re.compile(r"^v\d{3,}$")
SPARSE_CURRENT = "current slice"
SPARSE_LISTED = "corrected + reviewed slices"
SPARSE_ALL = "all slices"


# --------------------------------------------------------------------------- job functions
# These run in worker threads: no Qt, no layers.


def finetune_job(
    parent: Path,
    images: np.ndarray,
    masks: np.ndarray,
    slices: list[int] | None,
    output: Path | None,
    max_minutes: float,
    metadata: dict[str, Any],
    stop: threading.Event,
    closing: threading.Event,
) -> Generator[Any, None, Any]:
    """Fine-tune `parent` on corrected slices, yielding TrainEvents; returns the TrainResult."""

    def events() -> Generator[Any, None, Any]:
        ensure_tensorflow()  # first: before any engine module can import it
        from napari_unet.engine.training.finetune import finetune_iter

        return (
            yield from finetune_iter(
                parent,
                images,
                masks,
                slices=slices,
                output=output,
                max_minutes=max_minutes,
                stop=stop,
                metadata=metadata,
            )
        )

    return (yield from _forward(_in_own_thread(events, "fine-tuning"), closing))


def metrics_job(probability: np.ndarray, truth: np.ndarray, threshold: float) -> dict[str, Any]:
    """Per-slice and overall EM metrics of a probability stack against a ground-truth mask."""
    from napari_unet.engine.evaluation.metrics import evaluate

    return evaluate(np.asarray(probability), np.asarray(truth) > 0, threshold)


def uncertainty_job(probability: np.ndarray) -> list[dict[str, float]]:
    """Slices ranked most uncertain first."""
    from napari_unet.engine.evaluation.ranking import rank_by_uncertainty

    return rank_by_uncertainty(np.asarray(probability))


def instances_job(
    probability: np.ndarray, threshold: float, min_size: int, fill_holes: bool
) -> np.ndarray:
    """Instance labels of the predicted cell interiors."""
    from napari_unet.engine.inference.postprocess import instances_from_probability

    return instances_from_probability(np.asarray(probability), threshold, min_size, fill_holes)


# --------------------------------------------------------------------------- edit tracking


def changed_slices(data: np.ndarray, baseline: np.ndarray | None) -> list[int]:
    """Indices of the slices (axis 0 of a stack; 0 for a 2D layer) where `data`
    differs from `baseline`."""
    data = np.asarray(data)
    if baseline is None or baseline.shape != data.shape:
        return []
    if data.ndim < 3:
        return [0] if not np.array_equal(data, baseline) else []
    differs = (data != baseline).reshape(data.shape[0], -1).any(axis=1)
    return [int(z) for z in np.flatnonzero(differs)]


@dataclass
class EditTrack:
    """What the tab knows about one corrections layer.

    Attributes
    ----------
    baseline
        Copy of the data as predicted (edits are differences to it).
    reviewed
        Slices marked as reviewed (correct as they are), or restored as edited.
    """

    baseline: np.ndarray | None
    reviewed: set[int] = field(default_factory=set)


# --------------------------------------------------------------------------- the tab


class LoopTab(QWidget):
    """Corrections, fine-tuning, versions, metrics, instances and autosave.

    Parameters
    ----------
    dock
        The U-Net dock (viewer, current model folder, predict tab, jobs).
    """

    def __init__(self, dock: UNetDock, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.dock = dock
        self.viewer = dock.viewer
        self._tracks: dict[int, EditTrack] = {}
        self._connected: list[tuple[Any, Any]] = []
        self._known_layers: set[int] = {id(layer) for layer in self.viewer.layers}
        self._metrics_history: list[tuple[str, dict[str, Any]]] = []
        self._eval_by_version: dict[str, dict[str, Any]] = {}
        self._autosaver: Autosaver | None = None
        self._closed = False
        self.job: Job | None = None
        self.metrics_job: Job | None = None
        self.instances_job: Job | None = None
        self.instances_layer: Any = None
        self.last_result: Any = None
        self._budget_seconds = 120.0
        self._steps_per_epoch = 10

        # ---- 1. corrections
        self.corrections = ComboBox(
            label="Corrections",
            choices=self._labels_choices,
            nullable=True,
            tooltip="Labels layer you correct (usually '<image> prediction')",
        )
        self.image = ComboBox(label="Image", choices=self._image_choices, nullable=True)
        self.sparse_slices = ComboBox(
            label="Label slices",
            choices=[SPARSE_CURRENT, SPARSE_LISTED, SPARSE_ALL],
            value=SPARSE_CURRENT,
            tooltip="Which slices the sparse layer labels; the others become 0 = unlabeled",
        )
        self.corrections_form = Container(
            widgets=[self.corrections, self.image, self.sparse_slices], labels=True
        )
        self.convention_label = QLabel("")
        self.convention_label.setWordWrap(True)
        self.sparse_button = QPushButton("Convert to sparse (0 unlabeled, 1 bg, 2 fg)")
        self.reviewed_button = QPushButton("Mark current slice as reviewed")
        self.baseline_button = QPushButton("Accept edits as baseline")
        self.baseline_button.setToolTip(
            "Take a new copy of the layer: no slice counts as "
            "corrected any more (reviewed marks are cleared)"
        )
        self.edits_list = QListWidget()
        self.edits_list.setMaximumHeight(90)
        self.edits_list.itemDoubleClicked.connect(self._on_edit_double_clicked)

        # ---- 2. fine-tuning
        self.budget = FloatSpinBox(
            label="Budget (minutes)", min=0.01, max=600.0, step=0.5, value=2.0
        )
        self.auto_predict = CheckBox(text="Re-predict when done", value=False)
        self.project_folder = FileEdit(
            label="Project folder",
            mode="d",
            value="",
            tooltip="Holds the model versions v001, v002… and "
            "autosave/; default: the current model's folder parent",
        )
        self.finetune_form = Container(
            widgets=[self.budget, self.auto_predict, self.project_folder], labels=True
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

        # ---- 3. versions
        self.versions_table = QTableWidget(0, 5)
        self.versions_table.setHorizontalHeaderLabels(
            ["version", "in use", "parent", "created", "metrics"]
        )
        self.versions_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.versions_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.versions_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.versions_table.verticalHeader().setVisible(False)
        self.versions_table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents
        )
        self.versions_table.setMaximumHeight(130)
        self.use_button = QPushButton("Use this version")
        self.predict_button = QPushButton("Predict with it")
        self.refresh_versions_button = QPushButton("Refresh")

        # ---- 4. metrics
        self.truth = ComboBox(
            label="Ground truth", choices=self._labels_choices, nullable=True, value=None
        )
        self.metrics_form = Container(widgets=[self.truth], labels=True)
        self.metrics_button = QPushButton("Compute metrics")
        self.rank_button = QPushButton("Rank by uncertainty")
        self.metrics_table = MetricsTable()
        self.metrics_label = QLabel("")
        self.metrics_label.setWordWrap(True)

        # ---- 5. instances
        self.min_size = SpinBox(label="Min size (px)", min=0, max=10_000_000, value=20)
        self.fill_holes = CheckBox(text="Fill holes", value=True)
        self.instances_form = Container(widgets=[self.min_size, self.fill_holes], labels=True)
        self.instances_button = QPushButton("Instances")

        # ---- 6. autosave
        self.autosave_minutes = FloatSpinBox(
            label="Autosave every (min)", min=0.0, max=600.0, step=1.0, value=3.0, tooltip="0 = off"
        )
        self.autosave_form = Container(widgets=[self.autosave_minutes], labels=True)
        self.autosave_button = QPushButton("Save now")
        self.restore_button = QPushButton("Restore autosave")
        self.autosave_label = QLabel("")
        self.autosave_label.setWordWrap(True)

        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addWidget(
            _group(
                "Corrections",
                [
                    self.corrections_form.native,
                    self.convention_label,
                    self.sparse_button,
                    _row(self.reviewed_button, self.baseline_button),
                    QLabel("Corrected / reviewed slices (double-click to show):"),
                    self.edits_list,
                ],
            )
        )
        layout.addWidget(
            _group(
                "Fine-tune",
                [
                    self.finetune_form.native,
                    _row(self.finetune_button, self.stop_button),
                    self.progress_bar,
                    self.status_label,
                    self.plot,
                ],
            )
        )
        layout.addWidget(
            _group(
                "Model versions",
                [
                    self.versions_table,
                    _row(self.use_button, self.predict_button, self.refresh_versions_button),
                ],
            )
        )
        layout.addWidget(
            _group(
                "Metrics",
                [
                    self.metrics_form.native,
                    _row(self.metrics_button, self.rank_button),
                    self.metrics_label,
                    self.metrics_table,
                ],
            )
        )
        layout.addWidget(_group("Instances", [self.instances_form.native, self.instances_button]))
        layout.addWidget(
            _group(
                "Autosave",
                [
                    self.autosave_form.native,
                    _row(self.autosave_button, self.restore_button),
                    self.autosave_label,
                ],
            )
        )
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        self.sparse_button.clicked.connect(lambda *_: self.convert_to_sparse())
        self.reviewed_button.clicked.connect(lambda *_: self.mark_reviewed())
        self.baseline_button.clicked.connect(lambda *_: self.accept_baseline())
        self.finetune_button.clicked.connect(lambda *_: self.finetune())
        self.stop_button.clicked.connect(lambda *_: self.stop())
        self.use_button.clicked.connect(lambda *_: self.use_version())
        self.predict_button.clicked.connect(lambda *_: self.predict_with_version())
        self.refresh_versions_button.clicked.connect(lambda *_: self.refresh_versions())
        self.metrics_button.clicked.connect(lambda *_: self.compute_metrics())
        self.rank_button.clicked.connect(lambda *_: self.rank_uncertainty())
        self.instances_button.clicked.connect(lambda *_: self.make_instances())
        self.autosave_button.clicked.connect(lambda *_: self.autosave_now(force=True))
        self.restore_button.clicked.connect(lambda *_: self.restore_autosave())
        self.metrics_table.slice_activated.connect(self.jump_to_slice)
        self.corrections.changed.connect(self._on_corrections_changed)
        self.project_folder.changed.connect(lambda *_: self._on_project_changed())

        self._edits_timer = QTimer(self)  # paint events come in bursts: refresh once
        self._edits_timer.setSingleShot(True)
        self._edits_timer.setInterval(300)
        self._edits_timer.timeout.connect(self.refresh_edits)
        self._instances_timer = QTimer(self)  # live threshold for the instances layer
        self._instances_timer.setSingleShot(True)
        self._instances_timer.setInterval(150)
        self._instances_timer.timeout.connect(self._rethreshold_instances)
        dock.predict_tab.threshold.changed.connect(self._on_threshold_changed)
        self._autosave_timer = QTimer(self)
        self._autosave_timer.timeout.connect(self._on_autosave_timer)
        self.autosave_minutes.changed.connect(lambda *_: self._restart_autosave_timer())
        self._restart_autosave_timer()

        self._on_corrections_changed()
        self.refresh_versions()

    # ----------------------------------------------------------------- choices

    def _labels_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return layer_choices(self.viewer, [Labels])

    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return layer_choices(self.viewer, [Image])

    def reset_choices(self) -> None:
        """Refresh the layer pickers; a newly added ``<image> prediction`` layer is
        selected as the corrections layer (and its copy taken)."""
        if self._closed:
            return
        new = [layer for layer in self.viewer.layers if id(layer) not in self._known_layers]
        self._known_layers = {id(layer) for layer in self.viewer.layers}
        for form in (self.corrections_form, self.metrics_form):
            form.reset_choices()
        predictions = [
            layer
            for layer in new
            if isinstance(layer, Labels) and layer.name.endswith(" prediction")
        ]
        if predictions:
            self.corrections.value = predictions[-1]
        live = {id(layer) for layer in self.viewer.layers}
        for key in [k for k in self._tracks if k not in live]:
            del self._tracks[key]
        self._on_corrections_changed()

    def corrections_layer(self) -> Labels | None:
        """The chosen corrections layer, if it is still in the viewer."""
        layer = self.corrections.value
        return layer if layer_in_viewer(self.viewer, layer) else None

    def image_layer(self) -> Image | None:
        """The chosen image layer, if it is still in the viewer."""
        layer = self.image.value
        return layer if layer_in_viewer(self.viewer, layer) else None

    def _on_corrections_changed(self, *_: Any) -> None:
        layer = self.corrections_layer()
        if layer is not None:
            self._track(layer)
            if layer.name.endswith(" prediction"):
                source = layer.name[: -len(" prediction")]
                if source in self.viewer.layers and isinstance(self.viewer.layers[source], Image):
                    self.image.value = self.viewer.layers[source]
        self.refresh_edits()

    # ----------------------------------------------------------------- edit tracking

    def _track(self, layer: Labels) -> EditTrack:
        track = self._tracks.get(id(layer))
        if track is None:
            track = EditTrack(baseline=np.array(snapshot(layer)))
            self._tracks[id(layer)] = track
            for emitter, slot in (
                (layer.events.data, self._on_layer_data),
                (getattr(layer.events, "paint", None), self._on_layer_paint),
            ):
                if emitter is not None:
                    emitter.connect(slot)
                    self._connected.append((emitter, slot))
        return track

    def _on_layer_data(self, event: Any) -> None:
        """New data set on a tracked layer (a new prediction, a re-threshold): new copy."""
        layer = getattr(event, "source", None)
        track = self._tracks.get(id(layer)) if layer is not None else None
        if track is not None:
            track.baseline = np.array(snapshot(layer))
            track.reviewed.clear()
        self._edits_timer.start()

    def _on_layer_paint(self, *_: Any) -> None:
        self._edits_timer.start()

    def edited_slices(self, layer: Labels | None = None) -> list[int]:
        """Slices of the corrections layer that differ from the copy taken at prediction."""
        layer = layer if layer is not None else self.corrections_layer()
        if layer is None:
            return []
        return changed_slices(np.asarray(snapshot(layer)), self._track(layer).baseline)

    def reviewed_slices(self, layer: Labels | None = None) -> list[int]:
        """Slices marked as reviewed (or restored as edited) on the corrections layer."""
        layer = layer if layer is not None else self.corrections_layer()
        return sorted(self._track(layer).reviewed) if layer is not None else []

    def training_slices(self, layer: Labels | None = None) -> list[int]:
        """Corrected and reviewed slices: what fine-tuning learns from."""
        return sorted(set(self.edited_slices(layer)) | set(self.reviewed_slices(layer)))

    def mark_reviewed(self, z: int | None = None) -> int | None:
        """Mark slice `z` (default: the one shown) of the corrections layer as reviewed."""
        layer = self.corrections_layer()
        if layer is None:
            notify.error("choose a corrections layer first")
            return None
        if z is None:
            z = current_slice(self.viewer, layer)
        self._track(layer).reviewed.add(int(z))
        self.refresh_edits()
        return int(z)

    def accept_baseline(self) -> None:
        """Take a new copy of the corrections layer (forget edits and reviewed marks)."""
        layer = self.corrections_layer()
        if layer is None:
            return
        track = self._track(layer)
        track.baseline = np.array(snapshot(layer))
        track.reviewed.clear()
        self.refresh_edits()

    def refresh_edits(self) -> None:
        """Update the convention text and the list of corrected / reviewed slices."""
        if self._closed:
            return
        layer = self.corrections_layer()
        self.edits_list.clear()
        if layer is None:
            self.convention_label.setText("No corrections layer.")
            return
        from napari_unet.engine.inference.postprocess import annotation_convention

        convention = annotation_convention(np.asarray(snapshot(layer)))
        self.convention_label.setText(f"Convention: {_CONVENTION_TEXT[convention]}")
        edited, reviewed = set(self.edited_slices(layer)), set(self.reviewed_slices(layer))
        for z in sorted(edited | reviewed):
            what = " + ".join(
                w for w, s in (("corrected", edited), ("reviewed", reviewed)) if z in s
            )
            self.edits_list.addItem(f"slice {z}: {what}")

    def convention(self) -> str:
        """``dense``, ``sparse``, ``instances`` or ``empty`` for the corrections layer."""
        from napari_unet.engine.inference.postprocess import annotation_convention

        layer = self.corrections_layer()
        return "" if layer is None else annotation_convention(np.asarray(snapshot(layer)))

    def _on_edit_double_clicked(self, item: Any) -> None:
        match = re.match(r"slice (\d+)", item.text())
        if match:
            self.jump_to_slice(int(match.group(1)))

    def jump_to_slice(self, z: int) -> None:
        """Show slice `z` in the viewer."""
        if self.viewer.dims.ndim >= 3:
            self.viewer.dims.set_current_step(0, int(z))

    def convert_to_sparse(self) -> Labels | None:
        """Add ``<name> sparse``: the corrections layer in the sparse convention,
        labelled only on the chosen slices (the others 0 = unlabeled)."""
        from napari_unet.engine.inference.postprocess import (
            annotation_convention,
            to_sparse_annotation,
        )

        try:
            layer = require_layer(self.corrections_layer(), "a corrections layer")
            data = np.asarray(snapshot(layer))
            convention = annotation_convention(data)
            if convention == "sparse":
                raise UserInputError(f"{layer.name!r} is already a sparse annotation")
            stack = data if data.ndim == 3 else data[None]
            if stack.ndim != 3:
                raise UserInputError(f"{layer.name!r} is not a 2D image or a (Z, Y, X) stack")
            choice = self.sparse_slices.value
            if choice == SPARSE_ALL:
                slices: list[int] | None = None
            elif choice == SPARSE_LISTED:
                slices = self.training_slices(layer)
                if not slices:
                    raise UserInputError(
                        "no corrected or reviewed slices to label; correct "
                        "or mark slices first, or choose 'current slice'"
                    )
            else:
                slices = [current_slice(self.viewer, layer)]
        except UserInputError as exc:
            notify.error(str(exc))
            return None
        sparse = to_sparse_annotation(stack, slices)
        sparse = sparse if data.ndim == 3 else sparse[0]
        new, updated = add_or_update_layer(
            self.viewer,
            f"{layer.name} sparse",
            sparse,
            "labels",
            scale=tuple(layer.scale),
            translate=tuple(layer.translate),
        )
        what = "every slice" if slices is None else f"slices {', '.join(map(str, slices))}"
        notify.info(
            f"{'Updated' if updated else 'Added'} '{new.name}' (sparse: 0 unlabeled, "
            f"1 background, 2 foreground; labelled on {what})"
        )
        return new

    # ----------------------------------------------------------------- versions

    def project_dir(self) -> Path | None:
        """Folder of the model versions: the chosen project folder, else the parent of
        the current model folder."""
        text = str(self.project_folder.value or "").strip()
        if text not in ("", "."):
            return Path(text).expanduser()
        if self.dock.model_dir is not None:
            return Path(self.dock.model_dir).parent
        return None

    def version_store(self) -> VersionStore | None:
        """The :class:`VersionStore` of :meth:`project_dir` (None without a project)."""
        from napari_unet.engine.model.versions import VersionStore

        project = self.project_dir()
        return VersionStore(project) if project is not None else None

    def _on_project_changed(self) -> None:
        self._autosaver = None
        self.refresh_versions()

    def current_model_dir(self) -> Path:
        """The model to fine-tune: the dock's current model, else the store's current version.

        Raises
        ------
        UserInputError
            If there is none.
        """
        if self.dock.model_dir is not None:
            return Path(self.dock.model_dir)
        store = self.version_store()
        current = store.current() if store is not None else None
        if current is None:
            raise UserInputError(
                "no current model: train one, load one on the Predict tab, "
                "or choose a project folder with versions"
            )
        return current.path

    def refresh_versions(self) -> None:
        """Fill the versions table from the project folder."""
        if self._closed:
            return
        store = self.version_store()
        versions = store.versions() if store is not None else []
        current = store.current() if store is not None else None
        model_dir = Path(self.dock.model_dir).resolve() if self.dock.model_dir else None
        table = self.versions_table
        table.setRowCount(len(versions))
        for row, info in enumerate(versions):
            in_use = (
                (model_dir == info.path.resolve())
                if model_dir is not None
                else (current is not None and current.name == info.name)
            )
            created = (info.created or "").replace("T", " ")[:19]
            cells = [
                info.name,
                "✓" if in_use else "",
                info.parent or "",
                created,
                _metrics_text(info.metrics, self._eval_by_version.get(info.name)),
            ]
            for col, text in enumerate(cells):
                table.setItem(row, col, QTableWidgetItem(text))
            if in_use:
                table.selectRow(row)

    def version_names(self) -> list[str]:
        """Names in the versions table, top to bottom."""
        return [
            self.versions_table.item(r, 0).text() for r in range(self.versions_table.rowCount())
        ]

    def _selected_version(self, name: str | None) -> Any:
        store = self.version_store()
        if store is None:
            raise UserInputError("no project folder: train or load a model first, or choose one")
        if name is None:
            row = self.versions_table.currentRow()
            if row < 0:
                selected = self.versions_table.selectionModel().selectedRows()
                row = selected[0].row() if selected else -1
            if row < 0:
                raise UserInputError("select a version in the list first")
            name = self.versions_table.item(row, 0).text()
        return store.get(name)

    def use_version(self, name: str | None = None) -> Path | None:
        """Make version `name` (default: the selected row) current and the prediction model."""
        try:
            info = self._selected_version(name)
            self.version_store().set_current(info.name)
        except UserInputError as exc:
            notify.error(str(exc))
            return None
        self.dock.set_model_dir(info.path, "trained")
        self.refresh_versions()
        self.dock.status(f"model version {info.name} is in use ({info.path})")
        return info.path

    def predict_with_version(self, name: str | None = None) -> Job | None:
        """Use version `name` (default: selected) and predict the image layer with it."""
        if self.use_version(name) is None:
            return None
        image = self.image_layer()
        if image is not None:
            self.dock.predict_tab.image.value = image
        return self.dock.predict_tab.predict()

    # ----------------------------------------------------------------- fine-tuning

    def finetune(self) -> Job | None:
        """Fine-tune the current model on the corrected and reviewed slices.

        Returns the job, or None if the inputs were not usable (a notification
        says why; no layer is changed).
        """
        if self.job is not None and self.job.running:
            notify.info("fine-tuning is already running; press Stop first")
            return None
        try:
            layer = require_layer(self.corrections_layer(), "a corrections layer")
            image = require_layer(self.image_layer(), "the image layer the corrections are on")
            if layer_stack_shape(image) != layer_stack_shape(layer):
                raise UserInputError(
                    f"corrections {layer.name!r} {layer_stack_shape(layer)} "
                    f"and image {image.name!r} {layer_stack_shape(image)} "
                    "differ in shape"
                )
            parent = self.current_model_dir()
            masks = np.asarray(snapshot(layer))
            convention = self.convention()
            slices: list[int] | None = self.training_slices(layer)
            if convention == "empty":
                raise UserInputError(f"{layer.name!r} is empty: nothing to learn from")
            if convention == "sparse":
                slices = None  # every slice holding scribbles
            elif not slices:
                raise UserInputError(
                    "no corrected slices: paint corrections on the layer or mark slices as reviewed"
                )
            if convention == "instances":
                masks = (masks > 0).astype(np.uint8)
            project = self.project_dir()
            output = None
            if str(self.project_folder.value or "").strip() not in ("", ".") and project:
                from napari_unet.engine.model.versions import VersionStore

                output = VersionStore(project).next_path()
        except UserInputError as exc:
            notify.error(str(exc))
            return None
        images = snapshot(image)
        metadata = {
            "napari_layers": {"image": image.name, "corrections": layer.name},
            "corrected_slices": self.edited_slices(layer),
            "reviewed_slices": self.reviewed_slices(layer),
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
            self.dock.jobs,
            "fine-tuning",
            finetune_job,
            parent,
            images,
            masks,
            slices,
            output,
            minutes,
            metadata,
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
        if _VERSION.match(folder.name):
            from napari_unet.engine.model.versions import VersionStore

            try:
                VersionStore(folder.parent).set_current(folder.name)
            except UserInputError as exc:
                notify.warning(str(exc))
        self.dock.set_model_dir(folder, "trained")
        self.refresh_versions()
        notify.info(
            f"Fine-tuned model {folder.name} is now in use; press 'Predict with it' "
            "to see its prediction"
        )
        self.dock.status(f"fine-tuned model {folder.name} saved in {folder}")
        if self.auto_predict.value:
            if _VERSION.match(folder.name):
                self.predict_with_version(folder.name)
            else:
                self.dock.predict_tab.predict()

    def _on_errored(self, exc: BaseException) -> None:
        message = notify.report_exception(exc, "fine-tuning")
        self.progress.close(f"failed: {message}")

    def _on_finished(self) -> None:
        self.progress.close()
        self.plot.flush()
        self.finetune_button.setEnabled(True)
        self.stop_button.setEnabled(False)

    # ----------------------------------------------------------------- metrics

    def probability_layer(self) -> Image:
        """``<image> probability`` of the chosen image (else the Predict tab's last one).

        Raises
        ------
        UserInputError
            If there is no probability layer (predict first).
        """
        image = self.image_layer()
        if image is not None:
            name = f"{image.name} probability"
            if name in self.viewer.layers and isinstance(self.viewer.layers[name], Image):
                return self.viewer.layers[name]
        layer = self.dock.predict_tab.probability_layer
        if layer_in_viewer(self.viewer, layer):
            return layer
        raise UserInputError("no probability layer: predict the image first (Predict tab)")

    def _current_version_name(self) -> str:
        folder = self.dock.model_dir
        return Path(folder).name if folder is not None else "(unknown model)"

    def compute_metrics(self) -> Job | None:
        """Per-slice and overall metrics of the probability layer against the ground truth."""
        if self.metrics_job is not None and self.metrics_job.running:
            notify.info("metrics are already being computed")
            return None
        try:
            truth = require_layer(
                self.truth.value if layer_in_viewer(self.viewer, self.truth.value) else None,
                "a ground-truth Labels layer",
            )
            prob = self.probability_layer()
            if layer_stack_shape(prob) != layer_stack_shape(truth):
                raise UserInputError(
                    f"ground truth {truth.name!r} {layer_stack_shape(truth)} "
                    f"and {prob.name!r} {layer_stack_shape(prob)} differ in "
                    "shape"
                )
        except UserInputError as exc:
            notify.error(str(exc))
            return None
        version = self._current_version_name()
        threshold = float(self.dock.predict_tab.threshold.value)
        self.metrics_label.setText(f"computing metrics of {prob.name!r}…")

        def on_returned(result: dict[str, Any]) -> None:
            self._show_metrics(result, version, prob.name, truth.name)

        self.metrics_job = start_job(
            self.dock.jobs,
            "metrics",
            metrics_job,
            np.asarray(snapshot(prob)),
            np.asarray(snapshot(truth)),
            threshold,
            on_returned=on_returned,
            on_errored=lambda exc: self._metrics_failed(exc, "computing metrics"),
        )
        return self.metrics_job

    def _show_metrics(self, result: dict[str, Any], version: str, prob: str, truth: str) -> None:
        previous = next(
            (
                (name, res)
                for name, res in reversed(self._metrics_history)
                if name != version and res.get("n_slices") == result.get("n_slices")
            ),
            None,
        )
        self._metrics_history.append((version, result))
        self._metrics_history = self._metrics_history[-10:]
        self._eval_by_version[version] = result
        self.metrics_table.show_metrics(
            result, previous[1] if previous else None, previous[0] if previous else ""
        )
        text = (
            f"{prob} vs {truth} ({version}): Rand F {result['rand_fscore']:.3f}, "
            f"Dice {result['dice']:.3f}; worst slices first"
        )
        if previous:
            text += f"; Δ columns: change since {previous[0]}"
        self.metrics_label.setText(text)
        self.refresh_versions()

    def rank_uncertainty(self) -> Job | None:
        """Rank the slices by the model's uncertainty (no ground truth needed)."""
        if self.metrics_job is not None and self.metrics_job.running:
            notify.info("metrics are already being computed")
            return None
        try:
            prob = self.probability_layer()
        except UserInputError as exc:
            notify.error(str(exc))
            return None
        self.metrics_label.setText(f"ranking the slices of {prob.name!r} by uncertainty…")

        def on_returned(ranking: list[dict[str, float]]) -> None:
            self.metrics_table.show_ranking(ranking)
            self.metrics_label.setText(
                f"{prob.name}: most uncertain slices first (probability "
                "near 0.5); correct those next"
            )

        self.metrics_job = start_job(
            self.dock.jobs,
            "metrics",
            uncertainty_job,
            np.asarray(snapshot(prob)),
            on_returned=on_returned,
            on_errored=lambda exc: self._metrics_failed(exc, "ranking slices"),
        )
        return self.metrics_job

    def _metrics_failed(self, exc: BaseException, doing: str) -> None:
        self.metrics_label.setText(f"failed: {notify.report_exception(exc, doing)}")

    # ----------------------------------------------------------------- instances

    def make_instances(self) -> Job | None:
        """``<image> instances``: connected components of the thresholded probability."""
        if self.instances_job is not None and self.instances_job.running:
            return None
        try:
            prob = self.probability_layer()
        except UserInputError as exc:
            notify.error(str(exc))
            return None
        base = (
            prob.name[: -len(" probability")] if prob.name.endswith(" probability") else (prob.name)
        )
        name = f"{base} instances"
        placement = {"scale": tuple(prob.scale), "translate": tuple(prob.translate)}
        threshold = float(self.dock.predict_tab.threshold.value)

        def on_returned(labels: np.ndarray) -> None:
            layer, _ = add_or_update_layer(self.viewer, name, labels, "labels", **placement)
            self.instances_layer = layer
            count = len(np.unique(labels)) - 1
            self.dock.status(f"{name}: {count} objects (threshold {threshold:.2f})")

        self.instances_job = start_job(
            self.dock.jobs,
            "instances",
            instances_job,
            np.asarray(snapshot(prob)),
            threshold,
            int(self.min_size.value),
            bool(self.fill_holes.value),
            on_returned=on_returned,
            on_errored=lambda exc: notify.report_exception(exc, "finding instances"),
        )
        return self.instances_job

    def _on_threshold_changed(self, *_: Any) -> None:
        if not self._closed and layer_in_viewer(self.viewer, self.instances_layer):
            self._instances_timer.start()

    def _rethreshold_instances(self) -> None:
        if not self._closed and layer_in_viewer(self.viewer, self.instances_layer):
            self.make_instances()

    # ----------------------------------------------------------------- autosave

    def autosaver(self) -> Autosaver | None:
        """The Autosaver of the project folder (None without a project)."""
        from napari_unet.engine.autosave import Autosaver

        project = self.project_dir()
        if project is None:
            return None
        if self._autosaver is None or self._autosaver.project != project:
            self._autosaver = Autosaver(project, keep=5)
        return self._autosaver

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
        layer = self.corrections_layer()
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
        image = self.image_layer()
        metadata = {
            "image": image.name if image is not None else None,
            "model": str(self.dock.model_dir) if self.dock.model_dir else None,
        }
        try:
            version = saver.save(
                layer.name,
                np.asarray(snapshot(layer)),
                edited_slices=self.training_slices(layer),
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

    def restore_autosave(self) -> Labels | None:
        """Add the latest autosave (of the corrections layer, else of any layer) as a new
        Labels layer; its edited slices count as corrected."""
        saver = self.autosaver()
        try:
            if saver is None:
                raise UserInputError("no project folder: choose one to restore autosaves from")
            layer = self.corrections_layer()
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
        self.reset_choices()
        track = self._track(new)
        track.reviewed |= {int(z) for z in restored.edited_slices}
        self.corrections.value = new
        self.refresh_edits()
        notify.info(f"Restored the autosave of '{name}' from {stamp} as '{new.name}'")
        return new

    # ----------------------------------------------------------------- closing

    def shutdown(self) -> None:
        """Autosave the corrections once more and stop timers and connections (idempotent)."""
        if self._closed:
            return
        try:
            self.autosave_now()
        except Exception as exc:  # closing must not fail
            notify.report_exception(exc, "autosaving on close")
        self._closed = True
        for timer in (self._edits_timer, self._instances_timer, self._autosave_timer):
            timer.stop()
        self.plot.stop_timer()
        self.progress.close()
        for emitter, slot in self._connected:
            try:
                emitter.disconnect(slot)
            except (TypeError, ValueError, RuntimeError):
                pass
        self._connected.clear()
        try:
            self.dock.predict_tab.threshold.changed.disconnect(self._on_threshold_changed)
        except (TypeError, ValueError, RuntimeError):
            pass


# --------------------------------------------------------------------------- helpers

_CONVENTION_TEXT = {
    "dense": "dense mask (0 background, nonzero foreground): corrected slices are used whole",
    "sparse": "sparse (0 unlabeled, 1 background, 2 foreground): labelled pixels are used",
    "instances": "instance labels (nonzero = foreground)",
    "empty": "empty (nothing labelled)",
}


def _metrics_text(train_metrics: dict[str, Any], evaluation: dict[str, Any] | None) -> str:
    parts = []
    for key in ("loss", "val_loss", "val_dice", "val_rand_fscore"):
        value = train_metrics.get(key)
        if isinstance(value, (int, float)):
            parts.append(f"{key} {value:.3f}")
    if evaluation is not None:
        parts.append(f"GT Rand F {evaluation['rand_fscore']:.3f}, Dice {evaluation['dice']:.3f}")
    return ", ".join(parts)


def _group(title: str, widgets: list[QWidget]) -> QGroupBox:
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(4, 4, 4, 4)
    for widget in widgets:
        layout.addWidget(widget)
    return box


def _row(*widgets: QWidget) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    return row
