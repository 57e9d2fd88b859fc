"""segkit.store.writer: atomic streaming writes, the per-slice table, attributes, determinism."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from segkit.errors import InputError, OutputExistsError, SegkitError, UsageError
from segkit.store.provenance import digest_files, provenance_step
from segkit.schemas import validate
from segkit.store.format import store_digest
from segkit.store.reader import open_store
from segkit.store.writer import StoreWriter

SIZE = (8, 6)


def _volume(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.random((n, *SIZE), dtype=np.float32)
    mask = np.zeros((n, *SIZE), np.uint8)
    mask[::2, 2:5, 1:3] = 1  # even slices have tumour
    return image, mask


def _write(path, volumes=((5, 0, "P1", "train"), (3, 1, "P2", "val")), shard=4, **kwargs):
    step = provenance_step("convert", {"size": None}, input_digest="sha256:" + "0" * 64, input_files=2, seed=0)
    with StoreWriter(path, SIZE, provenance=[step], shard_slices=shard, **kwargs) as writer:
        for n, seed, patient, split in volumes:
            image, mask = _volume(n, seed)
            writer.append(image, mask, patient=patient, series=f"S-{patient}", split=split,
                          index=np.arange(n), position=np.arange(n) * 2.5)
            writer.attrs.setdefault("spacing", {})[f"S-{patient}"] = [2.5, 0.8, 0.8]
    return path


def test_round_trip_keeps_pixels_table_and_attributes(tmp_path):
    store = open_store(_write(tmp_path / "s.zarr"))
    assert len(store) == 8
    image0, mask0 = _volume(5, 0)
    image1, mask1 = _volume(3, 1)
    np.testing.assert_array_equal(store.image[:], np.concatenate([image0, image1]))
    np.testing.assert_array_equal(store.mask[:], np.concatenate([mask0, mask1]))
    assert store.image.dtype == np.float32 and store.mask.dtype == np.uint8
    table = store.table
    assert list(table["patient"]) == ["P1"] * 5 + ["P2"] * 3
    assert list(table["index"]) == [0, 1, 2, 3, 4, 0, 1, 2]
    assert table["position"][4] == 10.0
    assert list(table["has_tumour"]) == [True, False, True, False, True, True, False, True]
    assert set(table["source"]) == {"original"} and set(table["parent"]) == {-1} and set(table["transform"]) == {""}
    assert store.split == {"P1": "train", "P2": "val"}
    assert store.attrs["size"] == [8, 6] and store.attrs["slices"] == 8
    assert store.attrs["spacing"]["S-P2"] == [2.5, 0.8, 0.8]


def test_indices_select_rows_by_split_source_and_tumour(tmp_path):
    store = open_store(_write(tmp_path / "s.zarr"))
    assert list(store.indices("train")) == [0, 1, 2, 3, 4]
    assert list(store.indices(["val", "test"])) == [5, 6, 7]
    assert list(store.indices("train", has_tumour=True)) == [0, 2, 4]
    assert list(store.indices(source="augmented")) == []
    with pytest.raises(UsageError, match="must be one of train, val, test"):
        store.indices("training")


def test_arrays_are_chunked_one_slice_per_chunk_in_compressed_shards(tmp_path):
    store = open_store(_write(tmp_path / "s.zarr", shard=4))
    assert store.image.chunks == (1, 8, 6)
    assert store.image.shards == (4, 8, 6)
    codecs = json.loads((tmp_path / "s.zarr" / "image" / "zarr.json").read_text())["codecs"]
    inner = [c["name"] for c in codecs[0]["configuration"]["codecs"]]
    assert inner == ["bytes", "blosc"]
    # 8 slices in 4-slice shards: two shard files per array
    assert len(list((tmp_path / "s.zarr" / "image" / "c").rglob("*"))) >= 2


def test_attributes_and_provenance_validate_against_their_schemas(tmp_path):
    store = open_store(_write(tmp_path / "s.zarr"))
    validate(store.attrs, "store")
    validate(store.provenance, "provenance")
    step = store.provenance[-1]
    assert step["name"] == "convert" and step["seed"] == 0
    assert step["output_digest"] == store_digest(store.path) == store.digest()
    assert step["finished"] >= step["started"]
    broken = {**store.attrs, "split": {"P1": "training"}}
    with pytest.raises(jsonschema.ValidationError, match="training"):
        validate(broken, "store")


def test_same_slices_give_byte_identical_files_whatever_the_append_pattern(tmp_path):
    a = _write(tmp_path / "a.zarr", shard=4)
    # the same 8 slices appended as 5+3 versus as one block of 8 (shard boundaries differ from volumes)
    step = provenance_step("convert", {"size": None}, input_digest="sha256:" + "0" * 64, input_files=2, seed=0)
    image0, mask0 = _volume(5, 0)
    image1, mask1 = _volume(3, 1)
    with StoreWriter(tmp_path / "b.zarr", SIZE, provenance=[step], shard_slices=4) as writer:
        for i in range(5):
            writer.append(image0[i], mask0[i], patient="P1", series="S-P1", split="train", index=i, position=i * 2.5)
        writer.append(image1, mask1, patient="P2", series="S-P2", split="val", index=np.arange(3),
                      position=np.arange(3) * 2.5)
        writer.attrs["spacing"] = {"S-P1": [2.5, 0.8, 0.8], "S-P2": [2.5, 0.8, 0.8]}
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b.zarr") for p in (tmp_path / "b.zarr").rglob("*") if p.is_file())
    assert files_a == files_b
    assert store_digest(a) == store_digest(tmp_path / "b.zarr")


def test_source_date_epoch_makes_even_the_attributes_identical(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a = _write(tmp_path / "a.zarr")
    b = _write(tmp_path / "b.zarr")
    assert (a / "zarr.json").read_bytes() == (b / "zarr.json").read_bytes()
    assert open_store(a).provenance[0]["started"] == "2023-11-14T22:13:20Z"


def test_failure_inside_the_writer_leaves_nothing_behind(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with StoreWriter(tmp_path / "s.zarr", SIZE, provenance=[provenance_step("convert", {})]) as writer:
            writer.append(*_volume(2, 0), patient="P1", series="S", split="train", index=[0, 1], position=[0, 1])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_removes_the_folders_it_created(tmp_path):
    with pytest.raises(UsageError, match="no spacing recorded"):
        with StoreWriter(tmp_path / "a" / "b" / "s.zarr", SIZE, provenance=[provenance_step("convert", {})]) as w:
            w.append(*_volume(1, 0), patient="P1", series="S", split="train", index=0, position=0.0)
    assert list(tmp_path.iterdir()) == []


def test_patient_in_two_splits_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(SegkitError, match="patient P1: has slices in both 'train' and 'test'"):
        _write(tmp_path / "s.zarr", volumes=((2, 0, "P1", "train"), (2, 1, "P1", "test")))
    assert list(tmp_path.iterdir()) == []


def test_series_without_spacing_is_refused(tmp_path):
    with pytest.raises(UsageError, match="no spacing recorded for 1 series"):
        with StoreWriter(tmp_path / "s.zarr", SIZE, provenance=[provenance_step("convert", {})]) as writer:
            writer.append(*_volume(1, 0), patient="P1", series="S", split="train", index=0, position=0.0)
    assert list(tmp_path.iterdir()) == []


def test_existing_destination_is_refused_unless_overwrite(tmp_path):
    path = _write(tmp_path / "s.zarr")
    with pytest.raises(OutputExistsError, match="already exists"):
        _write(path)
    _write(path, volumes=((2, 3, "P9", "test"),), overwrite=True)
    assert open_store(path).split == {"P9": "test"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


def test_bad_slices_are_refused_with_the_reason(tmp_path):
    with pytest.raises(UsageError, match=r"slices must be \(8, 6\)"):
        with StoreWriter(tmp_path / "s.zarr", SIZE, provenance=[provenance_step("convert", {})]) as writer:
            writer.append(np.zeros((1, 6, 8)), np.zeros((1, 6, 8)), patient="P", series="S", split="train",
                          index=0, position=0.0)
    with pytest.raises(UsageError, match="masks must be binary"):
        with StoreWriter(tmp_path / "s.zarr", SIZE, provenance=[provenance_step("convert", {})]) as writer:
            writer.append(np.zeros((1, *SIZE)), np.full((1, *SIZE), 2), patient="P", series="S", split="train",
                          index=0, position=0.0)
    with pytest.raises(UsageError, match="split must be one of train, val, test"):
        with StoreWriter(tmp_path / "s.zarr", SIZE, provenance=[provenance_step("convert", {})]) as writer:
            writer.append(np.zeros((1, *SIZE)), np.zeros((1, *SIZE)), patient="P", series="S", split="validation",
                          index=0, position=0.0)
    assert list(tmp_path.iterdir()) == []


def test_copy_from_and_augmented_rows_build_a_derived_store(tmp_path):
    source = open_store(_write(tmp_path / "s.zarr"))
    step = provenance_step("augment", {"count": 1}, input_digest=source.digest(), seed=3)
    with StoreWriter(tmp_path / "aug.zarr", SIZE, provenance=source.provenance + [step],
                     attrs={"spacing": source.attrs["spacing"]}) as writer:
        writer.copy_from(source, source.indices("val"))
        image, mask = source.read(2)
        writer.append(np.flipud(image), np.flipud(mask), patient="P1", series="S-P1", split="train", index=2,
                      position=5.0, source="augmented", parent=2, transform=json.dumps({"flip": "ud"}))
    aug = open_store(tmp_path / "aug.zarr")
    assert [s["name"] for s in aug.provenance] == ["convert", "augment"]
    assert aug.provenance[0] == source.provenance[0]
    np.testing.assert_array_equal(aug.image[0:3], source.image[5:8])
    assert aug.row(3) == {"patient": "P1", "series": "S-P1", "index": 2, "position": 5.0, "split": "train",
                          "source": "augmented", "parent": 2, "transform": '{"flip": "ud"}', "has_tumour": True}


def test_open_store_refuses_what_is_not_a_segkit_store(tmp_path):
    import zarr

    with pytest.raises(InputError, match="no such store"):
        open_store(tmp_path / "missing.zarr")
    zarr.open_group(tmp_path / "plain.zarr", mode="w", zarr_format=3)
    with pytest.raises(InputError, match="is not a segkit store"):
        open_store(tmp_path / "plain.zarr")
    (tmp_path / "dir").mkdir()
    with pytest.raises(InputError, match="not a Zarr v3 group"):
        open_store(tmp_path / "dir")


def test_input_digest_depends_on_bytes_not_names_or_order(tmp_path):
    (tmp_path / "a").write_bytes(b"one")
    (tmp_path / "b").write_bytes(b"two")
    (tmp_path / "c").write_bytes(b"two")
    first = digest_files([tmp_path / "a", tmp_path / "b"])
    assert first == digest_files([tmp_path / "c", tmp_path / "a"])
    assert first != digest_files([tmp_path / "a", tmp_path / "a"])
    assert first.startswith("sha256:") and len(first) == 71


def _resumable(path, key, stop_after=None, shard=4):
    """Write 2 volumes (5 + 3 slices) resumably; raise KeyboardInterrupt after ``stop_after`` appends."""
    step = provenance_step("convert", {}, seed=0)
    volumes = [(*_volume(5, 0), "P1", "train"), (*_volume(3, 1), "P2", "val")]
    with StoreWriter(path, SIZE, provenance=[step], shard_slices=shard, resume_key=key) as writer:
        done = writer.resumed
        appended = 0
        for image, mask, patient, split in volumes:
            for i in range(len(image)):
                if done > 0:
                    done -= 1
                    continue
                if stop_after is not None and appended == stop_after:
                    raise KeyboardInterrupt
                writer.append(image[i], mask[i], patient=patient, series=f"S-{patient}", split=split, index=i,
                              position=i * 2.5)
                writer.attrs.setdefault("spacing", {})[f"S-{patient}"] = [2.5, 0.8, 0.8]
                appended += 1
    return writer


def test_interrupted_resumable_write_continues_after_the_last_whole_shard(tmp_path):
    reference = _write(tmp_path / "ref.zarr")
    with pytest.raises(KeyboardInterrupt):
        _resumable(tmp_path / "s.zarr", "k1", stop_after=6)  # 6 slices appended: one whole 4-slice shard
    assert sorted(p.name for p in tmp_path.iterdir()) == [".s.zarr.partial", "ref.zarr"]
    writer = _resumable(tmp_path / "s.zarr", "k1")
    assert writer.resumed == 4
    assert store_digest(tmp_path / "s.zarr") == store_digest(reference)
    assert open_store(tmp_path / "s.zarr").attrs["spacing"] == open_store(reference).attrs["spacing"]
    assert not any(p.name.startswith("segkit-resume") for p in (tmp_path / "s.zarr").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.zarr", "s.zarr"]


def test_a_resumed_write_drops_what_zarr_left_half_written(tmp_path):
    # a SIGKILL while zarr rewrites an array's metadata leaves its '<name>.<uuid>.partial' file behind
    reference = _write(tmp_path / "ref.zarr")
    with pytest.raises(KeyboardInterrupt):
        _resumable(tmp_path / "s.zarr", "k1", stop_after=6)
    partial = tmp_path / ".s.zarr.partial"
    (partial / "image" / "zarr.5f0c2e9a4b7d4e1f8a3c6b2d9e0f1a2b.partial").write_bytes(b'{"zarr_format": 3, "sha')
    (partial / "zarr.0123456789abcdef0123456789abcdef.partial").write_bytes(b"")
    _resumable(tmp_path / "s.zarr", "k1")
    assert not list((tmp_path / "s.zarr").rglob("*.partial"))
    assert store_digest(tmp_path / "s.zarr") == store_digest(reference)


def test_a_different_resume_key_starts_again(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _resumable(tmp_path / "s.zarr", "k1", stop_after=6)
    assert _resumable(tmp_path / "s.zarr", "k2").resumed == 0
    assert len(open_store(tmp_path / "s.zarr")) == 8


def test_a_resumable_write_that_fails_on_bad_input_leaves_nothing(tmp_path):
    with pytest.raises(UsageError, match="masks must be binary"):
        with StoreWriter(tmp_path / "s.zarr", SIZE, provenance=[provenance_step("convert", {})],
                         resume_key="k") as writer:
            writer.append(np.zeros((1, *SIZE)), np.full((1, *SIZE), 3), patient="P", series="S", split="train",
                          index=0, position=0.0)
    assert list(tmp_path.iterdir()) == []
