"""The tf.data input pipeline over a segkit store: split discipline, order, resume position, preprocessing."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.phantom_store import write_phantom_store
from segkit.errors import InputError
from segkit.pipelines.training_store import open_training_store

pytest.importorskip("tensorflow")
pytest.importorskip("tf_keras")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return open_training_store(write_phantom_store(tmp_path_factory.mktemp("pipe") / "s.zarr", size=48,
                                                augmented_parents=[0, 13]))


def spec(**kw):
    from segkit.pipelines.tfdata import PipelineSpec

    return PipelineSpec(**{"input_size": 32, "backbone": "resnet18", "batch_size": 4, "seed": 5, **kw})


def batches(ds):
    return [tuple(t.numpy() for t in b) for b in ds]


@pytest.mark.train
def test_an_epoch_reads_only_train_slices_each_at_most_once(store):
    from segkit.pipelines.tfdata import steps_per_epoch, train_dataset

    got = np.concatenate([i for *_, i in batches(train_dataset(store, spec(), epoch=0, with_index=True))])
    train = set(store.indices("train").tolist())
    assert set(got.tolist()) <= train and len(set(got.tolist())) == len(got)
    assert len(got) == steps_per_epoch(store, 4) * 4 == (len(train) // 4) * 4
    assert {72, 73} <= train  # the augmented copies are training rows
    held_out = set(store.indices("val").tolist()) | set(store.indices("test").tolist())
    assert len(held_out) == 24 and not held_out & set(got.tolist())


@pytest.mark.train
def test_order_is_a_function_of_seed_and_epoch_and_resume_starts_mid_epoch(store):
    from segkit.pipelines.tfdata import epoch_order, train_dataset

    np.testing.assert_array_equal(epoch_order(store, 5, 2), epoch_order(store, 5, 2))
    assert not np.array_equal(epoch_order(store, 5, 2), epoch_order(store, 5, 3))
    assert not np.array_equal(epoch_order(store, 5, 2), epoch_order(store, 6, 2))
    full = batches(train_dataset(store, spec(), epoch=2, with_index=True))
    resumed = batches(train_dataset(store, spec(), epoch=2, start_step=3, with_index=True))
    assert len(resumed) == len(full) - 3
    for a, b in zip(full[3:], resumed):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


@pytest.mark.train
def test_preprocessing_resizes_makes_three_channels_and_keeps_masks_binary(store):
    from segkit.pipelines.tfdata import eval_dataset

    (image, mask, idx), *_ = batches(eval_dataset(store, spec(batch_size=12), "val", with_index=True))
    assert image.shape == (12, 32, 32, 3) and mask.shape == (12, 32, 32, 1)
    np.testing.assert_array_equal(idx, store.indices("val"))
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    assert set(np.unique(mask)) <= {0.0, 1.0} and mask.sum() > 0
    # ResNet encoders take 0–255 input (their first layer normalises); the store holds [0, 1]
    raw, raw_mask = store.read(int(idx[6]))
    assert image.max() <= 255.0 and abs(image[6].mean() - raw.mean() * 255) < 2.0
    assert abs(mask[6].mean() - raw_mask.mean()) < 0.05


@pytest.mark.train
def test_test_split_is_never_a_training_input(store):
    from segkit.pipelines.tfdata import epoch_order

    for epoch in range(5):
        assert not set(epoch_order(store, 0, epoch).tolist()) & set(store.indices("test").tolist())


def test_augmented_slice_outside_train_is_refused(tmp_path):
    path = write_phantom_store(tmp_path / "leak.zarr", augmented_parents=[50])  # slice 50 is a val patient's
    with pytest.raises(InputError, match=r"leak\.zarr: 1 augmented slices are not in the train split"):
        open_training_store(path)


def test_patient_in_train_and_val_is_refused(tmp_path):
    import zarr

    path = write_phantom_store(tmp_path / "mixed.zarr")
    split = zarr.open_group(str(path), mode="r+")["slices"]["split"]
    split[0] = "val"  # written behind the writer's back: the writer itself refuses such a split
    with pytest.raises(InputError, match=r"mixed\.zarr: 1 patient\(s\) have slices in train and in val/test"):
        open_training_store(path)


def test_a_folder_that_is_not_a_store_is_refused(tmp_path):
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(InputError, match=r"empty\.zarr: is not a segkit store"):
        open_training_store(tmp_path / "empty.zarr")
    with pytest.raises(InputError, match=r"nowhere\.zarr: no such store"):
        open_training_store(tmp_path / "nowhere.zarr")


@pytest.mark.train
def test_train_split_smaller_than_a_batch_is_refused(store):
    from segkit.pipelines.tfdata import steps_per_epoch

    with pytest.raises(InputError, match=r"the train split has 50 slices, fewer than one batch of 64"):
        steps_per_epoch(store, 64)


@pytest.mark.train
def test_the_row_cache_gives_the_same_batches_and_reads_each_row_once(store, monkeypatch):
    from segkit.pipelines.tfdata import RowCache, train_dataset

    reads = []
    original = type(store).read
    monkeypatch.setattr(type(store), "read", lambda self, i: reads.append(int(i)) or original(self, i))
    settings = spec(contrast={"remap": 0.0, "knots": 5, "p": 0.5, "gamma": [0.7, 1.5], "scale": [0.9, 1.1],
                              "invert": 0.3, "invert_threshold": 0.1, "hole": 0.5}, dihedral=True)
    cache = RowCache()
    for epoch in (0, 1):
        plain = batches(train_dataset(store, settings, epoch=epoch, with_index=True))
        cached = batches(train_dataset(store, settings, epoch=epoch, with_index=True, cache=cache))
        for a, b in zip(plain, cached, strict=True):
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x, y)
    # the uncached epochs read every row each time; the cached ones each row once over both epochs
    n = steps_per_epoch_rows(store)
    assert len(cache.rows) >= n and len(reads) == 2 * n + len(cache.rows)
    small = RowCache(max_bytes=1)  # a budget too small for one row: still correct, nothing kept
    first = batches(train_dataset(store, settings, epoch=0, with_index=True, cache=small))
    assert len(small.rows) == 0 and all(np.array_equal(x, y) for x, y in zip(first[0], plain_epoch0(store, settings)))


def steps_per_epoch_rows(store) -> int:
    from segkit.pipelines.tfdata import steps_per_epoch

    return steps_per_epoch(store, 4) * 4


def plain_epoch0(store, settings):
    from segkit.pipelines.tfdata import train_dataset

    return batches(train_dataset(store, settings, epoch=0, with_index=True))[0]
