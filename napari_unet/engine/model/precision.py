"""Choosing the Keras mixed-precision policy a training runs with."""

from __future__ import annotations

from pathlib import Path

__all__ = ["resolve_precision"]


def resolve_precision(requested: str) -> str:
    """Map ``auto`` to the fastest exact-enough policy this machine offers.

    Parameters
    ----------
    requested
        ``train.precision``: ``auto`` or a Keras policy name.

    Returns
    -------
    str
        `requested` unless it is ``auto``; then ``mixed_float16`` with a GPU,
        ``mixed_bfloat16`` on a CPU with bfloat16 instructions, else ``float32``.
    """
    if requested != "auto":
        return requested
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "float32"
    return "mixed_bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"
