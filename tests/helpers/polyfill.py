"""An independent even-odd, pixel-centre polygon fill for tests (plain crossing-number test)."""

from __future__ import annotations

import numpy as np


def even_odd_fill(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre ``(column, row)`` lies inside an odd number of ``polygons`` (index coords)."""
    rows, cols = shape
    yy, xx = np.mgrid[0:rows, 0:cols].astype(float)
    inside = np.zeros(shape, bool)
    for poly in polygons:
        x0, y0 = poly[:, 0], poly[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        for a, b, c, d in zip(x0, y0, x1, y1):
            if b == d:
                continue
            crosses = (yy >= min(b, d)) & (yy < max(b, d))
            x_at = a + (yy - b) * (c - a) / (d - b)
            inside ^= crosses & (xx < x_at)
    return inside
