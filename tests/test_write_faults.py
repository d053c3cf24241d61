"""Item 10 of issue 16: every writer, a full disk at every write, fsync and rename point,
and SIGKILL at a random moment: afterwards its target is the old version or the
complete new one, and a failure is one clear line.

The writers (tests/write_targets.py): prediction TIFF, ``.npy``, PNG slices and RLE
CSV, model export (``.weights.h5``), checkpoint ``.keras``, the versions'
``current.json``, an autosave, a zarr group, ``frames_meta.csv`` and ``config.yaml``.
The points are found by a counting run (tests/fault_injection.py); the normal run
fails up to :data:`POINTS` of each kind per writer (the first, the last and some
between) and kills each writer once; ``benchmarks/bench_faults.py`` fails every
point and kills each writer many times.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from napari_unet.engine.errors import UserInputError

from .fault_injection import KINDS, WritePoints
from .write_targets import NAMES, make_target

#: Points failed per kind and writer in the normal run (0: every point).
POINTS = int(os.environ.get("NAPARI_UNET_FAULT_POINTS", "4"))
#: SIGKILLs per writer in the normal run.
KILLS = int(os.environ.get("NAPARI_UNET_WRITE_KILLS", "1"))
#: Filled by the tests (benchmarks/bench_faults.py reports it).
RECORD: dict[str, dict] = {}
ROOT = Path(__file__).resolve().parents[1]


def chosen(count: int, limit: int = POINTS) -> list[int]:
    """1-based points to fail: all of them, or `limit` spread from the first to the last."""
    if limit <= 0 or count <= limit:
        return list(range(1, count + 1))
    if limit == 1:
        return [count]
    return sorted({1 + round(i * (count - 1) / (limit - 1)) for i in range(limit)})


def leftovers(folder: Path) -> list[str]:
    """Temporary or half-moved names a writer left behind."""
    marks = (".tmp", ".old-", ".partial")
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):  # a writer may be busy meanwhile
        for name in dirnames + filenames:
            if any(m in name for m in marks):
                found.append(str((Path(dirpath) / name).relative_to(folder)))
    return sorted(found)


def inject_everywhere(name: str, root: Path, monkeypatch, limit: int = POINTS) -> dict:
    """Write version 1 over version 0 failing at each chosen point; check each outcome."""
    target = make_target(name, root)
    target.write(0)
    with monkeypatch.context() as patch:
        counter = WritePoints(patch)
        target.write(1)
    assert target.version() == 1
    counts = dict(counter.counts)
    target.write(0)
    before = leftovers(root)
    outcomes = {"refused": 0, "written": 0}
    for kind in KINDS:
        for at in chosen(counts.get(kind, 0), limit):
            where = f"{name}: ENOSPC at {kind} #{at} of {counts[kind]}"
            with monkeypatch.context() as patch:
                points = WritePoints(patch, kind, at)
                try:
                    target.write(1)
                except UserInputError as exc:
                    error = str(exc)
                else:
                    error = None
            assert points.failed, f"{where}: the point was never reached"
            found = target.version()
            if error is None:  # the fault hit after the new version was complete
                assert found == 1, f"{where}: no error, but the target is version {found}"
                outcomes["written"] += 1
                target.write(0)
            else:
                assert "\n" not in error and "disk is full" in error, f"{where}: {error!r}"
                assert found == 0, f"{where}: refused, yet the target changed"
                outcomes["refused"] += 1
            assert leftovers(root) == before, f"{where}: temporaries left"
    target.write(1)
    assert target.version() == 1
    return {"points": counts, "failed": sum(outcomes.values()), **outcomes}


@pytest.mark.parametrize("name", NAMES)
def test_full_disk_at_every_write_point(name, tmp_path, monkeypatch):
    RECORD.setdefault(name, {})["enospc"] = inject_everywhere(name, tmp_path, monkeypatch)


def kill_while_writing(name: str, root: Path, rounds: int, rng: random.Random) -> dict:
    """Start a process writing versions 0, 1, 0, ... to the target; SIGKILL it at random."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    argv = [sys.executable, "-m", "tests.write_targets", name, str(root)]
    seen = {"rounds": 0, "versions": [], "during_write": 0}
    for _ in range(rounds):
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            ready = proc.stdout.readline()
            assert ready.strip() == "ready", proc.stderr.read()[-3000:]
            started = time.monotonic()
            assert proc.stdout.readline().startswith("wrote"), proc.stderr.read()[-3000:]
            cycle = time.monotonic() - started  # one write of the target, start to end
            time.sleep(rng.uniform(0.0, 2 * cycle))  # somewhere in the next two writes
            busy = bool(leftovers(root))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL, proc.returncode
        version = make_target(name, root).version()
        assert version in (0, 1), f"{name}: {version}"
        seen["rounds"] += 1
        seen["versions"].append(version)
        seen["during_write"] += busy
    return seen


@pytest.mark.parametrize("name", NAMES)
def test_sigkill_while_writing(name, tmp_path):
    rng = random.Random(int(os.environ.get("NAPARI_UNET_KILL_SEED", "0")) or None)
    RECORD.setdefault(name, {})["sigkill"] = kill_while_writing(name, tmp_path, KILLS, rng)
