#!/usr/bin/env bash
# The test command of the README and CI, on a fresh Debian/Ubuntu machine:
# 1. system packages for headless GUI tests (Xvfb, mesa GL; scripts/install_system_deps.sh);
# 2. the package with its test extras (PyQt5, the default binding), and the whole suite under Xvfb;
# 3. the README's PyQt6 install (napari 0.8 deprecated PyQt5) in a virtual environment that sees
#    the packages installed in step 2 (so TensorFlow and napari are not downloaded twice) and adds
#    PyQt6 and the test runners, then the GUI tests (marker "gui") a second time under PyQt6;
#    tests/test_qt_binding.py checks that those tests really ran on PyQt6.
# Extra arguments go to the first pytest run (e.g. -x, -k NAME).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_system_deps.sh
python -m pip install -q -e ".[testing]"
xvfb-run -a python -m pytest "$@"

venv=${NAPARI_UNET_PYQT6_VENV:-.venv-pyqt6}
python -m venv --system-site-packages "$venv"
"$venv/bin/python" -m pip install -q -e ".[pyqt6,test-tools]"
QT_API=pyqt6 PYTEST_QT_API=pyqt6 xvfb-run -a "$venv/bin/python" -m pytest -m gui -p no:cacheprovider \
  -o addopts="-ra --strict-markers"
