"""segkit.store.writer writes its shards itself: the bytes must be exactly what zarr's sharding codec writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segkit.store.format import _compressor
from segkit.store.provenance import provenance_step
from segkit.store.reader import open_store
from segkit.store.shards import encode_slices
from segkit.store.writer import StoreWriter


def _slices(n: int, h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.random((n, h, w), dtype=np.float32) * np.linspace(0, 1, w, dtype=np.float32)
    image[2] = 0.0  # an all-zero slice: zarr leaves its chunk out
    image[5] = -0.0  # not the fill value bit for bit: zarr stores it
    image[6, :3] = np.nan
    mask = (rng.random((n, h, w)) > 0.7).astype(np.uint8)
    mask[[0, 1, 2, 9]] = 0
    return image, mask


def _zarr_reference(path: Path, image: np.ndarray, mask: np.ndarray, shard: int) -> None:
    import zarr

    group = zarr.open_group(path, mode="w", zarr_format=3)
    n, h, w = image.shape
    for name, data in (("image", image), ("mask", mask)):
        array = group.create_array(name, shape=(0, h, w), dtype=data.dtype, chunks=(1, h, w), shards=(shard, h, w),
                                   compressors=_compressor(), fill_value=0)
        # appended in pieces, as the writer used to do it (whole shards, then the partial last one)
        for start in range(0, n, shard):
            stop = min(start + shard, n)
            array.resize((stop, h, w))
            array[start:stop] = data[start:stop]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.parts[len(root.parts)] in ("image", "mask")}


@pytest.mark.parametrize("n, shard", [(21, 8), (16, 8), (10, 64)])
def test_shards_are_byte_identical_to_zarrs_own(tmp_path, n, shard):
    image, mask = _slices(n, 12, 10, seed=n)
    _zarr_reference(tmp_path / "zarr.zarr", image, mask, shard)
    step = provenance_step("test", {})
    with StoreWriter(tmp_path / "segkit.zarr", (12, 10), provenance=[step], shard_slices=shard) as writer:
        # encoded elsewhere (as convert's workers do) and appended in uneven pieces
        for a, b in ((0, 5), (5, 6), (6, n)):
            writer.append_encoded(encode_slices(image[a:b], mask[a:b]), patient="P", series="S", split="train",
                                  index=np.arange(a, b), position=np.arange(a, b) * 2.0)
        writer.attrs["spacing"] = {"S": [2.0, 1.0, 1.0]}
    ours, theirs = _files(tmp_path / "segkit.zarr"), _files(tmp_path / "zarr.zarr")
    assert sorted(ours) == sorted(theirs)
    assert "image/c/0/0/0" in ours and all(ours[k] == theirs[k] for k in theirs)
    store = open_store(tmp_path / "segkit.zarr")
    np.testing.assert_array_equal(store.image[:], image)
    np.testing.assert_array_equal(store.mask[:], mask)
    assert list(store.table["has_tumour"]) == list(mask.reshape(n, -1).any(axis=1))


def test_an_all_empty_shard_writes_no_file(tmp_path):
    step = provenance_step("test", {})
    zeros = np.zeros((8, 4, 4), np.float32)
    with StoreWriter(tmp_path / "s.zarr", (4, 4), provenance=[step], shard_slices=4) as writer:
        writer.append(zeros, zeros.astype(np.uint8), patient="P", series="S", split="train", index=np.arange(8),
                      position=np.arange(8.0))
        writer.attrs["spacing"] = {"S": [1.0, 1.0, 1.0]}
    assert not (tmp_path / "s.zarr" / "image" / "c").exists()
    assert open_store(tmp_path / "s.zarr").image[:].shape == (8, 4, 4)
