"""XLA on or off for the CPU training step, in float32 and in mixed_bfloat16.

Run (the command behind docs/bench_xla_cpu.json)::

    python benchmarks/bench_xla_cpu.py

The project's training step (``engine/training/steps.py``: BCE+Dice loss with
pixel weights, Adam, the confusion counts) of a fresh ``--preset`` U-Net
(default cpu-small) on one constant batch (``--batch`` x ``--patch`` px, no
input pipeline), built with ``train.distribute.xla`` = ``on`` (``jit_compile``)
and ``off``, under each precision policy. The four steps are traced and warmed
up first (XLA compilation is not timed); then ``--rounds`` rounds of
``--steps`` steps each, the arms in an order rotated every round. The ratio
that matters, XLA on against XLA off, is taken **within one precision** and per
round (off seconds / on seconds): median and min-max over rounds.
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
POLICIES = ("float32", "mixed_bfloat16")


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_xla_cpu.json"))
    args = parser.parse_args()
    command = "python benchmarks/bench_xla_cpu.py " + " ".join(sys.argv[1:])

    import keras
    import tensorflow as tf

    from napari_unet.engine.config import Config
    from napari_unet.engine.model.unet import build_unet
    from napari_unet.engine.training.steps import _Steps

    rng = np.random.default_rng(0)
    shape = (args.batch, args.patch, args.patch, 1)
    x = tf.constant(rng.random(shape, dtype=np.float32))
    y = tf.constant((rng.random(shape) > 0.5).astype(np.float32))
    w = tf.constant(np.ones(shape, np.float32))

    steps, compile_seconds = {}, {}
    for policy in POLICIES:
        for xla in ("off", "on"):
            config = Config.model_validate(
                {
                    "model": {"preset": args.preset},
                    "train": {
                        "patch_size": args.patch,
                        "batch_size": args.batch,
                        "precision": policy,
                        "distribute": {"xla": xla},
                    },
                }
            )
            keras.mixed_precision.set_global_policy(policy)
            keras.utils.set_random_seed(0)
            name = f"{policy} xla={xla}"
            step = _Steps(build_unet(config.model), config).train_step
            start = time.perf_counter()
            float(step(x, y, w)[0])  # trace (and XLA-compile) + warm up
            float(step(x, y, w)[0])
            compile_seconds[name] = time.perf_counter() - start
            steps[name] = step
    keras.mixed_precision.set_global_policy("float32")

    ms: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            step = steps[name]
            start = time.perf_counter()
            for _ in range(args.steps):
                loss, _ = step(x, y, w)
            float(loss)
            ms[name].append((time.perf_counter() - start) / args.steps * 1e3)
    speed = {}
    for policy in POLICIES:
        off, on = ms[f"{policy} xla=off"], ms[f"{policy} xla=on"]
        speed[f"{policy}: xla=on vs xla=off"] = _spread([a / b for a, b in zip(off, on)])
    report = {
        "benchmark": "training step with XLA on vs off, constant batch, per precision",
        "command": command.strip(),
        "machine": machine(),
        "model": f"fresh {args.preset} U-Net",
        "patch": args.patch,
        "batch": args.batch,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "ms_per_step": {name: _spread(values) for name, values in ms.items()},
        "all_rounds_ms_per_step": ms,
        "speed_xla_on_vs_off": speed,
        "ratio": "per round: xla=off ms / xla=on ms in the same precision (> 1: XLA faster)",
        "trace_and_warmup_seconds": compile_seconds,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for name, value in report["ms_per_step"].items():
        print(f"{name:26s} {value['median']:6.0f} ms/step [{value['min']:.0f}-{value['max']:.0f}]")
    for name, value in speed.items():
        print(f"{name}: {value['median']:.2f}x [{value['min']:.2f}-{value['max']:.2f}]")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
