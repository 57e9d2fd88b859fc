"""Acquisition geometry of a synthetic series: orientation, slice positions, index → patient mm."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SliceGeometry", "make_geometry"]


def _rotation(ax_deg: float, ay_deg: float) -> np.ndarray:
    a, b = np.radians(ax_deg), np.radians(ay_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return ry @ rx


@dataclass(frozen=True)
class SliceGeometry:
    """Image plane of every slice, exactly as written to DICOM (values already rounded).

    ``row_dir`` runs along a row (increasing column index), ``col_dir`` down a column
    (increasing row index); ``pixel_spacing`` is DICOM's (row spacing, column spacing).
    """

    row_dir: tuple[float, float, float]
    col_dir: tuple[float, float, float]
    pixel_spacing: tuple[float, float]
    slice_thickness: float
    positions: tuple[tuple[float, float, float], ...]

    @property
    def orientation(self) -> list[float]:
        """ImageOrientationPatient."""
        return [*self.row_dir, *self.col_dir]

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)

    def slice_location(self, k: int) -> float:
        """Position of slice ``k`` along the normal, mm."""
        return float(np.dot(self.positions[k], self.normal))

    def to_patient(self, k: int, xy: np.ndarray) -> np.ndarray:
        """Map index coordinates ``(column, row)`` on slice ``k`` to patient mm, shape ``(n, 3)``."""
        xy = np.asarray(xy, dtype=float)
        origin = np.asarray(self.positions[k])
        return (origin + xy[:, :1] * self.pixel_spacing[1] * np.asarray(self.row_dir)
                + xy[:, 1:2] * self.pixel_spacing[0] * np.asarray(self.col_dir))


def make_geometry(rng: np.random.Generator, shape: tuple[int, int, int], pixel_spacing: float,
                  slice_thickness: float, oblique: bool) -> SliceGeometry:
    """Axial (or, with ``oblique``, tilted) head-first-supine stack centred near the isocentre.

    Draws from ``rng`` in a fixed order whether or not ``oblique`` is set.
    """
    nz, ny, nx = shape
    tilt = rng.uniform(8, 20), rng.uniform(-12, 12)
    shift = rng.uniform(-6, 6, 3)
    rot = _rotation(*tilt) if oblique else np.eye(3)
    row = np.round(rot @ np.array([1.0, 0.0, 0.0]), 6)
    col = np.round(rot @ np.array([0.0, 1.0, 0.0]), 6)
    normal = np.cross(row, col)
    positions = []
    for k in range(nz):
        p = (shift + (k - (nz - 1) / 2) * slice_thickness * normal
             - (nx - 1) / 2 * pixel_spacing * row - (ny - 1) / 2 * pixel_spacing * col)
        positions.append(tuple(float(v) for v in np.round(p, 4)))
    return SliceGeometry(
        row_dir=tuple(float(v) for v in row),
        col_dir=tuple(float(v) for v in col),
        pixel_spacing=(float(pixel_spacing), float(pixel_spacing)),
        slice_thickness=float(slice_thickness),
        positions=tuple(positions),
    )
