"""Nightly fault run: every writer failed at every write point and killed many times.

Run: ``python benchmarks/bench_faults.py [--points 0] [--kills 20] [--training-kills 10]``.

The normal test run (tests/test_write_faults.py, tests/test_faults.py) fails a fixed
sample of the points (up to 4 of each kind per writer), kills each writer once and
a real training once. This run fails **every** write, fsync and rename point of
every writer with ENOSPC, kills each writer ``--kills`` times at random moments,
and kills a real ``napari-unet train`` ``--training-kills`` times while it saves
checkpoints. After each fault the target must be the old version or the complete
new one (a failure: one clear line). The report goes to ``docs/bench_faults.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=0, help="points per kind (0: all)")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs per writer")
    parser.add_argument("--training-kills", type=int, default=10, help="kills of a training")
    parser.add_argument("--writers", nargs="*", help="writers to run (default: all)")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_faults.json"))
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    import pytest

    from tests.test_write_faults import inject_everywhere, kill_while_writing
    from tests.write_targets import NAMES

    rng = random.Random(args.seed)
    results: dict[str, dict] = {}
    failed = False
    for name in args.writers or NAMES:
        entry: dict = {}
        start = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                entry["enospc"] = inject_everywhere(
                    name, Path(tmp), pytest.MonkeyPatch(), limit=args.points
                )
            with tempfile.TemporaryDirectory() as tmp:
                entry["sigkill"] = kill_while_writing(name, Path(tmp), args.kills, rng)
        except Exception as exc:  # a broken promise: report it and go on
            failed = True
            entry["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        entry["seconds"] = round(time.perf_counter() - start, 1)
        results[name] = entry
        print(f"{name:16s} {'FAILED' if 'error' in entry else 'ok':6s} {entry}", flush=True)
    training = None
    if args.training_kills:
        env = {**os.environ, "NAPARI_UNET_KILL_ROUNDS": str(args.training_kills)}
        test = "tests/test_faults.py::test_sigkill_while_saving_leaves_loadable_checkpoints"
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        training = {"rounds": args.training_kills, "passed": proc.returncode == 0}
        failed |= proc.returncode != 0
        print(f"training kills: {training}", flush=True)
    report = {
        "python": platform.python_version(),
        "points_per_kind": args.points or "all",
        "kills_per_writer": args.kills,
        "all_passed": not failed,
        "writers": results,
        "training_kills": training,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
