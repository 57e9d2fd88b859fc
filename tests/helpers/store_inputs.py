"""Small convert-like stores for tests of the steps that read a store (augment, preview)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segkit.store.provenance import provenance_step
from segkit.store.writer import StoreWriter

SPLITS = {"P01": "train", "P02": "train", "P03": "val", "P04": "test"}


def write_source_store(path: Path, size: int = 48, slices: int = 9) -> Path:
    """A convert-like store: 4 patients (2 train, 1 val, 1 test), MR-like slices, an off-centre tumour on most."""
    rng = np.random.default_rng(42)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    step = provenance_step("convert", {"size": size}, input_digest="sha256:" + "1" * 64, input_files=4, seed=0)
    with StoreWriter(path, (size, size), provenance=[step], shard_slices=8) as writer:
        for p, (patient, split) in enumerate(SPLITS.items()):
            head = np.hypot(yy - size / 2, xx - size / 2) < size * 0.42
            images = np.empty((slices, size, size), np.float32)
            masks = np.zeros((slices, size, size), np.uint8)
            for i in range(slices):
                masks[i, size // 4 + i // 3: size // 2, size // 2: size // 2 + 6 + p] = i % 4 != 0
                noise = rng.random((size, size), dtype=np.float32) * 0.1
                images[i] = np.clip(0.5 * head + 0.3 * masks[i] + noise, 0, 1)
            series = f"S{p + 1:02d}"
            writer.append(images, masks, patient=patient, series=series, split=split,
                          index=np.arange(slices), position=np.arange(slices) * 2.0)
            writer.attrs.setdefault("spacing", {})[series] = [2.0, 0.9, 0.9]
    return path
