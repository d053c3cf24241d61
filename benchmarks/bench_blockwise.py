"""Blockwise vs in-memory tiled prediction: throughput and equality.

Run (the command behind docs/bench_blockwise.json)::

    python benchmarks/bench_blockwise.py

A uint8 volume of real ISBI 2012 slices (default 96 x 512 x 512: the 57
slices of the train, unlabeled and validation volumes, cycled and shifted
along x) that fits in memory is predicted by the two arms

* ``in-memory``: :func:`napari_unet.engine.inference.predict.predict_iter` on
  the numpy stack (no file I/O; float32 probability returned in memory);
* ``blockwise``: :func:`napari_unet.engine.inference.blockwise.predict_blockwise`
  from a zarr on disk (one slice per chunk) to a zarr output (uint8 probability
  and mask), reading, block planning, halos and writing included;

with the same loaded model object (the shipped model, in one precision:
``--precision``, default the policy it was trained in), the same tiles and
batch (``PredictConfig`` defaults: 512 px, overlap 32, batch 4) and the same
normalization statistics (``volume_stats`` of the volume, computed once and
given to both, so the statistics pass is not part of either arm; its own time
is reported apart). The arms alternate for ``--rounds`` rounds (order swapped
every round) after one warm-up run each; the per-round ratio in-memory seconds
/ blockwise seconds is reported as median and min-max.

Then the blockwise output in float32 is compared with the in-memory
probability, and a two-worker ``LocalCluster`` run with a single-process run.
Cluster workers load the model folder themselves (in the precision its
``predict.precision: auto`` resolves to on this machine), so that comparison
passes the folder to both runs; both write float32 probabilities.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_machine import machine  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "napari_unet" / "sample_data" / "model"
ISBI = Path("/work/shared/data/isbi2012")


def real_volume(slices: int) -> np.ndarray:
    """(slices, 512, 512) uint8 of the 57 real ISBI slices, cycled and shifted along x."""
    import tifffile

    names = ("train-volume.tif", "unlabeled-volume.tif", "val-volume.tif")
    base = np.concatenate([tifffile.imread(ISBI / name) for name in names]).astype(np.uint8)
    return np.stack(
        [np.roll(base[z % len(base)], 7 * (z // len(base)), axis=1) for z in range(slices)]
    )


def pinned(loaded, precision: str):
    """`loaded` in `precision`, with ``predict.precision`` set to it in its own config too.

    ``predict_iter`` converts the model to the precision of the PredictConfig it is
    given, ``predict_blockwise`` to the ``predict.precision`` of the model's config;
    with both set to `precision` neither path converts, so both arms run this model.
    """
    import dataclasses

    from napari_unet.engine.model.precision import for_prediction

    loaded = for_prediction(loaded, precision)
    config = loaded.config.model_copy(deep=True)
    config.predict.precision = precision
    assert loaded.keras_model.dtype_policy.name == precision
    return dataclasses.replace(loaded, config=config)


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--precision", default=None, help="default: the model's training policy")
    parser.add_argument("--no-cluster", action="store_true", help="skip the LocalCluster run")
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_blockwise.json"))
    args = parser.parse_args()
    command = "python benchmarks/bench_blockwise.py " + " ".join(sys.argv[1:])

    import zarr

    from napari_unet.engine.config import PredictConfig
    from napari_unet.engine.data.preprocess import normalization_stats
    from napari_unet.engine.events import drain
    from napari_unet.engine.inference.blockwise import BlockwiseOptions, predict_blockwise
    from napari_unet.engine.inference.predict import predict_iter
    from napari_unet.engine.io.lazy import volume_stats
    from napari_unet.engine.model.model_folder import load_model
    from napari_unet.engine.model.precision import for_prediction

    precision = args.precision or json.loads((MODEL / "metadata.json").read_text())["precision"]
    model = pinned(load_model(MODEL), precision)
    config = PredictConfig(precision=precision)  # 512 tiles, overlap 32, batch 4
    folder_policy = for_prediction(load_model(MODEL), "auto").keras_model.dtype_policy.name
    low, high = model.config.data.percentiles
    work = Path(tempfile.mkdtemp(prefix="bench-blockwise-"))
    try:
        images = real_volume(args.slices)
        source_path = work / "volume.zarr"
        source = zarr.create_array(
            str(source_path), shape=images.shape, chunks=(1, 512, 512), dtype="uint8"
        )
        source[:] = images
        start = time.perf_counter()
        stats = volume_stats(zarr.open_array(str(source_path), mode="r"), low, high)
        stats_seconds = {"volume_stats (zarr on disk)": time.perf_counter() - start}
        start = time.perf_counter()
        normalization_stats(images, low, high)
        stats_seconds["normalization_stats (numpy, exact)"] = time.perf_counter() - start

        def in_memory(m=model):
            return drain(predict_iter(m, images, config, stats=stats)).probability

        def blockwise(m=model, output="out.zarr", probability_dtype="uint8", client=None):
            options = BlockwiseOptions(
                overwrite=True, stats=stats, probability_dtype=probability_dtype
            )
            target = work / output
            return predict_blockwise(m, source_path, target, config, options, client=client)

        arms = {"in-memory": in_memory, "blockwise": blockwise}
        for arm in arms.values():  # warm up (tracing, first reads)
            arm()
        seconds: dict[str, list[float]] = {name: [] for name in arms}
        for r in range(args.rounds):
            for name in list(arms)[:: 1 if r % 2 == 0 else -1]:
                start = time.perf_counter()
                arms[name]()
                seconds[name].append(time.perf_counter() - start)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in seconds.items()))
        ratios = [m / b for m, b in zip(seconds["in-memory"], seconds["blockwise"])]

        reference = in_memory()
        exact = blockwise(output="f32.zarr", probability_dtype="float32")
        max_diff = float(np.abs(exact.probability.compute() - reference).max())
        cluster = None
        if not args.no_cluster:
            from distributed import Client, LocalCluster

            single = blockwise(str(MODEL), "single32.zarr", "float32")
            start = time.perf_counter()
            with (
                LocalCluster(
                    n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
                ) as local,
                Client(local) as client,
            ):
                multi = blockwise(str(MODEL), "two.zarr", "float32", client=client)
            identical = bool(
                np.array_equal(multi.probability.compute(), single.probability.compute())
                and np.array_equal(multi.mask.compute(), single.mask.compute())
            )
            cluster = {
                "workers": 2,
                "precision": f"{folder_policy} (predict.precision auto of the model folder)",
                "identical_to_single_process_from_the_folder": identical,
                "seconds_including_startup": time.perf_counter() - start,
            }
        report = {
            "benchmark": "blockwise (zarr on disk -> zarr) vs in-memory tiled prediction",
            "command": command.strip(),
            "machine": machine(),
            "model": "napari_unet/sample_data/model (shipped cpu-small U-Net)",
            "precision": precision,
            "precision_note": "one LoadedModel for both arms; predict.precision pinned in the "
            "PredictConfig and in the model's config, so neither path converts it",
            "volume": list(images.shape),
            "data": "the 57 real ISBI 2012 slices, cycled and shifted along x",
            "tiles": "512 x 512, overlap 32, batch 4 (PredictConfig defaults), both arms",
            "statistics": "volume_stats of the zarr, computed once and given to both arms",
            "arms": {
                "in-memory": "predict_iter on the uint8 numpy stack, float32 result in memory",
                "blockwise": "predict_blockwise zarr -> zarr, uint8 probability + mask written",
            },
            "rounds": args.rounds,
            "seconds": seconds,
            "median_seconds": {k: statistics.median(v) for k, v in seconds.items()},
            "slices_per_second": {
                k: args.slices / statistics.median(v) for k, v in seconds.items()
            },
            "blockwise_speed_vs_in_memory": _spread(ratios),
            "statistics_seconds": stats_seconds,
            "max_abs_diff_vs_in_memory_float32_output": max_diff,
            "local_cluster": cluster,
        }
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(
            json.dumps(
                {
                    k: report[k]
                    for k in (
                        "blockwise_speed_vs_in_memory",
                        "max_abs_diff_vs_in_memory_float32_output",
                        "local_cluster",
                    )
                },
                indent=2,
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
