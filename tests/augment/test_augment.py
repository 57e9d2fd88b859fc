"""segkit.augment.run.augment_store: exact counts, no leakage, traceable rows, reproducible bytes, resume."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from segkit.augment.run import augment_store
from segkit.augment.ops import apply_ops
from segkit.augment.plan import parse_transform
from segkit.errors import InputError, OutputExistsError, UsageError
from segkit.store.format import validate_attrs
from segkit.store.reader import open_store
from tests.helpers.store_inputs import SPLITS, write_source_store


@pytest.fixture(scope="module")
def source_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_source_store(tmp_path_factory.mktemp("augment") / "source.zarr")


@pytest.fixture(scope="module")
def augmented(source_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("augment-out") / "augmented.zarr"
    augment_store(source_store, out, target=60, seed=1)
    return out


def test_train_split_reaches_the_target_exactly_and_val_test_are_copied_unchanged(source_store, augmented):
    src, out = open_store(source_store), open_store(augmented)
    assert len(out.indices("train")) == 60
    assert len(out.indices("train", source="original")) == 18
    assert len(out.indices("train", source="augmented")) == 42
    # Every input row is still there, same row number, same bytes, same table row.
    n = len(src)
    assert np.array_equal(out.image[:n], src.image[:]) and np.array_equal(out.mask[:n], src.mask[:])
    for name in ("patient", "series", "index", "position", "split", "source", "parent", "transform"):
        assert list(out.table[name][:n]) == list(src.table[name]), name
    assert out.split == SPLITS


def test_no_val_or_test_slice_nor_copy_of_one_reaches_training(augmented):
    out = open_store(augmented)
    table = out.table
    augmented_rows = out.indices(source="augmented")
    assert set(table["split"][augmented_rows]) == {"train"}
    parents = table["parent"][augmented_rows]
    assert set(table["split"][parents]) == {"train"} and set(table["source"][parents]) == {"original"}
    held_out = {p for p, s in SPLITS.items() if s != "train"}
    assert not held_out & set(table["patient"][out.indices("train")])


def test_every_augmented_image_replays_from_its_parent_and_recorded_ops(augmented):
    out = open_store(augmented)
    table = out.table
    for row in out.indices(source="augmented"):
        parent = int(table["parent"][row])
        steps = parse_transform(table["transform"][row])
        assert steps and table["patient"][row] == table["patient"][parent]
        assert table["index"][row] == table["index"][parent]
        image, mask = apply_ops(*out.read(parent), steps)
        assert image.tobytes() == out.image[int(row)].tobytes()
        assert mask.tobytes() == out.mask[int(row)].tobytes()


def test_masks_stay_binary_and_tumour_flags_match(augmented):
    out = open_store(augmented)
    masks = out.mask[:]
    assert set(np.unique(masks).tolist()) == {0, 1}
    assert list(out.table["has_tumour"]) == list(masks.reshape(len(masks), -1).any(axis=1))


def test_provenance_records_the_augment_step_and_validates(source_store, augmented):
    src, out = open_store(source_store), open_store(augmented)
    steps = out.provenance
    assert [s["name"] for s in steps] == ["convert", "augment"]
    step = steps[-1]
    assert step["seed"] == 1 and step["input_digest"] == src.digest() and step["output_digest"] == out.digest()
    assert step["parameters"]["target"] == 60 and set(step["parameters"]["ops"]) == {"flip", "rotate", "blur", "contrast"}
    assert out.attrs["augmentation"]["plan_digest"] == step["parameters"]["plan_digest"]
    assert out.attrs["spacing"] == src.attrs["spacing"]
    validate_attrs(out.attrs)


@pytest.fixture(scope="module")
def reference_200(source_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seed 3, target 200: 164 augmented rows, i.e. the 28 that close the originals' shard + 2 shards + 8."""
    return augment_store(source_store, tmp_path_factory.mktemp("ref") / "ref.zarr", target=200, seed=3).path


