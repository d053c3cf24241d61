"""Training on several devices with ``tf.distribute``; XLA and loss scaling.

Configured by ``train.distribute`` (:class:`~napari_unet.engine.config.DistributeConfig`):

``none`` (default)
    One device; the training step is exactly the single-device one.
``mirrored``
    ``tf.distribute.MirroredStrategy``: synchronous data parallelism over the
    GPUs of one machine (``devices``, default all GPUs). The model, optimizer
    and steps are built inside ``strategy.scope()``; each global batch of
    ``train.batch_size`` patches is split over the replicas
    (``experimental_distribute_dataset``), every replica computes gradients
    of its share of the loss (scaled by ``1 / replicas``) and the optimizer
    sums them across replicas, so one step equals a single-device step on the
    whole batch (up to batch-norm statistics, which are per replica).
``multi_worker``
    ``tf.distribute.MultiWorkerMirroredStrategy`` over several machines. Start
    the same ``napari-unet train`` command on every machine, each with a
    ``TF_CONFIG`` environment variable naming all workers and its own index::

        TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                    "task": {"type": "worker", "index": 0}}'

    Worker 0 (the chief) writes the model folder; the others write theirs to
    ``<output>/worker-<index>`` (required by the collective checkpointing
    pattern, and harmless to delete). The global batch is split over all
    replicas of all machines; the data must be readable on every machine.

XLA (``train.distribute.xla``): ``auto`` compiles the training step with XLA
when GPUs are present and not on CPU, where it did not help (see docs/scale.md).
Mixed precision is ``train.precision`` (``auto`` = ``mixed_float16`` on GPUs,
``mixed_bfloat16`` on CPUs with bf16 instructions); with ``mixed_float16`` the
optimizer is wrapped in Keras' ``LossScaleOptimizer`` (dynamic loss scaling).

Devices must be configured before TensorFlow initialises them: for tests or
CPU experiments :func:`split_cpu` makes several logical CPU devices, and must
run first thing in a fresh process.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from typing import Any

from ..errors import UserInputError

__all__ = [
    "distribute_dataset",
    "distributed_train_step",
    "make_strategy",
    "resolve_xla",
    "split_cpu",
    "strategy_scope",
    "worker_output",
]


def split_cpu(count: int) -> list[str]:
    """Split the CPU into `count` logical devices (call before any other TF use).

    Returns
    -------
    list of str
        Names of the logical CPU devices, for ``train.distribute.devices``.
    """
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError as exc:  # TF already initialised its devices
        raise UserInputError(
            f"cannot split the CPU into {count} devices after TensorFlow started: {exc}"
        ) from None
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def make_strategy(config: Any) -> Any:
    """The ``tf.distribute`` strategy of a ``DistributeConfig``, or None for ``none``."""
    if config.strategy == "none":
        return None
    import tensorflow as tf

    if config.strategy == "mirrored":
        available = {
            _canonical(d.name)
            for d in tf.config.list_logical_devices("GPU") + tf.config.list_logical_devices("CPU")
        }
        devices = config.devices
        if devices:
            missing = [d for d in devices if _canonical(d) not in available]
            if missing:
                raise UserInputError(
                    f"train.distribute.devices {missing} do not exist; available: "
                    f"{sorted(available)}"
                )
        else:
            gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
            devices = gpus or None  # None: TensorFlow picks (all GPUs, else the CPU)
        key = ("mirrored", tuple(_canonical(d) for d in devices or ()))
        if key not in _STRATEGIES:
            _STRATEGIES[key] = tf.distribute.MirroredStrategy(devices=devices)
        return _STRATEGIES[key]
    if config.strategy == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise UserInputError(
                "train.distribute.strategy multi_worker needs the TF_CONFIG environment "
                "variable on every machine (see napari_unet/engine/strategy.py)"
            )
        key = ("multi_worker", (os.environ["TF_CONFIG"],))
        if key not in _STRATEGIES:
            _STRATEGIES[key] = tf.distribute.MultiWorkerMirroredStrategy()
        return _STRATEGIES[key]
    raise UserInputError(f"unknown distribute strategy {config.strategy!r}")


# One strategy per device set and process: two strategies over the same devices
# would reuse the same collective-op keys and fail (e.g. training twice in napari).
_STRATEGIES: dict[tuple[str, tuple[str, ...]], Any] = {}


def _canonical(name: str) -> str:
    """``/gpu:0``, ``GPU:0``, ``/device:GPU:0`` -> ``gpu:0``."""
    name = name.lower().strip().lstrip("/")
    if name.startswith("device:"):
        name = name[len("device:") :]
    return name.split("/device:")[-1]


def strategy_scope(strategy: Any) -> contextlib.AbstractContextManager[Any]:
    """``strategy.scope()``, or a no-op context without a strategy."""
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def resolve_xla(setting: str) -> bool | None:
    """``jit_compile`` for ``tf.function``: True, or None (TensorFlow's default: off)."""
    if setting == "on":
        return True
    if setting == "off":
        return None
    import tensorflow as tf

    return True if tf.config.list_physical_devices("GPU") else None


def distribute_dataset(strategy: Any, dataset: Any) -> Any:
    """Split each global batch of `dataset` over the strategy's replicas."""
    if strategy is None:
        return dataset
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def distributed_train_step(
    strategy: Any,
    model: Any,
    optimizer: Any,
    loss_fn: Callable[..., Any],
    confusion: Callable[..., Any],
    jit_compile: bool | None = None,
) -> Callable[..., Any]:
    """A training step running on every replica of `strategy`.

    Takes the per-replica ``(x, y, w)`` of a distributed dataset and returns
    the mean loss over replicas and the summed confusion counts, like the
    single-device step. With `jit_compile`, the forward and backward pass of
    each replica are XLA-compiled (the cross-replica update is not).
    """
    import tensorflow as tf

    replicas = strategy.num_replicas_in_sync
    variables = model.trainable_variables

    def gradients(x: Any, y: Any, w: Any) -> Any:
        with tf.GradientTape() as tape:
            p = model(x, training=True)
            loss = loss_fn(y, p, w)
            scaled = optimizer.scale_loss(loss / replicas)
        return loss, tape.gradient(scaled, variables), confusion(y, p, w)

    if jit_compile:
        gradients = tf.function(gradients, jit_compile=True)

    def replica_step(x: Any, y: Any, w: Any) -> Any:
        loss, grads, counts = gradients(x, y, w)
        optimizer.apply_gradients(zip(grads, variables))
        return loss, counts

    @tf.function(reduce_retracing=True)
    def train_step(x: Any, y: Any, w: Any) -> Any:
        loss, counts = strategy.run(replica_step, args=(x, y, w))
        mean_loss = strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None)
        return mean_loss, strategy.reduce(tf.distribute.ReduceOp.SUM, counts, axis=None)

    return train_step


def worker_output(config: Any) -> Any:
    """`config` with a per-worker output folder on non-chief multi-worker machines."""
    if config.train.distribute.strategy != "multi_worker" or not config.output:
        return config
    try:
        task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    except ValueError:
        raise UserInputError("TF_CONFIG is not valid JSON") from None
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    if kind == "chief" or (kind == "worker" and index == 0):
        return config
    output = os.path.join(config.output, f"{kind}-{index}")
    return config.model_copy(update={"output": output})
