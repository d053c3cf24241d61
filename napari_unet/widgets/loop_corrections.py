"""Corrections section of the Correct & retrain tab: which slices the user corrected.

The section shows which slices of a corrections Labels layer (usually
``<image> prediction``) the user changed, as the Predict tab's
:class:`~.loop_edits.EditTracker` knows them (per-slice digests against the
prediction, no copy of the volume); slices can also be marked as reviewed.
It also shows the layer's annotation convention (from a sample of lazy layers,
in a worker) and converts it to the sparse one (0 unlabeled, 1 background,
2 foreground).
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container
from napari.layers import Image, Labels
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel, QListWidget, QPushButton, QWidget

from napari_unet.engine.errors import UserInputError

from . import notify
from .layer_utils import (
    add_or_update_layer,
    current_slice,
    find_layer,
    is_lazy_layer,
    layer_choices,
    layer_key,
    require_layer,
    stack_view,
)
from .loop_edits import EditTracker
from .loop_section import LoopSection, row

if TYPE_CHECKING:
    import napari

    from .workers import JobRegistry

__all__ = [
    "SPARSE_ALL",
    "SPARSE_CURRENT",
    "SPARSE_LISTED",
    "CorrectionsPanel",
    "label_values",
]

SPARSE_CURRENT = "current slice"
SPARSE_LISTED = "corrected + reviewed slices"
SPARSE_ALL = "all slices"

_CONVENTION_TEXT = {
    "dense": "dense mask (0 background, nonzero foreground): corrected slices are used whole",
    "sparse": "sparse (0 unlabeled, 1 background, 2 foreground): labelled pixels are used",
    "instances": "instance labels (nonzero = foreground)",
    "empty": "empty (nothing labelled)",
}


#: Pixels of an in-memory layer read whole for its convention (beyond: a sample).
_WHOLE_PIXELS = 2**24


def label_values(data: Any, slices: list[int]) -> np.ndarray:
    """The values of a labels stack: all of a small in-memory one; else those of
    `slices` (the painted ones, at most 8) plus a strided sample of the stack.

    Lazy stacks are read slice by slice (call this from a worker).
    """
    view = stack_view(data)
    if isinstance(view, np.ndarray) and view.size <= _WHOLE_PIXELS:
        return _unique(view)
    n = int(view.shape[0])
    chosen = sorted(set(slices))[:8] or [n // 2]
    parts = [_unique(np.asarray(view[z])) for z in chosen]
    if isinstance(view, np.ndarray):
        step = max(1, int(np.ceil((view.size / _WHOLE_PIXELS) ** 0.5)))
        parts.append(_unique(view[:, ::step, ::step]))
    else:
        parts += [_unique(np.asarray(view[z])[::4, ::4]) for z in (0, n - 1) if z not in chosen]
    return np.unique(np.concatenate(parts))


def _unique(values: np.ndarray) -> np.ndarray:
    flat = np.asarray(values).reshape(-1)
    if flat.dtype.kind in "ub" and flat.dtype.itemsize <= 2:
        return np.flatnonzero(np.bincount(flat.astype(np.intp, copy=False)))  # O(n), no sort
    return np.unique(flat)


def convention_job(data: Any, slices: list[int]) -> str:
    """The annotation convention of a (lazy) labels stack (runs in a worker)."""
    from napari_unet.engine.inference.postprocess import annotation_convention

    return annotation_convention(label_values(data, slices))


class CorrectionsPanel(LoopSection):
    """Corrections and image pickers, convention, sparse conversion and the edited slices.

    Parameters
    ----------
    viewer
        The napari viewer whose layers are offered and tracked.
    edits
        The edit tracker shared with the Predict tab.
    jobs
        The dock's job registry (conventions of lazy layers are found in a worker).
    """

    def __init__(
        self,
        viewer: napari.Viewer,
        edits: EditTracker,
        jobs: JobRegistry,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Corrections", parent)
        self.viewer = viewer
        self.edits = edits
        self.jobs = jobs
        self._known_layers: set[Hashable] = {layer_key(layer) for layer in viewer.layers}
        self._conventions: dict[Hashable, tuple[str, str]] = {}  # key -> (state, convention)
        self._convention_jobs: set[Hashable] = set()
        self._closed = False

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
        self.add_widgets(
            [
                self.corrections_form.native,
                self.convention_label,
                self.sparse_button,
                row(self.reviewed_button, self.baseline_button),
                QLabel("Corrected / reviewed slices (double-click to show):"),
                self.edits_list,
            ]
        )

        self.sparse_button.clicked.connect(lambda *_: self.convert_to_sparse())
        self.reviewed_button.clicked.connect(lambda *_: self.mark_reviewed())
        self.baseline_button.clicked.connect(lambda *_: self.accept_baseline())
        self.corrections.changed.connect(self._on_corrections_changed)
        self._edits_timer = QTimer(self)  # paint events come in bursts: refresh once
        self._edits_timer.setSingleShot(True)
        self._edits_timer.setInterval(300)
        self._edits_timer.timeout.connect(self.refresh_edits)
        self.edits.changed.connect(self._edits_timer.start)
        self._on_corrections_changed()

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
        new = [layer for layer in self.viewer.layers if layer_key(layer) not in self._known_layers]
        self._known_layers = {layer_key(layer) for layer in self.viewer.layers}
        self.corrections_form.reset_choices()
        predictions = [
            layer
            for layer in new
            if isinstance(layer, Labels) and layer.name.endswith(" prediction")
        ]
        if predictions:
            self.corrections.value = predictions[-1]
        self.edits.forget(self.viewer.layers)
        self._on_corrections_changed()

    def corrections_layer(self) -> Labels | None:
        """The chosen corrections layer, if it is still in the viewer."""
        return find_layer(self.viewer, self.corrections.value)

    def image_layer(self) -> Image | None:
        """The chosen image layer, if it is still in the viewer."""
        return find_layer(self.viewer, self.image.value)

    def _on_corrections_changed(self, *_: Any) -> None:
        layer = self.corrections_layer()
        if layer is not None:
            self.track(layer)
            if layer.name.endswith(" prediction"):
                source = layer.name[: -len(" prediction")]
                if source in self.viewer.layers and isinstance(self.viewer.layers[source], Image):
                    self.image.value = self.viewer.layers[source]
        self.refresh_edits()

    # ----------------------------------------------------------------- edit tracking

    def track(self, layer: Labels) -> Any:
        """The tracker's LayerEdits of `layer` (tracked from now on)."""
        return self.edits.track(layer)

    def edited_slices(self, layer: Labels | None = None) -> list[int]:
        """Slices of the corrections layer that differ from the prediction."""
        layer = layer if layer is not None else self.corrections_layer()
        return [] if layer is None else self.edits.edited_slices(layer)

    def reviewed_slices(self, layer: Labels | None = None) -> list[int]:
        """Slices marked as reviewed (or restored as edited) on the corrections layer."""
        layer = layer if layer is not None else self.corrections_layer()
        return sorted(self.edits.track(layer).reviewed) if layer is not None else []

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
        self.edits.mark_reviewed(layer, [int(z)])
        self.refresh_edits()
        return int(z)

    def accept_baseline(self) -> None:
        """Take the corrections layer as it is now as its prediction (forget edits and
        reviewed marks)."""
        layer = self.corrections_layer()
        if layer is None:
            return
        self.edits.accept_baseline(layer)
        self.refresh_edits()

    def adopt(self, layer: Labels, reviewed: set[int]) -> None:
        """Make `layer` the corrections layer with `reviewed` counted as corrected."""
        self.edits.mark_reviewed(layer, reviewed)
        self.corrections.value = find_layer(self.viewer, layer) or layer
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
        convention = self.convention()
        text = _CONVENTION_TEXT.get(convention, "(being read…)")
        self.convention_label.setText(f"Convention: {text}")
        edited, reviewed = set(self.edited_slices(layer)), set(self.reviewed_slices(layer))
        for z in sorted(edited | reviewed):
            what = " + ".join(
                w for w, s in (("corrected", edited), ("reviewed", reviewed)) if z in s
            )
            self.edits_list.addItem(f"slice {z}: {what}")

    def convention(self) -> str:
        """``dense``, ``sparse``, ``instances`` or ``empty`` for the corrections layer
        (a lazy layer: from a sample read in a worker; ``""`` until it is known)."""
        layer = self.corrections_layer()
        if layer is None:
            return ""
        edits = self.edits.track(layer)
        key, state = layer_key(layer), edits.state()
        known = self._conventions.get(key)
        if known is not None and known[0] == state:
            return known[1]
        painted = sorted(edits.painted)
        if not is_lazy_layer(layer):
            convention = convention_job(layer.data, painted)
            self._conventions[key] = (state, convention)
            return convention
        if key not in self._convention_jobs:
            self._convention_jobs.add(key)

            def done(convention: str) -> None:
                self._conventions[key] = (state, convention)
                self._edits_timer.start()

            from .workers import start_job

            start_job(
                self.jobs,
                "convention",
                convention_job,
                stack_view(layer.data),
                painted,
                on_returned=done,
                on_finished=lambda: self._convention_jobs.discard(key),
            )
        return known[1] if known is not None else ""

    def _on_edit_double_clicked(self, item: Any) -> None:
        match = re.match(r"slice (\d+)", item.text())
        if match:
            self.jump_to_slice(int(match.group(1)))

    def jump_to_slice(self, z: int) -> None:
        """Show slice `z` in the viewer."""
        if self.viewer.dims.ndim >= 3:
            self.viewer.dims.set_current_step(0, int(z))

    # ----------------------------------------------------------------- sparse conversion

    def convert_to_sparse(self) -> Labels | None:
        """Add ``<name> sparse``: the corrections layer in the sparse convention,
        labelled only on the chosen slices (the others 0 = unlabeled)."""
        from napari_unet.engine.inference.postprocess import (
            annotation_convention,
            to_sparse_annotation,
        )

        try:
            layer = require_layer(self.corrections_layer(), "a corrections layer")
            if is_lazy_layer(layer):
                raise UserInputError(
                    f"{layer.name!r} is read lazily from disk; convert a layer held in memory"
                )
            data = np.asarray(layer.data)
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

    # ----------------------------------------------------------------- closing

    def shutdown(self) -> None:
        """Stop refreshing and tracking edits."""
        self._closed = True
        self._edits_timer.stop()
        try:
            self.edits.changed.disconnect(self._edits_timer.start)
        except (TypeError, RuntimeError):
            pass
        self.edits.shutdown()
