"""The property tests of tests/test_properties.py at 1,000 examples per target.

Run: ``python benchmarks/bench_properties.py [--examples 1000] [--out FILE]``.

Each property (reader round trip, normalization, as_stack, tiling, mask
conversions) and each fuzz target of tests/test_fuzz_readers.py (TIFF and zarr
readers, config loader) runs with the ``napari-unet-bench`` hypothesis profile; any
exception other than UserInputError fails the run. The report gives the
examples run per target and how many ended with a result or a clear
refusal, and goes to ``docs/bench_properties.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: target name (as counted in the tests) -> (test module, test function name)
PROPERTIES = {
    "reader": ("test_properties", "test_reader_round_trip_or_one_clear_error"),
    "normalization": ("test_properties", "test_normalization_is_finite_float32"),
    "as_stack": ("test_properties", "test_as_stack_gives_zyx_or_one_clear_error"),
    "tiling": ("test_properties", "test_tiles_cover_and_blend_as_the_known_weight_map"),
    "mask conversions": ("test_properties", "test_mask_conversions"),
    "tiff reader (fuzz)": ("test_fuzz_readers", "test_tiff_reader_fuzz"),
    "zarr reader (fuzz)": ("test_fuzz_readers", "test_zarr_reader_fuzz"),
    "config loader (fuzz)": ("test_fuzz_readers", "test_config_loader_fuzz"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="examples per target")
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_properties.json"))
    args = parser.parse_args()

    # the test module reads these when it is imported
    os.environ["NAPARI_UNET_HYPOTHESIS_PROFILE"] = "napari-unet-bench"
    os.environ["NAPARI_UNET_BENCH_EXAMPLES"] = str(args.examples)
    sys.path.insert(0, str(ROOT))
    import importlib

    from tests import test_properties as props

    results = {}
    failed = False
    for target, (module, name) in PROPERTIES.items():
        test = getattr(importlib.import_module(f"tests.{module}"), name)
        before = dict(props.COUNTS)
        start = time.perf_counter()
        error = None
        try:
            test()
        except Exception as exc:  # a falsifying example: report it and go on
            failed = True
            error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-2000:]
        seconds = time.perf_counter() - start
        counts = {k: v - before.get(k, 0) for k, v in props.COUNTS.items() if v != before.get(k, 0)}
        outcomes = {f"{t} {o}": n for (t, o), n in props.OUTCOMES.items() if t in counts}
        results[target] = {
            "examples": counts,
            "outcomes": outcomes,
            "seconds": round(seconds, 2),
            "error": error,
        }
        status = "FAILED" if error else "ok"
        print(f"{target:18s} {status:6s} {counts} in {seconds:.1f} s", flush=True)
        props.OUTCOMES.clear()
    report = {
        "examples_per_target": args.examples,
        "python": platform.python_version(),
        "all_passed": not failed,
        "targets": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
