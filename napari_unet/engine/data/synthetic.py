"""EM-like synthetic stacks for tests and benchmarks (numpy/scipy only).

Cells are Voronoi regions of random seeds; membranes are the thin borders
between them, darker than the cell interiors, with blur and noise. The mask
is 1 inside cells and 0 on membranes, the ISBI 2012 convention.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["synthetic_em"]


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
