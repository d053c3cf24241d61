"""napari sample data: the shipped ISBI 2012 EM slices with their masks."""

from __future__ import annotations

from typing import Any

__all__ = ["make_sample_data"]


def make_sample_data() -> list[tuple[Any, ...]]:
    """EM training slices (Image) and their cell-interior masks (Labels, {0, 1}).

    Returns
    -------
    list of LayerData
        ``[(images, meta, "image"), (masks, meta, "labels")]``.
    """
    from napari_unet._reader import contrast_limits
    from napari_unet.engine.io.stacks import read_mask, read_stack
    from napari_unet.sample import sample_paths

    paths = sample_paths()
    images = read_stack(paths["train_images"])
    masks = read_mask(paths["train_masks"])
    source = {"source": "ISBI 2012 (Cardona et al. 2010), shipped with napari-unet"}
    return [
        (
            images,
            {"name": "EM", "contrast_limits": contrast_limits(images), "metadata": source},
            "image",
        ),
        (masks, {"name": "EM mask", "opacity": 0.4, "metadata": source}, "labels"),
    ]
