"""The slice store: one Zarr v3 group of images, masks, the per-slice table and provenance.

Takes slices from convert or augment; gives what train and evaluate read (`open_store`,
`StoreWriter`), plus provenance steps, the patient-level split, `info` and `export`.
"""

from __future__ import annotations

import importlib
from typing import Any

# The public names below load their module on first use, so importing the package stays light.
_LAZY = {
    "open_store": "reader",
    "StoreWriter": "writer",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
