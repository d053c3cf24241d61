"""Choosing the Keras precision policy by measuring it on this machine.

CPU flags do not predict speed: on an AMD EPYC with AVX512-BF16, bfloat16 training ran
1.9x faster than float32; on an Intel Xeon with AVX512-BF16 but no AMX, TensorFlow's
bfloat16 matmul ran at 0.6x float32 and bfloat16 training at 0.7x. So ``precision: auto``
times a few steps of the real network in each candidate policy (float32 and
mixed_bfloat16 on a CPU, float32 and mixed_float16 on a GPU), picks the faster, and caches
the answer per machine, TensorFlow version, network and step size in the user's cache folder
(``$NAPARI_UNET_CACHE`` or ``$XDG_CACHE_HOME/napari-unet``, default ``~/.cache/napari-unet``).

:func:`choose_policy` is the decision alone (tested with injected timings);
:func:`resolve_precision` is what training and prediction call.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import statistics
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PrecisionChoice",
    "cache_path",
    "candidate_policies",
    "choose_policy",
    "choose_precision",
    "for_prediction",
    "measure_policy",
    "resolve_precision",
]

_log = logging.getLogger(__name__)
#: A lower precision must be at least this much faster to be chosen (noise margin).
MIN_GAIN = 1.05
#: Timed steps per policy (after one warm-up step that also traces the graph).
PROBE_STEPS = 3
#: The probe's tile side is at most this (the speed ratio settles well below 256 px).
PROBE_MAX_SIZE = 256
#: Converted copies per source model (weak keys: they go with the source model).
_CONVERTED: weakref.WeakKeyDictionary[Any, tuple[str, Any]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class PrecisionChoice:
    """The policy used and why."""

    policy: str
    seconds_per_step: dict[str, float]
    cached: bool
    message: str


def cache_path() -> Path:
    """The file holding measured policies."""
    root = os.environ.get("NAPARI_UNET_CACHE")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(base) / "napari-unet")
    return Path(root) / "precision.json"


def _machine() -> str:
    """CPU model and count (a session's machine kind), or the GPU names."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} x{os.cpu_count()}"


def candidate_policies(has_gpu: bool) -> list[str]:
    """float32 and the mixed policy of the device kind."""
    return ["float32", "mixed_float16" if has_gpu else "mixed_bfloat16"]


def choose_policy(seconds_per_step: dict[str, float], min_gain: float = MIN_GAIN) -> str:
    """The fastest policy; a mixed policy must beat float32 by `min_gain` to be chosen.

    Parameters
    ----------
    seconds_per_step
        Median seconds of one step per policy (a policy that failed is absent).
    min_gain
        Required speed-up over float32 (noise margin; float32 is exact).
    """
    if not seconds_per_step:
        return "float32"
    fastest = min(seconds_per_step, key=seconds_per_step.get)
    reference = seconds_per_step.get("float32")
    if fastest == "float32" or reference is None:
        return fastest
    return fastest if reference / seconds_per_step[fastest] >= min_gain else "float32"


def measure_policy(
    policy: str,
    model_config: Any,
    size: int,
    batch: int,
    mode: str,
    in_channels: int = 1,
    give_up_above: float | None = None,
) -> float:
    """Median seconds of one training step (``mode="train"``) or forward pass
    (``mode="predict"``) of the network under `policy` on a random batch.

    A timed step slower than `give_up_above` seconds ends the probe at once: the policy
    has lost, and on a CPU where bfloat16 is emulated one step can take ten seconds (the
    probe runs inside the first training's budget)."""
    import keras
    import tensorflow as tf

    from .unet import build_unet

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_unet(model_config, in_channels)
        x = tf.random.uniform((batch, size, size, in_channels))
        y = tf.cast(tf.random.uniform((batch, size, size, 1)) > 0.5, tf.float32)
        if mode == "train":
            optimizer = keras.optimizers.Adam(1e-4)
            optimizer.build(model.trainable_variables)

            @tf.function
            def step() -> Any:
                with tf.GradientTape() as tape:
                    p = tf.cast(model(x, training=True), tf.float32)
                    loss = tf.reduce_mean(keras.losses.binary_crossentropy(y, p))
                    scaled = optimizer.scale_loss(loss)
                grads = tape.gradient(scaled, model.trainable_variables)
                optimizer.apply_gradients(zip(grads, model.trainable_variables))
                return loss
        else:

            @tf.function
            def step() -> Any:
                return tf.reduce_sum(tf.cast(model(x, training=False), tf.float32))

        float(step())  # trace + warm up
        times = []
        for _ in range(PROBE_STEPS):
            start = time.perf_counter()
            float(step())
            times.append(time.perf_counter() - start)
            if give_up_above is not None and times[-1] > give_up_above:
                break
        return statistics.median(times)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _key(model_config: Any, size: int, batch: int, mode: str, in_channels: int) -> str:
    import tensorflow as tf

    arch = json.dumps(model_config.model_dump(mode="json", exclude={"preset"}), sort_keys=True)
    text = f"{_machine()}|tf {tf.__version__}|{arch}|{size}|{batch}|{mode}|{in_channels}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _read_cache() -> dict[str, Any]:
    try:
        return json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_cache(entries: dict[str, Any]) -> None:
    from ..atomic import atomic_write_text

    try:
        cache_path().parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache_path(), json.dumps(entries, indent=1))
    except Exception as exc:  # a read-only home must not stop training
        _log.info("precision cache not written (%s)", exc)


