"""The pixel work of ``segkit augment``, one block of output rows at a time, in whichever process runs it.

:func:`render_block` reads a block's parents (each once, only its chunks; decoded parents stay in a
per-process cache of at most :data:`PARENT_CACHE_BYTES`) and renders every planned image in a single pass
into block arrays that the process reuses from call to call; :func:`render_and_write` is the task a
worker process runs for one shard (render it, then compress and write it straight into the temporary
store), and :func:`_worker_init` sets each worker process up (one OpenCV thread, glibc malloc tuned, gone
with its parent).  The state kept here is per process and the work is a pure function of the input
store and the recorded transforms, so the bytes do not depend on which process computed a block.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from segkit.augment.io import fast_layout, read_rows, write_shard
from segkit.augment.plan import parse_transform
from segkit.augment.render import render
from segkit.errors import InputError
from segkit.store.reader import open_store
from segkit.store.shards import write_rows
from segkit.workers import die_with_parent

__all__ = ["PARENT_CACHE_BYTES", "render_and_write", "render_block"]


def render_block(src: str | os.PathLike[str], samples: Sequence[tuple[int, str]],
                 slot: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Compute augmented images from ``(parent row, transform JSON)`` pairs of the store at ``src``.

    Each parent is read once per block (only its chunks, :mod:`segkit.augment.io`),
    and every image is rendered in a single pass straight into its row of the
    block (:func:`segkit.augment.render.render`).  Pure: the same pairs give the same bytes.

    The block's arrays are this process's, reused from call to call (a fresh
    80 MB block at 512² costs its page faults every time): the result is valid
    until the next call with the same ``slot``.

    Returns
    -------
    images, masks
        ``(n, H, W)`` float32 and uint8 0/1.
    """
    rows = sorted({int(p) for p, _ in samples})
    parents = _read_parents(str(src), rows)
    h, w = next(iter(parents.values()))[0].shape if parents else (0, 0)
    n = len(samples)
    images = _ARENA.get(f"images{slot}", (n, h, w), np.float32)
    masks = _ARENA.get(f"masks{slot}", (n, h, w), np.uint8)
    scratch = _ARENA.get("scratch", (1, h, w), np.float32)[0]
    mask_scratch = _ARENA.get("mask_scratch", (2, h, w), np.float32)
    for i, (parent, transform) in enumerate(samples):
        render(*parents[int(parent)], parse_transform(transform), images[i], masks[i], scratch, mask_scratch)
    return images, masks


