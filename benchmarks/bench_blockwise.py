"""Blockwise vs in-memory tiled prediction: throughput and equality.

A synthetic uint8 volume (default 128 x 512 x 512) that fits in memory is
predicted with the same model and tiles

* in memory: :func:`napari_unet.engine.inference.predict.predict` on the numpy stack
  (no file I/O at all), and
* blockwise: :func:`napari_unet.engine.inference.blockwise.predict_blockwise` from a
  zarr on disk (one slice per chunk) to a zarr output (uint8 probability and
  mask), statistics pass and all I/O included;

alternately for several rounds (timings on a shared machine are noisy, so the
medians and their ratio are reported). Then the blockwise output (float32) is
compared with the in-memory probability, and a two-worker ``LocalCluster``
run with the single-process one. Run::

    python benchmarks/bench_blockwise.py [--model DIR] [--slices 128] [--rounds 3]

The default network is a fresh ``cpu-small`` U-Net (depth 4, 16 filters, the
``auto`` precision policy), as in bench_predict.py. Figures go to
docs/bench_blockwise.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_unet.engine.config import PredictConfig
from napari_unet.engine.data.synthetic import synthetic_em
from napari_unet.engine.inference.blockwise import BlockwiseOptions, predict_blockwise
from napari_unet.engine.io.lazy import volume_stats

ROOT = Path(__file__).resolve().parents[1]


def _model_folder(folder: Path) -> Path:
    """A fresh cpu-small model folder (built under the ``auto`` precision policy)."""
    import keras

    from napari_unet.engine.config import Config
    from napari_unet.engine.model.model_folder import ModelFolder
    from napari_unet.engine.model.unet import build_unet
    from napari_unet.engine.training.train import resolve_precision

    precision = resolve_precision("auto")
    keras.mixed_precision.set_global_policy(precision)
    config = Config.model_validate({"model": {"preset": "cpu-small"}, "output": str(folder)})
    model_folder = ModelFolder(folder)
    model_folder.create()
    model_folder.save_config(config)
    model_folder.save_weights_file(build_unet(config.model), "best")
    keras.mixed_precision.set_global_policy("float32")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: a fresh cpu-small U-Net)")
    parser.add_argument("--slices", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-cluster", action="store_true", help="skip the LocalCluster run")
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_blockwise.json"))
    args = parser.parse_args()

    import zarr

    from napari_unet.engine.inference.predict import predict
    from napari_unet.engine.model.model_folder import load_model

    work = Path(tempfile.mkdtemp(prefix="bench-blockwise-"))
    try:
        folder = Path(args.model) if args.model else _model_folder(work / "model")
        model = load_model(folder)
        config = PredictConfig()  # 512 tiles, overlap 32, batch 4
        images, _ = synthetic_em(slices=args.slices, size=512, cells=150, seed=0)
        source = zarr.create_array(
            str(work / "volume.zarr"), shape=images.shape, chunks=(1, 512, 512), dtype="uint8"
        )
        source[:] = images
        predict(model, images[:2], config)  # warm up (tracing)
        times: dict[str, list[float]] = {"in-memory": [], "blockwise": []}
        for _ in range(args.rounds):
            start = time.perf_counter()
            predict(model, images, config)
            times["in-memory"].append(time.perf_counter() - start)
            start = time.perf_counter()
            predict_blockwise(
                model,
                work / "volume.zarr",
                work / "out.zarr",
                config,
                BlockwiseOptions(overwrite=True),
            )
            times["blockwise"].append(time.perf_counter() - start)
        medians = {k: statistics.median(v) for k, v in times.items()}
        ratio = medians["in-memory"] / medians["blockwise"]

        # equality in float32 mode, with the volume's statistics in both paths
        stats = volume_stats(images)
        from napari_unet.engine.events import drain
        from napari_unet.engine.inference.predict import predict_iter

        reference = drain(predict_iter(model, images, config, stats=stats)).probability
        exact = predict_blockwise(
            model,
            work / "volume.zarr",
            work / "f32.zarr",
            config,
            BlockwiseOptions(probability_dtype="float32", block_slices=5),
        )
        max_diff = float(np.abs(exact.probability.compute() - reference).max())
        cluster = None
        if not args.no_cluster:
            from distributed import Client, LocalCluster

            start = time.perf_counter()
            with (
                LocalCluster(
                    n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
                ) as local,
                Client(local) as client,
            ):
                multi = predict_blockwise(
                    folder,
                    work / "volume.zarr",
                    work / "two.zarr",
                    config,
                    BlockwiseOptions(probability_dtype="float32", block_slices=5),
                    client=client,
                )
            identical = bool(
                np.array_equal(multi.probability.compute(), exact.probability.compute())
                and np.array_equal(multi.mask.compute(), exact.mask.compute())
            )
            cluster = {
                "workers": 2,
                "identical_to_single_process": identical,
                "seconds_including_startup": time.perf_counter() - start,
            }
        report = {
            "benchmark": "blockwise (zarr on disk -> zarr) vs in-memory tiled prediction",
            "network": str(args.model or "fresh cpu-small U-Net (depth 4, 16 filters)"),
            "precision": model.keras_model.layers[1].dtype_policy.name,
            "volume": list(images.shape),
            "tiles": "512 x 512, overlap 32, batch 4",
            "rounds": args.rounds,
            "seconds": times,
            "median_seconds": medians,
            "slices_per_second": {k: args.slices / v for k, v in medians.items()},
            "blockwise_throughput_vs_in_memory": ratio,
            "float32_max_abs_diff_vs_in_memory": max_diff,
            "local_cluster": cluster,
            "cpus": os.cpu_count(),
        }
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
