# Headless GPU training and prediction with the napari-unet command line.
#
# Build (from the repository root):
#   docker build -t napari-unet .
# Train on GPU 0 with the data and models folders mounted from the host
# (needs the NVIDIA Container Toolkit on the host for --gpus):
#   docker run --rm --gpus all -v "$PWD/data:/data" -v "$PWD/models:/models" napari-unet \
#       train /data/config.yaml --output /models/run1 --gpu 0
# Find a learning rate, predict, or see every command:
#   docker run --rm --gpus all -v "$PWD/data:/data" -v "$PWD/models:/models" napari-unet \
#       lr-find /data/config.yaml --output /models/lr
#   docker run --rm --gpus all -v "$PWD/data:/data" -v "$PWD/models:/models" napari-unet \
#       predict /models/run1 /data/test-volume.tif --output /models/run1/test-masks.tif
#   docker run --rm napari-unet --help
# Watch training with TensorBoard (on the host): tensorboard --logdir models/run1/logs
#
# The image brings CUDA, cuDNN, TensorFlow, Keras and TensorBoard; pip adds the
# package and its numeric dependencies (no Qt: the napari GUI is not installed).
# GPU choice and memory policy come from the config's train.device section or --gpu.
FROM tensorflow/tensorflow:latest-gpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MPLBACKEND=Agg

WORKDIR /opt/napari-unet
COPY setup.cfg pyproject.toml README.md ./
COPY configs ./configs
COPY napari_unet ./napari_unet
# TensorFlow comes from the base image (its CUDA build); do not let pip replace it.
RUN pip install . && napari-unet --version

# Run as an unprivileged user; mount data and model folders as volumes.
RUN useradd --create-home --uid 1000 unet && mkdir -p /data /models \
    && chown unet:unet /data /models
USER unet
WORKDIR /models

ENTRYPOINT ["napari-unet"]
CMD ["--help"]
