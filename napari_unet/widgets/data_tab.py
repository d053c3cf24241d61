"""Data tab: which layers to train on, validation, patch size and normalization."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, RadioButtons, SpinBox
from napari.layers import Image, Labels
from qtpy.QtWidgets import QVBoxLayout, QWidget

from napari_unet.engine.config import DataConfig, TrainConfig

from .layer_utils import check_same_grid, layer_choices, require_layer

if TYPE_CHECKING:
    import napari

__all__ = ["DataTab"]

VAL_FRACTION = "fraction of slices"
VAL_LAYERS = "separate layers"


class DataTab(QWidget):
    """Image/mask layer pickers that follow the layer list, validation and patch options.

    Parameters
    ----------
    viewer
        The napari viewer whose layers are offered.
    """

    def __init__(self, viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        data_defaults, train_defaults = DataConfig(), TrainConfig()
        self.image = ComboBox(
            label="Image",
            choices=self._images,
            nullable=False,
            tooltip="EM image layer (2D or a Z stack) to train on",
        )
        self.mask = ComboBox(
            label="Mask",
            choices=self._masks,
            tooltip="Mask layer: nonzero = the class to segment "
            "(0/1/2 = unlabeled/background/foreground for sparse scribbles)",
        )
        self.val_mode = RadioButtons(
            label="Validation",
            choices=[VAL_FRACTION, VAL_LAYERS],
            value=VAL_FRACTION,
            orientation="horizontal",
        )
        self.val_fraction = FloatSpinBox(
            label="Held-out fraction",
            min=0.0,
            max=0.9,
            step=0.05,
            value=data_defaults.val_fraction,
            tooltip="Fraction of the slices kept for validation",
        )
        self.val_image = ComboBox(label="Val image", choices=self._images)
        self.val_mask = ComboBox(label="Val mask", choices=self._masks)
        self.patch_size = SpinBox(
            label="Patch size",
            min=16,
            max=4096,
            step=16,
            value=train_defaults.patch_size,
            tooltip="Side of the square training patches (pixels); "
            "a multiple of 2**depth of the network",
        )
        self.normalization = ComboBox(
            label="Normalization",
            choices=["stack", "slice"],
            value=data_defaults.normalization,
            tooltip="Percentile normalization over the whole stack or slice by slice",
        )
        low, high = data_defaults.percentiles
        self.percentile_low = FloatSpinBox(
            label="Low percentile", min=0.0, max=50.0, step=0.1, value=low
        )
        self.percentile_high = FloatSpinBox(
            label="High percentile", min=50.0, max=100.0, step=0.1, value=high
        )
        self.summary = Label(value="")
        self.form = Container(
            widgets=[
                self.image,
                self.mask,
                self.val_mode,
                self.val_fraction,
                self.val_image,
                self.val_mask,
                self.patch_size,
                self.normalization,
                self.percentile_low,
                self.percentile_high,
                self.summary,
            ],
            labels=True,
        )
        self.val_mode.changed.connect(self._update_visibility)
        for picker in (self.image, self.mask):
            picker.changed.connect(self._update_summary)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addStretch(1)
        self._update_visibility()
        self._update_summary()

    # ----------------------------------------------------------------- choices

    def _images(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return layer_choices(self.viewer, [Image])

    def _masks(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return layer_choices(self.viewer, [Labels, Image])

    def reset_choices(self) -> None:
        """Refresh the layer pickers from the viewer's layer list."""
        self.form.reset_choices()
        self._update_summary()

    def _update_visibility(self) -> None:
        explicit = self.val_mode.value == VAL_LAYERS
        self.val_fraction.visible = not explicit
        self.val_image.visible = explicit
        self.val_mask.visible = explicit

    def _update_summary(self) -> None:
        image = self.image.value
        if image is None:
            self.summary.value = "Open an EM stack and its mask (or File > Open Sample)."
            return
        shape = tuple(image.data.shape)
        self.summary.value = f"{image.name}: {' x '.join(map(str, shape))} {image.data.dtype}"

    # ----------------------------------------------------------------- values

    @property
    def explicit_validation(self) -> bool:
        """True when validation uses the separate val image/mask layers."""
        return self.val_mode.value == VAL_LAYERS

    def selected_layers(self) -> dict[str, Any]:
        """The chosen layers, checked: ``image``, ``mask``, ``val_image``, ``val_mask``.

        Raises
        ------
        UserInputError
            If a picker is empty or an image and its mask differ in shape.
        """
        image = require_layer(self.image.value, "an image layer on the Data tab")
        mask = require_layer(self.mask.value, "a mask layer on the Data tab")
        if mask is image:
            from napari_unet.engine.errors import UserInputError

            raise UserInputError("the image and the mask must be two different layers")
        check_same_grid(image, mask)
        layers: dict[str, Any] = {"image": image, "mask": mask, "val_image": None, "val_mask": None}
        if self.explicit_validation:
            val_image = require_layer(self.val_image.value, "a validation image layer")
            val_mask = require_layer(self.val_mask.value, "a validation mask layer")
            check_same_grid(val_image, val_mask)
            layers.update(val_image=val_image, val_mask=val_mask)
        return layers
