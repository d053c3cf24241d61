"""Issue 7.2: property-based tests (hypothesis) of the reader, normalization,
tiling and the mask conversions over random shapes and dtypes.

The only exception any of them may raise is UserInputError (one clear
message). Two hypothesis profiles: ``napari-unet-ci`` (50 examples per
target, the normal pytest run) and ``napari-unet-bench`` (1,000 examples per
target, run by ``benchmarks/bench_properties.py``). Select one with the
environment variable ``NAPARI_UNET_HYPOTHESIS_PROFILE``. :data:`COUNTS`
records how many examples each target ran.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_unet.engine.data.preprocess import (
    apply_normalization,
    as_stack,
    normalization_stats,
    normalize_percentile,
)
from napari_unet.engine.errors import UserInputError
from napari_unet.engine.inference.tiling import (
    blend_window,
    pad_to_multiple,
    padded_indices,
    tile_grid,
)
from napari_unet.engine.io.stacks import binarize_mask, mask_to_uint8, read_mask, read_stack
from napari_unet.engine.training.train import split_labels

from .test_tiling import _expected_window

_COMMON = {
    "deadline": None,
    "database": None,  # no .hypothesis folder in the repository
    "print_blob": True,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
}
settings.register_profile("napari-unet-ci", max_examples=50, **_COMMON)
settings.register_profile(
    "napari-unet-bench",
    max_examples=int(os.environ.get("NAPARI_UNET_BENCH_EXAMPLES", "1000")),
    **_COMMON,
)
PROFILE = os.environ.get("NAPARI_UNET_HYPOTHESIS_PROFILE", "napari-unet-ci")
SETTINGS = settings.get_profile(PROFILE)

#: Examples run per target (read by benchmarks/bench_properties.py).
COUNTS: Counter[str] = Counter()
#: How the examples ended per target: "ok" or "refused" (UserInputError).
OUTCOMES: Counter[tuple[str, str]] = Counter()

_TMP = Path(tempfile.mkdtemp(prefix="napari-unet-properties-"))
atexit.register(shutil.rmtree, _TMP, True)

REAL_DTYPES = [
    "bool",
    "uint8",
    "int8",
    "uint16",
    "int16",
    "uint32",
    "int32",
    "uint64",
    "int64",
    "float16",
    "float32",
    "float64",
]
ALL_DTYPES = [*REAL_DTYPES, "complex64"]


def _record(target: str, outcome: str) -> None:
    COUNTS[target] += 1
    OUTCOMES[(target, outcome)] += 1


@st.composite
def arrays(draw, dtypes=ALL_DTYPES, min_dims=1, max_dims=5, max_side=7, min_side=0):
    """Random arrays: any listed dtype, 1-5 dims, sides 0-7, NaN/inf for floats."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    shape = draw(
        hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)
    )
    if dtype.kind == "f":
        elements = st.floats(allow_nan=True, allow_infinity=True, width=dtype.itemsize * 8)
    elif dtype.kind == "c":
        elements = st.complex_numbers(allow_nan=True, allow_infinity=True, width=64)
    else:
        elements = None
    return draw(hnp.arrays(dtype, shape, elements=elements))


def mixed_arrays(dtypes=ALL_DTYPES):
    """Half plausible images (2-3 dims, no empty side), half anything (0-5 dims, empty sides)."""
    return st.one_of(
        arrays(dtypes, min_dims=2, max_dims=3, min_side=1, max_side=9),
        arrays(dtypes, min_dims=1, max_dims=5, min_side=0, max_side=6),
    )


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))


# --------------------------------------------------------------------------- reader


