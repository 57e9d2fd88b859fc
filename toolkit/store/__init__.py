"""The slice store: one Zarr v3 group of images, masks, the per-slice table and provenance.

Takes slices from convert or augment; gives what train and evaluate read (`open_store`,
`StoreWriter`), plus provenance steps, the patient-level split, `info` and `export`.
"""

from __future__ import annotations

from segkit.lazy import lazy_exports

# Public names, loaded on first use so importing the package stays light.
_LAZY = {
    "open_store": "reader",
    "StoreWriter": "writer",
}
__all__ = sorted(_LAZY)
__getattr__ = lazy_exports(__name__, _LAZY)
