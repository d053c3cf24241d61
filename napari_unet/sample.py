"""Paths of the data and the pretrained model shipped inside the package."""

from __future__ import annotations

from pathlib import Path

__all__ = ["PRETRAINED_MODEL", "SAMPLE_DIR", "sample_paths"]

SAMPLE_DIR = Path(__file__).parent / "sample_data"
PRETRAINED_MODEL = SAMPLE_DIR / "model"


def sample_paths() -> dict[str, Path]:
    """The shipped ISBI 2012 sample stacks (see ``sample_data/README.md``)."""
    return {
        "train_images": SAMPLE_DIR / "em_train_images.tif",
        "train_masks": SAMPLE_DIR / "em_train_masks.tif",
        "test_images": SAMPLE_DIR / "em_test_images.tif",
        "test_masks": SAMPLE_DIR / "em_test_masks.tif",
    }
