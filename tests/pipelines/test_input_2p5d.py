"""2.5D input: the encoder's three channels are the slice and its two neighbours in the same series."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.phantom_store import write_phantom_store
from segkit.pipelines.neighbours import neighbour_rows, read_stack, stack_volume
from segkit.pipelines.training_store import open_training_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """6 patients × 12 slices of 32², then two augmented rows replayable by segkit (a flip and a rotation)."""
    from segkit.augment.ops import apply_ops
    from segkit.store.reader import open_store
    from segkit.store.writer import StoreWriter

    base = open_store(write_phantom_store(tmp_path_factory.mktemp("nb") / "base.zarr", size=32))
    out = tmp_path_factory.mktemp("nb") / "s.zarr"
    t = base.table
    steps = {5: [{"op": "flip", "axis": "horizontal"}], 12: [{"op": "rotate", "angle": 17.0}]}
    with StoreWriter(out, (32, 32), provenance=base.provenance, attrs={"spacing": base.attrs["spacing"]}) as w:
        for series in sorted(set(t["series"])):
            rows = np.flatnonzero(t["series"] == series)
            w.append(np.stack([base.image[int(r)] for r in rows]), np.stack([base.mask[int(r)] for r in rows]),
                     patient=str(t["patient"][rows[0]]), series=series, split=str(t["split"][rows[0]]),
                     index=t["index"][rows], position=t["position"][rows])
        for parent, recorded in steps.items():
            img, msk = apply_ops(*base.read(parent), recorded)
            w.append(img[None], msk[None], patient=str(t["patient"][parent]), series=str(t["series"][parent]),
                     split="train", index=int(t["index"][parent]), position=float(t["position"][parent]),
                     source="augmented", parent=parent, transform=json.dumps(recorded))
    return open_training_store(out)


def test_channels_are_the_slice_between_its_neighbours_and_edges_repeat(store):
    nb = neighbour_rows(store.table)
    t = store.table
    for row in (0, 1, 6, 11, 12, 23):  # first, second, middle and last slices of two series
        stack, mask = read_stack(store, row, nb)
        k, series = int(t["index"][row]), t["series"][row]
        same = np.flatnonzero((t["series"] == series) & (t["source"] == "original"))
        by_index = {int(t["index"][r]): int(r) for r in same}
        want = [by_index.get(k - 1, row), row, by_index.get(k + 1, row)]
        for c, r in enumerate(want):
            np.testing.assert_array_equal(stack[..., c], store.image[r])
        np.testing.assert_array_equal(mask, store.mask[row])
    assert nb[0, 0] == 0 and nb[11, 2] == 11 and nb[12, 0] == 12  # series ends repeat themselves


def test_an_augmented_row_gets_its_parents_neighbours_transformed_the_same_way(store):
    from segkit.augment.ops import apply_ops

    nb = neighbour_rows(store.table)
    for row, parent in ((72, 5), (73, 12)):  # row 12 is the first slice of its series
        stack, _ = read_stack(store, row, nb)
        steps = json.loads(store.table["transform"][row])
        np.testing.assert_array_equal(stack[..., 1], store.image[row])
        below = parent - 1 if int(store.table["index"][parent]) > 0 else parent
        np.testing.assert_array_equal(stack[..., 0], apply_ops(*store.read(below), steps)[0])
        np.testing.assert_array_equal(stack[..., 2], apply_ops(*store.read(parent + 1), steps)[0])


def test_a_volume_is_stacked_the_same_way_for_evaluate_and_predict():
    volume = np.arange(4 * 2 * 2, dtype=np.float32).reshape(4, 2, 2)
    stack = stack_volume(volume)
    assert stack.shape == (4, 2, 2, 3)
    np.testing.assert_array_equal(stack[0, ..., 0], volume[0])
    np.testing.assert_array_equal(stack[3, ..., 2], volume[3])
    for k in range(1, 3):
        for c, j in enumerate((k - 1, k, k + 1)):
            np.testing.assert_array_equal(stack[k, ..., c], volume[j])


@pytest.mark.train
def test_the_training_pipeline_feeds_the_neighbours_as_channels(store):
    pytest.importorskip("tensorflow")
    from segkit.pipelines.tfdata import PipelineSpec, eval_dataset, train_dataset

    spec = PipelineSpec(input_size=32, backbone="resnet18", batch_size=4, seed=1, input_mode="2.5d")
    nb = neighbour_rows(store.table)
    for ds in (train_dataset(store, spec, epoch=0, with_index=True), eval_dataset(store, spec, "val", with_index=True)):
        for images, _, rows in ds.take(2):
            for image, row in zip(images.numpy(), rows.numpy()):
                want = read_stack(store, int(row), nb)[0]
                np.testing.assert_allclose(image / 255.0, want, atol=1e-6)  # ResNet input: 0–255, no other scaling
