"""bioimage.io model packages (spec 0.5): export a model folder as one.

The package is a ``.zip`` with ``rdf.yaml`` written by the ``bioimageio.spec``
package's own Python API (:class:`bioimageio.spec.model.v0_5.ModelDescr` and
:func:`bioimageio.spec.save_bioimageio_package`), holding:

* weights: ``keras_v3`` (the original, float32), ``tensorflow_saved_model_bundle``
  (a zipped SavedModel whose ``serve`` endpoint returns ``{"probability": ...}``)
  and optionally ``onnx``, all converted from one float32 copy of the checkpoint;
* one input ``raw`` with axes ``batch, y, x, channel`` (channels last, as the
  network takes it; the spec lets axes come in any order) and tile sizes
  ``ParameterizedSize(min, step=2**depth)``; one output ``probability`` of the
  same spatial size, with a ``halo`` of half the model's tiling overlap;
* the model's preprocessing in the spec's terms (see :func:`preprocessing`);
* test tensors made by running the exported weights on a tile of the shipped
  ISBI 2012 test slices (or a given image), a cover, README.md, citations, the
  training ``config.yaml`` and ``metadata.json`` as attachments, and our own
  config and metadata in ``config.napari_unet`` so that
  :func:`~.bioimageio_import.import_bioimageio` can rebuild a model folder
  that predicts and fine-tunes.

Checking a package with the bioimage.io tools is in :mod:`.bioimageio_check`.

The bioimage.io packages and TensorFlow are imported inside the functions.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pydantic

from ..atomic import atomic_path, check_writable
from ..config import DataConfig
from ..data.preprocess import NORMALIZED_LIMIT
from ..errors import UserInputError
from . import bioimageio_docs as docs
from .model_folder import load_model
from .onnx_export import onnx_opset, write_onnx
from .portable import float32_model, keras_predict, write_saved_model

__all__ = [
    "INPUT_ID",
    "OUTPUT_ID",
    "BioimageioOptions",
    "preprocessing",
    "spec_v0_5",
    "write_bioimageio_package",
]

INPUT_ID = "raw"
OUTPUT_ID = "probability"


@dataclass(frozen=True)
class BioimageioOptions:
    """What a bioimage.io package says about itself beyond the model folder.

    Attributes
    ----------
    name, description
        None: made from the model's architecture (and training data).
    authors
        Names of the model's authors.
    tags
        Extra tags (the defaults name the task, modality and framework).
    version
        The package's version.
    include_onnx
        Add ONNX weights (needs ``tf2onnx`` and ``onnx``).
    test_image
        ``(Y, X)`` or ``(Z, Y, X)`` image to cut the test tile from; None:
        the shipped ISBI 2012 test slices.
    tile_size
        Edge of the square test tile (rounded down to a multiple of ``2**depth``).
    """

    name: str | None = None
    description: str | None = None
    authors: tuple[str, ...] = ("napari-unet developers",)
    tags: tuple[str, ...] = ()
    version: str = "0.1.0"
    include_onnx: bool = True
    test_image: np.ndarray | None = field(default=None, compare=False, repr=False)
    tile_size: int = 256


def preprocessing(data: DataConfig, v0_5: Any) -> list[Any]:
    """The model's input normalization as bioimage.io 0.5 preprocessing steps.

    napari-unet maps the ``data.percentiles`` (low, high) of the raw
    intensities to 0 and 1 and clips to +-1e4. The closest faithful
    description in the spec is ``scale_range`` (``eps`` 1e-6), then ``clip``,
    then ``ensure_dtype`` float32 (the spec itself adds an ``ensure_dtype``
    float32 in front):

    * ``normalization: stack`` (percentiles over the whole stack) becomes
      ``axes: [batch, y, x, channel]``: including the batch axis asks for
      data-set statistics, i.e. over all slices (samples) given together.
      Runners without exact data-set quantiles (bioimageio.core without
      ``crick``) average the per-sample percentiles, a close approximation;
    * ``normalization: slice`` becomes ``axes: [y, x, channel]``: per sample,
      i.e. per slice, exactly as napari-unet does;
    * ``normalization: none`` keeps only ``ensure_dtype``.

    Parameters
    ----------
    data
        The model's data section.
    v0_5
        The module :mod:`bioimageio.spec.model.v0_5`.
    """
    steps: list[Any] = []
    if data.normalization != "none":
        axes = ["y", "x", "channel"]
        if data.normalization == "stack":
            axes.insert(0, "batch")
        low, high = data.percentiles
        kwargs = v0_5.ScaleRangeKwargs(
            axes=[v0_5.AxisId(a) for a in axes],
            min_percentile=float(low),
            max_percentile=float(high),
            eps=docs.SCALE_RANGE_EPS,
        )
        limit = float(NORMALIZED_LIMIT)
        steps += [
            v0_5.ScaleRangeDescr(kwargs=kwargs),
            v0_5.ClipDescr(kwargs=v0_5.ClipKwargs(min=-limit, max=limit)),
        ]
    steps.append(v0_5.EnsureDtypeDescr(kwargs=v0_5.EnsureDtypeKwargs(dtype="float32")))
    return steps


def write_bioimageio_package(
    model_dir: str | Path,
    output: str | Path,
    overwrite: bool = False,
    options: BioimageioOptions | None = None,
    safe_mode: bool = True,
    on_step: Callable[[str], None] | None = None,
) -> Path:
    """Export a model folder as a bioimage.io model package (``.zip``), atomically.

    Parameters
    ----------
    model_dir
        Model folder written by training (``config.yaml`` + ``best.keras``...).
    output
        The ``.zip`` to write.
    overwrite
        Replace an existing `output`.
    options
        Name, authors, test image...; see :class:`BioimageioOptions`.
    safe_mode
        Load the checkpoint in Keras safe mode (refuses Lambda layers).
    on_step
        Called with a short description before each slow step.

    Returns
    -------
    Path
        `output`.

    Raises
    ------
    UserInputError
        If `output` exists (without `overwrite`) or is not a ``.zip``, the
        folder is not a loadable model, its preprocessing (flat-field
        correction, resizing) cannot be described in the spec, or the
        description does not validate (e.g. a name with characters the spec
        does not allow).
    """
    options = options or BioimageioOptions()
    output = Path(output)
    if output.suffix.lower() != ".zip":
        raise UserInputError(f"a bioimage.io package is a .zip file, got {output}")
    check_writable(output, overwrite)
    loaded = load_model(model_dir, safe_mode=safe_mode)
    data = loaded.config.data
    if data.flat_field or data.resize is not None:
        step = "flat-field correction" if data.flat_field else f"resizing to {data.resize}"
        raise UserInputError(
            f"model {model_dir} was trained with {step}, which the bioimage.io spec cannot "
            "describe; its package would give wrong results elsewhere"
        )
    v0_5 = spec_v0_5()
    from bioimageio.spec import save_bioimageio_package

    step = on_step or (lambda _text: None)
    with tempfile.TemporaryDirectory(prefix="napari-unet-bioimageio-") as scratch:
        staging = Path(scratch)
        try:
            descr = _describe(loaded, options, staging, v0_5, step)
        except pydantic.ValidationError as exc:  # an option or setting broke a spec rule
            lines = str(exc).strip().splitlines()
            reason = " ".join(line.strip() for line in lines[1:3]) or lines[0]
            raise UserInputError(
                f"the bioimage.io description does not validate: {reason}"
            ) from None
        step(f"writing {output.name}")
        with atomic_path(output, overwrite=overwrite) as tmp:
            save_bioimageio_package(descr, output_path=tmp)
    return output


def _describe(
    loaded: Any,
    options: BioimageioOptions,
    staging: Path,
    v0_5: Any,
    step: Callable[[str], None],
) -> Any:
    """Write the package's files into `staging` and return their ModelDescr."""
    import keras
    import tensorflow as tf
    import tifffile

    config, metadata = loaded.config, dict(loaded.metadata)
    multiple = loaded.multiple
    model = float32_model(loaded.keras_model)
    isbi = docs.trained_on_isbi2012(metadata)

    files = {
        name: staging / name
        for name in (
            "weights.keras",
            "tf_saved_model.zip",
            "weights.onnx",
            "test_input.npy",
            "test_output.npy",
            "sample_input.tif",
            "sample_output.tif",
            "cover.png",
            "README.md",
            "config.yaml",
            "metadata.json",
        )
    }
    step("converting the weights (float32 Keras, TensorFlow SavedModel, ONNX)")
    model.save(files["weights.keras"])
    bundle = write_saved_model(model, staging / "tf_saved_model", output_name=OUTPUT_ID)
    shutil.make_archive(str(files["tf_saved_model.zip"].with_suffix("")), "zip", bundle)
    formats = ["keras_v3", "tensorflow_saved_model_bundle"]
    if options.include_onnx:
        write_onnx(model, files["weights.onnx"])
        formats.append("onnx")

    step("making the test tensors, cover and documentation")
    tile = docs.cut_test_tile(options.test_image, options.tile_size, multiple)
    probability = keras_predict(model, docs.spec_normalize(tile, config.data)[None, ..., None])
    np.save(files["test_input.npy"], tile[None, ..., None])
    np.save(files["test_output.npy"], probability)
    tifffile.imwrite(files["sample_input.tif"], tile)
    tifffile.imwrite(files["sample_output.tif"], probability[0, ..., 0])
    docs.write_cover(tile, probability[0, ..., 0], files["cover.png"])
    shutil.copyfile(loaded.folder / "config.yaml", files["config.yaml"])
    attachments = [files["config.yaml"]]
    if (loaded.folder / "metadata.json").exists():
        shutil.copyfile(loaded.folder / "metadata.json", files["metadata.json"])
        attachments.append(files["metadata.json"])

    name = options.name or _default_name(config, isbi)
    files["README.md"].write_text(
        docs.readme_text(name, config, metadata, formats, tile.shape[0], isbi), encoding="utf-8"
    )

    halo = min(config.predict.overlap // 2, 8 * multiple)
    min_size = multiple * (2 * halo // multiple + 1)
    space = v0_5.ParameterizedSize(min=min_size, step=multiple)
    inputs = [
        v0_5.InputTensorDescr(
            id=v0_5.TensorId(INPUT_ID),
            description="grey EM image, raw intensities (normalized by the preprocessing)",
            axes=[
                v0_5.BatchAxis(),
                v0_5.SpaceInputAxis(id=v0_5.AxisId("y"), size=space),
                v0_5.SpaceInputAxis(id=v0_5.AxisId("x"), size=space),
                v0_5.ChannelAxis(channel_names=[v0_5.Identifier("grey")]),
            ],
            test_tensor=v0_5.FileDescr(source=files["test_input.npy"]),
            sample_tensor=v0_5.FileDescr(source=files["sample_input.tif"]),
            data=v0_5.IntervalOrRatioDataDescr(type="float32"),
            preprocessing=preprocessing(config.data, v0_5),
        )
    ]

    def same_as_input(axis: str) -> Any:
        ref = v0_5.SizeReference(tensor_id=v0_5.TensorId(INPUT_ID), axis_id=v0_5.AxisId(axis))
        if halo:
            return v0_5.SpaceOutputAxisWithHalo(id=v0_5.AxisId(axis), size=ref, halo=halo)
        return v0_5.SpaceOutputAxis(id=v0_5.AxisId(axis), size=ref)

    outputs = [
        v0_5.OutputTensorDescr(
            id=v0_5.TensorId(OUTPUT_ID),
            description="probability of the mask's nonzero class (EM: cell interior); "
            f"napari-unet thresholds it at {config.predict.threshold:g}",
            axes=[
                v0_5.BatchAxis(),
                same_as_input("y"),
                same_as_input("x"),
                v0_5.ChannelAxis(channel_names=[v0_5.Identifier("probability")]),
            ],
            test_tensor=v0_5.FileDescr(source=files["test_output.npy"]),
            sample_tensor=v0_5.FileDescr(source=files["sample_output.tif"]),
            data=v0_5.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
        )
    ]

    converted = "converted from the keras_v3 weights (float32) by napari-unet"
    weights = v0_5.WeightsDescr(
        keras_v3=v0_5.KerasV3WeightsDescr(
            source=files["weights.keras"],
            keras_version=v0_5.Version(keras.__version__),
            backend=("tensorflow", v0_5.Version(tf.__version__)),
            comment="the napari-unet training checkpoint (best.keras) with float32 layers",
        ),
        tensorflow_saved_model_bundle=v0_5.TensorflowSavedModelBundleWeightsDescr(
            source=files["tf_saved_model.zip"],
            tensorflow_version=v0_5.Version(tf.__version__),
            parent="keras_v3",
            comment=converted + "; endpoint 'serve' returns {'probability': ...}",
        ),
        onnx=v0_5.OnnxWeightsDescr(
            source=files["weights.onnx"],
            opset_version=onnx_opset(files["weights.onnx"]),
            parent="keras_v3",
            comment=converted + " (Keras 3 export through tf2onnx)",
        )
        if options.include_onnx
        else None,
    )

    cites = [docs.UNET_CITATION, *(docs.ISBI2012_CITATIONS if isbi else ())]
    fields = {
        "name": name,
        "description": options.description or _default_description(config, isbi),
        "authors": [v0_5.Author(name=author) for author in options.authors],
        "cite": [v0_5.CiteEntry(text=c.text, doi=v0_5.Doi(c.doi)) for c in cites],
        "license": v0_5.LicenseId("BSD-3-Clause"),
        "documentation": v0_5.FileDescr(source=files["README.md"]),
        "covers": [v0_5.FileDescr(source=files["cover.png"])],
        "attachments": [v0_5.FileDescr(source=path) for path in attachments],
        "tags": _tags(options, isbi),
        "version": v0_5.Version(options.version),
        "inputs": inputs,
        "outputs": outputs,
        "weights": weights,
        "config": {
            "napari_unet": {
                "format": 1,
                "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "config": config.to_dict(),
                "metadata": metadata,
            }
        },
    }
    return v0_5.ModelDescr(**fields)


def _tags(options: BioimageioOptions, isbi: bool) -> list[str]:
    tags = ["segmentation", "semantic-segmentation", "unet", "2d", "electron-microscopy"]
    tags += ["keras", "tensorflow", "napari-unet"]
    if isbi:
        tags += ["isbi2012", "drosophila", "membrane"]
    return tags + [t for t in options.tags if t not in tags]


def _default_name(config: Any, isbi: bool) -> str:
    preset = f" {config.model.preset}" if config.model.preset else ""
    return f"napari-unet{' ISBI 2012' if isbi else ''} EM U-Net{preset}"


def _default_description(config: Any, isbi: bool) -> str:
    model = config.model
    data = "ISBI 2012 Drosophila ssTEM" if isbi else "electron-microscopy"
    return (
        f"2D U-Net (depth {model.depth}, {model.base_filters} base filters) trained with "
        f"napari-unet on {data} slices; predicts the probability of cell interior "
        "(vs membrane) per pixel."
    )


def spec_v0_5() -> Any:
    """bioimageio.spec.model.v0_5, or a one-line error naming the missing extra."""
    try:
        from bioimageio.spec.model import v0_5
    except ImportError:
        raise UserInputError(
            "bioimage.io export needs bioimageio.spec and bioimageio.core; "
            "install them with: pip install 'napari-unet[export]'"
        ) from None
    return v0_5
