"""Cost of the augmentation input pipeline, alone and inside U-Net training.

Run: ``python benchmarks/bench_pipeline.py [--patch 256] [--batch 4] [--rounds 3]``.

1. Pipeline alone: ``make_train_dataset`` iterated without a model, for
   augmentation off (crop only), the default augmentation, and every operation
   always on. Reports wall and CPU milliseconds per patch (CPU time is what the
   pipeline takes away from the model on a shared CPU).
2. Training (when ``napari_unet.engine.model.unet.build_unet`` exists): samples/s
   of a U-Net training step (GradientTape + Adam + ``make_loss``, precision
   ``mixed_bfloat16`` by default) fed by the constant dataset (one fixed batch:
   no input cost), by the crop-only pipeline and by the augmented pipeline.
   The variants alternate over several rounds (timings on a shared machine are
   noisy); medians and the overhead ratio ``1 - rate / constant_rate`` are
   printed and written to docs/bench_pipeline.json.

Use ``--pipeline-only`` to skip the training part.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "bench_pipeline.json"


# ----------------------------------------------------------------------------- setup


def make_config(patch: int, batch: int, preset: str = "cpu-small", loss: str = "bce_dice"):
    from napari_unet.engine.config import Config

    return Config.model_validate(
        {
            "model": {"preset": preset},
            "train": {"patch_size": patch, "batch_size": batch, "loss": loss, "seed": 0},
        }
    )


def augment_variants(config) -> dict[str, Any]:
    """Configs to compare: crop only, defaults, everything always on."""
    off = config.model_copy(deep=True)
    off.augment.enabled = False
    full = config.model_copy(deep=True)
    full.augment.affine.probability = 1.0
    full.augment.elastic.probability = 1.0
    full.augment.intensity.noise_probability = 1.0
    full.augment.intensity.blur_probability = 1.0
    return {"crop only": off, "default augmentation": config, "all augmentation always": full}


def make_data(slices: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """EM-like float32 [0, 1] stack and its {0, 1} mask."""
    try:
        from napari_unet.engine.data.synthetic import synthetic_em

        images, masks = synthetic_em(
            slices=slices,
            size=size,
            cells=max(8, size * size // 2000),
            seed=seed,
            dtype=np.float32,
        )
        images = np.asarray(images, np.float32)
        if images.max() > 1.5:
            images = images / 255.0
        return images.astype(np.float32), (np.asarray(masks) > 0).astype(np.uint8)
    except ImportError:  # pragma: no cover - synthetic data not available
        from scipy import ndimage

        rng = np.random.default_rng(seed)
        field = ndimage.gaussian_filter(rng.standard_normal((slices, size, size)), (0, 6, 6))
        masks = (field > 0).astype(np.uint8)
        images = (0.3 + 0.4 * masks + 0.1 * rng.standard_normal(masks.shape)).astype(np.float32)
        return images, masks


# ----------------------------------------------------------------------------- pipeline alone


def time_dataset(dataset, batches: int, warmup: int = 3) -> tuple[float, float]:
    """(wall seconds, CPU seconds) for ``batches`` batches of a fresh iterator."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    result = time.perf_counter() - wall, time.process_time() - cpu
    del iterator
    return result


def bench_pipeline_only(config, images, masks, rounds: int, batches: int) -> dict[str, Any]:
    from napari_unet.engine.data.pipeline import make_train_dataset

    batch = config.train.batch_size
    variants = augment_variants(config)
    datasets = {
        name: make_train_dataset(images, masks, None, cfg) for name, cfg in variants.items()
    }
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, ds in datasets.items():
            w, c = time_dataset(ds, batches)
            wall[name].append(w / (batches * batch) * 1e3)
            cpu[name].append(c / (batches * batch) * 1e3)
    return {
        name: {
            "wall_ms_per_patch": statistics.median(wall[name]),
            "cpu_ms_per_patch": statistics.median(cpu[name]),
            "rounds_cpu_ms_per_patch": cpu[name],
        }
        for name in variants
    }


# ----------------------------------------------------------------------------- training


