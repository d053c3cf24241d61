"""Augmentation tab: every engine AugmentConfig option, and a preview of its effect."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, Container, FloatSpinBox, PushButton, SpinBox
from qtpy.QtWidgets import QGroupBox, QScrollArea, QVBoxLayout, QWidget

from napari_unet.engine.config import AugmentConfig

from . import notify
from .layer_utils import (
    add_or_update_layer,
    check_same_grid,
    current_slice,
    layer_stack_shape,
    require_layer,
)
from .workers import Job, preview_job, start_job

if TYPE_CHECKING:
    from .data_tab import DataTab
    from .dock_context import DockContext

__all__ = ["AugmentTab"]


def _group(title: str, widgets: list[Any]) -> QGroupBox:
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(4, 4, 4, 4)
    layout.addWidget(Container(widgets=widgets, labels=True).native)
    return box


class AugmentTab(QWidget):
    """All augmentation options (defaults from the engine's AugmentConfig) and a
    Preview button that adds augmented patches of the current slice as layers.

    Parameters
    ----------
    context
        The dock's shared state (viewer, config builder, jobs, status).
    data_tab
        The Data tab (the image and mask layers to augment).
    """

    def __init__(
        self, context: DockContext, data_tab: DataTab, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.context = context
        self.data_tab = data_tab
        d = AugmentConfig()
        a, e, i = d.affine, d.elastic, d.intensity
        self.enabled = CheckBox(text="Augment training patches", value=d.enabled)
        self.flips = CheckBox(text="Random flips", value=d.flips)
        self.rot90 = CheckBox(text="Random 90° rotations", value=d.rot90)

        self.affine_enabled = CheckBox(text="Affine transform", value=a.enabled)
        self.affine_probability = FloatSpinBox(
            label="Probability", min=0, max=1, step=0.05, value=a.probability
        )
        self.rotation = FloatSpinBox(
            label="Max rotation (°)", min=0, max=180, step=5, value=a.rotation_degrees
        )
        self.shift = FloatSpinBox(
            label="Max shift (fraction)", min=0, max=0.5, step=0.01, value=a.shift
        )
        self.shear = FloatSpinBox(
            label="Max shear (°)", min=0, max=45, step=1, value=a.shear_degrees
        )
        self.zoom_min = FloatSpinBox(label="Zoom min", min=0.2, max=1.0, step=0.05, value=a.zoom[0])
        self.zoom_max = FloatSpinBox(label="Zoom max", min=1.0, max=5.0, step=0.05, value=a.zoom[1])

        self.elastic_enabled = CheckBox(text="Elastic deformation", value=e.enabled)
        self.elastic_probability = FloatSpinBox(
            label="Probability", min=0, max=1, step=0.05, value=e.probability
        )
        self.grid_points = SpinBox(
            label="Grid points",
            min=2,
            max=32,
            value=e.grid_points,
            tooltip="Control points per axis of the displacement grid",
        )
        self.sigma = FloatSpinBox(
            label="Sigma (px)",
            min=0,
            max=100,
            step=1,
            value=e.sigma_pixels,
            tooltip="Std of the control-point displacements (pixels)",
        )

        self.intensity_enabled = CheckBox(text="Intensity changes (image only)", value=i.enabled)
        self.brightness = FloatSpinBox(
            label="Max brightness shift", min=0, max=1, step=0.01, value=i.brightness
        )
        self.contrast_min = FloatSpinBox(
            label="Contrast min", min=0.1, max=1, step=0.05, value=i.contrast[0]
        )
        self.contrast_max = FloatSpinBox(
            label="Contrast max", min=1, max=5, step=0.05, value=i.contrast[1]
        )
        self.gamma_min = FloatSpinBox(
            label="Gamma min", min=0.1, max=1, step=0.05, value=i.gamma[0]
        )
        self.gamma_max = FloatSpinBox(label="Gamma max", min=1, max=5, step=0.05, value=i.gamma[1])
        self.noise_std = FloatSpinBox(
            label="Max noise std", min=0, max=1, step=0.01, value=i.noise_std
        )
        self.noise_probability = FloatSpinBox(
            label="Noise probability", min=0, max=1, step=0.05, value=i.noise_probability
        )
        self.blur_sigma = FloatSpinBox(
            label="Max blur sigma", min=0, max=5, step=0.1, value=i.blur_sigma
        )
        self.blur_probability = FloatSpinBox(
            label="Blur probability", min=0, max=1, step=0.05, value=i.blur_probability
        )

        self.preview_count = SpinBox(label="Previews", min=1, max=16, value=4)
        self.preview_button = PushButton(text="Preview on the current slice")
        self.preview_button.changed.connect(self._on_preview_clicked)
        self._seed = 0
        self.job: Job | None = None

        self.affine_group = _group(
            "Affine",
            [
                self.affine_enabled,
                self.affine_probability,
                self.rotation,
                self.shift,
                self.shear,
                self.zoom_min,
                self.zoom_max,
            ],
        )
        self.elastic_group = _group(
            "Elastic",
            [self.elastic_enabled, self.elastic_probability, self.grid_points, self.sigma],
        )
        self.intensity_group = _group(
            "Intensity",
            [
                self.intensity_enabled,
                self.brightness,
                self.contrast_min,
                self.contrast_max,
                self.gamma_min,
                self.gamma_max,
                self.noise_std,
                self.noise_probability,
                self.blur_sigma,
                self.blur_probability,
            ],
        )

        inner = QWidget()
        inner_layout = QVBoxLayout(inner)
        inner_layout.addWidget(Container(widgets=[self.enabled, self.flips, self.rot90]).native)
        for box in (self.affine_group, self.elastic_group, self.intensity_group):
            inner_layout.addWidget(box)
        self._inner_layout = inner_layout
        self._advanced_index = inner_layout.count()
        inner_layout.addWidget(
            Container(widgets=[self.preview_count, self.preview_button], labels=True).native
        )
        inner_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)

        for toggle in (
            self.enabled,
            self.affine_enabled,
            self.elastic_enabled,
            self.intensity_enabled,
        ):
            toggle.changed.connect(self._update_enabled)
        self._update_enabled()

    def add_advanced(self, panel: QWidget) -> None:
        """Place the generated Advanced section (augmentation fields without a widget here)."""
        self._inner_layout.insertWidget(self._advanced_index, panel)

    def _update_enabled(self) -> None:
        on = self.enabled.value
        for widget in (
            self.flips,
            self.rot90,
            self.affine_enabled,
            self.elastic_enabled,
            self.intensity_enabled,
        ):
            widget.enabled = on
        groups = (
            (
                self.affine_enabled,
                [
                    self.affine_probability,
                    self.rotation,
                    self.shift,
                    self.shear,
                    self.zoom_min,
                    self.zoom_max,
                ],
            ),
            (self.elastic_enabled, [self.elastic_probability, self.grid_points, self.sigma]),
            (
                self.intensity_enabled,
                [
                    self.brightness,
                    self.contrast_min,
                    self.contrast_max,
                    self.gamma_min,
                    self.gamma_max,
                    self.noise_std,
                    self.noise_probability,
                    self.blur_sigma,
                    self.blur_probability,
                ],
            ),
        )
        for toggle, widgets in groups:
            for widget in widgets:
                widget.enabled = on and toggle.value

    # ----------------------------------------------------------------- preview

    def _on_preview_clicked(self, *_: Any) -> None:
        self.preview()

    def preview(self) -> Job | None:
        """Start computing augmented versions of the current slice.

        Adds (or updates) ``<image> augmented`` (Image, ``(n, P, P)``) and
        ``<image> augmented mask`` (Labels) beside the image when done.
        Returns the job, or None if the inputs were not usable (a notification
        says why).
        """
        from napari_unet.engine.errors import UserInputError

        if self.job is not None and self.job.running:
            notify.info("a preview is already being computed")
            return None
        viewer = self.context.viewer
        try:
            image = require_layer(self.data_tab.image.value, "an image layer on the Data tab")
            mask = self.data_tab.mask.value
            config = self.context.build_config()
            z = current_slice(viewer, image)
            image2d = _slice(image, z)
            mask2d = None
            if mask is not None:
                check_same_grid(image, mask)
                mask2d = _slice(mask, z)
        except UserInputError as exc:
            notify.error(str(exc))
            return None
        self._seed += 1
        name = image.name
        width = layer_stack_shape(image)[2]
        translate = (0.0, 0.0, float(width) * 1.05)

        def done(result: tuple[np.ndarray, np.ndarray]) -> None:
            images, masks = result
            add_or_update_layer(
                viewer,
                f"{name} augmented",
                images,
                "image",
                contrast_limits=(0.0, 1.0),
                translate=translate,
            )
            add_or_update_layer(
                viewer, f"{name} augmented mask", masks, "labels", opacity=0.4, translate=translate
            )
            self.context.status(f"{len(images)} augmented patches of slice {z} added")

        self.preview_button.enabled = False
        self.context.status("computing the augmentation preview (TensorFlow)…")
        self.job = start_job(
            self.context.jobs,
            "preview",
            preview_job,
            image2d,
            mask2d,
            config,
            int(self.preview_count.value),
            self._seed,
            on_returned=done,
            on_errored=lambda exc: notify.report_exception(exc, "the augmentation preview"),
            on_finished=self._preview_finished,
        )
        return self.job

    def _preview_finished(self) -> None:
        self.preview_button.enabled = True


def _slice(layer: Any, z: int) -> np.ndarray:
    """One 2D slice of a layer as a grey numpy array."""
    from napari_unet.engine.data.preprocess import as_stack

    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    rgb = bool(getattr(layer, "rgb", False))
    if data.ndim - int(rgb) == 3:
        return as_stack(np.asarray(data[z]), rgb=rgb)[0]
    return as_stack(np.asarray(data), rgb=rgb)[z]
