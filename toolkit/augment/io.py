"""Whole-shard reads and writes of a segkit store's pixels for ``segkit augment``, without zarr's per-call cost.

``segkit augment`` reads one random parent slice per image it makes and writes
whole 64-slice shards.  Through ``zarr`` each single-slice read costs several
milliseconds of event-loop and thread hand-offs on top of ~1 ms of decompression,
which is most of augment's time at 512²; this module does the same reads and
writes directly on the files of the store's one fixed layout
(:mod:`segkit.store.shards`: ``sharding_indexed`` of one-slice chunks, ``bytes`` little
endian + Blosc, shard index at the end with ``crc32c``) with the same codec
library zarr calls (numcodecs' Blosc), so the files are byte-identical to what
:func:`segkit.store.shards.write_rows` writes (a test pins the digest).

Any other layout (another chunking, codec or index place) is not guessed at:
:func:`fast_layout` says no and the caller falls back to the zarr path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["fast_layout", "read_rows", "write_shard"]

_EMPTY = np.uint64(2**64 - 1)
_DTYPES = {"image": ("float32", np.dtype("<f4")), "mask": ("uint8", np.dtype("u1"))}


def _layout(path: str, name: str) -> dict[str, Any] | None:
    """The array's shard size and Blosc settings, if it has exactly the layout this module handles."""
    try:
        stat = os.stat(Path(path) / name / "zarr.json")
    except OSError:
        return None
    return _parse_layout(path, name, stat.st_mtime_ns, stat.st_size, stat.st_ino)


@lru_cache(maxsize=16)
def _parse_layout(path: str, name: str, *_file_version: int) -> dict[str, Any] | None:
    try:
        meta = json.loads((Path(path) / name / "zarr.json").read_text(encoding="utf-8"))
        (codec,) = meta["codecs"]
        conf = codec["configuration"]
        inner = conf["codecs"]
        shard, height, width = meta["chunk_grid"]["configuration"]["chunk_shape"]
        ok = (
            meta["data_type"] == _DTYPES[name][0] and meta["fill_value"] in (0, 0.0)
            and meta["chunk_key_encoding"] == {"name": "default", "configuration": {"separator": "/"}}
            and codec["name"] == "sharding_indexed" and conf["chunk_shape"] == [1, height, width]
            and conf.get("index_location", "end") == "end"
            and conf["index_codecs"] == [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]
            and len(inner) == 2 and inner[0]["name"] == "bytes"
            and inner[0].get("configuration", {"endian": "little"}) == {"endian": "little"}
            and inner[1]["name"] == "blosc"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not ok:
        return None
    blosc = inner[1]["configuration"]
    shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}.get(blosc.get("shuffle"))
    if shuffle is None:
        return None
    return {"shard": int(shard), "size": (int(height), int(width)), "cname": blosc["cname"],
            "clevel": int(blosc["clevel"]), "shuffle": shuffle, "blocksize": int(blosc.get("blocksize", 0)),
            "typesize": int(blosc.get("typesize", _DTYPES[name][1].itemsize))}


def fast_layout(path: str | os.PathLike[str]) -> bool:
    """True when both pixel arrays of the store at ``path`` have the layout this module reads and writes."""
    return all(_layout(str(path), name) is not None for name in _DTYPES)


@lru_cache(maxsize=16)
def _codec(cname: str, clevel: int, shuffle: int, blocksize: int, typesize: int) -> Any:
    import numcodecs.blosc
    from numcodecs import Blosc

    numcodecs.blosc.use_threads = False  # one context per call, the GIL released: threads and processes overlap
    return Blosc(cname=cname, clevel=clevel, shuffle=shuffle, blocksize=blocksize, typesize=typesize)


def _codec_of(layout: dict[str, Any]) -> Any:
    return _codec(layout["cname"], layout["clevel"], layout["shuffle"], layout["blocksize"], layout["typesize"])


def _shard_file(path: str, name: str, shard: int) -> Path:
    return Path(path) / name / "c" / str(shard) / "0" / "0"


def _index(data: memoryview | bytes, n: int) -> np.ndarray:
    import google_crc32c

    raw = bytes(data[-(16 * n + 4):])
    if len(raw) != 16 * n + 4:
        raise ValueError("shard shorter than its index")
    if np.frombuffer(raw[-4:], "<u4")[0] != google_crc32c.value(raw[:-4]):
        raise ValueError("shard index checksum mismatch")
    return np.frombuffer(raw[:-4], "<u8").reshape(n, 2)


def _read_index(fd: int, n: int) -> np.ndarray:
    """The shard's chunk index (offset, length per inner chunk), read from the end of the open file."""
    size = os.fstat(fd).st_size
    tail = 16 * n + 4
    if size < tail:
        raise ValueError("shard shorter than its index")
    return _index(os.pread(fd, tail, size - tail), n)


