"""Training under tf.distribute.MirroredStrategy on two logical CPU devices.

Logical devices must be made before TensorFlow initialises its devices, so
the mirrored runs happen in a fresh subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from napari_unet.engine.config import Config
from napari_unet.engine.errors import UserInputError

MIRRORED = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from napari_unet.engine.model.strategy import split_cpu

    devices = split_cpu(2)  # before anything else touches TensorFlow
    import tensorflow as tf
    from napari_unet.engine.config import Config
    from napari_unet.engine.model.unet import build_unet
    from napari_unet.engine.model.strategy import distribute_dataset, make_strategy, strategy_scope
    from napari_unet.engine.data.synthetic import synthetic_em
    from napari_unet.engine.training.train import _Steps, train

    out = {"devices": devices}
    # 1. one mirrored step equals one single-device step on the same global batch
    # (with a loss that is a mean over pixels; a Dice loss is per replica)
    config = Config.model_validate({
        "model": {"depth": 2, "base_filters": 4, "batch_norm": False},
        "train": {"batch_size": 4, "patch_size": 32, "precision": "float32", "loss": "bce",
                  "distribute": {"strategy": "mirrored", "devices": devices}},
    })
    rng = np.random.default_rng(0)
    x = rng.random((4, 32, 32, 1), dtype=np.float32)
    y = (x > 0.5).astype(np.float32)
    w = np.ones_like(x)
    tf.keras.utils.set_random_seed(0)
    single = build_unet(config.model)
    start = single.get_weights()
    steps = _Steps(single, config)
    loss_single, counts_single = steps.train_step(tf.constant(x), tf.constant(y), tf.constant(w))
    strategy = make_strategy(config.train.distribute)
    with strategy_scope(strategy):
        mirrored = build_unet(config.model)
        mirrored.set_weights(start)
        msteps = _Steps(mirrored, config, strategy)
    batch = tf.data.Dataset.from_tensors((x, y, w))
    xs, ys, ws = next(iter(distribute_dataset(strategy, batch)))
    loss_mirrored, counts_mirrored = msteps.train_step(xs, ys, ws)
    out["replicas"] = strategy.num_replicas_in_sync
    out["loss_diff"] = abs(float(loss_single) - float(loss_mirrored))
    out["counts_equal"] = bool(np.allclose(counts_single, counts_mirrored))
    out["weight_diff"] = max(float(np.abs(a - b).max())
                             for a, b in zip(single.get_weights(), mirrored.get_weights()))
    # 2. the whole training loop under the strategy writes a usable model folder
    images, masks = synthetic_em(slices=3, size=48, cells=8, seed=2)
    config = Config.model_validate({
        "model": {"depth": 2, "base_filters": 4},
        "train": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "patch_size": 32,
                  "precision": "float32", "tensorboard": False,
                  "distribute": {"strategy": "mirrored", "devices": devices}},
        "predict": {"tile_size": 64, "overlap": 8, "batch_size": 2},
        "data": {"val_fraction": 0.34},
        "output": sys.argv[1],
    })
    result = train(config, images, masks)
    out["stopped"] = result.stopped_reason
    out["best"] = (result.model_dir / "best.keras").exists()
    out["val_loss"] = result.history[-1].get("val_loss") if result.history else None
    print("RESULT " + json.dumps(out))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(tmp_path / "model")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT ") :])
    assert len(out["devices"]) == 2 and out["replicas"] == 2
    assert out["loss_diff"] < 1e-5 and out["counts_equal"]
    assert out["weight_diff"] < 1e-5  # gradients summed over replicas like one big batch
    assert out["stopped"] == "finished" and out["best"] and out["val_loss"] is not None


def test_distribute_config_and_helpers(monkeypatch):
    from napari_unet.engine.model.strategy import make_strategy, resolve_xla, worker_output

    config = Config.model_validate({"train": {"distribute": {"strategy": "mirrored"}}})
    assert config.train.distribute.devices is None and config.train.distribute.xla == "auto"
    assert Config().train.distribute.strategy == "none"
    assert make_strategy(Config().train.distribute) is None
    with pytest.raises(ValueError):
        Config.model_validate({"train": {"distribute": {"strategy": "ring"}}})
    bad = Config.model_validate(
        {"train": {"distribute": {"strategy": "mirrored", "devices": ["/gpu:7"]}}}
    )
    with pytest.raises(UserInputError, match="do not exist"):
        make_strategy(bad.train.distribute)
    multi = Config.model_validate(
        {"train": {"distribute": {"strategy": "multi_worker"}}, "output": "/tmp/m"}
    )
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserInputError, match="TF_CONFIG"):
        make_strategy(multi.train.distribute)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"task": {"type": "worker", "index": 1}}))
    assert worker_output(multi).output == os.path.join("/tmp/m", "worker-1")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"task": {"type": "worker", "index": 0}}))
    assert worker_output(multi).output == "/tmp/m"
    assert resolve_xla("on") is True and resolve_xla("off") is None
    assert resolve_xla("auto") is None  # no GPU here: XLA stays off on CPU
