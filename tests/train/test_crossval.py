"""Patient-level cross-validation (segkit train --folds, evaluate on the parent) and segkit ablate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.phantom_store import write_phantom_store
from segkit.train.crossval import fold_splits

TINY = {"model": {"input_size": 32}, "train": {"epochs": 1, "batch_size": 4, "steps_per_epoch": 1, "seed": 2}}


def test_every_patient_is_held_out_by_exactly_one_fold_and_never_trains_it():
    patients = [f"P{k:02d}" for k in range(7)]
    for k in (2, 3, 7):
        folds = fold_splits(patients, k, seed=4)
        assert len(folds) == k
        tested = [p for f in folds for p, s in f.items() if s == "test"]
        assert sorted(tested) == patients  # each patient exactly once
        for f in folds:
            assert set(f) == set(patients)
            train = {p for p, s in f.items() if s == "train"}
            held = {p for p, s in f.items() if s != "train"}
            assert train and not train & held and sum(s == "val" for s in f.values()) == 1
    loo = fold_splits(patients, 7, seed=4)
    assert all(sum(s == "test" for s in f.values()) == 1 for f in loo)  # K = patients: leave-one-out
    assert fold_splits(patients, 3, seed=4) == fold_splits(patients, 3, seed=4)


def test_too_many_folds_are_refused():
    from segkit.errors import UsageError

    with pytest.raises(UsageError, match="--folds"):
        fold_splits(["a", "b", "c"], 4)
    with pytest.raises(UsageError, match="--folds"):
        fold_splits(["a", "b"], 2)  # test + val leave no one to train


def test_a_fold_view_hides_held_out_patients_augmented_rows():
    from segkit.pipelines.training_store import open_training_store, with_split

    store = open_training_store(write_phantom_store(Path(pytest.importorskip("tempfile").mkdtemp()) / "s.zarr",
                                                    patients=4, size=32, augmented_parents=[0, 13]))
    split = {"P01": "test", "P02": "train", "P03": "val", "P04": "train"}
    view = with_split(store, split)
    t = view.table
    assert set(t["patient"][view.indices("train")]) == {"P02", "P04"}
    assert set(t["patient"][view.indices("test")]) == {"P01"}
    assert (view.indices("test", source="augmented")).size == 0  # row 48 (augmented P01) is in no split
    assert 49 in view.indices("train")  # augmented P02 row trains
    assert store.split != view.split == split  # the store itself is unchanged


@pytest.mark.train
def test_folds_train_on_one_store_and_evaluate_aggregates(tmp_path):
    pytest.importorskip("tensorflow")
    from segkit.pipelines.tfdata import spec_from_config, train_dataset
    from segkit.pipelines.training_store import open_training_store, with_split
    from segkit.train.config import load_config
    from segkit.train.crossval import evaluate_folds, train_folds
    from segkit.train.runinfo import read_run

    store = write_phantom_store(tmp_path / "s.zarr", patients=4, size=32, augmented_parents=[0, 13])
    parent = tmp_path / "cv"
    train_folds(store, parent, 4, overrides=TINY, progress=False)  # leave-one-patient-out
    record = json.loads((parent / "folds.json").read_text())
    assert [f["test"] for f in record["folds"]] and sorted(p for f in record["folds"] for p in f["test"]) == \
        ["P01", "P02", "P03", "P04"]
    opened = open_training_store(store)
    for fold in record["folds"]:
        run = read_run(parent / fold["dir"])
        held = set(fold["test"]) | set(fold["val"])
        assert run.training_patients and not run.training_patients & held
        # what the fold's pipeline actually reads for training: rows of its training patients only
        view = with_split(opened, run.config["data"]["split"])
        spec = spec_from_config(load_config("cpu-small", overrides={**TINY, "train": {**TINY["train"], "steps_per_epoch": None}}))
        rows = np.concatenate([i.numpy() for *_, i in train_dataset(view, spec, epoch=0, with_index=True)])
        assert set(opened.table["patient"][rows]) == run.training_patients
    # resuming a finished set of folds trains nothing
    assert train_folds(store, parent, 4, overrides=TINY, resume=True, progress=False) == []

    doc = evaluate_folds(parent, store, overlays=False)
    assert [r["test_patients"] for r in doc["folds"]] == [" ".join(f["test"]) for f in record["folds"]]
    assert doc["patients"] == 4 and sorted(r["patient"] for r in doc["per_patient"]) == ["P01", "P02", "P03", "P04"]
    dice = [r["dice"] for r in doc["folds"]]
    assert doc["over_folds"]["dice"]["mean"] == pytest.approx(np.mean(dice))
    assert doc["over_folds"]["dice"]["n"] == 4
    table = (parent / "eval-test" / "folds.md").read_text()
    assert table.count("\n| ") == 4 + 2 + 1 and "mean ± sd over folds" in table


@pytest.mark.train
def test_ablate_writes_one_row_per_variant(tmp_path):
    pytest.importorskip("tensorflow")
    from segkit.train.ablate import VARIANT_ROWS, ablate

    store = write_phantom_store(tmp_path / "s.zarr", patients=4, size=32)
    names = [r[0] for r in VARIANT_ROWS]
    assert names == ["unet", "unet_transformer", "hybrid", "hybrid-without-transformer", "hybrid-without-se",
                     "hybrid-without-cbam", "hybrid-without-attention-gate", "hybrid-without-resnext"]
    chosen = ["unet", "hybrid", "hybrid-without-cbam"]
    rows = ablate(store, tmp_path / "abl", overrides=TINY, variants=chosen, progress=False)
    assert [r["run"] for r in rows] == chosen
    assert [r["model"] for r in rows] == ["unet", "hybrid", "hybrid"]
    import yaml

    cfg = yaml.safe_load((tmp_path / "abl" / "hybrid-without-cbam" / "config.yaml").read_text())
    assert cfg["model"]["cbam"] is False and cfg["model"]["se"] is True and cfg["train"]["seed"] == 2
    text = (tmp_path / "abl" / "ablation.md").read_text()
    assert all(f"| {n} |" in text for n in chosen)
    lines = (tmp_path / "abl" / "ablation.csv").read_text().splitlines()
    assert len(lines) == 1 + len(chosen) and "dice_ci_low" in lines[0]
    # resumable: a second call trains nothing and gives the same table
    assert ablate(store, tmp_path / "abl", overrides=TINY, variants=chosen, progress=False) == rows
