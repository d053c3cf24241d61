"""The Qt binding the GUI tests run on is the one asked for with ``QT_API``.

``scripts/run_pyqt6_gui_tests.sh`` (the end of the README's test command) runs the GUI
tests a second time with ``QT_API=pyqt6``; this test makes
that run fail if qtpy (and so napari and the dock) silently fell back to another binding.
"""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.gui


def test_qtpy_uses_the_requested_binding(qapp):
    import qtpy
    from qtpy.QtWidgets import QApplication

    requested = os.environ.get("QT_API", "pyqt5").lower()
    assert qtpy.API_NAME.lower() == requested
    assert QApplication.instance() is not None
    assert QApplication.__module__.lower().startswith(requested), QApplication.__module__
