"""Throughput of the augmentation input pipeline alone (no model, no training).

Run (the command behind docs/bench_pipeline.json)::

    python benchmarks/bench_pipeline.py

``make_train_dataset`` over the 24 ISBI 2012 training slices and masks
(normalized as in training, with U-Net border weights) is iterated without a
model, 256 px patches in batches of 4, for three configurations that differ
only in ``augment``:

* ``crop only``: ``augment.enabled = false`` (random crops, nothing else);
* ``default augmentation``: the ``Config`` defaults;
* ``all augmentation always``: affine, elastic, noise and blur with probability 1.

The variants alternate for ``--rounds`` rounds (order rotated each round); each
round times ``--batches`` batches of a fresh iterator after 3 warm-up batches and
reports patches per second (wall) and milliseconds of process CPU time per patch
(what the pipeline takes from the model on a shared CPU). Medians and min-max
over rounds are reported.

This is the pipeline's own cost. What it costs *inside training* (the step fed by
the pipeline against the step fed by one constant batch) is measured by
``benchmarks/bench_train.py``, not here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from bench_machine import machine  # benchmarks/ is on sys.path when run as a script

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
ISBI = Path("/work/shared/data/isbi2012")


def variants(patch: int, batch: int) -> dict:
    """Configs that differ only in their ``augment`` section."""
    from napari_unet.engine.config import Config

    base = Config.model_validate({"train": {"patch_size": patch, "batch_size": batch, "seed": 0}})
    off = base.model_copy(deep=True)
    off.augment.enabled = False
    full = base.model_copy(deep=True)
    full.augment.affine.probability = 1.0
    full.augment.elastic.probability = 1.0
    full.augment.intensity.noise_probability = 1.0
    full.augment.intensity.blur_probability = 1.0
    return {"crop only": off, "default augmentation": base, "all augmentation always": full}


def isbi_training_data(config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalized ISBI training slices, {0, 1} cell masks and border weights."""
    import tifffile

    from napari_unet.engine.data.preprocess import apply_normalization, normalization_stats
    from napari_unet.engine.data.weights import border_weights_stack

    raw = tifffile.imread(ISBI / "train-volume.tif")
    masks = (tifffile.imread(ISBI / "train-labels.tif") > 0).astype(np.uint8)
    low, high = config.data.percentiles
    images = apply_normalization(raw, *normalization_stats(raw, low, high)).astype(np.float32)
    border = config.train.border_weights
    weights = border_weights_stack(masks, w0=border.w0, sigma=border.sigma).astype(np.float32)
    return images, masks, weights


def time_batches(dataset, batches: int, warmup: int = 3) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of `batches` batches of a fresh iterator."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    result = time.perf_counter() - wall, time.process_time() - cpu
    del iterator  # stop its prefetching threads before the next variant
    return result


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=25, help="batches timed per round")
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_pipeline.json"))
    args = parser.parse_args()
    command = "python benchmarks/bench_pipeline.py " + " ".join(sys.argv[1:])

    from napari_unet.engine.data.pipeline import make_train_dataset

    configs = variants(args.patch, args.batch)
    images, masks, weights = isbi_training_data(configs["default augmentation"])
    datasets = {name: make_train_dataset(images, masks, weights, c) for name, c in configs.items()}
    patches = args.batches * args.batch
    rate: dict[str, list[float]] = {name: [] for name in datasets}
    cpu_ms: dict[str, list[float]] = {name: [] for name in datasets}
    names = list(datasets)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            wall, cpu = time_batches(datasets[name], args.batches)
            rate[name].append(patches / wall)
            cpu_ms[name].append(cpu / patches * 1e3)
    results = {
        name: {
            "patches_per_second_wall": _spread(rate[name]),
            "cpu_ms_per_patch": _spread(cpu_ms[name]),
            "rounds_patches_per_second_wall": rate[name],
            "rounds_cpu_ms_per_patch": cpu_ms[name],
        }
        for name in datasets
    }
    report = {
        "benchmark": "augmentation tf.data pipeline alone (no model), patches per second",
        "command": command.strip(),
        "machine": machine(),
        "data": "ISBI 2012 train-volume.tif / train-labels.tif (24 x 512 x 512), border weights",
        "patch_size": args.patch,
        "batch_size": args.batch,
        "rounds": args.rounds,
        "patches_per_round": patches,
        "results": results,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for name, r in results.items():
        w, c = r["patches_per_second_wall"], r["cpu_ms_per_patch"]
        print(
            f"{name:26s} {w['median']:6.1f} patches/s [{w['min']:.1f}-{w['max']:.1f}]  "
            f"{c['median']:5.2f} ms CPU/patch [{c['min']:.2f}-{c['max']:.2f}]"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
