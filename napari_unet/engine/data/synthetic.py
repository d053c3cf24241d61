"""EM-like synthetic stacks for tests and benchmarks (numpy/scipy only).

Cells are Voronoi regions of random seeds; membranes are the thin borders
between them, darker than the cell interiors, with blur and noise. The mask
is 1 inside cells and 0 on membranes, the ISBI 2012 convention.
:func:`synthetic_em_classes` adds dark mitochondria inside the cells and labels three
classes (:data:`EM_CLASSES`); :func:`synthetic_regression` makes two input channels and a
float target computed from them (a microDL-like image-to-image task).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["EM_CLASSES", "synthetic_em", "synthetic_em_classes", "synthetic_regression"]

#: The classes of :func:`synthetic_em_classes`, index 0 first.
EM_CLASSES = ("background", "membrane", "mitochondria")


def synthetic_em(
    slices: int = 2,
    size: int | tuple[int, int] = 64,
    cells: int = 12,
    membrane: int = 2,
    noise: float = 0.08,
    seed: int = 0,
    dtype: type = np.uint8,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate an EM-like image stack and its cell-interior mask.

    Parameters
    ----------
    slices
        Number of slices Z.
    size
        Slice side (or (height, width)).
    cells
        Voronoi seeds per slice.
    membrane
        Membrane thickness in pixels.
    noise
        Gaussian noise std relative to the 0..1 intensity range.
    seed
        Random seed.
    dtype
        uint8 (0..255), uint16 (0..65535) or a float type (0..1).

    Returns
    -------
    images, masks
        (Z, Y, X) images of `dtype` and uint8 {0, 1} masks (1 = cell interior).
    """
    rng = np.random.default_rng(seed)
    height, width = (size, size) if isinstance(size, int) else size
    images = np.empty((slices, height, width), dtype=np.float32)
    masks = np.empty((slices, height, width), dtype=np.uint8)
    for z in range(slices):
        seeds = np.zeros((height, width), dtype=np.int32)
        ys = rng.integers(0, height, cells)
        xs = rng.integers(0, width, cells)
        seeds[ys, xs] = np.arange(1, cells + 1)
        _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
        regions = seeds[iy, ix]
        border = ndimage.morphological_gradient(regions, size=(2, 2)) > 0
        if membrane > 1:
            border = ndimage.binary_dilation(border, iterations=membrane - 1)
        mask = (~border).astype(np.uint8)
        texture = ndimage.gaussian_filter(rng.normal(size=(height, width)), 2.0) * 0.3
        shade = rng.uniform(0.55, 0.8, cells + 1)[regions]
        image = np.where(mask == 1, shade + texture, 0.2 + 0.5 * texture)
        image = ndimage.gaussian_filter(image, 0.8) + rng.normal(0, noise, (height, width))
        images[z] = np.clip(image, 0, 1)
        masks[z] = mask
    if np.issubdtype(np.dtype(dtype), np.integer):
        images = np.round(images * np.iinfo(dtype).max).astype(dtype)
    else:
        images = images.astype(dtype)
    return images, masks


def synthetic_em_classes(
    slices: int = 2,
    size: int | tuple[int, int] = 64,
    cells: int = 10,
    mitochondria: int = 6,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """EM-like slices with three classes: cytoplasm, membranes and mitochondria.

    Mitochondria are dark ellipses (with a bright inner membrane texture) inside the
    cells of :func:`synthetic_em`.

    Returns
    -------
    images, labels
        uint8 ``(Z, Y, X)`` images and uint8 class indices (0 background / cytoplasm,
        1 membrane, 2 mitochondria; see :data:`EM_CLASSES`).
    """
    rng = np.random.default_rng(seed)
    images, masks = synthetic_em(slices, size, cells, seed=seed, dtype=np.float32)
    height, width = images.shape[1:]
    yy, xx = np.mgrid[0:height, 0:width]
    labels = np.where(masks == 1, 0, 1).astype(np.uint8)
    for z in range(slices):
        for _ in range(mitochondria):
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            ry, rx = rng.uniform(2.5, 5.0, 2)
            angle = rng.uniform(0, np.pi)
            dy, dx = yy - cy, xx - cx
            u = (dy * np.cos(angle) + dx * np.sin(angle)) / ry
            v = (-dy * np.sin(angle) + dx * np.cos(angle)) / rx
            blob = (u**2 + v**2 <= 1.0) & (masks[z] == 1)
            labels[z][blob] = 2
        dark = ndimage.gaussian_filter((labels[z] == 2).astype(np.float32), 0.7)
        stripes = 0.08 * np.sin(xx * 1.7 + yy * 0.9)
        images[z] = np.clip(images[z] * (1.0 - 0.75 * dark) + stripes * dark, 0, 1)
    return np.round(images * 255).astype(np.uint8), labels


def synthetic_regression(
    slices: int = 2, size: int | tuple[int, int] = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two input channels and a float target that depends on both (image-to-image).

    Channel 0 is an EM-like image, channel 1 smooth blobs; the target is
    ``blur(0.7 * c0 + 0.3 * c1 ** 2)`` scaled to about 0..1000 (a fluorescence-like range).

    Returns
    -------
    images, target
        uint16 ``(Z, 2, Y, X)`` inputs (0..65535) and float32 ``(Z, Y, X)`` target.
    """
    rng = np.random.default_rng(seed)
    em, _ = synthetic_em(slices, size, seed=seed, dtype=np.float32)
    height, width = em.shape[1:]
    blobs = ndimage.gaussian_filter(rng.random((slices, height, width)), (0, 4, 4))
    blobs = (blobs - blobs.min()) / max(float(np.ptp(blobs)), 1e-6)
    target = ndimage.gaussian_filter(0.7 * em + 0.3 * blobs**2, (0, 1.0, 1.0)) * 1000.0
    images = np.stack([em, blobs], axis=1)
    return np.round(images * 65535).astype(np.uint16), target.astype(np.float32)
