"""Open a segkit store for training, refusing stores that could leak held-out patients into training.

:func:`segkit.store.reader.open_store` checks the format; this adds what training
relies on: the split is per patient (no patient in train *and* val/test), and
every augmented row is a training row.  No TensorFlow here.
"""

from __future__ import annotations

import os

import numpy as np

from segkit.errors import InputError
from segkit.store.reader import Store, open_store

__all__ = ["open_training_store", "input_digest", "with_split", "EXCLUDED"]

#: Split value given to the augmented rows of a patient that a fold holds out: no split selects them.
EXCLUDED = "excluded"


def open_training_store(path: str | os.PathLike[str]) -> Store:
    """Open ``path`` read-only and check its split discipline.

    Raises
    ------
    InputError
        If it is not a segkit store (see :func:`segkit.store.reader.open_store`), a patient
        has slices in train and in val/test, or an augmented row is not in train.
    """
    store = open_store(path)
    table = store.table
    split, patient = table["split"], table["patient"]
    shared = set(patient[split == "train"].tolist()) & set(patient[split != "train"].tolist())
    if shared:
        raise InputError(str(store.path), f"{len(shared)} patient(s) have slices in train and in val/test; the "
                                          "split must be per patient.")
    leaking = int(np.count_nonzero((table["source"] == "augmented") & (split != "train")))
    if leaking:
        raise InputError(str(store.path), f"{leaking} augmented slices are not in the train split; refusing to "
                                          "train on a store that augments held-out patients.")
    return store


def input_digest(store: Store) -> str:
    """The store's output digest as its last provenance step recorded it (no re-hash of the data)."""
    steps = store.provenance
    recorded = steps[-1].get("output_digest") if steps else None
    return recorded or store.digest()


def with_split(store: Store, split: dict[str, str]) -> Store:
    """A read-only view of ``store`` with the patient split replaced (cross-validation folds).

    Every patient of ``store`` must be in ``split`` (values ``train``, ``val``,
    ``test``).  Augmented rows follow their patient when the patient trains; those
    of a held-out patient are given the split ``excluded`` so that no split holds
    them (the held-out patient is scored on its originals only and never seen in
    training, not even transformed).

    Raises
    ------
    InputError
        If a patient of the store is missing from ``split`` or a split value is unknown.
    """
    import copy

    table = dict(store.table)
    patients = table["patient"]
    missing = sorted(set(patients.tolist()) - set(split))
    if missing:
        raise InputError(str(store.path), f"the fold split names no split for {len(missing)} patient(s) of the store "
                                          f"(e.g. {missing[0]})")
    bad = sorted({v for v in split.values()} - {"train", "val", "test"})
    if bad:
        raise InputError(str(store.path), f"unknown split {bad[0]!r} in the fold split")
    new = np.array([split[p] for p in patients.tolist()], dtype=object)
    new[(table["source"] == "augmented") & (new != "train")] = EXCLUDED
    table["split"] = new
    view = copy.copy(store)
    view.attrs = {**store.attrs, "split": {p: split[p] for p in sorted(set(patients.tolist()))}}
    view.__dict__["table"] = table
    return view
