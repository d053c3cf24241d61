"""The machine a benchmark ran on, as every benchmark's JSON records it."""

from __future__ import annotations

import os
import platform
import subprocess


def machine() -> dict:
    """CPU model (``lscpu``), core count, Python and TensorFlow versions."""
    fields = {"Model name": platform.processor(), "CPU family": "", "Model": "", "Stepping": ""}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            key, _, value = line.partition(":")
            if key in fields:
                fields[key] = value.strip()
    except OSError:
        pass
    from importlib.metadata import version

    return {
        "cpu_model": fields["Model name"],
        "cpu_family_model_stepping": "/".join(
            fields[k] for k in ("CPU family", "Model", "Stepping")
        ),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": version("tensorflow"),
    }
