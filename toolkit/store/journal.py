"""The resume journal of a resumable write (``StoreWriter(resume_key=...)``): two files inside the temporary store,
``segkit-resume-rows.jsonl`` (the table rows of each run of whole shards, appended as they are written) and
``segkit-resume.json`` (the key, the rows written so far, the slice and shard size, and the attributes so far,
replaced atomically), from which a later writer with the same key continues after the last whole shard; both are
removed before the store is closed."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from segkit.store.format import TABLE_COLUMNS

__all__ = ["write_journal", "read_journal", "remove_journal"]

_STATE = "segkit-resume.json"
_ROWS = "segkit-resume-rows.jsonl"


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON can hold."""
    return value.item() if isinstance(value, np.generic) else value


def write_journal(tmp: Path, columns: Mapping[str, list[np.ndarray]], start: int, stop: int, *, key: str | None,
                  size: tuple[int, int], shard_slices: int, attrs: Mapping[str, Any]) -> None:
    """Record rows ``[start, stop)`` of ``columns`` (just written as whole shards) and the attributes so far."""
    rows = {name: [_plain(v) for v in np.concatenate(parts)[start:stop]] for name, parts in columns.items()}
    with open(tmp / _ROWS, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"start": start, "rows": rows}) + "\n")
    state = {"key": key, "written": stop, "size": list(size), "shard": shard_slices, "attrs": attrs}
    part = tmp / (_STATE + ".tmp")
    part.write_text(json.dumps(state), encoding="utf-8")
    os.replace(part, tmp / _STATE)


def read_journal(tmp: Path, *, key: str | None, size: tuple[int, int],
                 shard_slices: int) -> tuple[int, dict[str, list], dict[str, Any]] | None:
    """The journal of a write with this key, slice size and shard size, or ``None`` if it is of another or incomplete.

    Returns
    -------
    (int, dict, dict) or None
        The rows written, each column's plain values for those rows, and the journal's state (its ``attrs`` are the
        writer's attributes so far).

    Raises
    ------
    OSError, ValueError, KeyError, TypeError
        If there is no journal or it cannot be read.
    """
    state = json.loads((tmp / _STATE).read_text(encoding="utf-8"))
    if (state["key"], state["size"], state["shard"]) != (key, list(size), shard_slices):
        return None
    written = int(state["written"])
    columns: dict[str, list] = {name: [] for name in TABLE_COLUMNS}
    for line in (tmp / _ROWS).read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry["start"] < written:
            for name in TABLE_COLUMNS:
                columns[name].extend(entry["rows"][name])
    if any(len(v) != written for v in columns.values()):
        return None
    return written, columns, state


def remove_journal(tmp: Path) -> None:
    """Remove the journal's files (if any) from the temporary store."""
    for journal in (_STATE, _ROWS):
        (tmp / journal).unlink(missing_ok=True)
