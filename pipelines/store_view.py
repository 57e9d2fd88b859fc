"""Read-only view of a segkit slice store (Zarr v3) for training: arrays, per-slice table, split.

The layout is the store contract of DESIGN.md / issue 4: root arrays ``image``
(float32 N×H×W) and ``mask`` (uint8 N×H×W), one slice per chunk; group ``slices``
with 1-D arrays ``patient``, ``series``, ``index``, ``position``, ``split``,
``source``, ``parent``, ``transform``; root attribute ``segkit``.  This module
only reads (the writer is ``segkit.store``); it imports no TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segkit.errors import InputError

__all__ = ["SliceStore", "open_slice_store", "SPLITS"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SliceStore:
    """An opened store: lazy ``image``/``mask`` arrays and the per-slice ``split`` (and ``patient``, ``parent``)."""

    path: Path
    image: Any
    mask: Any
    split: np.ndarray
    patient: np.ndarray
    parent: np.ndarray
    attrs: dict[str, Any]

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(N, H, W)``."""
        return tuple(int(s) for s in self.image.shape)  # type: ignore[return-value]

    def indices(self, split: str) -> np.ndarray:
        """Slice indices (ascending) of one split."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
        return np.flatnonzero(self.split == split)

    def provenance_digest(self) -> str:
        """SHA-256 of the store's provenance record (canonical JSON); ties a run to its data."""
        prov = self.attrs.get("provenance", [])
        text = json.dumps(prov, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (float32 H×W) and mask (uint8 H×W) of slice ``i``."""
        return np.asarray(self.image[int(i)], dtype=np.float32), np.asarray(self.mask[int(i)], dtype=np.uint8)


def _strings(arr: Any) -> np.ndarray:
    return np.asarray([str(v) for v in np.asarray(arr[:]).tolist()], dtype=object)


def open_slice_store(path: str | Path) -> SliceStore:
    """Open a segkit store for reading and check what training relies on.

    Raises
    ------
    InputError
        If ``path`` is not a segkit store, its arrays disagree in shape, a slice has
        an unknown split, a patient is in train and in val/test, or an augmented slice descends from a val/test slice
        (which would leak held-out patients into training).
    """
    import zarr

    path = Path(path)
    if not path.exists():
        raise InputError(str(path), "store not found.")
    try:
        root = zarr.open_group(str(path), mode="r")
        image, mask, slices = root["image"], root["mask"], root["slices"]
        split = _strings(slices["split"])
        patient = _strings(slices["patient"])
        parent = np.asarray(slices["parent"][:], dtype=np.int64) if "parent" in slices else np.full(len(split), -1)
    except (KeyError, FileNotFoundError, ValueError, TypeError) as exc:
        raise InputError(str(path), "is not a segkit store (needs arrays image and mask and a group slices "
                                    f"with split and patient; {type(exc).__name__}: {str(exc)[:80]}).") from None
    n = image.shape[0]
    if image.ndim != 3 or tuple(mask.shape) != tuple(image.shape) or len(split) != n or len(patient) != n:
        raise InputError(str(path), f"image {tuple(image.shape)}, mask {tuple(mask.shape)} and the slice table "
                                    f"({len(split)} rows) do not describe the same N×H×W slices.")
    unknown = sorted(set(split.tolist()) - set(SPLITS))
    if unknown:
        raise InputError(str(path), f"slices/split holds {unknown}; only train, val and test are allowed.")
    held_out = set(patient[split != "train"].tolist())
    shared = held_out & set(patient[split == "train"].tolist())
    if shared:
        raise InputError(str(path), f"{len(shared)} patient(s) have slices in train and in val/test; the split "
                                    "must be per patient.")
    derived = np.flatnonzero(parent >= 0)
    if derived.size:
        parents = parent[derived]
        leaking = (parents >= n) | (split[np.minimum(parents, n - 1)] != "train") | (split[derived] != "train")
        if leaking.any():
            raise InputError(str(path), f"{int(leaking.sum())} augmented slices descend from val/test slices or are "
                                        "not in the train split; refusing to train on a leaking store.")
    attrs = dict(root.attrs.get("segkit", {}))
    return SliceStore(path=path, image=image, mask=mask, split=split, patient=patient, parent=parent, attrs=attrs)
