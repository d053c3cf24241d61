"""Correct & retrain tab: the predict → correct → fine-tune → compare loop.

The tab stacks one section per step, each in its own module:

- :mod:`.loop_corrections`: the corrections layer, which slices were corrected
  or reviewed, its convention and the conversion to sparse labels;
- :mod:`.loop_finetune`: fine-tuning on those slices, progress and loss plot;
- :mod:`.loop_versions`: the project folder and its model versions;
- :mod:`.loop_metrics`: per-slice EM metrics or uncertainty (:mod:`.metrics_table`);
- :mod:`.loop_instances`: instance labels from the probability;
- :mod:`.loop_autosave`: timed autosave of the corrections, save on close, restore.

This module only assembles them and keeps the tab's public methods. It reaches
the dock through a :class:`~.dock_context.DockContext` and the Predict tab through
a :class:`~.dock_context.Predictor`. Nothing here imports TensorFlow; every slot
that touches Qt or layers runs on the main thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

from .loop_autosave import AutosavePanel
from .loop_corrections import CorrectionsPanel
from .loop_edits import EditTracker
from .loop_finetune import FinetunePanel, finetune_job
from .loop_instances import InstancesPanel
from .loop_metrics import MetricsPanel
from .loop_section import LoopSection
from .loop_versions import VersionsPanel

if TYPE_CHECKING:
    from napari.layers import Image, Labels

    from napari_unet.engine.autosave import Autosaver
    from napari_unet.engine.model.versions import VersionStore

    from .dock_context import DockContext, Predictor
    from .workers import Job

__all__ = ["LoopTab", "finetune_job"]


class LoopTab(QWidget):
    """Corrections, fine-tuning, versions, metrics, instances and autosave.

    Parameters
    ----------
    context
        The dock's shared state (viewer, jobs, current model folder, status).
    predictor
        The Predict tab (threshold, image picker, last probability, predict).

    Attributes
    ----------
    corrections_panel, finetune_panel, versions_panel
        The Corrections, Fine-tune and Model versions sections.
    metrics_panel, instances_panel, autosave_panel
        The Metrics, Instances and Autosave sections. The sections' widgets are
        also attributes of the tab (``corrections``, ``budget``, ``versions_table``…).
    """

    def __init__(
        self, context: DockContext, predictor: Predictor, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.context = context
        self.viewer = context.viewer
        self._closed = False

        edits = getattr(predictor, "edits", None) or EditTracker(context.jobs, self)
        corrections = self.corrections_panel = CorrectionsPanel(self.viewer, edits, context.jobs)
        self.metrics_panel = MetricsPanel(
            context, predictor, corrections.image_layer, on_evaluated=self.refresh_versions
        )
        versions = self.versions_panel = VersionsPanel(
            context, predictor, corrections.image_layer, self.metrics_panel.evaluation
        )
        self.finetune_panel = FinetunePanel(context, corrections, versions, predictor)
        self.instances_panel = InstancesPanel(
            context, predictor, self.metrics_panel.probability_layer
        )
        self.autosave_panel = AutosavePanel(
            context, corrections, versions.project_dir, self.reset_choices
        )
        versions.project_folder.changed.connect(lambda *_: self._on_project_changed())
        self.metrics_panel.metrics_table.slice_activated.connect(corrections.jump_to_slice)
        self._expose_widgets()

        content = QWidget()
        layout = QVBoxLayout(content)
        for section in self._sections():
            layout.addWidget(section)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.refresh_versions()

    def _sections(self) -> tuple[LoopSection, ...]:
        return (
            self.corrections_panel,
            self.finetune_panel,
            self.versions_panel,
            self.metrics_panel,
            self.instances_panel,
            self.autosave_panel,
        )

    def _expose_widgets(self) -> None:
        """The sections' widgets as attributes of the tab (``dock.loop_tab.budget``…)."""
        c, f, v = self.corrections_panel, self.finetune_panel, self.versions_panel
        m, i, a = self.metrics_panel, self.instances_panel, self.autosave_panel
        self.corrections, self.image, self.sparse_slices = c.corrections, c.image, c.sparse_slices
        self.convention_label, self.edits_list = c.convention_label, c.edits_list
        self.sparse_button, self.reviewed_button = c.sparse_button, c.reviewed_button
        self.baseline_button = c.baseline_button
        self.budget, self.auto_predict, self.plot = f.budget, f.auto_predict, f.plot
        self.finetune_button, self.stop_button = f.finetune_button, f.stop_button
        self.progress_bar, self.status_label, self.progress = (
            f.progress_bar,
            f.status_label,
            f.progress,
        )
        self.project_folder, self.versions_table = v.project_folder, v.versions_table
        self.use_button, self.predict_button = v.use_button, v.predict_button
        self.refresh_versions_button = v.refresh_versions_button
        self.truth, self.metrics_table, self.metrics_label = (
            m.truth,
            m.metrics_table,
            m.metrics_label,
        )
        self.metrics_button, self.rank_button = m.metrics_button, m.rank_button
        self.min_size, self.fill_holes = i.min_size, i.fill_holes
        self.instances_button = i.instances_button
        self.autosave_minutes, self.autosave_label = a.autosave_minutes, a.autosave_label
        self.autosave_button, self.restore_button = a.autosave_button, a.restore_button

    # ----------------------------------------------------------------- jobs and results

    @property
    def job(self) -> Job | None:
        """The last fine-tuning job."""
        return self.finetune_panel.job

    @property
    def last_result(self) -> Any:
        """The TrainResult of the last fine-tuning run (None while running)."""
        return self.finetune_panel.last_result

    @property
    def metrics_job(self) -> Job | None:
        """The last metrics or ranking job."""
        return self.metrics_panel.metrics_job

    @property
    def instances_job(self) -> Job | None:
        """The last instances job."""
        return self.instances_panel.instances_job

    @property
    def instances_layer(self) -> Any:
        """The ``<image> instances`` layer written last, or None."""
        return self.instances_panel.instances_layer

    # ----------------------------------------------------------------- layers

    def reset_choices(self) -> None:
        """Refresh the layer pickers; a newly added ``<image> prediction`` layer is
        selected as the corrections layer (and its copy taken)."""
        if self._closed:
            return
        self.metrics_panel.reset_choices()
        self.corrections_panel.reset_choices()

    def corrections_layer(self) -> Labels | None:
        """The chosen corrections layer, if it is still in the viewer."""
        return self.corrections_panel.corrections_layer()

    def image_layer(self) -> Image | None:
        """The chosen image layer, if it is still in the viewer."""
        return self.corrections_panel.image_layer()

    def probability_layer(self) -> Image:
        """``<image> probability`` of the chosen image (else the Predict tab's last one)."""
        return self.metrics_panel.probability_layer()

    # ----------------------------------------------------------------- corrections

    def edited_slices(self, layer: Labels | None = None) -> list[int]:
        """Slices of the corrections layer that differ from the copy taken at prediction."""
        return self.corrections_panel.edited_slices(layer)

    def reviewed_slices(self, layer: Labels | None = None) -> list[int]:
        """Slices marked as reviewed (or restored as edited) on the corrections layer."""
        return self.corrections_panel.reviewed_slices(layer)

    def training_slices(self, layer: Labels | None = None) -> list[int]:
        """Corrected and reviewed slices: what fine-tuning learns from."""
        return self.corrections_panel.training_slices(layer)

    def mark_reviewed(self, z: int | None = None) -> int | None:
        """Mark slice `z` (default: the one shown) of the corrections layer as reviewed."""
        return self.corrections_panel.mark_reviewed(z)

    def accept_baseline(self) -> None:
        """Take a new copy of the corrections layer (forget edits and reviewed marks)."""
        self.corrections_panel.accept_baseline()

    def refresh_edits(self) -> None:
        """Update the convention text and the list of corrected / reviewed slices."""
        self.corrections_panel.refresh_edits()

    def convention(self) -> str:
        """``dense``, ``sparse``, ``instances`` or ``empty`` for the corrections layer."""
        return self.corrections_panel.convention()

    def jump_to_slice(self, z: int) -> None:
        """Show slice `z` in the viewer."""
        self.corrections_panel.jump_to_slice(z)

    def convert_to_sparse(self) -> Labels | None:
        """Add ``<name> sparse``: the corrections layer in the sparse convention."""
        return self.corrections_panel.convert_to_sparse()

    # ----------------------------------------------------------------- fine-tuning

    def finetune(self) -> Job | None:
        """Fine-tune the current model on the corrected and reviewed slices."""
        return self.finetune_panel.finetune()

    def stop(self) -> None:
        """Stop fine-tuning after the current batch (the new version is still written)."""
        self.finetune_panel.stop()

    # ----------------------------------------------------------------- versions

    def project_dir(self) -> Path | None:
        """Folder of the model versions (chosen, else the current model's parent)."""
        return self.versions_panel.project_dir()

    def version_store(self) -> VersionStore | None:
        """The VersionStore of :meth:`project_dir` (None without a project)."""
        return self.versions_panel.version_store()

    def current_model_dir(self) -> Path:
        """The model to fine-tune (raises UserInputError if there is none)."""
        return self.versions_panel.current_model_dir()

    def refresh_versions(self) -> None:
        """Fill the versions table from the project folder."""
        self.versions_panel.refresh_versions()

    def version_names(self) -> list[str]:
        """Names in the versions table, top to bottom."""
        return self.versions_panel.version_names()

    def use_version(self, name: str | None = None) -> Path | None:
        """Make version `name` (default: the selected row) current and the prediction model."""
        return self.versions_panel.use_version(name)

    def predict_with_version(self, name: str | None = None) -> Job | None:
        """Use version `name` (default: selected) and predict the image layer with it."""
        return self.versions_panel.predict_with_version(name)

    def _on_project_changed(self) -> None:
        self.autosave_panel.forget_autosaver()
        self.refresh_versions()

    # ----------------------------------------------------------------- metrics, instances

    def compute_metrics(self) -> Job | None:
        """Per-slice and overall metrics of the probability layer against the ground truth."""
        return self.metrics_panel.compute_metrics()

    def rank_uncertainty(self) -> Job | None:
        """Rank the slices by the model's uncertainty (no ground truth needed)."""
        return self.metrics_panel.rank_uncertainty()

    def make_instances(self) -> Job | None:
        """``<image> instances``: connected components of the thresholded probability."""
        return self.instances_panel.make_instances()

    # ----------------------------------------------------------------- autosave

    def autosaver(self) -> Autosaver:
        """The Autosaver of the project folder (or of ``~/napari-unet-models``)."""
        return self.autosave_panel.autosaver()

    def autosave_now(self, force: bool = False) -> Job | None:
        """Save the corrections layer in a worker if it changed (the job, or None);
        the saved version is then ``autosave_panel.last_version``."""
        return self.autosave_panel.autosave_now(force)

    def restore_autosave(self) -> Job | None:
        """Add the latest autosave as a new Labels layer in a worker (the job); the
        layer is then ``autosave_panel.restored_layer`` (its edited slices count)."""
        return self.autosave_panel.restore_autosave()

    # ----------------------------------------------------------------- closing

    def shutdown(self) -> None:
        """Autosave the corrections once more and stop timers and connections (idempotent)."""
        if self._closed:
            return
        self.autosave_panel.save_on_close()
        self._closed = True
        for section in self._sections():
            section.shutdown()
