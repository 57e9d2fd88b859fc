"""StoreWriter(resume_key=...): a killed or interrupted write continues where it stopped, to the same bytes."""

from __future__ import annotations

import numpy as np
import pytest

from segkit.errors import OutputExistsError
from segkit.provenance import provenance_step
from segkit.store import StoreWriter, open_store

SIZE = (6, 5)
N = 23  # 5 shards of 4 + a partial one


def _slices() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.random((N, *SIZE), dtype=np.float32)
    mask = (image > 0.7).astype(np.uint8)
    return image, mask


def _writer(path, key):
    step = provenance_step("test", {}, seed=0)
    return StoreWriter(path, SIZE, provenance=[step], shard_slices=4, resume_key=key,
                       attrs={"spacing": {"S1": [1.0, 1.0, 1.0]}})


def _append(writer, start: int, stop: int) -> None:
    image, mask = _slices()
    for i in range(start, stop):
        writer.append(image[i], mask[i], patient="P1", series="S1", split="train", index=i, position=0.5 * i,
                      transform=f"row {i}")


def _interrupt_after(path, key, rows: int) -> None:
    with pytest.raises(KeyboardInterrupt):
        with _writer(path, key) as writer:
            _append(writer, 0, rows)
            raise KeyboardInterrupt


def test_interrupted_write_resumes_at_the_last_whole_shard_with_the_same_bytes(tmp_path):
    with _writer(tmp_path / "ref.zarr", "k") as writer:
        _append(writer, 0, N)
    out = tmp_path / "out.zarr"
    _interrupt_after(out, "k", 14)  # 3 whole shards flushed, 2 slices lost with the buffer
    assert not out.exists() and (tmp_path / ".out.zarr.partial").is_dir()

    with _writer(out, "k") as writer:
        assert writer.count == 12
        _append(writer, writer.count, N)
    resumed, reference = open_store(out), open_store(tmp_path / "ref.zarr")
    assert resumed.digest() == reference.digest()
    assert list(resumed.table["transform"]) == [f"row {i}" for i in range(N)]
    assert list(resumed.table["position"]) == [0.5 * i for i in range(N)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr", "ref.zarr"]  # no partial, no lock left


def test_partial_store_with_another_key_is_started_afresh(tmp_path):
    out = tmp_path / "out.zarr"
    _interrupt_after(out, "old", 9)
    with _writer(out, "new") as writer:
        assert writer.count == 0
        _append(writer, 0, N)
    assert len(open_store(out)) == N


def test_error_inside_a_resumable_write_leaves_nothing_behind(tmp_path):
    out = tmp_path / "out.zarr"
    with pytest.raises(ValueError):
        with _writer(out, "k") as writer:
            _append(writer, 0, 9)
            raise ValueError("boom")
    assert list(tmp_path.iterdir()) == []


def test_second_writer_on_the_same_destination_is_refused_while_the_first_runs(tmp_path):
    out = tmp_path / "out.zarr"
    with _writer(out, "k") as first:
        _append(first, 0, 5)
        with pytest.raises(OutputExistsError, match="another segkit process is writing it right now"):
            _writer(out, "k").open()
        _append(first, 5, N)
    assert len(open_store(out)) == N
