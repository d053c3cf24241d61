"""Corrections section of the Correct & retrain tab: which slices the user corrected.

The section tracks which slices of a corrections Labels layer (usually
``<image> prediction``) the user changed, by comparing the layer with a copy
taken when the prediction appeared; slices can also be marked as reviewed.
It also shows the layer's annotation convention and converts it to the
sparse one (0 unlabeled, 1 background, 2 foreground).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
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
    layer_choices,
    layer_in_viewer,
    require_layer,
    snapshot,
)
from .loop_section import LoopSection, row

if TYPE_CHECKING:
    import napari

__all__ = [
    "SPARSE_ALL",
    "SPARSE_CURRENT",
    "SPARSE_LISTED",
    "CorrectionsPanel",
    "EditTrack",
    "changed_slices",
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


class CorrectionsPanel(LoopSection):
    """Corrections and image pickers, convention, sparse conversion and the edited slices.

    Parameters
    ----------
    viewer
        The napari viewer whose layers are offered and tracked.
    """

    def __init__(self, viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__("Corrections", parent)
        self.viewer = viewer
        self._tracks: dict[int, EditTrack] = {}
        self._connected: list[tuple[Any, Any]] = []
        self._known_layers: set[int] = {id(layer) for layer in viewer.layers}
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
        new = [layer for layer in self.viewer.layers if id(layer) not in self._known_layers]
        self._known_layers = {id(layer) for layer in self.viewer.layers}
        self.corrections_form.reset_choices()
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
            self.track(layer)
            if layer.name.endswith(" prediction"):
                source = layer.name[: -len(" prediction")]
                if source in self.viewer.layers and isinstance(self.viewer.layers[source], Image):
                    self.image.value = self.viewer.layers[source]
        self.refresh_edits()

    # ----------------------------------------------------------------- edit tracking

    def track(self, layer: Labels) -> EditTrack:
        """The EditTrack of `layer`; the first call takes its baseline copy."""
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
        return changed_slices(np.asarray(snapshot(layer)), self.track(layer).baseline)

    def reviewed_slices(self, layer: Labels | None = None) -> list[int]:
        """Slices marked as reviewed (or restored as edited) on the corrections layer."""
        layer = layer if layer is not None else self.corrections_layer()
        return sorted(self.track(layer).reviewed) if layer is not None else []

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
        self.track(layer).reviewed.add(int(z))
        self.refresh_edits()
        return int(z)

    def accept_baseline(self) -> None:
        """Take a new copy of the corrections layer (forget edits and reviewed marks)."""
        layer = self.corrections_layer()
        if layer is None:
            return
        track = self.track(layer)
        track.baseline = np.array(snapshot(layer))
        track.reviewed.clear()
        self.refresh_edits()

    def adopt(self, layer: Labels, reviewed: set[int]) -> None:
        """Make `layer` the corrections layer with `reviewed` counted as corrected."""
        self.track(layer).reviewed |= reviewed
        self.corrections.value = layer
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

    # ----------------------------------------------------------------- closing

    def shutdown(self) -> None:
        """Stop refreshing and disconnect from the tracked layers."""
        self._closed = True
        self._edits_timer.stop()
        for emitter, slot in self._connected:
            try:
                emitter.disconnect(slot)
            except (TypeError, ValueError, RuntimeError):
                pass
        self._connected.clear()