def test_same_seed_gives_the_same_bytes_with_any_number_of_workers(source_store, reference_200, tmp_path):
    result = augment_store(source_store, tmp_path / "w2.zarr", target=200, seed=3, workers=2)
    parallel, reference = open_store(result.path), open_store(reference_200)
    assert parallel.digest() == reference.digest()
    # the recorded output digest (made from the workers' bytes in memory) is the files' digest
    assert parallel.provenance[-1]["output_digest"] == parallel.digest() == reference.provenance[-1]["output_digest"]
    assert list(parallel.table["transform"]) == list(reference.table["transform"])
    assert list(parallel.table["has_tumour"]) == list(reference.table["has_tumour"])
    assert parallel.provenance[-1]["parameters"] == reference.provenance[-1]["parameters"]


@pytest.mark.parametrize("slices", [0, 3, 1000])
def test_the_parent_cache_does_not_change_the_bytes(source_store, reference_200, tmp_path, monkeypatch, slices):
    # None kept (every parent decoded), fewer than a block needs (evictions, overflow), all of them.
    import segkit.augment.worker as worker

    cache = worker._ParentCache(slices * 48 * 48 * 5)  # the source store holds 48² slices
    monkeypatch.setattr(worker, "_PARENTS", cache)
    reads = []
    real = worker._decode_rows
    monkeypatch.setattr(worker, "_decode_rows", lambda src, rows: reads.append(len(rows)) or real(src, rows))
    result = augment_store(source_store, tmp_path / "out.zarr", target=200, seed=3)
    assert open_store(result.path).digest() == open_store(reference_200).digest()
    train = len(open_store(source_store).indices("train"))
    if slices == 1000:  # every parent decoded once
        assert sum(reads) == len(open_store(source_store))
    elif slices == 0:  # one decode per distinct parent of each block
        assert sum(reads) > len(open_store(source_store)) + train


def test_different_seed_gives_a_different_store(source_store, augmented, tmp_path):
    other = open_store(augment_store(source_store, tmp_path / "s2.zarr", target=60, seed=2).path)
    assert other.digest() != open_store(augmented).digest()
    assert list(other.table["transform"]) != list(open_store(augmented).table["transform"])


