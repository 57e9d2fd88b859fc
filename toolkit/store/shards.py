"""The image and mask arrays, sharded 64 slices a file and written without zarr's per-call cost: zarr only creates the
arrays (:func:`create_arrays`, their metadata); :func:`encode_slices` compresses slices once into the store's chunk
bytes — pure and thread-safe, so it may run anywhere (a worker thread, another process, a Dask worker) and compression
stays off the writer's critical path — and the writer assembles each shard from those chunks byte for byte as zarr's
sharding codec lays it out (inner chunks in order, all-zero chunks left out, a little-endian offset/length index with
its CRC-32C at the end), so its work is one file write per shard (``tests/store/test_store_shards.py`` checks the
bytes against zarr's own writes); :func:`write_rows` lets other processes write whole shards of a store being
written through zarr itself."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segkit.errors import UsageError
from segkit.store.format import _compressor

__all__ = ["EncodedSlices", "encode_slices", "write_rows"]

def create_arrays(group: Any, size: tuple[int, int], shard_slices: int) -> None:
    """Create the empty ``image`` and ``mask`` arrays (slices of ``size``, ``shard_slices`` a shard) in ``group``."""
    h, w = size
    for name, dtype in (("image", np.float32), ("mask", np.uint8)):
        group.create_array(
            name,
            shape=(0, h, w),
            dtype=dtype,
            chunks=(1, h, w),
            shards=(shard_slices, h, w),
            compressors=_compressor(),
            fill_value=0,
        )


_CODECS: dict[int, Any] = {}


def _chunk_codec(itemsize: int) -> Any:
    """The numcodecs Blosc object zarr's BloscCodec uses for one chunk of this item size."""
    codec = _CODECS.get(itemsize)
    if codec is None:
        from dataclasses import replace as evolve

        codec = _CODECS[itemsize] = evolve(_compressor(), typesize=itemsize)._blosc_codec
    return codec


@dataclass
class EncodedSlices:
    """Slices compressed as the store's chunks (one per slice; ``None`` = all zero, not stored).

    Made by :func:`encode_slices`, appended with :meth:`StoreWriter.append_encoded`.
    """

    image: list[bytes | None]
    mask: list[bytes | None]
    has_tumour: np.ndarray

    def __len__(self) -> int:
        return len(self.image)

    def __getitem__(self, rows: slice) -> EncodedSlices:
        return EncodedSlices(self.image[rows], self.mask[rows], self.has_tumour[rows])


def _encode(plane: np.ndarray) -> bytes | None:
    raw = np.ascontiguousarray(plane).view(np.uint8).reshape(-1)
    if not raw.any():  # zarr leaves out chunks equal to the fill value (compared bit for bit)
        return None
    return bytes(_chunk_codec(plane.dtype.itemsize).encode(raw))


def encode_slices(image: np.ndarray, mask: np.ndarray) -> EncodedSlices:
    """Compress ``(n, H, W)`` slices (float32 image, 0/1 mask) into the store's chunk bytes.

    Pure and thread-safe (Blosc releases the GIL): call it where the slices are made.

    Raises
    ------
    UsageError
        On shapes that differ or a mask that is not binary.
    """
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim == 2:
        image, mask = image[None], mask[None]
    if mask.shape != image.shape:
        raise UsageError("store writer", f"mask {mask.shape} and image {image.shape} differ in shape")
    if mask.dtype != np.bool_ and np.any((mask != 0) & (mask != 1)):
        raise UsageError("store writer", "masks must be binary (0/1)")
    image = image.astype("<f4", copy=False)
    # plane by plane: no volume-sized copy of the mask
    return EncodedSlices([_encode(plane) for plane in image], [_encode(plane.astype(np.uint8)) for plane in mask],
                         mask.reshape(len(mask), -1).any(axis=1))


def _shard_parts(chunks: Sequence[bytes | None], per_shard: int) -> list[bytes] | None:
    """One shard's byte pieces as zarr's ShardingCodec lays them out (index at the end, CRC-32C), or ``None`` if empty."""
    import google_crc32c

    index = np.full((per_shard, 2), np.iinfo(np.uint64).max, dtype="<u8")
    parts, start = [], 0
    for k, chunk in enumerate(chunks):
        if chunk:
            index[k] = (start, len(chunk))
            parts.append(chunk)
            start += len(chunk)
    if not parts:
        return None
    index_bytes = index.tobytes()
    crc = np.array([google_crc32c.value(index_bytes)], dtype="<u4").tobytes()
    return [*parts, index_bytes, crc]


def _write_shard(target: Path, chunks: Sequence[bytes | None], per_shard: int) -> str | None:
    """Write one shard file from its chunks and return its SHA-256 hex (hashed from memory, not re-read).

    A shard of all-zero chunks is not stored: ``target`` is removed and ``None`` returned.
    """
    parts = _shard_parts(chunks, per_shard)
    if parts is None:
        target.unlink(missing_ok=True)
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as fh:
        fh.writelines(parts)  # no shard-sized join
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def write_rows(tmp: str | os.PathLike[str], start: int, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Write slices into rows ``start…`` of a store being written (see :meth:`StoreWriter.reserve`).

    Call it from any process, with whole shards (the array's last may be
    partial); then :meth:`StoreWriter.commit` the rows in order.

    Returns
    -------
    numpy.ndarray
        One ``has_tumour`` flag per slice, for :meth:`StoreWriter.commit`.

    Raises
    ------
    UsageError
        If a mask is not binary.
    """
    import zarr

    mask_u8 = np.asarray(mask).astype(np.uint8, copy=False)
    if mask_u8.size and mask_u8.max() > 1:
        raise UsageError("store writer", "masks must be binary (0/1)")
    group = zarr.open_group(tmp, mode="r+", zarr_format=3)
    stop = start + len(image)
    group["image"][start:stop] = np.asarray(image, dtype=np.float32)
    group["mask"][start:stop] = mask_u8
    return mask_u8.reshape(len(mask_u8), -1).any(axis=1)
