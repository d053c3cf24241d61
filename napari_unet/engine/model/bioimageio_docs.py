"""The human-facing parts of a bioimage.io package: test tile, cover, README, citations.

Pure numpy and Pillow; the bioimage.io packages are not imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config, DataConfig
from ..data.preprocess import NORMALIZED_LIMIT
from ..errors import UserInputError

__all__ = [
    "ISBI2012_CITATIONS",
    "SCALE_RANGE_EPS",
    "UNET_CITATION",
    "Citation",
    "cut_test_tile",
    "readme_text",
    "spec_normalize",
    "trained_on_isbi2012",
    "write_cover",
]

#: ``eps`` of the described ``scale_range`` step: ``(x - lo) / (hi - lo + eps)``.
SCALE_RANGE_EPS = 1e-6


@dataclass(frozen=True)
class Citation:
    """One reference: free text and its DOI."""

    text: str
    doi: str


UNET_CITATION = Citation(
    "Ronneberger O, Fischer P, Brox T (2015) U-Net: Convolutional Networks for Biomedical "
    "Image Segmentation. MICCAI 2015, LNCS 9351: 234-241.",
    "10.1007/978-3-319-24574-4_28",
)

#: The references the ISBI 2012 challenge asks users of its data to cite (and the challenge paper).
ISBI2012_CITATIONS = (
    Citation(
        "Arganda-Carreras I, Turaga SC, Berger DR, et al. (2015) Crowdsourcing the creation of "
        "image segmentation algorithms for connectomics. Front. Neuroanat. 9:142.",
        "10.3389/fnana.2015.00142",
    ),
    Citation(
        "Cardona A, Saalfeld S, Preibisch S, et al. (2010) An Integrated Micro- and "
        "Macroarchitectural Analysis of the Drosophila Brain by Computer-Assisted Serial Section "
        "Electron Microscopy. PLoS Biol 8(10): e1000502.",
        "10.1371/journal.pbio.1000502",
    ),
    Citation(
        "Cardona A, Saalfeld S, Schindelin J, et al. (2012) TrakEM2 Software for Neural Circuit "
        "Reconstruction. PLoS ONE 7(6): e38011.",
        "10.1371/journal.pone.0038011",
    ),
)


def trained_on_isbi2012(metadata: dict[str, Any]) -> bool:
    """Whether a model folder's metadata says it was trained on ISBI 2012 data."""
    text = str(metadata.get("trained_on") or "").lower().replace(" ", "")
    return "isbi2012" in text


