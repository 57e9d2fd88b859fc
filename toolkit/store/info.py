"""``segkit info``: a readable (or JSON) summary of a segkit store."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segkit.store.format import SPLITS
from segkit.store.reader import open_store

__all__ = ["StoreInfo", "store_info"]


@dataclass(frozen=True)
class StoreInfo:
    """What a store holds."""

    path: Path
    format: str
    version: int
    segkit_version: str
    size: tuple[int, int]
    slices: int
    tumour_slices: int
    patients: dict[str, dict[str, Any]]  # pseudonym → {split, slices, tumour_slices, series}
    splits: dict[str, dict[str, int]]  # split → {patients, slices, tumour_slices, augmented}
    sources: dict[str, int]
    provenance: list[dict[str, Any]]
    bytes_on_disk: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (validates against ``schemas/info.schema.json``)."""
        return {
            "path": str(self.path), "format": self.format, "version": self.version,
            "segkit_version": self.segkit_version, "size": list(self.size), "slices": self.slices,
            "tumour_slices": self.tumour_slices, "patients": self.patients, "splits": self.splits,
            "sources": self.sources, "bytes_on_disk": self.bytes_on_disk,
            "provenance": [{k: step.get(k) for k in ("name", "segkit_version", "started", "finished", "seed",
                                                      "input_digest", "output_digest")} for step in self.provenance],
        }

    def text(self) -> str:
        """The summary people read."""
        h, w = self.size
        lines = [
            f"{self.path}  ({self.format} v{self.version}, written by segkit {self.segkit_version}, "
            f"{self.bytes_on_disk / 2**20:.1f} MiB)",
            f"  {self.slices} slices of {h}x{w}, {self.tumour_slices} with tumour, "
            f"{len(self.patients)} patients",
            "  split        patients   slices   tumour   augmented",
        ]
        for split in SPLITS:
            s = self.splits[split]
            lines.append(f"  {split:<10} {s['patients']:>10} {s['slices']:>8} {s['tumour_slices']:>8} {s['augmented']:>11}")
        lines.append("  patients:")
        for name, p in self.patients.items():
            lines.append(f"    {name:<16} {p['split']:<5} {p['slices']:>5} slices ({p['tumour_slices']} with tumour), "
                         f"{p['series']} series")
        lines.append("  provenance:")
        for i, step in enumerate(self.provenance, 1):
            seed = "" if step.get("seed") is None else f", seed {step['seed']}"
            lines.append(f"    {i}. {step['name']}  {step['started']} → {step['finished']}  "
                         f"(segkit {step['segkit_version']}{seed}) output {step['output_digest'][:19]}…")
        return "\n".join(lines)


def store_info(path: str | os.PathLike[str]) -> StoreInfo:
    """Summarise the store at ``path``.

    Raises
    ------
    InputError
        If ``path`` is not a segkit store.
    """
    store = open_store(path)
    table = store.table
    tumour = table["has_tumour"].astype(bool)
    augmented = table["source"] == "augmented"
    patients: dict[str, dict[str, Any]] = {}
    for name in sorted(set(table["patient"])):
        rows = table["patient"] == name
        patients[name] = {"split": store.split.get(name, "?"), "slices": int(rows.sum()),
                          "tumour_slices": int((rows & tumour).sum()),
                          "series": len(set(table["series"][rows]))}
    splits = {}
    for split in SPLITS:
        rows = table["split"] == split
        splits[split] = {"patients": sum(1 for p in patients.values() if p["split"] == split),
                         "slices": int(rows.sum()), "tumour_slices": int((rows & tumour).sum()),
                         "augmented": int((rows & augmented).sum())}
    size = sum(p.stat().st_size for p in store.path.rglob("*") if p.is_file())
    attrs = store.attrs
    return StoreInfo(
        path=store.path, format=attrs["format"], version=int(attrs["version"]),
        segkit_version=attrs["segkit_version"], size=tuple(attrs["size"]), slices=len(store),
        tumour_slices=int(np.count_nonzero(tumour)), patients=patients, splits=splits,
        sources=dict(sorted(Counter(table["source"].tolist()).items())), provenance=store.provenance,
        bytes_on_disk=size,
    )
