#!/usr/bin/env bash
# The second half of the README's test command: the README's PyQt6 install (napari 0.8
# deprecated PyQt5) in a virtual environment that sees the packages the first half installed
# (so TensorFlow and napari are not downloaded twice) and adds PyQt6 and the test runners,
# then the GUI tests (marker "gui") a second time under PyQt6; tests/test_qt_binding.py
# checks that they really ran on PyQt6.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${NAPARI_UNET_PYQT6_VENV:-.venv-pyqt6}
python -m venv --system-site-packages "$venv"
"$venv/bin/python" -m pip install -q -e ".[pyqt6,test-tools]"
QT_API=pyqt6 PYTEST_QT_API=pyqt6 xvfb-run -a "$venv/bin/python" -m pytest -m gui -p no:cacheprovider \
  -o addopts="-ra --strict-markers"
