"""Blockwise (larger-than-memory) prediction equals in-memory tiled prediction."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

from napari_unet.engine.config import PredictConfig
from napari_unet.engine.data.preprocess import normalization_stats
from napari_unet.engine.data.synthetic import synthetic_em
from napari_unet.engine.errors import UserInputError
from napari_unet.engine.events import drain
from napari_unet.engine.inference.blockwise import (
    BlockwiseOptions,
    make_plan,
    predict_blockwise,
    predict_blockwise_iter,
    predict_lazy_iter,
)
from napari_unet.engine.inference.predict import predict_iter
from napari_unet.engine.io.lazy import as_lazy, volume_stats
from napari_unet.engine.model.model_folder import load_model

CONFIG = PredictConfig(tile_size=48, overlap=8, batch_size=3)


@pytest.fixture(scope="module")
def model(trained_model_dir):
    return load_model(trained_model_dir)


@pytest.fixture(scope="module")
def volume():
    images, _ = synthetic_em(slices=3, size=(100, 122), cells=10, seed=3)
    return images


@pytest.fixture(scope="module")
def reference(model, volume):
    stats = volume_stats(volume)
    return drain(predict_iter(model, volume, CONFIG, stats=stats)).probability


def _write_zarr(path, array, chunks):
    import zarr

    out = zarr.create_array(str(path), shape=array.shape, chunks=chunks, dtype=array.dtype)
    out[:] = array
    return path


@pytest.mark.parametrize(
    "options",
    [
        BlockwiseOptions(probability_dtype="float32"),  # whole slices, one block
        BlockwiseOptions(block_slices=2, block_size=40, probability_dtype="float32"),
        BlockwiseOptions(
            block_slices=1, block_size=64, probability_dtype="float32", prefetch=False
        ),
    ],
    ids=["whole-slices", "yx-blocks-40", "yx-blocks-64-no-prefetch"],
)
def test_blockwise_equals_in_memory(model, volume, reference, tmp_path, options):
    source = _write_zarr(tmp_path / "in.zarr", volume, (1, 50, 61))
    result = predict_blockwise(model, source, tmp_path / "out.zarr", CONFIG, options)
    assert result.path == tmp_path / "out.zarr" and not result.stopped
    probability = result.probability.compute()
    assert probability.dtype == np.float32 and probability.shape == volume.shape
    assert np.abs(probability - reference).max() < 1e-5
    np.testing.assert_array_equal(result.mask.compute(), (reference > 0.5) * 255)
    np.testing.assert_array_equal(result.labels().compute(), (reference > 0.5).astype(np.uint8))
    assert not list(tmp_path.glob("*.tmp-*"))  # temporary folder renamed away


def test_blocks_have_halos_and_the_plan_is_aligned(model, volume):
    plan = make_plan(
        as_lazy(volume), model.config.data, CONFIG, model.multiple, BlockwiseOptions(1, 40)
    )
    assert len(plan.blocks) == 3 * 3 * 4
    block = plan.blocks[4]  # an inner block: its window reaches beyond the block
    window = plan.read_window(block)
    assert window[1].start < block.y[0] and window[1].stop > block.y[1]
    assert plan.chunks == (1, 40, 40)
    assert plan.total_tiles > 3 * len(plan.tiles)  # redundant tiles at block borders


def test_uint8_float16_and_tiff_outputs(model, volume, reference, tmp_path):
    import tifffile

    options = BlockwiseOptions(block_slices=2, tiff=tmp_path / "mask.tif")
    result = predict_blockwise(model, volume, tmp_path / "out.zarr", CONFIG, options)
    stored = result.probability.compute()
    assert stored.dtype == np.uint8
    assert np.abs(stored / 255.0 - reference).max() <= 0.5 / 255 + 1e-6
    assert np.abs(result.probability_float().compute() - reference).max() <= 0.5 / 255 + 1e-6
    np.testing.assert_array_equal(tifffile.imread(result.tiff), (reference > 0.5) * 255)
    half = predict_blockwise(
        model, volume, tmp_path / "half.zarr", CONFIG, BlockwiseOptions(probability_dtype="float16")
    )
    assert np.abs(half.probability.compute().astype(np.float32) - reference).max() < 1e-3
    # a TIFF of probabilities alone, with x/y blocks: pages appended band by band
    only = BlockwiseOptions(block_slices=2, block_size=64, tiff_content="probability")
    tiff = predict_blockwise(model, volume, tmp_path / "prob.tif", CONFIG, only)
    assert tiff.path is None
    page_stack = tifffile.imread(tiff.tiff)
    assert page_stack.dtype == np.float32 and np.abs(page_stack - reference).max() < 1e-5


def test_per_slice_normalization_and_z_range(model, volume, tmp_path):
    slice_model = replace(
        model,
        config=model.config.model_copy(
            update={"data": model.config.data.model_copy(update={"normalization": "slice"})}
        ),
    )
    part = volume[1:3]
    expected = drain(predict_iter(slice_model, part, CONFIG)).probability
    options = BlockwiseOptions(z_range=(1, 3), block_size=64, probability_dtype="float32")
    result = predict_blockwise(slice_model, volume, tmp_path / "o.zarr", CONFIG, options)
    assert result.shape == (2, *volume.shape[1:]) and len(result.stats[0]) == 2
    assert np.abs(result.probability.compute() - expected).max() < 1e-5


def test_resize_models_predict_whole_slices(model, volume, tmp_path):
    resized = replace(
        model,
        config=model.config.model_copy(
            update={"data": model.config.data.model_copy(update={"resize": (64, 80)})}
        ),
    )
    stats = volume_stats(volume)
    expected = drain(predict_iter(resized, volume, CONFIG, stats=stats)).probability
    options = BlockwiseOptions(block_slices=2, block_size=32, probability_dtype="float32")
    result = predict_blockwise(resized, volume, tmp_path / "o.zarr", CONFIG, options)
    assert np.abs(result.probability.compute() - expected).max() < 1e-5


def test_stop_discards_the_output_and_events_progress(model, volume, tmp_path):
    stop = threading.Event()
    options = BlockwiseOptions(block_slices=1, block_size=64)
    gen = predict_blockwise_iter(model, volume, tmp_path / "out.zarr", CONFIG, stop, options)
    first = next(gen)
    assert first.done == 0 and first.total > 0
    second = next(gen)
    assert 0 < second.done < second.total
    stop.set()
    result = drain(gen)
    assert result.stopped and result.path is None
    assert list(tmp_path.iterdir()) == []
    events = []
    result = drain(predict_lazy_iter(model, volume, CONFIG), events.append)
    assert events[-1].done == events[-1].total
    assert result.path.exists() and result.probability.shape == volume.shape


def test_volume_stats_subsample_and_exact_for_small_volumes():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (3, 40, 50)).astype(np.uint8)
    for per_slice in (False, True):
        exact = normalization_stats(small, 1, 99.8, per_slice)
        got = volume_stats(as_lazy(small), 1, 99.8, per_slice)
        np.testing.assert_array_equal(got[0], exact[0])
        np.testing.assert_array_equal(got[1], exact[1])
    big = as_lazy(rng.normal(100, 10, (40, 64, 64)).astype(np.float32))
    lo, hi = volume_stats(big, 1, 99, max_pixels=4096)  # every 4th slice, 4th pixel
    assert lo.shape == (1,) and 70 < lo[0] < 80 and 120 < hi[0] < 130
    lo, hi = volume_stats(big, 1, 99, per_slice=True, max_pixels=4096)
    assert lo.shape == (40,) and np.all((70 < lo) & (lo < 85))


def test_bad_options_and_outputs(model, volume, tmp_path):
    with pytest.raises(UserInputError):
        BlockwiseOptions(block_slices=0)
    with pytest.raises(UserInputError):
        BlockwiseOptions(write_mask=False, write_probability=False)
    with pytest.raises(UserInputError, match=r"must end in \.zarr"):
        predict_blockwise(model, volume, tmp_path / "out.npy", CONFIG)
    with pytest.raises(UserInputError, match="z_range"):
        predict_blockwise(
            model, volume, tmp_path / "o.zarr", CONFIG, BlockwiseOptions(z_range=(2, 9))
        )
    (tmp_path / "exists.zarr").mkdir()
    with pytest.raises(UserInputError, match="already exists"):
        predict_blockwise(model, volume, tmp_path / "exists.zarr", CONFIG)
