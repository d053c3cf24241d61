"""Build a domain-shifted EM volume from ISBI 2012, to test fine-tuning on "another volume".

Run: ``python benchmarks/domain_shift.py --out /tmp/napari-unet-shift``
(``--data`` defaults to ``../shared/data/isbi2012``).

The shift mimics what changes between EM volumes and labelling styles:

- resolution: every slice resampled by ``--zoom`` (default 1.2x, bilinear image, nearest mask);
- acquisition: contrast, gamma and Gaussian noise changed (fixed per volume, seeded);
- labelling style: the boundary class widened by ``--widen`` pixels (default 2; the cell
  interiors eroded), and the darkest ``--dark-as-boundary`` share of the segments (default
  0.15, by mean raw intensity) labelled as boundary, as in volumes where glia and extracellular
  space count as boundary: a style the parent does not know but can learn from what it sees;
  ``--thin-as-boundary R`` (default off) labels the segments thinner than a disc of radius R
  as boundary (small processes and gaps: a style the image shows by shape).

Writes ``images.tif`` (uint8, (Z, Y, X)) and ``masks.tif`` (uint8 {0, 255}, 255 = cell interior)
made from the 24 training slices followed by the 3 validation slices (so slices 24-26 are the
ones no ISBI model of this project trained on), and ``shift.json`` with the settings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def shift_volume(
    images: np.ndarray,
    masks01: np.ndarray,
    zoom: float = 1.2,
    contrast: float = 0.7,
    gamma: float = 1.4,
    noise_std: float = 0.04,
    widen: int = 2,
    seed: int = 0,
    dark_as_boundary: float = 0.15,
    thin_as_boundary: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the shifted (uint8 images, uint8 {0, 255} masks) of (Z, Y, X) inputs.

    Parameters
    ----------
    images
        Raw slices (any numeric dtype), (Z, Y, X).
    masks01
        Binary masks, 1 = cell interior.
    zoom
        Resampling factor of Y and X.
    contrast, gamma, noise_std
        Intensity changes applied to images scaled to [0, 1].
    widen
        Pixels by which the boundary class (0) grows.
    seed
        Noise seed.
    dark_as_boundary
        Share of the segments (the darkest by mean raw intensity, per slice) relabelled as
        boundary.
    thin_as_boundary
        Segments thinner than this (the radius of the largest disc inside them, in pixels
        after resampling) labelled as boundary: thin processes and gaps, a style the image
        shows (shape), like glia and extracellular space counted as boundary.
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    out_images, out_masks = [], []
    structure = ndimage.generate_binary_structure(2, 1)
    for image, mask in zip(images, masks01, strict=True):
        image = ndimage.zoom(image.astype(np.float32), zoom, order=1)
        mask = ndimage.zoom(mask.astype(np.uint8), zoom, order=0)
        lo, hi = np.percentile(image, (0.5, 99.5))
        unit = np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1)
        unit = np.clip(0.5 + contrast * (unit - 0.5), 0, 1) ** gamma
        unit = np.clip(unit + rng.normal(0, noise_std, unit.shape), 0, 1)
        if dark_as_boundary > 0:
            segments, count = ndimage.label(mask > 0, structure)
            if count:
                means = ndimage.mean(image, segments, index=np.arange(1, count + 1))
                dark = np.flatnonzero(means <= np.quantile(means, dark_as_boundary)) + 1
                mask = np.where(np.isin(segments, dark), 0, mask)
        if thin_as_boundary > 0:
            segments, count = ndimage.label(mask > 0, structure)
            if count:
                radius = ndimage.maximum(
                    ndimage.distance_transform_edt(mask > 0),
                    segments,
                    index=np.arange(1, count + 1),
                )
                thin = np.flatnonzero(np.asarray(radius) < thin_as_boundary) + 1
                mask = np.where(np.isin(segments, thin), 0, mask)
        if widen:
            mask = ndimage.binary_erosion(mask > 0, structure, iterations=widen)
        out_images.append(np.round(unit * 255).astype(np.uint8))
        out_masks.append((mask > 0).astype(np.uint8) * 255)
    return np.stack(out_images), np.stack(out_masks)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "isbi2012"))
    parser.add_argument("--out", default="/tmp/napari-unet-shift")
    parser.add_argument("--zoom", type=float, default=1.2)
    parser.add_argument("--contrast", type=float, default=0.7)
    parser.add_argument("--gamma", type=float, default=1.4)
    parser.add_argument("--noise-std", type=float, default=0.04)
    parser.add_argument("--widen", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dark-as-boundary", type=float, default=0.15)
    parser.add_argument("--thin-as-boundary", type=float, default=0.0)
    args = parser.parse_args(argv)

    import tifffile

    data = Path(args.data)
    images = np.concatenate(
        [tifffile.imread(data / "train-volume.tif"), tifffile.imread(data / "val-volume.tif")]
    )
    masks = np.concatenate(
        [tifffile.imread(data / "train-labels.tif"), tifffile.imread(data / "val-labels.tif")]
    )
    settings = {k: v for k, v in vars(args).items() if k not in ("data", "out")}
    shifted, shifted_masks = shift_volume(images, masks > 0, **settings)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(out / "images.tif", shifted)
    tifffile.imwrite(out / "masks.tif", shifted_masks)
    (out / "shift.json").write_text(json.dumps({**settings, "slices": len(shifted)}, indent=1))
    print(f"wrote {out}/images.tif and masks.tif: {shifted.shape}")
    return out


if __name__ == "__main__":
    main()
