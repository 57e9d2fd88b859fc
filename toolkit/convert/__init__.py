"""The convert stage: de-identified images + RTSTRUCT/SEG -> binary masks -> 2D slices in a Zarr store.

Takes a folder of de-identified DICOM; gives a store (`segkit.convert.convert`). RTSTRUCT contours
(`rtstruct`, `rasterize`), DICOM SEG (`segmask`), ROI matching (`roi`), resampling and intensity
normalisation (`resample`, `intensity`); `plan` plans a conversion from the headers, `series` converts one
series, `run` drives one conversion.
"""

from __future__ import annotations

import importlib
from typing import Any

# The public names below load their module on first use, so importing the package stays light.
_LAZY = {
    "convert": "run",
    "ConvertOptions": "plan",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
