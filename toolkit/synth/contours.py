"""Binary mask → closed polygons that run along the outer edges of its pixels.

Filled with the even-odd rule and the pixel-centre test, the polygons give back
exactly the mask: every boundary edge between an inside and an outside pixel
appears exactly once, and the parity of crossings depends only on that edge set,
not on how the edges are chained into loops.  Holes come out as their own loops.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mask_to_polygons"]

# A corner is (X, Y) on the pixel-corner grid: pixel (r, c) spans X in [c, c+1], Y in [r, r+1],
# so its centre sits at corner coordinates (c + 0.5, r + 0.5) and at index coordinates (c, r).


def _boundary_edges(mask: np.ndarray) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Directed boundary edges, oriented so that every loop is closed."""
    m = np.pad(mask.astype(bool), 1)
    inside = m[1:-1, 1:-1]
    edges: list[tuple[tuple[int, int], tuple[int, int]]] = []
    # top: neighbour above is outside; walk -X
    for r, c in zip(*np.nonzero(inside & ~m[:-2, 1:-1])):
        edges.append(((c + 1, r), (c, r)))
    # left: walk +Y
    for r, c in zip(*np.nonzero(inside & ~m[1:-1, :-2])):
        edges.append(((c, r), (c, r + 1)))
    # bottom: walk +X
    for r, c in zip(*np.nonzero(inside & ~m[2:, 1:-1])):
        edges.append(((c, r + 1), (c + 1, r + 1)))
    # right: walk -Y
    for r, c in zip(*np.nonzero(inside & ~m[1:-1, 2:])):
        edges.append(((c + 1, r + 1), (c + 1, r)))
    return [((int(a), int(b)), (int(x), int(y))) for (a, b), (x, y) in edges]


def _drop_collinear(loop: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Keep only the corners where the direction changes."""
    n = len(loop)
    kept = []
    for i in range(n):
        px, py = loop[i - 1]
        x, y = loop[i]
        nx, ny = loop[(i + 1) % n]
        if (x - px) * (ny - y) - (y - py) * (nx - x) != 0:
            kept.append((x, y))
    return kept


def mask_to_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Trace a 2-D boolean mask into closed polygons along its pixel edges.

    Parameters
    ----------
    mask:
        2-D array, rows × columns; non-zero is inside.

    Returns
    -------
    list of numpy.ndarray
        One ``(n, 2)`` float array per loop, in *index* coordinates ``(column, row)``
        (pixel centres sit on integers, so the corners are at ``±0.5``).  Outer
        boundaries and hole boundaries are separate loops; fill them together with
        the even-odd rule.  Loops come in a deterministic order.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    edges = _boundary_edges(mask)
    outgoing: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for start, end in sorted(edges):
        outgoing.setdefault(start, []).append(end)
    loops: list[np.ndarray] = []
    for start in sorted(outgoing):
        while outgoing.get(start):
            loop = [start]
            prev = start
            cur = outgoing[start].pop(0)
            while cur != start:
                loop.append(cur)
                choices = outgoing[cur]
                if len(choices) > 1:
                    # Two ways on at a corner where pixels touch diagonally: take the one
                    # that turns the same way as the boundary (keeps touching blobs apart).
                    dx, dy = cur[0] - prev[0], cur[1] - prev[1]
                    choices.sort(key=lambda e: -(dx * (e[1] - cur[1]) - dy * (e[0] - cur[0])))
                nxt = choices.pop(0)
                prev, cur = cur, nxt
            corners = _drop_collinear(loop)
            loops.append(np.asarray(corners, dtype=float) - 0.5)
    return loops
