"""The convert stage: de-identified images + RTSTRUCT/SEG -> binary masks -> 2D slices in a Zarr store.

Takes a folder of de-identified DICOM; gives a store (`segkit.convert.convert`). RTSTRUCT contours
(`rtstruct`, `rasterize`), DICOM SEG (`segmask`), ROI matching (`roi`), resampling and intensity
normalisation (`resample`, `intensity`); `plan` plans a conversion from the headers, `series` converts one
series, `run` drives one conversion.
"""

from __future__ import annotations

from segkit.lazy import lazy_exports

# Public names, loaded on first use so importing the package stays light.
_LAZY = {
    "convert": "run",
    "ConvertOptions": "plan",
}
__all__ = sorted(_LAZY)
__getattr__ = lazy_exports(__name__, _LAZY)
