"""Patient-level train/validation/test split, drawn with a seed before anything else."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from segkit.errors import UsageError

__all__ = ["assign_split"]


def assign_split(patients: Iterable[str], *, val: int = 1, test: int = 1, seed: int = 0) -> dict[str, str]:
    """Assign whole patients to ``train``, ``val`` and ``test``.

    The patients are sorted, shuffled with ``numpy.random.default_rng(seed)``,
    and the first ``test`` go to test, the next ``val`` to val, the rest to
    train — so the split depends only on the set of patients and the seed.

    Raises
    ------
    UsageError
        If fewer than ``val + test + 1`` patients are given (training needs one).
    """
    names = sorted(set(patients))
    if val < 0 or test < 0:
        raise UsageError("--val-patients/--test-patients", "must not be negative")
    if len(names) < val + test + 1:
        raise UsageError(
            "--val-patients/--test-patients",
            f"{val} validation + {test} test patients leave none of the {len(names)} patient(s) for training",
        )
    order = np.random.default_rng(seed).permutation(len(names))
    split = {}
    for rank, i in enumerate(order):
        split[names[i]] = "test" if rank < test else "val" if rank < test + val else "train"
    return dict(sorted(split.items()))
