"""segkit.dicom.volume.read_volume_pixels: pixels straight from the file bytes equal pydicom's decode + rescale."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_rescale

from segkit.dicom.dicomio import Instance, read_header_and_offset
from segkit.dicom.volume import pixel_source, read_volume_pixels, volume_geometry
from tests.helpers.pixel_variants import rescaled, signed_12_bits, unsigned_12_bits_with_high_bits_set, variant


@pytest.mark.parametrize("make, fast", [
    (lambda t: Path(get_testdata_file("MR_small.dcm")), True),
    (lambda t: Path(get_testdata_file("CT_small.dcm")), True),  # with rescale slope/intercept
    (lambda t: Path(get_testdata_file("MR_small_implicit.dcm")), True),
    (lambda t: Path(get_testdata_file("MR_small_bigendian.dcm")), False),  # pydicom decodes it
    (lambda t: Path(get_testdata_file("MR_small_RLE.dcm")), False),  # compressed: pydicom decodes it
    (lambda t: variant(t, "MR_small.dcm", unsigned_12_bits_with_high_bits_set), True),
    (lambda t: variant(t, "MR_small.dcm", signed_12_bits), True),
    (lambda t: variant(t, "MR_small.dcm", rescaled), True),
])
def test_pixels_from_the_bytes_equal_pydicoms(tmp_path, make, fast):
    path = make(tmp_path)
    ds = pydicom.dcmread(path)
    try:
        expected = apply_rescale(ds.pixel_array, ds).astype(np.float32)
    except Exception:  # noqa: BLE001 - no decoder for this file here
        pytest.skip(f"pydicom cannot decode {path.name} on this machine")
    header, offset = read_header_and_offset(path)
    instance = Instance(path, header, offset)
    source = pixel_source(instance)
    assert (source.layout is not None) is fast
    geometry, _ = volume_geometry([instance], "test")
    volume, digests = read_volume_pixels(geometry, [source])
    np.testing.assert_array_equal(volume.array[0], expected)
    assert digests == {str(path): hashlib.sha256(path.read_bytes()).hexdigest()}
