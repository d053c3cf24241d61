"""Data tab: which layers to train on, validation, patch size and normalization.

The mask picker offers Labels layers first and never the chosen image layer
itself. The data files named by a loaded config are listed under the pickers,
with a button that opens them as layers (see :mod:`.config_io`); the data
section's other fields are in the generated Advanced section.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from magicgui.widgets import (
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    PushButton,
    RadioButtons,
    SpinBox,
)
from napari.layers import Image, Labels
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from napari_unet.engine.config import DataConfig, TrainConfig

from .layer_utils import check_same_grid, layer_choices, require_layer, same_layer

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
            choices=list(get_args(DataConfig.model_fields["normalization"].annotation)),
            value=data_defaults.normalization,
            tooltip="Percentile normalization over the whole stack or slice by slice "
            "('none': the data is already normalized)",
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
        self.image.changed.connect(self._image_changed)
        self.val_image.changed.connect(lambda *_: self.val_mask.reset_choices())
        self.mask.changed.connect(self._update_summary)
        self._mask_chosen = False
        self.mask.native.activated.connect(self._on_mask_activated)
        self.config_data_label = QLabel("")
        self.config_data_label.setWordWrap(True)
        self.open_data_button = PushButton(text="Open the config's data as layers")
        self.open_data_button.visible = False
        self.config_data_label.setVisible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addWidget(self.config_data_label)
        layout.addWidget(self.open_data_button.native)
        self._advanced_index = layout.count()
        layout.addStretch(1)
        self._layout = layout
        self._update_visibility()
        self._image_changed()

    # ----------------------------------------------------------------- choices

    def _images(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return layer_choices(self.viewer, [Image])

    def _masks(self, widget: Any = None) -> list[tuple[str, Any]]:
        """Labels layers first, then Image layers; never the image picked beside it."""
        if widget is not None and widget is getattr(self, "val_mask", None):
            image = self.val_image.value
        else:
            image = getattr(self, "image", None) and self.image.value
        return [
            (name, layer)
            for name, layer in layer_choices(self.viewer, [Labels, Image])
            if not same_layer(layer, image)
        ]

    def reset_choices(self) -> None:
        """Refresh the layer pickers from the viewer's layer list."""
        self.form.reset_choices()
        self._image_changed()

    def _image_changed(self, *_: Any) -> None:
        self.mask.reset_choices()  # the new image is not a mask choice
        if not self._mask_chosen and not isinstance(self.mask.value, Labels):
            labels = [layer for _, layer in self._masks(self.mask) if isinstance(layer, Labels)]
            if labels:  # a Labels layer appeared: it is the mask unless the user chose one
                self.mask.value = labels[0]
        self._update_summary()

    def _on_mask_activated(self, *_: Any) -> None:
        """The user picked a mask in the combo box (not a refresh): keep that choice."""
        self._mask_chosen = True

    def add_advanced(self, panel: QWidget) -> None:
        """Place the generated Advanced section of the data fields under the pickers."""
        self._layout.insertWidget(self._advanced_index, panel)

    def show_config_data(self, paths: dict[str, str | None]) -> None:
        """List the data files a loaded config names (``{"images": path, ...}``)."""
        named = {role: path for role, path in paths.items() if path}
        if not named:
            self.config_data_label.setVisible(False)
            self.open_data_button.visible = False
            return
        lines = [
            f"{role}: {Path(path).name}" + ("" if Path(path).exists() else " (missing)")
            for role, path in named.items()
        ]
        self.config_data_label.setText("Config data — " + "; ".join(lines))
        self.config_data_label.setToolTip("\n".join(f"{r}: {p}" for r, p in named.items()))
        self.config_data_label.setVisible(True)
        self.open_data_button.visible = any(Path(p).exists() for p in named.values())

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
        if same_layer(mask, image):
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