def resolve_precision(
    requested: str,
    model_config: Any = None,
    size: int = 256,
    batch: int = 4,
    mode: str = "train",
    in_channels: int = 1,
    measure: Callable[..., float] | None = None,
) -> str:
    """The Keras policy to use: `requested`, or for ``auto`` the measured faster one.

    Parameters
    ----------
    requested
        ``auto`` or a Keras policy name (returned unchanged).
    model_config
        The network to probe (default: the ``cpu-small`` preset).
    size, batch
        Step size of the real run (the probe uses at most :data:`PROBE_MAX_SIZE` px).
    mode
        ``train`` (a training step) or ``predict`` (a forward pass).
    in_channels
        Input channels of the network.
    measure
        Stand-in for :func:`measure_policy` (tests).
    """
    return choose_precision(requested, model_config, size, batch, mode, in_channels, measure).policy


def choose_precision(
    requested: str,
    model_config: Any = None,
    size: int = 256,
    batch: int = 4,
    mode: str = "train",
    in_channels: int = 1,
    measure: Callable[..., float] | None = None,
) -> PrecisionChoice:
    """:func:`resolve_precision` with the timings and a sentence for the log."""
    if requested != "auto":
        return PrecisionChoice(requested, {}, False, f"precision {requested} (as configured)")
    import tensorflow as tf

    from ..config import ModelConfig

    model_config = model_config or ModelConfig(preset="cpu-small")
    size = max(2**model_config.depth, min(int(size), PROBE_MAX_SIZE))
    size -= size % (2**model_config.depth)
    key = _key(model_config, size, batch, mode, in_channels)
    entries = _read_cache()
    if key in entries:
        entry = entries[key]
        message = f"precision auto: {entry['policy']} (measured before: {_fmt(entry['timings'])})"
        _log.info(message)
        return PrecisionChoice(entry["policy"], entry["timings"], True, message)
    timings: dict[str, float] = {}
    for policy in candidate_policies(bool(tf.config.list_physical_devices("GPU"))):
        probe = measure
        if probe is None:  # a policy twice as slow as the best so far has lost
            limit = 2 * min(timings.values()) if timings else None
            probe = functools.partial(measure_policy, give_up_above=limit)
        try:
            timings[policy] = float(probe(policy, model_config, size, batch, mode, in_channels))
        except Exception as exc:  # a policy this machine cannot run is not a candidate
            _log.info("precision probe of %s failed: %s", policy, exc)
    policy = choose_policy(timings)
    entries[key] = {"policy": policy, "timings": timings, "machine": _machine()}
    _write_cache(entries)
    message = f"precision auto: {policy} (measured {_fmt(timings)} per {mode} step)"
    _log.info(message)
    return PrecisionChoice(policy, timings, False, message)


def _fmt(timings: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in timings.items())


def for_prediction(loaded: Any, requested: str = "auto") -> Any:
    """The loaded model in the precision prediction should run in on this machine.

    A model keeps the policy it was trained with (``mixed_bfloat16`` if bfloat16 trained
    faster where it was trained); on another machine float32 may predict faster, or the
    other way round. With ``auto`` the forward pass is measured as for training
    (:func:`resolve_precision` with ``mode="predict"``) and the network is rebuilt under
    the faster policy with the same weights (the last layer stays float32).

    Parameters
    ----------
    loaded
        A :class:`~napari_unet.engine.model.model_folder.LoadedModel`.
    requested
        ``predict.precision``: ``auto`` or a policy name.

    Returns
    -------
    LoadedModel
        `loaded` itself when its policy is already the one to use.
    """
    import dataclasses

    keras_model = loaded.keras_model
    current = getattr(getattr(keras_model, "dtype_policy", None), "name", "float32")
    predict_cfg = loaded.config.predict
    try:
        channels = int(keras_model.inputs[0].shape[-1])
    except (AttributeError, IndexError, TypeError):
        channels = 1
    policy = resolve_precision(
        requested,
        loaded.config.model,
        predict_cfg.tile_size,
        predict_cfg.batch_size,
        "predict",
        channels,
    )
    if policy == current:
        return loaded
    cached = _CONVERTED.get(keras_model)
    if cached is not None and cached[0] == policy:
        return dataclasses.replace(loaded, keras_model=cached[1])
    import keras

    from .unet import build_unet

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        converted = build_unet(loaded.config.model, channels)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    weights = keras_model.get_weights()
    if [w.shape for w in converted.get_weights()] != [w.shape for w in weights]:
        # not the network the config describes (a foreign or custom model): keep it as saved
        _log.info("prediction keeps the model's own %s: it is not a rebuildable U-Net", current)
        return loaded
    converted.set_weights(weights)
    _CONVERTED[keras_model] = (policy, converted)
    return dataclasses.replace(loaded, keras_model=converted)
