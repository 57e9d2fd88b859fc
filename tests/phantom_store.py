"""Tiny segkit slice stores for the training tests, written with zarr directly in the store layout.

The real writer is ``segkit.store`` (issue 4); this writes only the layout the
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
    """Write a store; default split: last patient test, the one before val, the rest train."""
    import zarr

    images, masks, patient = phantom_slices(patients, slices, size, seed)
    names = sorted(set(patient.tolist()))
    split_of = split_of or {n: ("test" if i == len(names) - 1 else "val" if i == len(names) - 2 else "train")
                            for i, n in enumerate(names)}
    split = np.array([split_of[p] for p in patient])
    index = np.tile(np.arange(slices), patients)
    parent = np.full(len(patient), -1)
    source = np.array(["original"] * len(patient))
    transform = np.array([""] * len(patient))
    for par in augmented_parents or []:
        images = np.concatenate([images, np.flip(images[par], 1)[None]])
        masks = np.concatenate([masks, np.flip(masks[par], 1)[None]])
        patient = np.append(patient, patient[par]); split = np.append(split, split[par])
        index = np.append(index, index[par]); parent = np.append(parent, par)
        source = np.append(source, "augmented"); transform = np.append(transform, json.dumps({"flip": "lr"}))
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    n = len(patient)
    root.create_array("image", shape=images.shape, chunks=(1, size, size), dtype="float32")[:] = images
    root.create_array("mask", shape=masks.shape, chunks=(1, size, size), dtype="uint8")[:] = masks
    g = root.create_group("slices")
    for name, values in [("patient", patient), ("series", np.char.add(patient, "-S1")), ("split", split),
                         ("source", source), ("transform", transform)]:
        g.create_array(name, shape=(n,), dtype=str)[:] = values.astype(str)
    g.create_array("index", shape=(n,), dtype="int32")[:] = index
    g.create_array("position", shape=(n,), dtype="float64")[:] = index * 2.0
    g.create_array("parent", shape=(n,), dtype="int64")[:] = parent
    root.attrs["segkit"] = {"format": "segkit-slices", "version": 1, "size": size,
                            "split": split_of,
                            "provenance": [{"step": "phantom", "seed": seed, "params": {"patients": patients}}]}
    return path
