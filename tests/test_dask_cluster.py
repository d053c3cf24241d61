"""Blockwise prediction on a two-worker dask LocalCluster equals the single-process run."""

from __future__ import annotations

import distributed
import numpy as np
import pytest

from napari_unet.engine.config import PredictConfig
from napari_unet.engine.data.synthetic import synthetic_em
from napari_unet.engine.inference.blockwise import BlockwiseOptions, predict_blockwise

CONFIG = PredictConfig(tile_size=48, overlap=8, batch_size=4)


@pytest.fixture(scope="module")
def cluster():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as local,
        distributed.Client(local) as client,
    ):
        yield local, client


@pytest.mark.slow
def test_two_workers_equal_one_process_and_load_the_model_once(
    cluster, trained_model_dir, tmp_path
):
    import zarr

    from napari_unet.cli.main import main
    from napari_unet.engine.inference.distributed import model_loads

    local, client = cluster
    images, _ = synthetic_em(slices=6, size=(96, 112), cells=10, seed=4)
    source = zarr.create_array(
        str(tmp_path / "in.zarr"), shape=images.shape, chunks=(1, 96, 112), dtype=images.dtype
    )
    source[:] = images
    options = BlockwiseOptions(block_slices=1, block_size=64, probability_dtype="float32")
    single = predict_blockwise(
        trained_model_dir, tmp_path / "in.zarr", tmp_path / "one.zarr", CONFIG, options
    )
    events = []
    multi = predict_blockwise(
        trained_model_dir,
        tmp_path / "in.zarr",
        tmp_path / "two.zarr",
        CONFIG,
        options,
        client=client,
        callback=events.append,
    )
    assert events[-1].done == events[-1].total == single.tiles
    np.testing.assert_array_equal(multi.probability.compute(), single.probability.compute())
    np.testing.assert_array_equal(multi.mask.compute(), single.mask.compute())

    # the CLI on the same scheduler; a numpy source (read by the client) to a TIFF
    code = main(
        [
            "predict",
            str(trained_model_dir),
            str(tmp_path / "in.zarr"),
            "-o",
            str(tmp_path / "cli.zarr"),
            "--scheduler",
            local.scheduler_address,
            "--tile-size",
            "48",
            "--overlap",
            "8",
            "--block-size",
            "64",
            "--quiet",
        ]
    )
    assert code == 0
    cli = zarr.open_group(str(tmp_path / "cli.zarr"), mode="r")
    np.testing.assert_array_equal(cli["mask"][:], single.mask.compute())
    tiff = predict_blockwise(
        trained_model_dir,
        images,
        tmp_path / "mask.tif",
        CONFIG,
        BlockwiseOptions(block_slices=2),
        client=client,
    )
    import tifffile

    np.testing.assert_array_equal(tifffile.imread(tiff.tiff), single.mask.compute())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch left

    loads = client.run(model_loads)  # {worker: {model folder: loads}}
    assert len(loads) == 2
    counts = [n for per_worker in loads.values() for n in per_worker.values()]
    assert counts and all(n == 1 for n in counts)  # three runs, one load per worker
