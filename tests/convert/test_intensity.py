"""segkit.convert.intensity: percentiles from value counts are np.percentile's, bit for bit; normalisation in place is the same."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from segkit.dicom.dicomio import Instance, read_header_and_offset
from segkit.convert.intensity import PERCENTILES, ValueCounts, normalise_volume, percentiles_of_counts
from segkit.dicom.volume import pixel_source, read_volume_pixels, volume_geometry
from tests.helpers.pixel_variants import rescaled, signed_12_bits, variant

QS = [PERCENTILES, (0, 100), (50,), (25, 75), (0.1, 33.3, 66.7, 99.9), (1, 99), (100, 0, 50), (12.5,)]


def _same(a: np.ndarray, b: np.ndarray) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes(), (a, b)


def _counts_of(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values, counts = np.unique(array, return_counts=True)
    return values, counts


@pytest.mark.parametrize("n", [1, 2, 3, 7, 199, 200, 201, 1000, 4097])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_percentiles_of_counts_equal_numpy(n, dtype):
    rng = np.random.default_rng(n)
    for spread in (1, 5, 1000):  # many ties … nearly all distinct
        array = (rng.integers(-spread, spread + 1, n) * rng.choice([1.0, 0.37, 1e-3, 12345.678])).astype(dtype)
        for q in QS:
            _same(percentiles_of_counts(*_counts_of(array), q), np.percentile(array, q))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf - inf: numpy warns too
def test_percentiles_of_counts_edge_cases():
    for array in (np.array([5.0], np.float32), np.array([-3.0, -3.0], np.float32),
                  np.array([0.0, 1e30, -1e30, 3.4e38, -3.4e38], np.float32),
                  np.array([np.finfo(np.float32).tiny, 0.0, 1.0], np.float32),
                  np.array([-np.inf, 0.0, 1.0, np.inf], np.float32)):
        for q in [*QS, (0.0001, 99.9999), [7, 7, 7]]:
            _same(percentiles_of_counts(*_counts_of(array), q), np.percentile(array, q))
    with pytest.raises(ValueError):
        percentiles_of_counts(np.array([1.0]), np.array([1]), (101,))
    with pytest.raises(ValueError):
        percentiles_of_counts(np.array([1.0]), np.array([1]), 50)  # a scalar q: numpy interpolates in float32


def _reader_values(pixels: np.ndarray, rescale) -> np.ndarray:  # noqa: ANN001
    """One slice as segkit.dicom.volume.read_volume_pixels makes it."""
    out = np.empty(pixels.shape, np.float32)
    if rescale is None:
        out[...] = pixels
    else:
        value = pixels.astype(np.float64) * rescale[0]
        value += rescale[1]
        out[...] = value
    return out


@pytest.mark.parametrize("dtype, low, high", [("<u2", 0, 4096), ("<u2", 0, 65536), ("<i2", -32768, 32768),
                                              ("<i2", -2048, 2048), ("u1", 0, 256), ("i1", -128, 128)])
@pytest.mark.parametrize("rescales", [[None], [(1.0, -1024.0)], [(0.37, -12.5)],
                                      [(1.0, 0.0), (2.0, 0.0), (0.5, 3.25)]])  # per-slice rescale differs
def test_value_counts_give_the_volumes_percentiles(dtype, low, high, rescales):
    rng = np.random.default_rng(len(rescales) * 1000 + high)
    counts = ValueCounts()
    slices = []
    for k in range(6):
        pixels = rng.integers(low, high, (32, 48)).astype(dtype)
        if k == 2:
            pixels[:] = low  # a constant slice
        rescale = rescales[k % len(rescales)]
        if rescale is not None:
            rescale = tuple(pydicom.valuerep.DSfloat(repr(v)) for v in rescale)  # as pydicom hands them over
        counts.add(pixels, rescale)
        slices.append(_reader_values(pixels, rescale))
    volume = np.stack(slices)
    assert counts.complete and counts.size == volume.size
    values, n = counts.table()
    _same(values, np.unique(volume))
    for q in QS:
        _same(percentiles_of_counts(values, n, q), np.percentile(volume, q))
    expected = normalise_volume(volume.copy())
    got = normalise_volume(volume.copy(), counts=counts, overwrite_input=True)
    assert got[1] == expected[1]
    _same(got[0], expected[0])


def test_value_counts_refuse_what_they_cannot_count():
    counts = ValueCounts()
    counts.add(np.zeros((4, 4), np.uint16))
    counts.add(np.zeros((4, 4), np.int32))  # 32-bit stored values: not counted
    assert not counts.complete and counts.table() is None
    counts = ValueCounts()
    counts.add(np.arange(16, dtype=np.uint16).reshape(4, 4), (-1.0, -0.0))  # 0 · −1 + (−0.0) = −0.0 beside +0.0
    counts.add(np.arange(16, dtype=np.uint16).reshape(4, 4), (1.0, 0.0))
    assert counts.table() is None  # np.partition may leave either zero at a position
    counts = ValueCounts()
    counts.add(np.ones((4, 4), np.uint16), (float("nan"), 0.0))
    assert counts.table() is None
    counts = ValueCounts()
    counts.add(np.ones((4, 4), np.uint16))
    counts.spoil()
    counts.add(np.ones((4, 4), np.uint16))
    assert not counts.complete and counts.table() is None


def test_normalise_volume_falls_back_to_numpy_without_complete_counts():
    rng = np.random.default_rng(3)
    volume = rng.normal(100, 30, (3, 16, 16)).astype(np.float32)  # not integers: nothing to count
    counts = ValueCounts()
    counts.add(np.ones((16, 16), np.uint16))  # counts of another (smaller) volume are not used
    expected = normalise_volume(volume.copy())
    for got in (normalise_volume(volume.copy(), counts=counts), normalise_volume(volume.copy(), overwrite_input=True)):
        assert got[1] == expected[1]
        _same(got[0], expected[0])
    constant = np.full((2, 4, 4), 7.0, np.float32)
    image, params = normalise_volume(constant, overwrite_input=True)
    assert params["low"] == params["high"] == 7.0 and not image.any() and image.dtype == np.float32


@pytest.mark.parametrize("make, counted", [
    (lambda t: Path(get_testdata_file("MR_small.dcm")), True),
    (lambda t: Path(get_testdata_file("CT_small.dcm")), True),  # signed, with rescale slope/intercept
    (lambda t: Path(get_testdata_file("MR_small_implicit.dcm")), True),
    (lambda t: Path(get_testdata_file("MR_small_RLE.dcm")), False),  # pydicom decodes it: not counted
    (lambda t: variant(t, "MR_small.dcm", signed_12_bits), True),
    (lambda t: variant(t, "CT_small.dcm", rescaled), True),
])
def test_real_files_counted_while_read_normalise_as_numpy_does(tmp_path, make, counted):
    path = make(tmp_path)
    header, offset = read_header_and_offset(path)
    instance = Instance(path, header, offset)
    geometry, _ = volume_geometry([instance], "test")
    # the same file as three slices (the reader does not look at positions)
    geometry = replace(geometry, positions=np.arange(3, dtype=np.float64))
    counts = ValueCounts()
    try:
        volume, _ = read_volume_pixels(geometry, [pixel_source(instance)] * 3, counts=counts)
    except Exception:  # noqa: BLE001 - no decoder for this file here
        pytest.skip(f"pydicom cannot decode {path.name} on this machine")
    assert (counts.table() is not None) is counted
    for q in QS:
        expected = np.percentile(volume.array, q)
        if counted:
            _same(percentiles_of_counts(*counts.table(), q), expected)
    expected = normalise_volume(volume.array.copy())
    got = normalise_volume(volume.array.copy(), counts=counts, overwrite_input=True)
    assert got[1] == expected[1]
    _same(got[0], expected[0])