@settings(SETTINGS)
@given(
    arr=mixed_arrays(),
    cut=st.one_of(st.none(), st.none(), st.floats(0.0, 1.0)),
    flavour=st.sampled_from(["plain", "imagej", "zlib"]),
)
def test_reader_round_trip_or_one_clear_error(arr, cut, flavour):
    """Write a random array as TIFF (maybe truncated) and read it back."""
    path = _TMP / "prop.tif"
    path.unlink(missing_ok=True)
    options = {"photometric": "minisblack"}
    if flavour == "imagej":
        options["imagej"] = True
    elif flavour == "zlib":
        options["compression"] = "zlib"
    data = arr.reshape(1, -1) if arr.ndim == 1 else arr  # tifffile needs 2D; keep the shape
    if arr.ndim == 1:
        options["metadata"] = {"shape": list(arr.shape)}
    written = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tifffile.imwrite(path, data, **options)
    except Exception:  # tifffile cannot write this (e.g. ImageJ + int64): read what is there
        written = False
        if not path.exists():
            path.write_bytes(b"")
    if cut is not None and written:
        size = path.stat().st_size
        path.write_bytes(path.read_bytes()[: int(size * cut)])
    try:
        out = read_stack(path)
    except UserInputError as exc:
        assert "\n" not in str(exc) and "prop.tif" in str(exc)
        _record("reader", "refused")
    else:
        _record("reader", "ok")
        assert out.ndim == 3 and out.size > 0
        assert out.dtype.isnative
        if written and cut is None and flavour == "plain" and arr.ndim in (2, 3):
            expected = as_stack(arr.astype(np.uint8) if arr.dtype == bool else arr, rgb=False)
            assert _same(out, expected.astype(out.dtype) if arr.dtype == bool else expected)
    try:
        mask = read_mask(path)
    except UserInputError:
        pass
    else:
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1} and mask.ndim == 3


# --------------------------------------------------------------------------- normalization


@settings(SETTINGS)
@given(
    arr=arrays(REAL_DTYPES, min_dims=2, max_dims=3, min_side=1, max_side=9),
    low=st.floats(0, 60),
    span=st.floats(0.01, 40),
    per_slice=st.booleans(),
    clip=st.booleans(),
)
def test_normalization_is_finite_float32(arr, low, span, per_slice, clip):
    high = min(low + span, 100.0)
    try:
        out = normalize_percentile(arr, low, high, per_slice=per_slice, clip=clip)
    except UserInputError:
        _record("normalization", "refused")
        return
    _record("normalization", "ok")
    assert out.dtype == np.float32 and out.shape == arr.shape
    assert np.isfinite(out).all()
    if clip:
        assert out.min() >= 0.0 and out.max() <= 1.0
    # the stored statistics reproduce the mapping (prediction uses them)
    lo, hi = normalization_stats(arr, low, high, per_slice=per_slice)
    again = apply_normalization(arr, lo, hi, clip=clip)
    np.testing.assert_array_equal(again, out)


@settings(SETTINGS)
@given(arr=st.one_of(mixed_arrays(), arrays(ALL_DTYPES, min_dims=0, max_dims=1)))
def test_as_stack_gives_zyx_or_one_clear_error(arr):
    try:
        out = as_stack(arr)
    except UserInputError as exc:
        assert "\n" not in str(exc)
        _record("as_stack", "refused")
        return
    _record("as_stack", "ok")
    assert out.ndim == 3


# --------------------------------------------------------------------------- tiling


