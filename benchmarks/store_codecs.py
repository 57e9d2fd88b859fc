"""Pick the store's codec and sharding by measurement (run by hand: ``python -m benchmarks.store_codecs``).

Writes the same 128 MR-like 512×512 slices (float32 image in [0, 1] with 12-bit
quantisation, uint8 mask) with each candidate layout and prints size on disk,
file count, write time and random single-slice read rate.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

N, H = 128, 512


def _slices(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :H] / H - 0.5
    head = (yy**2 + xx**2) < 0.16
    images = np.empty((N, H, H), np.float32)
    masks = np.zeros((N, H, H), np.uint8)
    for i in range(N):
        body = head * (0.5 + 0.2 * np.sin(8 * xx + i / 10) * np.cos(6 * yy))
        noisy = body + head * rng.normal(0, 0.03, (H, H))
        images[i] = np.round(np.clip(noisy, 0, 1) * 4095) / 4095  # 12-bit source, normalised
        masks[i] = ((yy - 0.05) ** 2 + (xx + 0.1) ** 2) < (0.002 * (i % 20))
    return images, masks


def _measure(name: str, compressors, shard: int | None, images, masks, root: Path) -> None:
    path = root / f"{name}.zarr"
    t0 = time.perf_counter()
    g = zarr.open_group(path, mode="w", zarr_format=3)
    for key, data in (("image", images), ("mask", masks)):
        a = g.create_array(key, shape=data.shape, dtype=data.dtype, chunks=(1, H, H),
                           shards=(shard, H, H) if shard else None, compressors=compressors)
        a[:] = data
    write = time.perf_counter() - t0
    files = [p for p in path.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    g = zarr.open_group(path, mode="r")
    img, msk = g["image"], g["mask"]
    order = np.random.default_rng(1).permutation(N)
    t0 = time.perf_counter()
    for i in order:
        img[int(i)], msk[int(i)]
    reads = N / (time.perf_counter() - t0)
    print(f"{name:<28} {size / 2**20:8.1f} MiB {len(files):6d} files  write {write:6.2f} s  "
          f"{reads:7.0f} random slice reads/s")


def main() -> None:
    images, masks = _slices()
    raw = (images.nbytes + masks.nbytes) / 2**20
    print(f"{N} slices of {H}x{H}: {raw:.0f} MiB raw")
    candidates = {
        "blosc-lz4-bitshuffle": BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),
        "blosc-zstd-bitshuffle": BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),
        "blosc-zstd1-bitshuffle": BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle"),
        "blosc-lz4-shuffle": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
        "zstd-3": ZstdCodec(level=3),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, codec in candidates.items():
            _measure(name, codec, None, images, masks, Path(tmp))
            shutil.rmtree(Path(tmp) / f"{name}.zarr")
        for name in ("blosc-lz4-bitshuffle", "blosc-zstd-bitshuffle", "blosc-zstd1-bitshuffle"):
            _measure(f"{name}/shard64", candidates[name], 64, images, masks, Path(tmp))


if __name__ == "__main__":
    main()
