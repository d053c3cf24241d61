"""Nightly corpus run: every CLI command on the whole bad-input corpus, training on
every valid input (the normal test run trains on a fixed sample of 8).

Run: ``python benchmarks/bench_corpus.py [--out docs/bench_corpus.json]``. It runs
tests/test_corpus_cli.py with ``NAPARI_UNET_FULL_CORPUS=1`` and records the runs per
command, the outcome and the time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/test_corpus_cli.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_corpus.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        counts = Path(tmp) / "counts.json"
        env = {
            **os.environ,
            "NAPARI_UNET_FULL_CORPUS": "1",
            "NAPARI_UNET_CORPUS_REPORT": str(counts),
        }
        start = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/test_corpus_cli.py",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        report = {
            "passed": proc.returncode == 0,
            "seconds": round(time.perf_counter() - start, 1),
            "summary": (proc.stdout.strip().splitlines() or [""])[-1],
            **(json.loads(counts.read_text()) if counts.exists() else {}),
        }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
