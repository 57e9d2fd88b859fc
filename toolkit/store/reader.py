"""Reading a store: :func:`open_store` checks that a directory is a segkit store of the supported format version and
returns a read-only :class:`Store` view of it — the two pixel arrays (lazy, random access by slice), the per-slice
table as numpy arrays, the ``segkit`` attributes (split, provenance …), and :meth:`Store.indices` to select rows by
split, source or tumour."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from segkit.errors import InputError, UsageError
from segkit.store.format import FORMAT, FORMAT_VERSION, SPLITS, store_digest
from segkit.store.table import read_table

__all__ = ["Store", "open_store"]


class Store:
    """A read-only view of a segkit store (see :func:`open_store`).

    Attributes
    ----------
    path:
        The store directory.
    image, mask:
        Lazy ``zarr.Array`` s of shape ``(N, H, W)``; ``store.image[i]`` reads one slice.
    attrs:
        The ``segkit`` attributes (format, version, size, spacing, split, provenance …).
    """

    def __init__(self, path: Path, group: Any) -> None:
        self.path = path
        self._group = group
        self.image = group["image"]
        self.mask = group["mask"]
        self.attrs: dict[str, Any] = dict(group.attrs["segkit"])

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, slices={len(self)}, size={tuple(self.attrs['size'])})"

    @cached_property
    def table(self) -> dict[str, np.ndarray]:
        """The per-slice table, one numpy array per column (strings as ``object``)."""
        return read_table(self._group)

    @property
    def split(self) -> dict[str, str]:
        """Patient pseudonym → split."""
        return dict(self.attrs["split"])

    @property
    def provenance(self) -> list[dict[str, Any]]:
        """The provenance steps, oldest first."""
        return [dict(step) for step in self.attrs["provenance"]]

    def indices(
        self,
        split: str | Iterable[str] | None = None,
        *,
        source: str | None = None,
        has_tumour: bool | None = None,
    ) -> np.ndarray:
        """Row indices (int64, ascending) matching every given filter."""
        table = self.table
        keep = np.ones(len(self), dtype=bool)
        if split is not None:
            wanted = [split] if isinstance(split, str) else list(split)
            unknown = set(wanted) - set(SPLITS)
            if unknown:
                raise UsageError("split", f"must be one of {', '.join(SPLITS)}, got {sorted(unknown)}")
            keep &= np.isin(table["split"], wanted)
        if source is not None:
            keep &= table["source"] == source
        if has_tumour is not None:
            keep &= table["has_tumour"] == has_tumour
        return np.flatnonzero(keep).astype(np.int64)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(image float32 H×W, mask uint8 H×W)`` of one row."""
        return self.image[int(index)], self.mask[int(index)]

    def row(self, index: int) -> dict[str, Any]:
        """One row of the table as a dict of Python scalars."""
        return {name: column[int(index)].item() if hasattr(column[int(index)], "item") else column[int(index)]
                for name, column in self.table.items()}

    def digest(self) -> str:
        """The store's output digest (see :func:`store_digest`)."""
        return store_digest(self.path)


def open_store(path: str | os.PathLike[str]) -> Store:
    """Open a segkit store read-only.

    Raises
    ------
    InputError
        If ``path`` is missing, is not a Zarr v3 group, or has no ``segkit`` attributes
        of a supported format version.
    """
    import zarr

    path = Path(path)
    if not path.is_dir():
        raise InputError(str(path), "no such store (expected a directory written by segkit convert)")
    try:
        group = zarr.open_group(path, mode="r", zarr_format=3)
    except Exception as exc:  # noqa: BLE001 - zarr raises several types for "not a group"
        raise InputError(str(path), f"is not a segkit store (not a Zarr v3 group: {type(exc).__name__})") from None
    attrs = group.attrs.get("segkit")
    if not isinstance(attrs, Mapping) or attrs.get("format") != FORMAT:
        raise InputError(str(path), "is not a segkit store (no 'segkit' attributes of format segkit-slices)")
    if attrs.get("version") != FORMAT_VERSION:
        raise InputError(str(path), f"has store format version {attrs.get('version')}, this segkit reads {FORMAT_VERSION}")
    for name in ("image", "mask", "slices"):
        if name not in group:
            raise InputError(str(path), f"is incomplete: no {name!r} in the store")
    return Store(path, group)
