"""Training throughput of the project's default training against a plain Keras loop.

Run: ``python benchmarks/bench_train.py [--preset cpu-small] [--rounds 5] [--steps 12]``.

Every arm trains the same U-Net (``--preset``, ``--patch`` px, batch ``--batch``) and all arms
run in one process in alternating rounds (timings on a shared machine are noisy; medians and
min-max spread are reported). Arms, each in float32 and in mixed_bfloat16:

- ``keras train_on_batch``: the network compiled with Adam and binary cross-entropy, fed one
  constant batch through ``model.train_on_batch`` (no input pipeline at all);
- ``ours, constant batch``: the project's training step (``engine/training/steps.py``: the
  BCE+Dice loss with pixel weights, the confusion counts) on one constant batch;
- ``ours, augmentation pipeline``: the same step fed by the full augmentation pipeline
  (``make_train_dataset``); its iterator is created for each round and deleted after it, so
  its prefetching threads do not run during the other arms.

Also per precision: the rate of a large ``tf.matmul`` of that precision (2 n^3 FLOPs) and
the model's training FLOP/s (3 x forward convolution FLOPs x samples/s) as a share of the
matmul rate **of the same precision**. The ratio that issue 12 asks about is
``ours, augmentation pipeline`` in the policy ``precision: auto`` picks here, against
``keras train_on_batch`` in its faster precision. Writes docs/bench_train.json.
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
POLICIES = ("float32", "mixed_bfloat16")


def matmul_rate(dtype: str, n: int = 2048, reps: int = 8) -> float:
    """FLOP/s of an n x n matmul in `dtype` (median of `reps`)."""
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


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    from napari_unet.engine.config import Config
    from napari_unet.engine.data.pipeline import make_train_dataset
    from napari_unet.engine.data.synthetic import synthetic_em
    from napari_unet.engine.model.precision import choose_precision
    from napari_unet.engine.model.unet import build_unet, count_flops
    from napari_unet.engine.training.steps import _Steps

    def config_for(policy: str) -> Config:
        return Config.model_validate(
            {
                "model": {"preset": args.preset},
                "train": {"patch_size": args.patch, "batch_size": args.batch, "precision": policy},
            }
        )

    rng = np.random.default_rng(0)
    shape = (args.batch, args.patch, args.patch, 1)
    x = rng.random(shape, dtype=np.float32)
    y = (rng.random(shape) > 0.5).astype(np.float32)
    w = np.ones(shape, np.float32)
    images, masks = synthetic_em(slices=8, size=512, cells=150, seed=0, dtype=np.float32)
    weights = np.ones(images.shape, np.float32)

    keras_models, our_steps = {}, {}
    for policy in POLICIES:
        keras.mixed_precision.set_global_policy(policy)
        model = build_unet(config_for(policy).model)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
        model.train_on_batch(x, y)
        keras_models[policy] = model
        steps = _Steps(build_unet(config_for(policy).model), config_for(policy))
        steps.train_step(tf.constant(x), tf.constant(y), tf.constant(w))
        our_steps[policy] = steps
    keras.mixed_precision.set_global_policy("float32")
    flops_per_sample = 3 * count_flops(keras_models["float32"], args.patch, args.patch)
    xt, yt, wt = tf.constant(x), tf.constant(y), tf.constant(w)

    def time_keras(policy: str) -> float:
        model = keras_models[policy]
        start = time.perf_counter()
        for _ in range(args.steps):
            loss = model.train_on_batch(x, y)
        float(np.asarray(loss))
        return args.batch * args.steps / (time.perf_counter() - start)

    def time_ours_constant(policy: str) -> float:
        step = our_steps[policy].train_step
        start = time.perf_counter()
        for _ in range(args.steps):
            loss, _ = step(xt, yt, wt)
        float(loss)
        return args.batch * args.steps / (time.perf_counter() - start)

    def time_ours_pipeline(policy: str) -> float:
        dataset = make_train_dataset(images, masks, weights, config_for(policy), seed=0)
        batches = iter(dataset)
        step = our_steps[policy].train_step
        float(step(*next(batches))[0])  # fill the prefetch buffer before timing
        start = time.perf_counter()
        for _ in range(args.steps):
            loss, _ = step(*next(batches))
        float(loss)
        rate = args.batch * args.steps / (time.perf_counter() - start)
        del batches, dataset  # stop its prefetching threads before the next arm
        return rate

    arms = {
        "keras train_on_batch": time_keras,
        "ours, constant batch": time_ours_constant,
        "ours, augmentation pipeline": time_ours_pipeline,
    }
    rates: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for policy in POLICIES:
            rates.setdefault(f"matmul {policy}", []).append(
                matmul_rate("float32" if policy == "float32" else "bfloat16")
            )
            for name, arm in arms.items():
                rates.setdefault(f"{name} | {policy}", []).append(arm(policy))

    auto = choose_precision("auto", config_for("auto").model, args.patch, args.batch, "train")
    samples = {name: _spread(values) for name, values in rates.items() if "matmul" not in name}
    best_keras = max(samples[f"keras train_on_batch | {p}"]["median"] for p in POLICIES)
    ours_default = samples[f"ours, augmentation pipeline | {auto.policy}"]["median"]
    report = {
        "command": "python benchmarks/bench_train.py " + " ".join(argv or []),
        "cpu": cpu_name(),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "model": config_for("float32").model.model_dump(),
        "patch": args.patch,
        "batch": args.batch,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "training_flops_per_sample": flops_per_sample,
        "matmul_gflops": {p: _spread([r / 1e9 for r in rates[f"matmul {p}"]]) for p in POLICIES},
        "samples_per_second": samples,
        "model_flops_share_of_same_precision_matmul": {
            name: samples[name]["median"]
            * flops_per_sample
            / statistics.median(rates[f"matmul {name.rsplit('| ', 1)[1]}"])
            for name in samples
        },
        "precision_auto": {"policy": auto.policy, "probe_seconds_per_step": auto.seconds_per_step},
        "default_training_vs_best_plain_keras": ours_default / best_keras,
        "all_rounds": rates,
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"CPU: {report['cpu']}; precision auto -> {auto.policy}")
    for name, value in samples.items():
        share = report["model_flops_share_of_same_precision_matmul"][name]
        print(
            f"{name:45s} {value['median']:6.2f} samples/s "
            f"[{value['min']:.2f}-{value['max']:.2f}]  {share:.0%} of same-precision matmul"
        )
    print(
        f"default training ({auto.policy}, augmentation pipeline) / best plain Keras "
        f"train_on_batch: {report['default_training_vs_best_plain_keras']:.2f}x"
    )
    return report


if __name__ == "__main__":
    main()
