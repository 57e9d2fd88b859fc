"""Variants of pydicom's bundled images with the pixel encodings readers get wrong.

Used by the pixel-reading tests (``tests/dicom``) and the intensity tests (``tests/convert``):
each ``change`` edits a dataset in place; :func:`variant` writes the changed copy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset


def variant(tmp_path: Path, name: str, change: Callable[[Dataset], None]) -> Path:
    """Write pydicom's test file ``name`` changed by ``change`` into ``tmp_path``."""
    ds = pydicom.dcmread(get_testdata_file(name))
    change(ds)
    out = tmp_path / f"{name}-{change.__name__}.dcm"
    ds.save_as(out)
    return out


def unsigned_12_bits_with_high_bits_set(ds: Dataset) -> None:
    """Unsigned 12-bit values whose unused high bits are set (pydicom keeps the low 12 bits only)."""
    values = np.frombuffer(ds.PixelData, "<i2").astype(np.int32) & 0xFFFF
    ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 0, 12, 11
    ds.PixelData = (values | 0xF000).astype("<u2").tobytes()


def signed_12_bits(ds: Dataset) -> None:
    """Signed values stored in 12 of 16 bits, including both extremes and out-of-range words."""
    ds.BitsStored, ds.HighBit = 12, 11
    values = np.frombuffer(ds.PixelData, "<i2").copy()
    values[:4] = [-1, 2047, 4095, -2048]
    ds.PixelData = values.tobytes()


def rescaled(ds: Dataset) -> None:
    """A non-integer rescale slope and intercept."""
    ds.RescaleSlope, ds.RescaleIntercept = "0.37", "-12.5"