def make_train_step(model, config):
    import keras
    import tensorflow as tf

    try:
        from napari_unet.engine.model.losses import make_loss

        loss_fn = make_loss(config.train)
    except ImportError:  # pragma: no cover - losses not written yet
        bce = keras.losses.BinaryCrossentropy()

        def loss_fn(y, p, w):
            return bce(y, p, sample_weight=w)

    optimizer = keras.optimizers.Adam(learning_rate=1e-3)
    optimizer.build(model.trainable_variables)

    @tf.function(reduce_retracing=True)
    def step(x, y, w):
        with tf.GradientTape() as tape:
            p = model(x, training=True)
            loss = loss_fn(y, p, w)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def time_training(step, dataset, steps: int, warmup: int = 2) -> tuple[float, float]:
    """(wall, CPU) seconds for ``steps`` training steps fed by a fresh iterator
    of ``dataset``. CPU time of the whole process (model + input pipeline) is
    less sensitive than wall time to other jobs sharing the machine."""
    iterator = iter(dataset)
    for _ in range(warmup):
        step(*next(iterator)).numpy()
    start, cpu = time.perf_counter(), time.process_time()
    loss = None
    for _ in range(steps):
        loss = step(*next(iterator))
    if loss is not None:
        loss.numpy()
    result = time.perf_counter() - start, time.process_time() - cpu
    del iterator
    return result


def bench_training(config, images, masks, rounds: int, steps: int, precision: str):
    import keras

    from napari_unet.engine.data.pipeline import constant_dataset, make_train_dataset
    from napari_unet.engine.model.unet import build_unet

    keras.mixed_precision.set_global_policy(precision)
    model = build_unet(config.model)
    step = make_train_step(model, config)
    variants = augment_variants(config)
    datasets = {"constant batch": constant_dataset(config)}
    datasets["crop only"] = make_train_dataset(images, masks, None, variants["crop only"])
    datasets["default augmentation"] = make_train_dataset(images, masks, None, config)
    datasets["all augmentation always"] = make_train_dataset(
        images, masks, None, variants["all augmentation always"]
    )
    time_training(step, datasets["constant batch"], 2)  # trace and warm up
    batch = config.train.batch_size
    rates: dict[str, list[float]] = {name: [] for name in datasets}
    cpu: dict[str, list[float]] = {name: [] for name in datasets}
    for _ in range(rounds):
        for name, ds in datasets.items():
            wall_s, cpu_s = time_training(step, ds, steps)
            rates[name].append(steps * batch / wall_s)
            cpu[name].append(cpu_s / steps)
    base = statistics.median(rates["constant batch"])
    base_cpu = statistics.median(cpu["constant batch"])
    return {
        name: {
            "samples_per_second": statistics.median(r),
            "seconds_per_step": batch / statistics.median(r),
            "rounds_samples_per_second": r,
            "overhead_vs_constant": 1.0 - statistics.median(r) / base,
            "cpu_seconds_per_step": statistics.median(cpu[name]),
            "cpu_overhead_vs_constant": statistics.median(cpu[name]) / base_cpu - 1.0,
        }
        for name, r in rates.items()
    }


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=25, help="batches per pipeline round")
    parser.add_argument("--steps", type=int, default=10, help="training steps per round")
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--pipeline-only", action="store_true")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)

    import tensorflow as tf

    config = make_config(args.patch, args.batch, args.preset)
    images, masks = make_data(args.slices, args.size)
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "tensorflow": tf.__version__,
        },
        "patch_size": args.patch,
        "batch_size": args.batch,
        "stack": list(images.shape),
        "rounds": args.rounds,
    }

    print(
        f"pipeline alone: {args.batches} batches x {args.batch} patches of {args.patch}^2, "
        f"{args.rounds} rounds"
    )
    report["pipeline_alone"] = bench_pipeline_only(config, images, masks, args.rounds, args.batches)
    for name, r in report["pipeline_alone"].items():
        print(
            f"  {name:26s} {r['cpu_ms_per_patch']:6.2f} ms CPU/patch  "
            f"{r['wall_ms_per_patch']:6.2f} ms wall/patch"
        )

    if not args.pipeline_only:
        try:
            import napari_unet.engine.model.unet  # noqa: F401
        except ImportError as exc:
            print(f"training part skipped: {exc}")
            report["training"] = None
        else:
            print(f"training ({args.preset}, {args.precision}): {args.steps} steps per round")
            report["model"] = config.model.model_dump()
            report["precision"] = args.precision
            report["training"] = bench_training(
                config, images, masks, args.rounds, args.steps, args.precision
            )
            for name, r in report["training"].items():
                print(
                    f"  {name:26s} {r['samples_per_second']:6.2f} samples/s  "
                    f"{r['seconds_per_step']:6.3f} s/step  "
                    f"overhead {100 * r['overhead_vs_constant']:+6.1f} %  "
                    f"CPU {r['cpu_seconds_per_step']:6.3f} s/step "
                    f"({100 * r['cpu_overhead_vs_constant']:+5.1f} %)"
                )

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"written {out}")
    return report


if __name__ == "__main__":
    main()
