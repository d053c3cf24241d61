"""Which extension modules hold the GIL longest while the dock imports TensorFlow.

Run: ``python benchmarks/bench_import_stall.py``. In a fresh process, times the
initialisation of every C extension module (``ExtensionFileLoader.create_module``:
``dlopen`` plus the module's init function, which runs holding Python's GIL, so a GUI
thread cannot run meanwhile) during ``widgets.tf_loader.ensure_tensorflow()`` and the
engine's training import, the way a dock job does in its worker thread. ``--repeats``
fresh processes; the slowest modules' median milliseconds are reported.

Results: ``docs/bench_import_stall.json`` (written by this script).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "bench_import_stall.json"

_CHILD = r"""
import importlib.machinery, json, os, sys, time
sys.path.insert(0, sys.argv[1])
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
original = importlib.machinery.ExtensionFileLoader.create_module
timings = {}
def timed(self, spec):
    start = time.perf_counter()
    try:
        return original(self, spec)
    finally:
        timings[spec.name] = (time.perf_counter() - start) * 1000
importlib.machinery.ExtensionFileLoader.create_module = timed
start = time.perf_counter()
from napari_unet.widgets.tf_loader import ensure_tensorflow
ensure_tensorflow()
import napari_unet.engine.training.train  # noqa: F401
total = time.perf_counter() - start
print(json.dumps({"total_s": total, "modules_ms": timings}))
"""


def main() -> int:
    """Run the probe ``--repeats`` times and write the slowest modules' medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeats):
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(REPO)],
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    names = {name for run in runs for name in run["modules_ms"]}
    medians = {
        name: statistics.median(run["modules_ms"].get(name, 0.0) for run in runs) for name in names
    }
    slowest = sorted(medians, key=medians.get, reverse=True)[: args.top]
    report = {
        "benchmark": "GIL-holding extension-module initialisation during the dock's "
        "TensorFlow import",
        "repeats": args.repeats,
        "import_seconds": [round(run["total_s"], 2) for run in runs],
        "slowest_modules_ms": {
            name: {
                "median": round(medians[name], 1),
                "runs": [round(run["modules_ms"].get(name, 0.0), 1) for run in runs],
            }
            for name in slowest
        },
        "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()},
    }
    text = json.dumps(report, indent=2)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(text + "\n")
    tmp.replace(args.out)
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
