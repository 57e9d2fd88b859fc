"""StoreWriter.reserve / write_rows / commit: other processes write whole shards, the writer records them."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from segkit.errors import UsageError
from segkit.store.provenance import provenance_step
from segkit.store.reader import open_store
from segkit.store.shards import write_rows
from segkit.store.writer import StoreWriter

SIZE = (6, 5)
N = 21


def _slices() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    image = rng.random((N, *SIZE), dtype=np.float32)
    return image, (image > 0.8).astype(np.uint8)


def _writer(path) -> StoreWriter:
    return StoreWriter(path, SIZE, provenance=[provenance_step("test", {}, seed=0)], shard_slices=4,
                       attrs={"spacing": {"S1": [1.0, 1.0, 1.0]}})


def _rows(start: int, stop: int) -> dict:
    return {"patient": "P1", "series": "S1", "split": "train", "index": np.arange(start, stop),
            "position": np.arange(start, stop) * 1.5}


def _write_shard(args) -> np.ndarray:
    tmp, start, stop = args
    image, mask = _slices()
    return write_rows(tmp, start, image[start:stop], mask[start:stop])


def test_shards_written_by_other_processes_give_the_same_store_as_appending(tmp_path):
    image, mask = _slices()
    with _writer(tmp_path / "serial.zarr") as writer:
        writer.append(image, mask, **_rows(0, N))
    with _writer(tmp_path / "parallel.zarr") as writer:
        writer.append(image[:8], mask[:8], **_rows(0, 8))
        tmp, first = writer.reserve(N - 8)
        assert first == 8
        bounds = [(str(tmp), a, min(a + 4, N)) for a in range(8, N, 4)]  # 3 whole shards + 1 slice
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            flags = pool.map(_write_shard, bounds[::-1])[::-1]  # written out of order
        for (_, a, b), has_tumour in zip(bounds, flags):
            writer.commit(b - a, has_tumour=has_tumour, **_rows(a, b))
    serial, parallel = open_store(tmp_path / "serial.zarr"), open_store(tmp_path / "parallel.zarr")
    assert parallel.digest() == serial.digest()
    assert list(parallel.table["has_tumour"]) == list(serial.table["has_tumour"])
    assert list(parallel.table["index"]) == list(range(N))


def test_rows_reserved_but_never_committed_are_dropped(tmp_path):
    image, mask = _slices()
    with _writer(tmp_path / "s.zarr") as writer:
        writer.append(image[:4], mask[:4], **_rows(0, 4))
        tmp, first = writer.reserve(8)
        writer.commit(4, has_tumour=write_rows(tmp, first, image[4:8], mask[4:8]), **_rows(4, 8))
    store = open_store(tmp_path / "s.zarr")
    assert len(store) == 8 and store.image.shape == (8, *SIZE)
    np.testing.assert_array_equal(store.image[:], image[:8])


def test_reserve_off_a_shard_boundary_is_refused(tmp_path):
    image, mask = _slices()
    with _writer(tmp_path / "s.zarr") as writer:
        writer.append(image[:3], mask[:3], **_rows(0, 3))
        with pytest.raises(UsageError, match=r"must start on a shard boundary \(a multiple of 4 slices\); 3 appended"):
            writer.reserve(4)
        writer.append(image[3:4], mask[3:4], **_rows(3, 4))


def test_commit_without_the_table_columns_is_refused(tmp_path):
    image, mask = _slices()
    with _writer(tmp_path / "s.zarr") as writer:
        writer.append(image[:4], mask[:4], **_rows(0, 4))
        tmp, first = writer.reserve(4)
        flags = write_rows(tmp, first, image[4:8], mask[4:8])
        with pytest.raises(UsageError, match="commit needs the columns index, parent, patient, position, series"):
            writer.commit(4, has_tumour=flags, patient="P1")
        writer.commit(4, has_tumour=flags, **_rows(4, 8))