def test_memory_stays_bounded_by_a_few_shards_whatever_the_target(tmp_path):
    # 1,200 slices of 128×128 are ~98 MB of pixels; the run must fit a 24 MB budget
    # (the writer's 64-slice shard buffer and a few 32-slice blocks).
    src = write_source_store(tmp_path / "src.zarr", size=128, slices=4)
    tracemalloc.start()
    try:
        augment_store(src, tmp_path / "big.zarr", target=1200, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    output_bytes = 1216 * 128 * 128 * 5  # float32 image + uint8 mask per slice
    assert peak < 24e6 < output_bytes / 4, f"peak {peak / 1e6:.1f} MB for {output_bytes / 1e6:.0f} MB of slices"


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import segkit.augment.run as aug
    from segkit.store.writer import StoreWriter

    def die_on_call(owner, name, when):
        real, calls = getattr(owner, name), []
        def wrapper(*args, **kwargs):
            calls.append(1)
            if len(calls) == when:  # mid-run: after some shards are on disk
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        setattr(owner, name, wrapper)

    if __name__ == "__main__":
        workers = int(sys.argv[3])
        if workers == 1:
            die_on_call(aug, "render_block", 4)
        else:
            die_on_call(StoreWriter, "commit", 2)
        aug.augment_store(sys.argv[1], sys.argv[2], target=200, seed=3, workers=workers)
""")


@pytest.mark.parametrize("workers", [1, 2])
def test_killed_run_restarts_where_it_stopped_and_gives_the_same_bytes(source_store, reference_200, tmp_path, workers):
    out = tmp_path / "killed.zarr"
    script = tmp_path / "kill.py"
    script.write_text(_KILL_SCRIPT)
    run = subprocess.run([sys.executable, str(script), str(source_store), str(out), str(workers)],
                         capture_output=True)
    assert run.returncode == -signal.SIGKILL, run.stderr.decode()[-2000:]
    assert not out.exists() and (tmp_path / ".killed.zarr.partial").is_dir()

    result = augment_store(source_store, out, target=200, seed=3, workers=workers)
    assert result.resumed_from > 0
    resumed, reference = open_store(out), open_store(reference_200)
    assert resumed.digest() == reference.digest()
    assert resumed.provenance[-1]["output_digest"] == resumed.digest()
    assert list(resumed.table["transform"]) == list(reference.table["transform"])
    assert list(resumed.table["has_tumour"]) == list(reference.table["has_tumour"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kill.py", "killed.zarr"]  # no partial, no lock


def test_partial_store_of_other_parameters_is_discarded_not_continued(source_store, tmp_path, monkeypatch):
    import segkit.augment.run as aug

    real = aug.render_block
    calls = []

    def interrupted(src, samples, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(src, samples, **kwargs)

    monkeypatch.setattr(aug, "render_block", interrupted)
    out = tmp_path / "out.zarr"
    with pytest.raises(KeyboardInterrupt):
        augment_store(source_store, out, target=200, seed=5)
    assert (tmp_path / ".out.zarr.partial").is_dir() and not out.exists()
    monkeypatch.setattr(aug, "render_block", real)

    result = augment_store(source_store, out, target=200, seed=6)  # another seed: must start afresh
    assert result.resumed_from == 0
    assert open_store(out).digest() == open_store(
        augment_store(source_store, tmp_path / "fresh.zarr", target=200, seed=6).path).digest()


def test_existing_output_is_not_overwritten_without_force(source_store, augmented):
    before = open_store(augmented).digest()
    with pytest.raises(OutputExistsError, match="already exists; choose another path or pass --force"):
        augment_store(source_store, augmented, target=60, seed=9)
    assert open_store(augmented).digest() == before


def test_target_below_the_training_originals_writes_nothing(source_store, tmp_path):
    with pytest.raises(UsageError, match="10 is below the 18 training originals"):
        augment_store(source_store, tmp_path / "x.zarr", target=10)
    assert list(tmp_path.iterdir()) == []


def test_an_augmented_store_is_not_augmented_again(augmented, tmp_path):
    with pytest.raises(InputError, match="already holds augmented images"):
        augment_store(augmented, tmp_path / "again.zarr", target=100)
    assert list(tmp_path.iterdir()) == []


def test_input_that_is_not_a_store_is_an_input_error(tmp_path):
    (tmp_path / "notastore").mkdir()
    with pytest.raises(InputError, match="is not a Zarr v3 group|is not a segkit store"):
        augment_store(tmp_path / "notastore", tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists()


def test_a_converted_synthetic_cohort_grows_to_the_target_without_leakage(synth_cohort, tmp_path):
    # The real chain: segkit synth → segkit convert → segkit augment.
    from segkit.convert.run import convert

    converted = tmp_path / "slices.zarr"
    convert(synth_cohort, converted)
    src = open_store(converted)
    out = open_store(augment_store(converted, tmp_path / "augmented.zarr", target=150, seed=1, workers=2).path)
    table = out.table
    assert len(out.indices("train")) == 150 and len(out) == len(src) + 150 - len(src.indices("train"))
    assert out.split == src.split and set(src.split.values()) == {"train", "val", "test"}
    held_out = {p for p, s in src.split.items() if s != "train"}
    assert not held_out & set(table["patient"][out.indices("train")])
    assert np.array_equal(out.mask[:len(src)], src.mask[:]) and np.array_equal(out.image[:len(src)], src.image[:])
    masks = out.mask[len(src):]
    assert set(np.unique(masks).tolist()) == {0, 1}
    # Augmented tumour masks keep their parent's area (flips and rotations move them; blur and contrast
    # leave them alone), up to the pixels a rotation re-grids along the outline.
    checked = 0
    for row in out.indices(source="augmented", has_tumour=True):
        parent = int(table["parent"][row])
        area = int(src.mask[parent].sum())
        if area >= 30:
            assert abs(int(out.mask[int(row)].sum()) - area) <= 0.15 * area
            checked += 1
    assert checked >= 10