def cut_test_tile(image: np.ndarray | None, size: int, multiple: int) -> np.ndarray:
    """A square float32 ``(size, size)`` tile from the centre of an image's first slice.

    Parameters
    ----------
    image
        ``(Y, X)`` or ``(Z, Y, X)`` grey image; None: the shipped ISBI 2012
        test slices (``sample_data/em_test_images.tif``).
    size
        Tile edge; rounded down to a multiple of `multiple` (at least `multiple`).
    multiple
        ``2**depth`` of the network.

    Returns
    -------
    numpy.ndarray
        float32 raw intensities (not normalized).
    """
    if image is None:
        from ...sample import sample_paths
        from ..io.stacks import read_stack

        image = read_stack(sample_paths()["test_images"])
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[0]
    if image.ndim != 2:
        raise UserInputError(f"test image must be 2D or a (Z, Y, X) stack, got {image.shape}")
    size = max(multiple, (min(size, *image.shape) // multiple) * multiple)
    if min(image.shape) < size:
        raise UserInputError(
            f"test image {image.shape} is smaller than the network's {multiple} px multiple"
        )
    y0 = (image.shape[0] - size) // 2
    x0 = (image.shape[1] - size) // 2
    return np.ascontiguousarray(image[y0 : y0 + size, x0 : x0 + size], dtype=np.float32)


def spec_normalize(tile: np.ndarray, data: DataConfig) -> np.ndarray:
    """The described preprocessing, computed here: what a bioimage.io runner feeds the network.

    ``scale_range`` with the model's percentiles over the tile (the test
    input is one sample and the whole test data set, so per-sample and
    per-dataset statistics coincide), ``eps`` :data:`SCALE_RANGE_EPS`, then
    ``clip`` to +-:data:`~napari_unet.engine.data.preprocess.NORMALIZED_LIMIT`.
    """
    tile = np.asarray(tile, dtype=np.float32)
    if data.normalization == "none":
        return tile
    lo, hi = np.percentile(tile.astype(np.float64), list(data.percentiles))
    out = (tile.astype(np.float64) - lo) / (hi - lo + SCALE_RANGE_EPS)
    return np.clip(out, -NORMALIZED_LIMIT, NORMALIZED_LIMIT).astype(np.float32)


def write_cover(raw: np.ndarray, probability: np.ndarray, target: Path) -> Path:
    """Save a 2:1 PNG: the input tile (contrast-stretched) | the predicted probability."""
    from PIL import Image

    lo, hi = np.percentile(raw, [1.0, 99.8])
    scale = hi - lo if hi > lo else 1.0
    left = np.clip((raw - lo) / scale, 0.0, 1.0)
    right = np.clip(probability, 0.0, 1.0)
    picture = (np.concatenate([left, right], axis=1) * 255.0 + 0.5).astype(np.uint8)
    Image.fromarray(picture, mode="L").save(target, format="PNG")
    return target


def readme_text(
    name: str,
    config: Config,
    metadata: dict[str, Any],
    formats: list[str],
    tile_size: int,
    isbi2012: bool,
) -> str:
    """The package's documentation (README.md), with the Validation section bioimage.io asks for."""
    model = config.model
    data = config.data
    if data.normalization == "none":
        prep = "none: the network takes the raw intensities as float32"
    else:
        joint = "the whole stack" if data.normalization == "stack" else "each slice separately"
        prep = (
            f"percentile normalization over {joint}: percentile {data.percentiles[0]:g} "
            f"maps to 0 and percentile {data.percentiles[1]:g} to 1 (`scale_range`, "
            + (
                "with the batch axis, i.e. data-set statistics"
                if data.normalization == "stack"
                else "per sample"
            )
            + f"), clipped to +-{NORMALIZED_LIMIT:g}"
        )
    trained_on = metadata.get("trained_on") or "see config.yaml (data section)"
    final = metadata.get("final") or {}
    scores = "\n".join(
        f"| {key} | {value:.4f} |"
        for key, value in final.items()
        if key.startswith("val_") and isinstance(value, (int, float))
    )
    lines = [
        f"# {name}",
        "",
        "A 2D U-Net (Ronneberger et al. 2015) trained with napari-unet to segment "
        "electron-microscopy slices. Output: per-pixel probability of the mask's nonzero "
        "class (in EM: cell interior; 0 = membrane).",
        "",
        "## Architecture",
        "",
        f"- depth {model.depth} (tile sizes must be multiples of {model.multiple}), "
        f"{model.base_filters} filters in the first level, batch norm {model.batch_norm}, "
        f"dropout {model.dropout}",
        "- 'same' padding: the output has the input's size; the sigmoid is the last layer",
        "- input `(batch, y, x, channel)` float32 with one grey channel, channels last",
        f"- weights: {', '.join(formats)} (all float32; exported from the training checkpoint"
        + (
            f", which was trained under `{metadata['precision']}`)"
            if metadata.get("precision")
            else ")"
        ),
        "",
        "## Preprocessing and postprocessing",
        "",
        f"- preprocessing: {prep}",
        f"- postprocessing: none. napari-unet thresholds the probability at "
        f"{config.predict.threshold:g} for a mask and blends tiles of {config.predict.tile_size} "
        f"px overlapping by {config.predict.overlap} px.",
        "",
        "## Training",
        "",
        f"- data: {trained_on}",
        f"- loss {config.train.loss}, {metadata.get('steps', '?')} steps, stopped: "
        f"{metadata.get('stopped_reason', '?')}",
        "- the full training configuration is attached as `config.yaml` and embedded in "
        "`rdf.yaml` (`config.napari_unet`); `napari-unet` imports this package as a model "
        "folder for prediction and fine-tuning.",
        "",
        "## Validation",
        "",
        "Scores on the validation slices at the end of training (from `metadata.json`):",
        "",
        "| metric | value |",
        "| --- | --- |",
        scores or "| (none recorded) | |",
        "",
        f"The test tensors are a {tile_size} x {tile_size} tile of "
        + ("the ISBI 2012 test slices shipped with napari-unet" if isbi2012 else "a sample image")
        + "; `bioimageio.core.test_model` reproduces the test output from the test input with "
        "every weight format. To validate on your own data, compare thresholded predictions "
        "with ground-truth masks (e.g. `napari-unet evaluate`: pixel error, Rand and VI scores).",
        "",
        "## Limitations",
        "",
        "Trained for one kind of EM image: other tissues, resolutions or microscopes need "
        "fine-tuning. The probability is not calibrated.",
        "",
        "## License",
        "",
        "Weights: BSD-3-Clause (napari-unet).",
    ]
    if isbi2012:
        lines += [
            "Training data: ISBI 2012 EM segmentation challenge (serial-section TEM of the "
            "Drosophila first instar larva ventral nerve cord). Its terms: free to use for "
            "generating or testing non-commercial image segmentation software; publications "
            "using it must cite TrakEM2 and Cardona et al. 2010 (see the citations).",
        ]
    return "\n".join(lines) + "\n"
