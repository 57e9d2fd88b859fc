"""Tiny segkit slice stores for the training tests, written with zarr directly in the store layout.

The real writer is ``segkit.store.writer`` (issue 4); this writes only the layout the
training side reads: a brain-like ellipse with a bright disc "tumour" on some
slices, patients split train/val/test, optional augmented rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def phantom_slices(patients: int = 6, slices: int = 12, size: int = 64, seed: int = 0):
    """Images (float32 in [0, 1]), masks (uint8) and the patient of each slice."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, masks, patient = [], [], []
    for p in range(patients):
        cy, cx = rng.uniform(0.4, 0.6, 2) * size
        ty, tx = rng.uniform(0.35, 0.65, 2) * size
        for z in range(slices):
            brain = ((yy - cy) / (0.42 * size)) ** 2 + ((xx - cx) / (0.34 * size)) ** 2 <= 1
            r = 0.16 * size * np.sin(np.pi * (z + 0.5) / slices) - 0.03 * size
            tumour = ((yy - ty) ** 2 + (xx - tx) ** 2 <= r * r) & brain if r > 1 else np.zeros_like(brain)
            img = 0.05 + 0.35 * brain + 0.45 * tumour + rng.normal(0, 0.04, (size, size))
            images.append(np.clip(img, 0, 1).astype(np.float32))
            masks.append(tumour.astype(np.uint8))
            patient.append(f"P{p + 1:02d}")
    return np.stack(images), np.stack(masks), np.array(patient)


def write_phantom_store(path: Path, patients: int = 6, slices: int = 12, size: int = 64, seed: int = 0,
                        split_of: dict[str, str] | None = None, augmented_parents: list[int] | None = None) -> Path:
    """Write a store with :class:`segkit.store.writer.StoreWriter`.

    Default split: last patient test, the one before val, the rest train.
    ``augmented_parents``: rows to append again, flipped, as augmented rows of the same patient and split.
    """
    from segkit.store.provenance import provenance_step
    from segkit.store.writer import StoreWriter

    images, masks, patient = phantom_slices(patients, slices, size, seed)
    names = sorted(set(patient.tolist()))
    split_of = split_of or {n: ("test" if i == len(names) - 1 else "val" if i == len(names) - 2 else "train")
                            for i, n in enumerate(names)}
    step = provenance_step("phantom", {"patients": patients, "slices": slices, "size": size}, seed=seed)
    spacing = {f"{n}-S1": [2.0, 1.0, 1.0] for n in names}
    with StoreWriter(path, (size, size), provenance=[step], attrs={"spacing": spacing}) as writer:
        for n in names:
            rows = np.flatnonzero(patient == n)
            writer.append(images[rows], masks[rows], patient=n, series=f"{n}-S1", split=split_of[n],
                          index=np.arange(rows.size), position=np.arange(rows.size) * 2.0)
        for par in augmented_parents or []:
            n = str(patient[par])
            writer.append(np.flip(images[par], 1), np.flip(masks[par], 1), patient=n, series=f"{n}-S1",
                          split=split_of[n], index=int(par % slices), position=float(par % slices) * 2.0,
                          source="augmented", parent=int(par), transform=json.dumps({"flip": "lr"}))
    return path
