"""2.5D input: each slice with its two neighbours in the same series, read from an ordinary store.

The store holds single slices (no new format).  For an original row the
neighbours are the rows of the same series with ``index`` ∓ 1; at either end of
a series the slice stands in for its missing neighbour (edge slices repeat
themselves).  An augmented row has no neighbours of its own: its channels are
its parent's neighbours with the row's recorded transform replayed on them
(:func:`segkit.augment.ops.apply_ops`), so all three channels went through the
same flip / rotation as the slice itself.  No TensorFlow here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

__all__ = ["neighbour_rows", "stack_volume", "read_stack"]


def neighbour_rows(table: Mapping[str, np.ndarray]) -> np.ndarray:
    """``(N, 3)`` int64 rows ``[below, self, above]`` for every row of a store's table.

    Original rows get the rows of their series at ``index − 1`` and ``index + 1``
    (themselves at a series' end); augmented rows get their parent's neighbours
    (the transform is replayed by :func:`read_stack`).
    """
    n = len(table["index"])
    out = np.repeat(np.arange(n, dtype=np.int64)[:, None], 3, axis=1)
    original = np.flatnonzero(table["source"] == "original")
    where = {(str(table["series"][r]), int(table["index"][r])): int(r) for r in original}
    for r in original:
        key_series, k = str(table["series"][r]), int(table["index"][r])
        out[r, 0] = where.get((key_series, k - 1), r)
        out[r, 2] = where.get((key_series, k + 1), r)
    for r in np.flatnonzero(table["source"] != "original"):
        out[r] = out[int(table["parent"][r])]
        out[r, 1] = r
    return out


def stack_volume(volume: np.ndarray) -> np.ndarray:
    """``(z, H, W)`` slices in volume order → ``(z, H, W, 3)``: each slice between its neighbours."""
    volume = np.asarray(volume, dtype=np.float32)
    z = volume.shape[0]
    below = volume[np.maximum(np.arange(z) - 1, 0)]
    above = volume[np.minimum(np.arange(z) + 1, z - 1)]
    return np.stack([below, volume, above], axis=-1)


def _replayable(text: str) -> list[dict] | None:
    """The recorded steps of an augmented row, or ``None`` when they are not segkit ops it can replay."""
    from segkit.augment.ops import OP_CLASSES

    try:
        steps = json.loads(text)
    except (TypeError, ValueError):
        return None
    if isinstance(steps, list) and all(isinstance(s, dict) and s.get("op") in OP_CLASSES for s in steps):
        return steps
    return None


def read_stack(store, row: int, neighbours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """``(image H×W×3 float32, mask H×W uint8)`` of one row as 2.5D input (see the module docstring)."""
    from segkit.augment.ops import apply_ops

    row = int(row)
    image, mask = store.read(row)
    below, _, above = (int(v) for v in neighbours[row])
    table = store.table
    steps = _replayable(table["transform"][row]) if table["source"][row] != "original" else None
    if table["source"][row] != "original" and steps is None:
        below = above = row  # a transform segkit cannot replay: the slice stands in for its neighbours
    channels = []
    for other in (below, above):
        if other == row:
            channels.append(np.asarray(image, np.float32))
            continue
        img, msk = store.read(other)
        if steps:
            img, _ = apply_ops(img, msk, steps)
        channels.append(np.asarray(img, np.float32))
    stack = np.stack([channels[0], np.asarray(image, np.float32), channels[1]], axis=-1)
    return stack, np.asarray(mask, np.uint8)
