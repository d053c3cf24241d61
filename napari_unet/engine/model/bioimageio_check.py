"""Validate a bioimage.io model package with the ecosystem's own tools.

Static validation is ``bioimageio.spec.load_description``; the dynamic test
is ``bioimageio.core.test_model``, which runs every weight format on the
package's test input and compares with its test output (and tries the other
valid tile sizes and batch sizes). The packages are imported inside the
functions.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from .bioimageio import spec_v0_5

__all__ = ["PackageCheck", "check_bioimageio_package"]


@dataclass(frozen=True)
class PackageCheck:
    """Result of :func:`check_bioimageio_package`.

    Attributes
    ----------
    format_status
        Status of the static validation (``load_description``):
        ``valid-format`` when every format check passed, else ``failed``.
    test_status
        Status of ``bioimageio.core.test_model`` (running every weight format
        on the test tensors), or None if not run.
    problems
        One line per failed check (empty when everything passed).
    """

    format_status: str
    test_status: str | None
    problems: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.format_status in ("passed", "valid-format") and self.test_status in (
            None,
            "passed",
        )


_TEST_LOCK = threading.Lock()


@contextlib.contextmanager
def _test_environment() -> Iterator[None]:
    """Where bioimageio.core's tests can run without side effects on napari-unet.

    * a temporary working folder: it unzips TensorFlow weights into the
      current folder (the working folder is process-wide; the lock keeps two
      checks from racing);
    * ``KERAS_BACKEND=tensorflow``: its Keras runner otherwise sets the
      variable to ``torch`` for the whole process (and its children).
    """
    with _TEST_LOCK, tempfile.TemporaryDirectory(prefix="napari-unet-bioimageio-test-") as tmp:
        previous_dir, previous_backend = os.getcwd(), os.environ.get("KERAS_BACKEND")
        os.environ["KERAS_BACKEND"] = "tensorflow"
        os.chdir(tmp)
        try:
            from bioimageio.core._settings import settings

            settings.keras_backend = "tensorflow"
            yield
        finally:
            os.chdir(previous_dir)
            if previous_backend is None:
                os.environ.pop("KERAS_BACKEND", None)
            else:
                os.environ["KERAS_BACKEND"] = previous_backend


def check_bioimageio_package(package: str | Path, run_tests: bool = True) -> PackageCheck:
    """Validate a package with the bioimage.io tools.

    Parameters
    ----------
    package
        A package ``.zip`` (or ``rdf.yaml``).
    run_tests
        Also run ``bioimageio.core.test_model``: every weight format predicts
        the test input and must reproduce the test output.

    Returns
    -------
    PackageCheck
        Statuses and the problems found.
    """
    package = Path(package).resolve()
    if not package.exists():
        raise UserInputError(f"bioimage.io package {package} does not exist")
    spec_v0_5()
    from bioimageio.spec import load_description

    try:
        descr = load_description(package, perform_io_checks=True)
    except Exception as exc:  # not a zip, unreadable YAML...
        raise UserInputError(f"cannot read bioimage.io package {package}: {exc}") from None
    summary = descr.validation_summary
    problems = _summary_problems(summary)
    test_status = None
    if run_tests and summary.status in ("passed", "valid-format"):
        with _test_environment():
            from bioimageio.core import test_model

            tested = test_model(package)
        test_status = tested.status
        problems += _summary_problems(tested)
    return PackageCheck(summary.status, test_status, tuple(problems))


def _summary_problems(summary: Any) -> list[str]:
    lines = []
    for detail in summary.details:
        for error in detail.errors:
            where = ".".join(str(p) for p in error.loc) if error.loc else ""
            lines.append(f"{detail.name}: {where + ': ' if where else ''}{error.msg}")
    return lines
