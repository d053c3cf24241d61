"""Lazy data: OME-Zarr level 0, training that reads only its patches, CLI on zarr."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_unet.engine.data.synthetic import synthetic_em
from napari_unet.engine.errors import UserInputError

from .conftest import tiny_config


def _zarr(path, array, chunks=None, **kwargs):
    import zarr

    out = zarr.create_array(
        str(path),
        shape=array.shape,
        chunks=chunks or (1, *array.shape[1:]),
        dtype=array.dtype,
        **kwargs,
    )
    out[:] = array
    return out


class CountingArray:
    """A (Z, Y, X) array that records the windows read from it."""

    def __init__(self, array):
        self.array = array
        self.shape, self.dtype = array.shape, array.dtype
        self.pixels_read = 0

    def __getitem__(self, index):
        part = self.array[index]
        self.pixels_read += part.size
        return part


def test_ome_zarr_opens_level_0(tmp_path):
    import zarr

    from napari_unet.engine.io.stacks import open_lazy, read_stack

    stack = np.arange(2 * 16 * 20, dtype=np.uint16).reshape(2, 16, 20)
    for version, attrs_of in (
        (2, lambda ms: {"multiscales": ms}),
        (3, lambda ms: {"ome": {"version": "0.5", "multiscales": ms}}),
    ):
        root = zarr.open_group(
            str(tmp_path / f"v{version}.ome.zarr"), mode="w", zarr_format=version
        )
        multiscales = [
            {
                "version": "0.4",
                "axes": [{"name": a} for a in "tczyx"],
                "datasets": [{"path": "s0"}, {"path": "s1"}],
            }
        ]
        root.attrs.update(attrs_of(multiscales))
        full = root.create_array(
            "s0", shape=(1, 1, 2, 16, 20), chunks=(1, 1, 1, 16, 20), dtype="uint16"
        )
        full[:] = stack[None, None]
        root.create_array("s1", shape=(1, 1, 2, 8, 10), dtype="uint16")
        lazy = open_lazy(tmp_path / f"v{version}.ome.zarr")
        assert lazy.shape == (2, 16, 20)
        np.testing.assert_array_equal(lazy.compute(), stack)
        np.testing.assert_array_equal(read_stack(tmp_path / f"v{version}.ome.zarr"), stack)


def test_dask_source_reads_only_patch_windows(tmp_path):
    from napari_unet.engine.data.lazy_sources import DaskSource
    from napari_unet.engine.data.pipeline import make_train_dataset

    images, masks = synthetic_em(slices=4, size=96, cells=8, seed=0)
    counted = CountingArray(images)
    source = DaskSource(counted, masks, (np.array([0.0]), np.array([255.0])))
    config = tiny_config(tmp_path, patch_size=32, batch_size=2)
    config = config.model_copy(
        update={"augment": config.augment.model_copy(update={"enabled": False})}
    )
    x, _, w = next(iter(make_train_dataset(source, None, None, config)))
    assert x.shape == (2, 32, 32, 1) and float(w.numpy().min()) == 1.0
    assert counted.pixels_read < images.size / 4  # a few 32x32 windows, not the stack
    image, target, _ = source.read(1, 10, 20, 32, 32)
    np.testing.assert_allclose(image, images[1, 10:42, 20:52] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(target, masks[1, 10:42, 20:52])


def test_train_from_zarr_on_disk(tmp_path, monkeypatch):
    import zarr

    from napari_unet.engine.data.lazy_sources import is_lazy_training_input
    from napari_unet.engine.io import lazy
    from napari_unet.engine.training.train import train

    images, masks = synthetic_em(slices=4, size=64, cells=8, seed=2)
    _zarr(tmp_path / "images.zarr", images, (1, 32, 32))
    _zarr(tmp_path / "masks.zarr", masks * 255, (1, 32, 32))
    config = tiny_config(tmp_path, epochs=1, steps_per_epoch=2, tensorboard=True)
    assert is_lazy_training_input(config, zarr.open_array(str(tmp_path / "images.zarr")))
    assert not is_lazy_training_input(config, str(tmp_path / "images.zarr"))  # small: eager
    monkeypatch.setattr(lazy, "LAZY_BYTES", 1000)  # now "larger than memory"
    config = config.model_copy(
        update={
            "data": config.data.model_copy(
                update={
                    "images": str(tmp_path / "images.zarr"),
                    "masks": str(tmp_path / "masks.zarr"),
                }
            )
        }
    )
    result = train(config)
    assert result.stopped_reason == "finished" and result.steps == 2
    assert (result.model_dir / "best.keras").exists()
    meta = json.loads((result.model_dir / "metadata.json").read_text())
    assert meta["data"]["lazy"] and meta["data"]["mask_encoding"] == "binary"
    assert meta["data"]["train_slices"] == 3 and len(meta["data"]["val_indices"]) == 1
    assert "val_loss" in result.history[-1]


def test_sparse_lazy_masks_and_unsupported_options(tmp_path):
    import dask.array as da

    from napari_unet.engine.data.lazy_sources import prepare_data

    images, masks = synthetic_em(slices=3, size=48, seed=1)
    sparse = np.zeros_like(masks)
    sparse[1, 5:20, 5:20] = 2  # foreground scribble
    sparse[1, 30:40, 30:40] = 1  # background scribble
    config = tiny_config(tmp_path).model_copy(
        update={"data": tiny_config(tmp_path).data.model_copy(update={"val_fraction": 0.0})}
    )
    prepared = prepare_data(config, da.from_array(images), da.from_array(sparse))
    source = prepared.train_images
    assert source.kind == "sparse" and source.sampling_table().slices.tolist() == [1]
    _, target, weight = source.read(1, 0, 0, 48, 48)
    assert target.sum() == 15 * 15 and weight.sum() == 15 * 15 + 10 * 10
    bordered = config.with_overrides({"train.border_weights.enabled": True})
    with pytest.raises(UserInputError, match="larger than memory"):
        prepare_data(bordered, da.from_array(images), da.from_array(masks))


def test_cli_predicts_zarr_to_zarr_and_tiff(trained_model_dir, tmp_path, capsys):
    import tifffile
    import zarr

    from napari_unet.cli.main import main
    from napari_unet.engine.inference.predict import predict
    from napari_unet.engine.model.model_folder import load_model

    images, _ = synthetic_em(slices=2, size=(64, 72), seed=9)
    _zarr(tmp_path / "in.zarr", images)
    common = ["--tile-size", "48", "--overlap", "8", "--quiet"]
    assert (
        main(
            [
                "predict",
                str(trained_model_dir),
                str(tmp_path / "in.zarr"),
                "-o",
                str(tmp_path / "out.zarr"),
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "predict",
                str(trained_model_dir),
                str(tmp_path / "in.zarr"),
                "-o",
                str(tmp_path / "out.tif"),
                "--blockwise",
                "--probabilities",
                *common,
            ]
        )
        == 0
    )
    model = load_model(trained_model_dir)
    from napari_unet.engine.config import PredictConfig

    expected = predict(model, images, PredictConfig(tile_size=48, overlap=8)).probability
    group = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    np.testing.assert_array_equal(group["mask"][:], (expected > 0.5) * 255)
    assert group.attrs["napari_unet"]["probability_dtype"] == "uint8"
    assert np.abs(tifffile.imread(tmp_path / "out.tif") - expected).max() < 1e-5
    assert (
        main(
            [
                "predict",
                str(trained_model_dir),
                str(tmp_path / "in.zarr"),
                "-o",
                str(tmp_path / "out.npy"),
                "--blockwise",
                *common,
            ]
        )
        == 2
    )
    assert "blockwise prediction writes" in capsys.readouterr().err
