"""Which augmentation operations a config switches on, and the fixed slots of
their random draws (plain Python, no TensorFlow).

:func:`geometry_enabled`, :func:`intensity_enabled` and :func:`source_margin`
let the data pipeline decide what to build; the ``_FLIP`` ... ``_BLUR_SIGMA``
slots index the vector of uniform random scalars that
:func:`~.augment.augment_patch` draws once per patch and hands to the geometric
(:mod:`.augment_geometry`) and intensity (:mod:`.augment_intensity`) parts.
"""

from __future__ import annotations

import math

from ..config import AugmentConfig

__all__ = ["geometry_enabled", "intensity_enabled", "source_margin"]

# Slots of the vector of uniform random scalars drawn once per patch. Fixed
# positions mean that switching one operation off does not change the random
# draws of the others.
_FLIP, _ROT90, _AFFINE_ON, _ANGLE, _SHEAR, _ZOOM, _SHIFT_Y, _SHIFT_X = range(8)
_ELASTIC_ON, _BRIGHT, _CONTRAST, _GAMMA, _NOISE_ON, _NOISE_STD, _BLUR_ON, _BLUR_SIGMA = range(8, 16)
_N_SCALARS = 16


def _affine_on(config: AugmentConfig) -> bool:
    """Whether the random affine transform can change a patch.

    Parameters
    ----------
    config
        Augmentation settings.

    Returns
    -------
    bool
        True if augmentation and the affine part are on, drawn with nonzero
        probability, and at least one of rotation, shift, shear, zoom is non-trivial.
    """
    a = config.affine
    if not (config.enabled and a.enabled and a.probability > 0):
        return False
    return bool(
        a.rotation_degrees > 0 or a.shift > 0 or a.shear_degrees > 0 or tuple(a.zoom) != (1.0, 1.0)
    )


def _elastic_on(config: AugmentConfig) -> bool:
    """Whether the elastic deformation can change a patch.

    Parameters
    ----------
    config
        Augmentation settings.

    Returns
    -------
    bool
        True if augmentation and the elastic part are on, drawn with nonzero
        probability and with a nonzero displacement std.
    """
    e = config.elastic
    return bool(config.enabled and e.enabled and e.probability > 0 and e.sigma_pixels > 0)


def geometry_enabled(config: AugmentConfig) -> bool:
    """Whether any geometric transform (and hence resampling) is switched on.

    Parameters
    ----------
    config
        Augmentation settings.

    Returns
    -------
    bool
        True if flips, 90-degree rotations, the affine or the elastic part is on.
    """
    geometric = config.flips or config.rot90 or _affine_on(config) or _elastic_on(config)
    return bool(config.enabled and geometric)


def intensity_enabled(config: AugmentConfig) -> bool:
    """Whether any photometric operation is switched on.

    Parameters
    ----------
    config
        Augmentation settings.

    Returns
    -------
    bool
        True if brightness, contrast, gamma, noise or blur can change the image.
    """
    i = config.intensity
    if not (config.enabled and i.enabled):
        return False
    return bool(
        i.brightness > 0
        or tuple(i.contrast) != (1.0, 1.0)
        or tuple(i.gamma) != (1.0, 1.0)
        or (i.noise_std > 0 and i.noise_probability > 0)
        or (i.blur_sigma > 0 and i.blur_probability > 0)
    )


def source_margin(config: AugmentConfig, patch_size: int) -> int:
    """Side of the source window the data pipeline should crop around a patch
    of side ``patch_size`` so that augmented patches rarely need reflection.

    Flips and 90-degree rotations need no margin; affine and elastic transforms
    get about 1.5 patch sides (rounded up to an even number).

    Parameters
    ----------
    config
        Augmentation settings.
    patch_size
        Side of the output patch.

    Returns
    -------
    int
        Side of the source window.
    """
    if not config.enabled or not (_affine_on(config) or _elastic_on(config)):
        return int(patch_size)
    side = math.ceil(patch_size * 1.5)
    return side + (side % 2)
