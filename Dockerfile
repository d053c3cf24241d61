# napari-unet for a lab: the command line, TensorFlow (CPU), TensorBoard, JupyterLab and
# dask.distributed on a pinned Python 3.11 base (no Qt: the napari GUI is not installed).
#
# Build (from the repository root); the build imports TensorFlow and trains one step on
# the shipped ISBI sample (scripts/docker_smoke.sh), so a broken image never gets a tag:
#   docker build -t napari-unet .
#
# Run as yourself, so every file written to a mounted folder is yours (HOME is writable
# for any user id):
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/work" -w /work napari-unet \
#       napari-unet train configs/isbi2012.yaml --output models/run1
#   docker run --rm -it --user "$(id -u):$(id -g)" -v "$PWD:/work" -w /work napari-unet bash
# TensorBoard on port 6006 and JupyterLab on port 8888:
#   docker run --rm --user "$(id -u):$(id -g)" -p 6006:6006 -v "$PWD:/work" napari-unet \
#       tensorboard --logdir /work/models --host 0.0.0.0 --port 6006
#   docker run --rm --user "$(id -u):$(id -g)" -p 8888:8888 -v "$PWD:/work" napari-unet \
#       jupyter lab --ip 0.0.0.0 --port 8888 --no-browser --notebook-dir /work
# A dask.distributed scheduler and workers for blockwise prediction (--scheduler ADDRESS):
#   docker run --rm --network host napari-unet dask scheduler
#   docker run --rm --network host -v "$PWD:/work" napari-unet dask worker tcp://HOST:8786
#
# With no command the image prints the CLI's help (CMD, not ENTRYPOINT: any command runs).
FROM python:3.11.11-slim-bookworm

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MPLBACKEND=Agg \
    HOME=/home/lab \
    XDG_CACHE_HOME=/home/lab/.cache \
    MPLCONFIGDIR=/home/lab/.cache/matplotlib \
    KERAS_HOME=/home/lab/.keras \
    JUPYTER_RUNTIME_DIR=/tmp/jupyter-runtime

WORKDIR /opt/napari-unet
COPY setup.cfg pyproject.toml README.md ./
COPY configs ./configs
COPY napari_unet ./napari_unet
COPY scripts/docker_smoke.sh ./scripts/docker_smoke.sh

# The package with TensorFlow, TensorBoard and dask.distributed, plus JupyterLab; then the
# smoke test (TensorFlow imports, one training step on the shipped sample). DL3013: the
# package itself comes from the build context (".") and has no version to pin.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[tensorflow,distributed]" \
        "tensorflow==2.21.0" "tensorboard==2.21.0" "jupyterlab==4.6.6" \
    && bash scripts/docker_smoke.sh /tmp/smoke \
    && rm -rf /tmp/smoke

# A HOME (and caches) that any --user id can write to; /work for mounted projects.
RUN mkdir -p /home/lab/.cache /home/lab/.keras /work \
    && chmod -R 1777 /home/lab /work

USER 1000:1000
WORKDIR /work
EXPOSE 6006 8888
CMD ["napari-unet", "--help"]
