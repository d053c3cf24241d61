#!/usr/bin/env bash
# Smoke test of an install, run by the Docker build (and by tests/test_docker.py and the
# clean-venv check in docs/features.md): TensorFlow, TensorBoard, JupyterLab and
# dask.distributed import, and napari-unet trains one step on the shipped ISBI sample.
# Usage: bash scripts/docker_smoke.sh [WORK_DIR]   (default: a new temporary folder)
set -euo pipefail

work="${1:-$(mktemp -d)}"
mkdir -p "$work"
python -c "import tensorflow as tf; print('tensorflow', tf.__version__)"
python -c "import dask.distributed, tensorboard; print('dask.distributed and tensorboard import')"
tensorboard --version >/dev/null
if command -v jupyter-lab >/dev/null; then jupyter-lab --version >/dev/null; fi

sample=$(python -c "from napari_unet.sample import SAMPLE_DIR; print(SAMPLE_DIR)")
cat >"$work/smoke.yaml" <<YAML
data: {images: $sample/em_train_images.tif, masks: $sample/em_train_masks.tif, val_fraction: 0.2}
model: {depth: 2, base_filters: 4}
train: {epochs: 1, steps_per_epoch: 1, batch_size: 1, patch_size: 64, precision: float32,
        tensorboard: true, tensorboard_images_every: null, val_em_metrics: false}
predict: {tile_size: 256, overlap: 16, batch_size: 1}
output: $work/model
YAML
napari-unet train "$work/smoke.yaml" --quiet
test -f "$work/model/best.keras"
echo "napari-unet smoke test passed: one training step on the shipped sample ($work/model)"
