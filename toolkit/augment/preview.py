"""``segkit preview``: a grid PNG of originals and their augmented children (the paper's Figure 2).

Each row shows one training original (left) and augmented images made from it,
the tumour mask outlined in colour and the ops with their parameters written
under each tile.  A store without augmented images shows originals only.
All tiles of a row share the parent's grey scale, so contrast shifts show.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit.atomic import atomic_path
from segkit.augment.ops import OP_CLASSES
from segkit.augment.plan import parse_transform
from segkit.errors import InputError, UsageError
from segkit.store.reader import Store, open_store

__all__ = ["render_preview", "describe_transform"]

_OUTLINE = "#ff3b30"
_COLUMNS = 4


@dataclass(frozen=True)
class _Tile:
    row: int
    label: str
    scale_row: int  # the row whose intensity range sets the grey scale


def describe_transform(transform: str) -> str:
    """A short human label of a recorded transform, e.g. ``hflip · rot +12.3° · blur σ0.80``."""
    steps = parse_transform(transform)
    if not steps:
        return "original"
    return " · ".join(OP_CLASSES[s["op"]].label({k: v for k, v in s.items() if k != "op"}) for s in steps)


def _choose_tiles(store: Store, n: int, seed: int) -> list[list[_Tile]]:
    """Rows of tiles: a parent and some children each, chosen with ``seed`` (tumour slices first)."""
    rng = np.random.default_rng(seed)
    table = store.table
    augmented = store.indices(source="augmented")
    if augmented.size == 0:
        rows = store.indices(has_tumour=True)
        if rows.size < n:
            rows = np.arange(len(store))
        picked = np.sort(rng.choice(rows, size=min(n, rows.size), replace=False))
        tiles = [_Tile(int(r), f"original · {table['patient'][r]} #{table['index'][r]}", int(r)) for r in picked]
        return [tiles[i:i + _COLUMNS] for i in range(0, len(tiles), _COLUMNS)]

    children: dict[int, list[int]] = {}
    for row in augmented:
        children.setdefault(int(table["parent"][row]), []).append(int(row))
    parents = np.array(sorted(children))
    tumour = table["has_tumour"][parents]
    # Parents with tumour first (in a seeded order), then the others, until n tiles are placed.
    order = np.concatenate([rng.permutation(parents[tumour]), rng.permutation(parents[~tumour])])
    grid, left = [], n
    for parent in order.tolist():
        if left <= 0:
            break
        kids = np.array(children[parent])
        kids = np.sort(rng.choice(kids, size=min(_COLUMNS - 1, kids.size, left - 1), replace=False))
        row = [_Tile(parent, f"original · {table['patient'][parent]} #{table['index'][parent]}", parent)]
        row += [_Tile(int(k), describe_transform(table["transform"][k]), parent) for k in kids]
        grid.append(row)
        left -= len(row)
    return grid


def render_preview(store_path: str | os.PathLike[str], out: str | os.PathLike[str], *, n: int = 16,
                   seed: int = 0, dpi: int = 100) -> Path:
    """Draw a grid of originals and augmented samples of a store to a PNG.

    Parameters
    ----------
    store_path:
        A segkit store (augmented or not).
    out:
        The PNG to write (replaced if it exists; written to a temporary file and renamed).
    n:
        Number of tiles.
    seed:
        Chooses which slices are shown; same store + seed ⇒ same PNG bytes.
    dpi:
        Resolution of the PNG.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    InputError
        If the store cannot be read or is empty.
    UsageError
        If ``n`` is not positive or ``out`` does not end in ``.png``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    if n < 1:
        raise UsageError("--n", f"must be at least 1, got {n}.")
    if out.suffix.lower() != ".png":
        raise UsageError(str(out), "the preview is a PNG; give a path ending in .png.")
    store = open_store(store_path)
    if len(store) == 0:
        raise InputError(str(store_path), "the store holds no slices to show.")

    grid = _choose_tiles(store, n, seed)
    n_cols = max(len(r) for r in grid)
    fig = Figure(figsize=(2.4 * n_cols, 2.75 * len(grid)), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(grid), n_cols, squeeze=False)
    ranges: dict[int, tuple[float, float]] = {}
    for r, tiles in enumerate(grid):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(tiles):
                ax.set_axis_off()
                continue
            tile = tiles[c]
            image, mask = store.read(tile.row)
            if tile.scale_row not in ranges:
                ref = image if tile.scale_row == tile.row else store.read(tile.scale_row)[0]
                ranges[tile.scale_row] = (float(ref.min()), float(ref.max()) if ref.max() > ref.min() else float(ref.min()) + 1)
            vmin, vmax = ranges[tile.scale_row]
            ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
            if mask.any():
                ax.contour(mask, levels=[0.5], colors=[_OUTLINE], linewidths=0.9)
            ax.set_xlabel(_wrap(tile.label), fontsize=7)
            ax.text(0.03, 0.97, f"row {tile.row}", transform=ax.transAxes, fontsize=6, color="white",
                    va="top", ha="left")
    what = ("originals (left) and augmented children" if store.indices(source="augmented").size
            else "original slices")
    fig.suptitle(f"{Path(store_path).name}: {what}, tumour outlined", fontsize=9)
    fig.tight_layout()

    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format="png", metadata={"Software": None})
    return out


def _wrap(label: str, width: int = 30) -> str:
    """Break a ``a · b · c`` label into lines of about ``width`` characters."""
    lines, line = [], ""
    for part in label.split(" · "):
        candidate = f"{line} · {part}" if line else part
        if len(candidate) > width and line:
            lines.append(line)
            line = part
        else:
            line = candidate
    lines.append(line)
    return "\n".join(lines)