def read_rows(path: str | os.PathLike[str], rows: Sequence[int],
              out: Callable[[str, tuple[int, ...], Any], np.ndarray] | None = None,
              ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Decode the image and mask of each row (read-only source store) → ``{row: (image, mask)}``.

    Of each shard file touched, only its index and the chunks of the wanted rows
    are read (``pread``): a block's parents are a few slices scattered over many
    shards, and reading whole 50 MB shards to use one or two of their slices cost
    five times the decompression.  Raises ``ValueError`` on a damaged shard (the
    caller reports it as bad input).

    ``out(name, shape, dtype)``, when given, supplies the arrays to decode into
    (``"parent_image"`` / ``"parent_mask"``, one row per distinct row asked for),
    e.g. buffers reused from call to call; by default they are new.
    """
    path = str(path)
    wanted = list(dict.fromkeys(int(r) for r in rows))
    slot = {row: k for k, row in enumerate(wanted)}
    result: dict[int, list[np.ndarray]] = {row: [] for row in wanted}
    for name in ("image", "mask"):
        layout = _layout(path, name)
        assert layout is not None, "read_rows needs fast_layout(path)"
        n, (h, w), dtype = layout["shard"], layout["size"], _DTYPES[name][1]
        codec = _codec_of(layout)
        shape = (len(wanted), h, w)
        planes = out(f"parent_{name}", shape, dtype) if out is not None else np.empty(shape, dtype)
        by_shard: dict[int, list[int]] = {}
        for row in wanted:
            by_shard.setdefault(row // n, []).append(row)
        for shard, members in sorted(by_shard.items()):
            try:
                fd = os.open(_shard_file(path, name, shard), os.O_RDONLY)
            except FileNotFoundError:  # a shard of empty chunks is not written
                fd = None
            try:
                index = _read_index(fd, n) if fd is not None else None
                for row in members:
                    offset, length = index[row % n] if index is not None else (_EMPTY, _EMPTY)
                    plane = planes[slot[row]]
                    if offset == _EMPTY:
                        plane.fill(0)
                    else:
                        chunk = os.pread(fd, int(length), int(offset))
                        if len(chunk) != int(length):
                            raise ValueError("shard shorter than its index says")
                        codec.decode(chunk, out=plane)
                    result[row].append(plane)
            finally:
                if fd is not None:
                    os.close(fd)
    return {row: (pair[0], pair[1]) for row, pair in result.items()}


def write_shard(path: str | os.PathLike[str], start: int, images: np.ndarray,
                masks: np.ndarray) -> tuple[np.ndarray, dict[str, str]]:
    """Write rows ``start…`` (one whole shard, or the store's last, shorter one) as zarr would.

    Same contract as :func:`segkit.store.shards.write_rows` (into a store being written,
    after :meth:`segkit.store.writer.StoreWriter.reserve`).  A chunk of all-zero bytes
    is left out of the shard, as zarr leaves it.

    Returns
    -------
    has_tumour, shard_digests
        The ``has_tumour`` flags, and the SHA-256 of each shard file written
        (store-relative path → hex), made from the bytes in memory, for
        :meth:`segkit.store.writer.StoreWriter.commit`: the store's output digest then
        does not read the (~50 MB) shards back.
    """
    import hashlib

    import google_crc32c

    path = str(path)
    masks = np.ascontiguousarray(masks, dtype=np.uint8)
    if masks.size and masks.max() > 1:
        from segkit.errors import UsageError

        raise UsageError("store writer", "masks must be binary (0/1)")
    images = np.ascontiguousarray(images, dtype="<f4")
    has_tumour = _nonzero_rows(masks)
    digests: dict[str, str] = {}
    for name, block, stored in (("image", images, _nonzero_rows(images)), ("mask", masks, has_tumour)):
        layout = _layout(path, name)
        assert layout is not None, "write_shard needs fast_layout(path)"
        n = layout["shard"]
        if start % n or len(block) > n:
            raise ValueError(f"write_shard writes one whole shard from a shard boundary; got rows {start}…+{len(block)}")
        codec = _codec_of(layout)
        index = np.full((n, 2), _EMPTY, dtype="<u8")
        parts, offset = [], 0
        for i, chunk in enumerate(block):
            if not stored[i]:  # all-zero bytes: left out, as zarr leaves a chunk equal to the fill value
                continue
            encoded = codec.encode(chunk)
            parts.append(encoded)
            index[i] = (offset, len(encoded))
            offset += len(encoded)
        target = _shard_file(path, name, start // n)
        if not parts:
            target.unlink(missing_ok=True)
            continue
        index_bytes = index.tobytes()
        parts.append(index_bytes + np.uint32(google_crc32c.value(index_bytes)).astype("<u4").tobytes())
        target.parent.mkdir(parents=True, exist_ok=True)
        # Written in place, as zarr's LocalStore does: a shard cut short by a kill is not
        # journalled yet, so a resumed run rewrites it (and no stray file enters the store).
        with open(target, "wb") as fh:
            fh.writelines(parts)
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part)
        digests[f"{name}/c/{start // n}/0/0"] = digest.hexdigest()
    return has_tumour, digests


def _nonzero_rows(block: np.ndarray) -> np.ndarray:
    """Per row of a C-contiguous block: does it hold any non-zero byte (as 8-byte words when they fit)?"""
    raw = block.reshape(len(block), -1).view(np.uint8)
    if raw.shape[1] % 8 == 0:
        raw = raw.view(np.uint64)  # 8× fewer elements to test; a word is non-zero iff one of its bytes is
    return raw.any(axis=1)