@settings(SETTINGS)
@given(
    height=st.integers(1, 700),
    width=st.integers(1, 700),
    tile=st.integers(16, 512),
    overlap_fraction=st.floats(0, 0.49),
    multiple=st.sampled_from([1, 2, 4, 8, 16, 32]),
)
def test_tiles_cover_and_blend_as_the_known_weight_map(
    height, width, tile, overlap_fraction, multiple
):
    overlap = int(tile * overlap_fraction)
    image = np.arange(height * width, dtype=np.float32).reshape(height, width)
    padded, (h, w) = pad_to_multiple(image, multiple)
    assert (h, w) == (height, width)
    assert padded.shape[0] % multiple == 0 and padded.shape[1] % multiple == 0
    np.testing.assert_array_equal(padded[:height, :width], image)
    rows, cols = padded_indices((height, width), multiple)
    np.testing.assert_array_equal(image[np.ix_(rows, cols)], padded)

    tiles = tile_grid(padded.shape, tile, overlap, multiple)
    sizes = {(t.height, t.width) for t in tiles}
    assert len(sizes) == 1  # all tiles batch together
    th, tw = sizes.pop()
    assert th % multiple == 0 and tw % multiple == 0
    ys, xs = sorted({t.y for t in tiles}), sorted({t.x for t in tiles})
    covered = np.zeros(padded.shape, np.int32)
    for t in tiles:
        assert 0 <= t.y and t.y + t.height <= padded.shape[0]
        assert 0 <= t.x and t.x + t.width <= padded.shape[1]
        window = blend_window(t, overlap)
        assert window.shape == (t.height, t.width) and window.dtype == np.float32
        # the window is the known weight map: squared-sine ramps of `overlap` pixels
        # (at most half the tile) exactly on the sides that meet a neighbour
        ry, rx = min(overlap, t.height // 2), min(overlap, t.width // 2)
        wy = _expected_window(t.height, 0, t.height, ry, t.y == ys[0], t.y == ys[-1])
        wx = _expected_window(t.width, 0, t.width, rx, t.x == xs[0], t.x == xs[-1])
        np.testing.assert_allclose(window, np.maximum(np.outer(wy, wx), 1e-6), atol=1e-6)
        assert (t.y == ys[0]) != t.ramp_top and (t.x == xs[-1]) != t.ramp_right
        covered[t.slices] += 1
    assert covered.min() >= 1  # every pixel is predicted
    # neighbours overlap by at least the ramps, so no pixel is left to a ramp's tail alone
    for a, b in itertools.pairwise(ys):
        assert a + th - b >= min(overlap, th // 2)
    for a, b in itertools.pairwise(xs):
        assert a + tw - b >= min(overlap, tw // 2)
    _record("tiling", "ok")


# --------------------------------------------------------------------------- mask conversions


@settings(SETTINGS)
@given(arr=mixed_arrays())
def test_mask_conversions(arr):
    try:
        binary = binarize_mask(arr)
    except UserInputError as exc:
        assert "\n" not in str(exc)
        assert arr.dtype.kind == "c" or (arr.dtype.kind == "f" and np.isnan(arr).any())
        _record("binarize_mask", "refused")
    else:
        _record("binarize_mask", "ok")
        assert binary.dtype == np.uint8 and binary.shape == arr.shape
        assert set(np.unique(binary)) <= {0, 1}
        if arr.dtype.kind in "biu":
            np.testing.assert_array_equal(binary, arr != 0)
        as_255 = mask_to_uint8(binary)
        assert as_255.dtype == np.uint8 and set(np.unique(as_255)) <= {0, 255}
        np.testing.assert_array_equal(as_255 // 255, binary)
    out = mask_to_uint8(arr)  # nonzero (NaN included) is foreground, for any dtype
    assert out.dtype == np.uint8 and out.shape == arr.shape
    np.testing.assert_array_equal(out, np.where(arr != 0, 255, 0))
    _record("mask_to_uint8", "ok")
    try:
        target, weight = split_labels(arr)
    except UserInputError:
        _record("split_labels", "refused")
        return
    _record("split_labels", "ok")
    assert target.dtype == np.uint8 and target.shape == arr.shape
    assert weight.dtype == np.float32 and weight.shape == arr.shape
    assert set(np.unique(target)) <= {0, 1} and set(np.unique(weight)) <= {0.0, 1.0}
    values = set(np.unique(arr).tolist()) if arr.size else set()
    assert values != {0, 1, 2}, "auto must refuse the ambiguous values 0, 1, 2"
    assert weight.min(initial=1.0) == 1.0  # binary or instances: every pixel is labelled
    if len(values) == 2 and arr.dtype.kind in "biu":  # binary: the higher value is foreground
        np.testing.assert_array_equal(target, arr == max(values))
    if arr.dtype.kind in "iu":  # the same values read as a sparse annotation when asked
        sparse = np.abs(arr.astype(np.int64)) % 3
        sparse_target, sparse_weight = split_labels(sparse, kind="sparse")
        np.testing.assert_array_equal(sparse_target, sparse == 2)
        np.testing.assert_array_equal(sparse_weight, sparse > 0)


#: The targets each property test records (benchmarks/bench_properties.py reads them).
TARGETS = {
    "test_reader_round_trip_or_one_clear_error": ("reader",),
    "test_normalization_is_finite_float32": ("normalization",),
    "test_as_stack_gives_zyx_or_one_clear_error": ("as_stack",),
    "test_tiles_cover_and_blend_as_the_known_weight_map": ("tiling",),
    "test_mask_conversions": ("binarize_mask", "mask_to_uint8", "split_labels"),
    # tests/test_fuzz_readers.py
    "test_tiff_reader_fuzz": ("tiff reader",),
    "test_zarr_reader_fuzz": ("zarr reader",),
    "test_config_loader_fuzz": ("config loader",),
}


def test_counts_are_recorded(request):
    """Every property test that ran tried its targets on (nearly) the profile's number
    of examples: a strategy that collapses, or a target that stops recording, fails."""
    ran = {item.name for item in request.session.items}
    wanted = int(SETTINGS.max_examples * 0.9)
    short = {
        target: COUNTS[target]
        for test, targets in TARGETS.items()
        if test in ran
        for target in targets
        if COUNTS[target] < wanted
    }
    assert not short, f"fewer than {wanted} examples: {short}"
