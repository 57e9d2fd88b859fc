"""The augment stage: a store -> a reproducible augmented store of the training split.

Takes a store; gives a new store of exactly N images (`segkit.augment.augment_store`). `plan` draws
every transform from one seed before any pixel is read, `ops` holds the ops, `render` and `io`
do the pixel work shard by shard (`worker`: in each process), `run` drives one run, `preview` draws a grid of
examples.
"""

from __future__ import annotations

from segkit.lazy import lazy_exports

# Public names, loaded on first use so importing the package stays light.
_LAZY = {
    "augment_store": "run",
}
__all__ = sorted(_LAZY)
__getattr__ = lazy_exports(__name__, _LAZY)