class _Arena:
    """Arrays kept from block to block in one process, handed out as views of the size asked."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, key: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        array = self._arrays.get(key)
        if array is None or array.shape[1:] != shape[1:] or array.dtype != dtype or array.shape[0] < shape[0]:
            array = self._arrays[key] = np.empty(shape, dtype)  # grows to the largest block asked for
        return array[:shape[0]]

    def clear(self) -> None:
        self._arrays.clear()


_ARENA = _Arena()


def _read_parents(src: str, rows: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    if fast_layout(src):
        return _PARENTS.read(src, rows)
    store = _open_cached(src)
    return {row: store.read(row) for row in rows}


def _decode_rows(src: str, rows: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    try:
        return read_rows(src, rows, out=_ARENA.get)
    except (OSError, ValueError) as exc:
        raise InputError(src, f"cannot read its slices ({exc}); the store is damaged.") from None


#: Bytes of decoded parent slices each process keeps between blocks (204 slices at 512²).
PARENT_CACHE_BYTES = 256 * 2**20


class _ParentCache:
    """Decoded parents kept between blocks, least recently used out, within a fixed byte budget.

    Every round of the plan visits every training slice once, so a parent comes
    back once per round: with ``k`` training originals a cache of ``c`` slices
    saves the decompression of about ``min(1, c / k)`` of the parents (all of
    them while ``k`` fits, e.g. 204 slices of 512²).  Decoding is pure, so a
    cached parent is the same bytes as a decoded one.  The slots are allocated
    once and reused; the cache lives for one run (:func:`_end_of_run`).
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._reset(None)

    def _reset(self, src: str | None) -> None:
        from collections import OrderedDict

        self.src, self.capacity = src, 0
        self.images: list[np.ndarray] = []  # slots, allocated as first needed
        self.masks: list[np.ndarray] = []
        self.slots: OrderedDict[int, int] = OrderedDict()  # row → slot, least recently used first

    def read(self, src: str, rows: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        if src != self.src:
            self._reset(src)
        rows = list(dict.fromkeys(int(r) for r in rows))
        misses = [r for r in rows if r not in self.slots]
        decoded = _decode_rows(src, misses) if misses else {}
        if decoded and not self.capacity:
            image, mask = next(iter(decoded.values()))
            self.capacity = self.budget // max(image.nbytes + mask.nbytes, 1)
        out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for row in rows:
            if row in self.slots:
                self.slots.move_to_end(row)
                slot = self.slots[row]
                out[row] = (self.images[slot], self.masks[slot])
        wanted = set(rows)
        for row in misses:
            image, mask = decoded[row]
            slot = self._slot(wanted, image, mask)
            if slot is None:  # the block needs more parents than the cache holds: use the decode buffer
                out[row] = (image, mask)
                continue
            np.copyto(self.images[slot], image)
            np.copyto(self.masks[slot], mask)
            self.slots[row] = slot
            out[row] = (self.images[slot], self.masks[slot])
        return out

    def _slot(self, keep: set[int], image: np.ndarray, mask: np.ndarray) -> int | None:
        if len(self.images) < self.capacity:
            self.images.append(np.empty_like(image))
            self.masks.append(np.empty_like(mask))
            return len(self.images) - 1
        for row in self.slots:  # least recently used first; never one this block uses
            if row not in keep:
                return self.slots.pop(row)
        return None


_PARENTS = _ParentCache(PARENT_CACHE_BYTES)


def _end_of_run() -> None:
    """Let go of the per-process buffers and caches (the in-process path; workers simply exit)."""
    _STORES.clear()
    _ARENA.clear()
    _PARENTS._reset(None)


def render_and_write(src: str, tmp: str, start: int,
                     samples: Sequence[tuple[int, str]]) -> tuple[np.ndarray, dict[str, str]]:
    """Worker task: compute one shard's augmented images and write them into rows ``start…`` of ``tmp``.

    Returns the ``has_tumour`` flags and the written shards' digests for
    :meth:`segkit.store.writer.StoreWriter.commit`.
    """
    return _write_shard(tmp, start, *render_block(src, samples))


def _write_shard(tmp: str, start: int, images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, dict[str, str]]:
    if fast_layout(tmp):
        return write_shard(tmp, start, images, masks)
    return write_rows(tmp, start, images, masks), {}


_STORES: dict[str, Any] = {}


def _open_cached(src: str) -> Any:
    # One open store per process (workers serve many blocks of the same input).
    if src not in _STORES:
        _STORES.clear()
        _STORES[src] = open_store(src)
    return _STORES[src]


def _worker_init() -> None:
    cv2.setNumThreads(1)
    _keep_freed_memory()
    # A pool worker blocks on its task queue and would outlive a killed parent (SIGKILL
    # included); it exits as soon as the parent is gone (the rerun recomputes the lost shards).
    die_with_parent()


def _keep_freed_memory() -> None:
    """Make glibc's malloc reuse freed blocks instead of returning them to the kernel (worker processes only).

    Each compressed 512² chunk is a fresh ~0.8 MB ``bytes``; by default glibc
    serves it with its own ``mmap`` and unmaps it when freed, so every chunk
    costs ~200 page faults of zeroed memory: 1.2 M faults and 1.5 ms of system
    CPU per image in a 6,080-image run.  With a fixed 32 MiB mmap threshold and
    a 256 MiB trim threshold the freed chunks are reused (the worker's memory
    stays what its largest block needs).  No effect on the bytes; skipped where
    malloc is not glibc's.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    mallopt(m_mmap_threshold, 32 * 2**20)
    mallopt(m_trim_threshold, 256 * 2**20)


def _started() -> None:
    """A no-op task: makes the pool spawn a worker now."""
