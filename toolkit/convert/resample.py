"""In-plane resampling of slices to ``N×N`` (same field of view; pixel centres aligned as in scikit-image)."""

from __future__ import annotations

import numpy as np

__all__ = ["resample_image", "resample_mask", "scale_polygon", "resampled_spacing"]


def resampled_spacing(pixel_spacing: tuple[float, float], matrix: tuple[int, int], size: int) -> tuple[float, float]:
    """``(Δy, Δx)`` after resampling a ``matrix`` with ``pixel_spacing`` to ``size×size``."""
    return pixel_spacing[0] * matrix[0] / size, pixel_spacing[1] * matrix[1] / size


def resample_image(slices: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resampling of ``(z, y, x)`` slices to ``(z, size, size)``, anti-aliased when shrinking."""
    from skimage.transform import resize

    z, h, w = slices.shape
    if (h, w) == (size, size):
        return slices.astype(np.float32, copy=False)
    out = resize(slices, (z, size, size), order=1, mode="edge", anti_aliasing=size < max(h, w), preserve_range=True)
    return out.astype(np.float32)


def resample_mask(masks: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resampling of boolean ``(z, y, x)`` masks: each new pixel takes the
    value of the source pixel its centre falls in."""
    z, h, w = masks.shape
    if (h, w) == (size, size):
        return masks
    rows = np.minimum(((np.arange(size) + 0.5) * h / size).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size) + 0.5) * w / size).astype(np.int64), w - 1)
    return masks[:, rows[:, None], cols[None, :]]


def scale_polygon(points: np.ndarray, matrix: tuple[int, int], size: int) -> np.ndarray:
    """Map ``(column, row)`` index coordinates on a ``matrix`` grid to a ``size×size`` grid of the same field of view."""
    h, w = matrix
    points = np.asarray(points, dtype=np.float64)
    return np.stack([(points[:, 0] + 0.5) * size / w - 0.5, (points[:, 1] + 0.5) * size / h - 0.5], axis=1)
