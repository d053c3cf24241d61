"""GPU selection and memory policy, applied before TensorFlow initialises its devices.

From ``train.device`` (and the CLI's ``--gpu N``):

* ``gpu: N`` makes only GPU ``N`` visible to TensorFlow (None: all of them);
* ``memory_growth: true`` allocates GPU memory as needed instead of all at once;
* ``memory_limit_mb: M`` caps TensorFlow at M MB on each visible GPU;
* ``memory_fraction: f`` caps it at ``f`` of the card's total memory (read with
  ``nvidia-smi``).

Without GPUs every setting is a no-op. TensorFlow accepts device settings only
before its first operation; a later, different request keeps the earlier
settings and logs a warning (restart the process to change them).
This module imports TensorFlow inside its functions only.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..errors import UserInputError

__all__ = ["configure_devices", "configure_devices_for_model", "gpu_total_memory_mb"]

_log = logging.getLogger(__name__)
_applied: dict[str, Any] | None = None


def gpu_total_memory_mb(index: int) -> int:
    """Total memory of GPU `index` in MB, from ``nvidia-smi``.

    Raises
    ------
    UserInputError
        If ``nvidia-smi`` is missing or does not answer.
    """
    exe = shutil.which("nvidia-smi")
    if exe is None:
        raise UserInputError(
            "train.device.memory_fraction needs nvidia-smi; use memory_limit_mb instead"
        )
    try:
        out = subprocess.run(
            [exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits", "-i", str(index)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        return int(float(out.strip().splitlines()[0]))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        raise UserInputError(
            f"cannot read the memory of GPU {index} with nvidia-smi: {exc}"
        ) from None


def _settings(device: Any, gpu: int | None) -> dict[str, Any]:
    return {
        "gpu": gpu if gpu is not None else device.gpu,
        "memory_growth": bool(device.memory_growth),
        "memory_limit_mb": device.memory_limit_mb,
        "memory_fraction": device.memory_fraction,
    }


def configure_devices(device: Any, gpu: int | None = None) -> dict[str, Any]:
    """Apply a :class:`~napari_unet.engine.config.DeviceConfig` to TensorFlow.

    Parameters
    ----------
    device
        The ``train.device`` section.
    gpu
        Overrides ``device.gpu`` (the CLI's ``--gpu``).

    Returns
    -------
    dict
        What was done: ``gpus`` (physical GPUs found), ``visible`` (indices
        used), ``memory_growth``, ``memory_limit_mb`` and ``applied``
        (False when there was nothing to do or TensorFlow had started already).

    Raises
    ------
    UserInputError
        If the GPU index does not exist.
    """
    global _applied
    import tensorflow as tf

    wanted = _settings(device, gpu)
    gpus = tf.config.list_physical_devices("GPU")
    report: dict[str, Any] = {
        "gpus": len(gpus),
        "visible": [],
        "memory_growth": False,
        "memory_limit_mb": None,
        "applied": False,
    }
    if not gpus:
        if wanted["gpu"] is not None:
            _log.warning("no GPU found; train.device.gpu=%s is ignored", wanted["gpu"])
        return report
    index = wanted["gpu"]
    if index is not None and not 0 <= index < len(gpus):
        raise UserInputError(f"GPU {index} does not exist; this machine has {len(gpus)} GPU(s)")
    chosen = list(range(len(gpus))) if index is None else [index]
    limit = wanted["memory_limit_mb"]
    if wanted["memory_fraction"] is not None:
        limit = int(wanted["memory_fraction"] * gpu_total_memory_mb(chosen[0]))
    report.update(visible=chosen, memory_growth=wanted["memory_growth"], memory_limit_mb=limit)
    if _applied == wanted:
        report["applied"] = True
        return report
    try:
        tf.config.set_visible_devices([gpus[i] for i in chosen], "GPU")
        for i in chosen:
            if wanted["memory_growth"]:
                tf.config.experimental.set_memory_growth(gpus[i], True)
            elif limit is not None:
                tf.config.set_logical_device_configuration(
                    gpus[i], [tf.config.LogicalDeviceConfiguration(memory_limit=limit)]
                )
    except RuntimeError as exc:  # TensorFlow has initialised its devices already
        _log.warning("GPU settings unchanged (TensorFlow already started): %s", exc)
        return report
    _applied = wanted
    report["applied"] = True
    return report


def configure_devices_for_model(model_dir: str | Path, gpu: int | None = None) -> dict[str, Any]:
    """Apply the ``train.device`` settings saved in a model folder (before loading it).

    A folder without a readable ``config.yaml`` applies only `gpu` (loading the
    model then reports the folder's problem).
    """
    from ..config import DeviceConfig
    from .model_folder import ModelFolder

    try:
        device = ModelFolder(Path(model_dir)).load_config().train.device
    except UserInputError:
        device = DeviceConfig()
    return configure_devices(device, gpu)
