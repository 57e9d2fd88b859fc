"""Pinned bytes of ``segkit augment``: a faster pixel or write path must not change a single byte.

The digests below were computed on the augment code as it was before the
single-pass rewrite (commit 6f6682c) and must stay as they are: the same input,
ops and seed give the same images, masks and store files, release after release.

* The pixel digests are over decoded arrays, so they depend only on segkit's
  pixel code and OpenCV's arithmetic: they are pinned per OpenCV release
  (OpenCV 5 rounds its warps and blurs differently from OpenCV 4) and checked
  where that release is installed; elsewhere the test says so and skips, and
  ``test_every_augmented_image_replays_from_its_parent_and_recorded_ops``
  (tests/test_augment.py) still checks, on any release, that the fast path
  gives the bytes of the op-by-op replay.
* The store digest also covers the compressed chunk files, so it additionally
  depends on the codec (zarr / numcodecs' Blosc); it is checked only with the
  codec versions it was recorded with, and says so when it is skipped.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr

from segkit.augment.run import augment_store
from segkit.augment.ops import apply_ops
from segkit.augment.plan import draw_plan, make_ops
from segkit.store.reader import open_store
from tests.helpers.store_inputs import write_source_store

#: Per OpenCV release (major.minor): sha256 of every output row's image bytes then mask bytes (workers 1 and 2
#: alike); :func:`segkit.store.format.store_digest` of that store with the codec versions it was recorded with; sha256
#: over apply_ops outputs of 120 planned samples on 512² slices (all op combinations).  The OpenCV 4 values were
#: recorded on the code before the single-pass rewrite (commit 6f6682c), the OpenCV 5.1 ones on 3 December 2026.
PINNED = {
    "4": ("a96d949778160b2f49cac475e8862c8d6497fdf6a50e243e8a85bce9050b7789",
          ("sha256:15f5c29f220d34296cc2a248495ff77313f1240970e029f7d9e43bf1b0d25258",
           {"zarr": "3.1.6", "numcodecs": "0.16.6"}),
          "df5e1daf58a1c2e1be8b5c7cb7955963a592d32bb55ee4d5474310ce2cd2673e"),
    "5.1": ("1cd00b2b8ff29190d3fe7f82c39a2a72246de318a592451b4e670e5f84968a5e",
            ("sha256:a60b0d3eab0127008d59860709217e253b9ddb525355466a61960066c372e818",
             {"zarr": "3.1.6", "numcodecs": "0.16.6"}),
            "f28940ae5819f12e08bac97ede18f323466db30c85b96a41497bf34ad09790b2"),
}


def _pins() -> tuple[str, tuple[str, dict[str, str]], str]:
    import cv2

    major, minor = cv2.__version__.split(".")[:2]
    for key in (f"{major}.{minor}", major):
        if key in PINNED:
            return PINNED[key]
    pytest.skip(f"no bytes pinned for OpenCV {cv2.__version__} (pinned: {', '.join(PINNED)}); "
                "the replay test in test_augment.py still checks the fast path against the op-by-op one")


def _pixel_digest(store) -> str:
    h = hashlib.sha256()
    for row in range(len(store)):
        image, mask = store.read(row)
        h.update(np.ascontiguousarray(image, dtype="<f4").tobytes())
        h.update(np.ascontiguousarray(mask, dtype=np.uint8).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def golden_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_source_store(tmp_path_factory.mktemp("golden") / "source.zarr", size=64, slices=9)


@pytest.mark.parametrize("workers", [1, 2])
def test_augmented_store_has_the_pinned_bytes(golden_source, tmp_path, workers):
    store_pixels, (digest, versions), _ = _pins()
    out = open_store(augment_store(golden_source, tmp_path / "out.zarr", target=200, seed=3, workers=workers).path)
    assert _pixel_digest(out) == store_pixels
    if {"zarr": zarr.__version__, "numcodecs": numcodecs.__version__} != versions:
        pytest.skip(f"store digest pinned with {versions}; pixels checked, file bytes not")
    assert out.digest() == digest


def _slices_512() -> list[tuple[np.ndarray, np.ndarray]]:
    """Three MR-like 512² slices: a smooth head with texture and noise, an off-centre tumour mask."""
    rng = np.random.default_rng(2024)
    yy, xx = np.mgrid[0:512, 0:512].astype(np.float32)
    out = []
    for k in range(3):
        head = (np.hypot((yy - 256) / 230, (xx - 250) / 200) < 1).astype(np.float32)
        texture = 0.1 * np.sin(xx / (7 + k)) * np.cos(yy / 11)
        image = np.clip(0.6 * head + texture * head + 0.05 * rng.random((512, 512), dtype=np.float32), 0, 1)
        mask = (np.hypot(yy - 300 - 10 * k, xx - 200) < 40 + 5 * k).astype(np.uint8)
        out.append((image.astype(np.float32), mask))
    return out


def test_replayed_transforms_have_the_pinned_bytes():
    replay_pixels = _pins()[2]
    slices = _slices_512()
    plan = draw_plan(range(len(slices)), len(slices) + 120, make_ops(), seed=11)
    combos = {tuple(s.op_names) for s in plan}
    assert len(combos) >= 12  # the plan exercises (nearly) every combination of the four ops
    h = hashlib.sha256()
    for sample in plan:
        image, mask = apply_ops(*slices[sample.parent], [dict(s) for s in sample.steps])
        h.update(json.dumps([sample.parent, sample.transform]).encode())
        h.update(image.astype("<f4").tobytes())
        h.update(mask.tobytes())
    assert h.hexdigest() == replay_pixels
