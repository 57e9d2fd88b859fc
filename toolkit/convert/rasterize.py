"""Polygons → pixel mask: a pixel is inside when its centre is inside (even-odd rule).

One exact, vectorised scanline pass: every polygon edge is intersected with the
horizontal lines through the pixel-centre rows it spans (half-open in y, so a
vertex on a row is counted once), each crossing toggles the parity of every
pixel whose centre lies at or to the right of it, and a cumulative sum along each
row turns the toggles into the even-odd inside test.  All polygons passed
together are combined by parity, so an inner contour is a hole and two
overlapping contours cancel where they overlap (the DICOM RTSTRUCT convention).

Coordinates are *index coordinates* ``(column, row)``: pixel ``[r, c]`` has its
centre at ``(c, r)``.  On a boundary the rule is half-open: a centre exactly on
a left or top edge is inside, on a right or bottom edge outside — so an
axis-aligned rectangle with integer corners covers exactly its area in pixels.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["fill_polygons", "polygon_area"]


def polygon_area(points: np.ndarray) -> float:
    """Unsigned area (shoelace) of a closed polygon ``(n, 2)``."""
    x, y = np.asarray(points, dtype=np.float64).T
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def fill_polygons(polygons: Iterable[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise closed polygons together with the even-odd, pixel-centre rule.

    Parameters
    ----------
    polygons:
        Each an ``(n, 2)`` array of ``(column, row)`` vertices; the closing
        edge back to the first vertex is implied.  Polygons with fewer than 3
        vertices or zero area add nothing.
    shape:
        ``(rows, columns)`` of the mask.

    Returns
    -------
    numpy.ndarray
        Boolean mask of ``shape``.
    """
    rows, cols = shape
    crossings_r: list[np.ndarray] = []
    crossings_c: list[np.ndarray] = []
    for poly in polygons:
        poly = np.asarray(poly, dtype=np.float64)
        if poly.ndim != 2 or poly.shape[0] < 3 or poly.shape[1] != 2:
            continue
        x0, y0 = poly[:, 0], poly[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        keep = y0 != y1  # horizontal edges never cross a scanline
        x0, y0, x1, y1 = x0[keep], y0[keep], x1[keep], y1[keep]
        if not len(x0):
            continue
        ylo, yhi = np.minimum(y0, y1), np.maximum(y0, y1)
        # rows r with ylo <= r < yhi (half-open), clipped to the image
        first = np.clip(np.ceil(ylo), 0, rows).astype(np.int64)
        stop = np.clip(np.ceil(yhi), 0, rows).astype(np.int64)
        counts = stop - first
        if counts.sum() == 0:
            continue
        edge = np.repeat(np.arange(len(x0)), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        r = first[edge] + offsets
        t = (r - y0[edge]) / (y1[edge] - y0[edge])
        x = x0[edge] + t * (x1[edge] - x0[edge])
        # first column whose centre lies at or right of the crossing
        crossings_r.append(r)
        crossings_c.append(np.clip(np.ceil(x), 0, cols).astype(np.int64))
    mask = np.zeros((rows, cols), dtype=bool)
    if not crossings_r:
        return mask
    r = np.concatenate(crossings_r)
    c = np.concatenate(crossings_c)
    top, bottom = int(r.min()), int(r.max()) + 1  # only the rows some edge crosses can be inside
    toggles = np.bincount((r - top) * (cols + 1) + c, minlength=(bottom - top) * (cols + 1))
    toggles = toggles.reshape(bottom - top, cols + 1)[:, :cols]
    mask[top:bottom] = np.cumsum(toggles, axis=1) & 1
    return mask
