"""Training throughput: model FLOP/s against the machine's matmul rate, and the
cost of the augmentation pipeline, with the real training step of train.py.

Run: ``python benchmarks/bench_train.py [--preset cpu-small] [--rounds 5]``.

In one process, alternating rounds (timings here are noisy; medians reported):
- the float32 (and bfloat16) rate of a large ``tf.matmul`` (2 x n^3 FLOPs);
- training steps fed one constant batch (no input cost);
- training steps fed the full augmentation pipeline (``make_train_dataset``).
Model FLOP/s = 3 x forward convolution FLOPs (forward + two backward products)
x samples/s. Results go to docs/bench_train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "bench_train.json"


def matmul_rate(dtype: str, n: int = 2048, reps: int = 10) -> float:
    """FLOP/s of an n x n matmul (median of `reps`)."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    run = tf.function(lambda a, b: tf.matmul(a, b))
    run(a, b).numpy()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run(a, b).numpy()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def time_steps(train_step, batches, steps: int) -> float:
    """Seconds per step over `steps` steps (after one warm-up step)."""
    x, y, w = next(batches)
    float(train_step(x, y, w)[0])
    start = time.perf_counter()
    for _ in range(steps):
        x, y, w = next(batches)
        loss, _ = train_step(x, y, w)
    float(loss)
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)

    import tensorflow as tf

    from napari_unet.engine.config import Config
    from napari_unet.engine.data.pipeline import constant_dataset, make_train_dataset
    from napari_unet.engine.data.synthetic import synthetic_em
    from napari_unet.engine.model.unet import count_flops
    from napari_unet.engine.training.train import _build_or_load, _Steps, resolve_precision

    config = Config.model_validate(
        {
            "model": {"preset": args.preset},
            "train": {
                "patch_size": args.patch,
                "batch_size": args.batch,
                "precision": args.precision,
            },
        }
    )
    precision = resolve_precision(config.train.precision)
    model = _build_or_load(config, precision)
    steps = _Steps(model, config)
    flops_per_sample = 3 * count_flops(model, args.patch, args.patch)

    images, masks = synthetic_em(slices=8, size=512, cells=150, seed=0, dtype=np.float32)
    weights = np.ones(images.shape, np.float32)
    pipelines = {
        "constant batch": iter(constant_dataset(config)),
        "augmentation pipeline": iter(make_train_dataset(images, masks, weights, config, seed=0)),
    }
    rates: dict[str, list[float]] = {"matmul float32": [], "matmul bfloat16": []}
    rates.update({name: [] for name in pipelines})
    for _ in range(args.rounds):
        rates["matmul float32"].append(matmul_rate("float32"))
        rates["matmul bfloat16"].append(matmul_rate("bfloat16"))
        for name, batches in pipelines.items():
            seconds = time_steps(steps.train_step, batches, args.steps)
            rates[name].append(args.batch / seconds)

    med = {name: statistics.median(values) for name, values in rates.items()}
    fp32 = med["matmul float32"]
    report = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "tensorflow": tf.__version__,
        "model": config.model.model_dump(),
        "precision": precision,
        "patch": args.patch,
        "batch": args.batch,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "training_flops_per_sample": flops_per_sample,
        "matmul_gflops": {"float32": fp32 / 1e9, "bfloat16": med["matmul bfloat16"] / 1e9},
        "samples_per_second": {name: med[name] for name in pipelines},
        "model_gflops": {name: med[name] * flops_per_sample / 1e9 for name in pipelines},
        "model_flops_vs_float32_matmul": {
            name: med[name] * flops_per_sample / fp32 for name in pipelines
        },
        "pipeline_overhead": 1 - med["augmentation pipeline"] / med["constant batch"],
        "all_rounds": rates,
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"float32 matmul {fp32 / 1e9:.0f} GFLOP/s, bfloat16 {med['matmul bfloat16'] / 1e9:.0f}")
    for name in pipelines:
        print(
            f"{name:22s} {med[name]:6.2f} samples/s  {med[name] * flops_per_sample / 1e9:6.0f} "
            f"GFLOP/s = {med[name] * flops_per_sample / fp32:.0%} of float32 matmul"
        )
    print(f"augmentation pipeline overhead: {report['pipeline_overhead']:.1%}")
    return report


if __name__ == "__main__":
    main()
