"""Converting one series: a pure function of a small picklable task, so it runs anywhere.

:func:`_convert_series` takes a :class:`_Task` (the series' geometry, where each slice's pixels start in its
file, the RTSTRUCT contours already placed on the output grid, the SEG files; no headers, no PHI) and
returns a :class:`_Result`: each file is read once — hashed for the provenance and its pixels taken from
the same bytes —, the masks are filled from the placed contours or read from the SEG (the two are
cross-checked when a series has both), intensities are normalised and resampled, and the slices are
compressed into the store's chunks, the volume's memory given back slice by slice as it goes
(:func:`_released_volume`).  It runs in a worker thread, a worker process or on a Dask cluster; the result
does not depend on where.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from segkit.convert.intensity import ValueCounts, normalise_volume
from segkit.convert.resample import resample_image, resample_mask, resampled_spacing
from segkit.convert.roi import RoiSelector
from segkit.convert.rtstruct import fill_placed
from segkit.convert.segmask import seg_masks, seg_segments
from segkit.store.shards import EncodedSlices, encode_slices
from segkit.dicom.volume import PixelSource, Volume, read_volume_pixels

log = logging.getLogger(__name__)

#: Worker threads take np.percentile's volume-sized copy one volume at a time (the counted path needs none).
_NORMALISING = threading.Lock()
#: Below this Dice between a series' SEG and RTSTRUCT masks, convert warns.
AGREEMENT_WARNING = 0.95


@dataclass(frozen=True)
class _Task:
    """What a worker needs to convert one series (picklable, no headers, no PHI)."""

    where: str
    geometry: Volume  # geometry only
    pixels: tuple[PixelSource, ...]  # in slice order
    modality: str
    has_rtstruct: bool
    placed: tuple[tuple[str, dict[int, list[np.ndarray]]], ...]  # RTSTRUCT contours on the output grid
    rt_unmatched: tuple[str, ...]
    segs: tuple[tuple[Path, str], ...]
    source: str  # rtstruct | seg
    roi: tuple[str, ...]
    size: int | None
    seg_threshold: float
    skip: int = 0  # leading slices already in the store (a resumed run)


@dataclass
class _Result:
    slices: EncodedSlices  # slices skip… of the series, compressed
    positions: np.ndarray
    normalisation: dict[str, Any]
    spacing: list[float]
    native: dict[str, Any]
    rois: list[tuple[str, bool, bool]]
    agreement: float | None
    digests: dict[str, str]  # image file → SHA-256


# --------------------------------------------------------------------------- one series
def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


class _Pages:
    """An anonymous memory mapping whose slices can be handed back to the OS one at a time."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.slice_bytes = int(np.prod(shape[1:])) * 4
        size = max(1, self.slice_bytes * shape[0])
        # private: MADV_DONTNEED frees its pages (a shared anonymous mapping would keep them in shmem)
        self.releasable = hasattr(mmap, "MAP_PRIVATE") and hasattr(mmap, "MADV_DONTNEED")
        self.map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE) if self.releasable else mmap.mmap(-1, size)
        self.page = mmap.PAGESIZE

    def release(self, k: int) -> None:
        """Slice ``k`` is no longer needed: return its whole pages (they read as zeros afterwards)."""
        if not self.releasable:
            return
        start = -(-k * self.slice_bytes // self.page) * self.page  # whole pages inside the slice only
        stop = (k + 1) * self.slice_bytes // self.page * self.page
        if stop > start:
            self.map.madvise(mmap.MADV_DONTNEED, start, stop - start)


def _released_volume(shape: tuple[int, int, int]) -> tuple[_Pages, np.ndarray]:
    """A float32 volume in its own mapping: compressing it slice by slice can give its memory back as it goes,
    so a series never holds its whole volume and its whole compressed chunks at once (≈ 180 + 140 MB at 175×512²)."""
    pages = _Pages(shape)
    return pages, np.frombuffer(pages.map, dtype=np.float32, count=int(np.prod(shape))).reshape(shape)


def _convert_series(task: _Task) -> _Result:
    """Read one series, fill its masks, normalise, resample and compress its slices (pure; runs anywhere)."""
    from pydicom import dcmread

    counts = ValueCounts()
    pages, array = _released_volume(task.geometry.shape)
    volume, digests = read_volume_pixels(task.geometry, task.pixels, counts=counts, out=array)
    select = RoiSelector(task.roi)
    rois: list[tuple[str, bool, bool]] = []

    def merged(found: dict[str, np.ndarray], shape: tuple[int, int, int]) -> np.ndarray:
        out = None
        for name, m in found.items():
            rois.append((name, True, not m.any()))
            out = m if out is None else out | m
        return np.zeros(shape, dtype=bool) if out is None else out

    size = task.size
    shape = volume.shape if size is None else (volume.shape[0], size, size)
    rt_mask = seg_mask = None
    if task.has_rtstruct:
        rt_mask = merged(fill_placed(task.placed, shape), shape)
        rois.extend((name, False, False) for name in task.rt_unmatched)
    if task.segs:
        found: dict[str, np.ndarray] = {}
        for path, what in task.segs:
            ds = dcmread(path)
            for name, m in seg_masks(ds, volume, select, threshold=task.seg_threshold, label=what).items():
                found[name] = found[name] | m if name in found else m
            rois.extend((n, False, False) for n in seg_segments(ds).values() if not select(n))
        seg_mask = merged(found, volume.shape)
        if size is not None:
            seg_mask = resample_mask(seg_mask, size)
    mask = seg_mask if task.source == "seg" else rt_mask
    agreement = None
    if seg_mask is not None and rt_mask is not None:
        agreement = _dice(seg_mask, rt_mask)
        if agreement < AGREEMENT_WARNING:
            log.warning("warning: series %s: its SEG and RTSTRUCT agree poorly (Dice %.3f); using the SEG",
                        task.where, agreement)
    raw, volume = volume.array, replace(volume, array=None)
    # in place, percentiles from the counts: no volume-sized buffer.  Without complete counts (pixels pydicom
    # decoded) np.percentile copies the volume: one series at a time then bounds the peak memory.
    with contextlib.nullcontext() if counts.table() is not None else _NORMALISING:
        image, normalisation = normalise_volume(raw, counts=counts, overwrite_input=True)
    del raw
    if size is not None:
        image = resample_image(image, size)
    dy, dx = volume.pixel_spacing if size is None else resampled_spacing(volume.pixel_spacing, volume.matrix, size)
    native = {"matrix": list(volume.matrix), "pixel_spacing": list(volume.pixel_spacing),
              "slice_spacing": volume.slice_spacing, "slices": volume.shape[0],
              "modality": task.modality, "mask_source": task.source.upper()}
    if image is array:  # compress slice by slice, handing each slice's pages back: the chunks take their place
        parts = []
        for k in range(task.skip, len(image)):
            parts.append(encode_slices(image[k:k + 1], mask[k:k + 1]))
            pages.release(k)
        slices = EncodedSlices([c for p in parts for c in p.image], [c for p in parts for c in p.mask],
                               np.concatenate([p.has_tumour for p in parts]) if parts else np.zeros(0, dtype=bool))
    else:
        slices = encode_slices(image[task.skip:], mask[task.skip:])
    return _Result(slices=slices, positions=volume.positions, normalisation=normalisation,
                   spacing=[volume.slice_spacing, dy, dx], native=native, rois=rois, agreement=agreement,
                   digests=digests)
