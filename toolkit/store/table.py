"""The per-slice table, one row per slice (columns and dtypes in :data:`~segkit.store.format.TABLE_COLUMNS`): the
writer collects and checks its columns block by block, derives the patient → split map (all of a patient's slices
must be in one split) and writes the columns as the ``slices/`` group of 1-D arrays; the reader reads them back as
numpy arrays (strings as ``object``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from segkit.errors import SegkitError, UsageError
from segkit.store.format import SOURCES, SPLITS, TABLE_COLUMNS

__all__ = ["add_columns", "add_has_tumour", "join_columns", "restore_columns", "split_per_patient", "write_table",
           "read_table"]


def add_columns(columns: Mapping[str, list[np.ndarray]], n: int, rows: Mapping[str, Any]) -> None:
    """Append the columns of ``n`` rows (scalars broadcast) to ``columns``, checking lengths, splits and sources.

    Raises
    ------
    UsageError
        On a column of another length or an unknown split/source.
    """
    for name, value in rows.items():
        column = np.asarray(value, dtype=TABLE_COLUMNS[name] if TABLE_COLUMNS[name] is not str else object)
        if column.ndim == 0:
            column = np.full(n, column.item(), dtype=column.dtype)
        if column.shape != (n,):
            raise UsageError("store writer", f"column {name!r} has {column.size} values for {n} slices")
        columns[name].append(column)
    for name, allowed in (("split", SPLITS), ("source", SOURCES)):
        bad = set(columns[name][-1]) - set(allowed)
        if bad:
            raise UsageError("store writer", f"{name} must be one of {', '.join(allowed)}, got {sorted(bad)}")


def add_has_tumour(columns: Mapping[str, list[np.ndarray]], n: int, flags: np.ndarray) -> None:
    """Append ``n`` ``has_tumour`` flags to ``columns``."""
    if flags.shape != (n,):
        raise UsageError("store writer", f"has_tumour has {flags.size} values for {n} slices")
    columns["has_tumour"].append(flags)


def join_columns(columns: Mapping[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    """The collected blocks of each column as one array."""
    return {name: (np.concatenate(parts) if parts else np.empty(0, dtype=object)) for name, parts in columns.items()}


def restore_columns(values: Mapping[str, Sequence[Any]]) -> dict[str, list[np.ndarray]]:
    """Columns of plain values (as a resume journal holds them) as one block each, in their dtypes."""
    return {name: [np.asarray(values[name], dtype=object if dtype is str else dtype)]
            for name, dtype in TABLE_COLUMNS.items()}


def split_per_patient(table: Mapping[str, np.ndarray]) -> dict[str, str]:
    """Patient pseudonym → split, sorted by patient.

    Raises
    ------
    SegkitError
        If a patient has slices in two splits.
    """
    split: dict[str, str] = {}
    for patient, part in zip(table["patient"], table["split"]):
        if split.setdefault(patient, part) != part:
            raise SegkitError(
                f"patient {patient}",
                f"has slices in both {split[patient]!r} and {part!r}; the split must be per patient",
            )
    return dict(sorted(split.items()))


def write_table(parent: Any, table: Mapping[str, np.ndarray]) -> None:
    """Write the table as the ``slices`` group of the Zarr group ``parent``, one array per column."""
    group = parent.create_group("slices")
    n = len(table["patient"])
    for name, dtype in TABLE_COLUMNS.items():
        data = table[name]
        if dtype is str:
            data = np.asarray([str(v) for v in data], dtype=object) if n else np.empty(0, dtype=object)
        else:
            data = np.asarray(data, dtype=dtype)
        array = group.create_array(name, shape=(n,), dtype=dtype, chunks=(max(n, 1),))
        if n:
            array[:] = data


def read_table(parent: Any) -> dict[str, np.ndarray]:
    """Read the table from the ``slices`` group of the Zarr group ``parent`` (strings as ``object``)."""
    table = {}
    for name, dtype in TABLE_COLUMNS.items():
        column = parent["slices"][name][:]
        table[name] = np.array(column.tolist(), dtype=object) if dtype is str else column
    return table
