"""A head-like MR phantom with an irregular tumour, as arrays (no DICOM here).

Everything is drawn from the ``numpy.random.Generator`` passed in, so the same
generator state gives the same arrays.  Intensities are in scanner units (uint16,
12 bits stored) and differ between T1- and T2-weighted contrast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["Phantom", "make_phantom", "TISSUE_INTENSITY"]

# Mean signal per tissue and weighting (background, scalp fat, skull, CSF, grey, white, tumour, necrosis).
TISSUE_INTENSITY: dict[str, dict[str, float]] = {
    "T1": {"fat": 1150.0, "skull": 90.0, "csf": 260.0, "grey": 620.0, "white": 820.0, "tumour": 500.0, "necrosis": 300.0},
    "T2": {"fat": 880.0, "skull": 70.0, "csf": 1650.0, "grey": 760.0, "white": 540.0, "tumour": 1250.0, "necrosis": 1750.0},
}


@dataclass(frozen=True)
class Phantom:
    """One patient's synthetic volume.

    Attributes
    ----------
    image:
        ``(z, y, x)`` uint16 signal, 12 bits stored.
    tumour:
        ``(z, y, x)`` bool, the segmentation target (tumour minus its necrotic core).
    core:
        ``(z, y, x)`` bool, the necrotic core (a hole in the target on the slices it reaches).
    """

    image: np.ndarray
    tumour: np.ndarray
    core: np.ndarray


def _tumour_masks(rng: np.random.Generator, shape: tuple[int, int, int], brain_axes: tuple[float, float],
                  with_core: bool) -> tuple[np.ndarray, np.ndarray]:
    """Irregular star-shaped tumour whose outline changes smoothly from slice to slice."""
    nz, ny, nx = shape
    size = min(ny, nx)
    radius = size * rng.uniform(0.09, 0.14)  # in-plane radius, pixels
    aspect = rng.uniform(0.75, 1.3)
    half_extent = max(2.0, nz * rng.uniform(0.22, 0.34))  # slices from centre to tip
    cz = rng.uniform(0.35, 0.65) * (nz - 1)
    # Centre inside the brain, far enough from its edge for the largest lobe.
    reach = radius * 1.55 * max(aspect, 1 / aspect)
    ang = rng.uniform(0, 2 * np.pi)
    room_x = max(0.0, brain_axes[0] - reach) * 0.8
    room_y = max(0.0, brain_axes[1] - reach) * 0.8
    frac = np.sqrt(rng.uniform(0.0, 1.0))
    cx = (nx - 1) / 2 + frac * room_x * np.cos(ang)
    cy = (ny - 1) / 2 + frac * room_y * np.sin(ang)
    harmonics = np.arange(2, 7)
    amp = rng.uniform(0.03, 0.11, harmonics.size)
    phase0 = rng.uniform(0, 2 * np.pi, harmonics.size)
    drift = rng.normal(0, 0.35, harmonics.size)  # phase change per slice: the outline twists along z
    rot = rng.uniform(0, np.pi)

    # Work on the tumour's bounding box only: the outline never reaches past it.
    half = int(np.ceil(radius * (1 + amp.sum()) * max(aspect, 1 / aspect))) + 2
    y0, y1 = max(0, int(cy) - half), min(ny, int(cy) + half + 2)
    x0, x1 = max(0, int(cx) - half), min(nx, int(cx) + half + 2)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(float)
    u = (xx - cx) * np.cos(rot) + (yy - cy) * np.sin(rot)
    v = -(xx - cx) * np.sin(rot) + (yy - cy) * np.cos(rot)
    theta = np.arctan2(v, u)
    rho = np.hypot(u / aspect, v * aspect)

    tumour = np.zeros(shape, bool)
    core = np.zeros(shape, bool)
    for z in range(nz):
        t = (z - cz) / half_extent
        if abs(t) >= 1:
            continue
        profile = np.sqrt(1 - t * t)
        lobes = 1 + (amp[:, None, None] * np.cos(harmonics[:, None, None] * theta + (phase0 + drift * z)[:, None, None])).sum(0)
        outline = radius * profile * lobes
        tumour[z, y0:y1, x0:x1] = rho <= outline
        if with_core and profile > 0.55:
            core[z, y0:y1, x0:x1] = rho <= 0.42 * outline
    # The target is the enhancing tumour; the necrotic core is a hole in it.
    core &= ndimage.binary_erosion(tumour, structure=np.ones((1, 5, 5), bool))
    return tumour & ~core, core


def make_phantom(rng: np.random.Generator, shape: tuple[int, int, int], weighting: str,
                 with_core: bool) -> Phantom:
    """Draw one patient's head phantom and tumour.

    Works slice by slice on 2-D grids, so memory stays at a few volume-sized
    arrays (uint16, bool, one float32 texture) even at 175 × 512².

    Parameters
    ----------
    rng:
        The patient's generator; consumed in a fixed order.
    shape:
        ``(slices, rows, columns)``.
    weighting:
        ``"T1"`` or ``"T2"``.
    with_core:
        Give the tumour a necrotic core (a hole in the target on its larger slices).
    """
    if weighting not in TISSUE_INTENSITY:
        raise ValueError(f"weighting must be one of {sorted(TISSUE_INTENSITY)}, got {weighting!r}")
    tissue = TISSUE_INTENSITY[weighting]
    nz, ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    cx, cy = (nx - 1) / 2, (ny - 1) / 2
    theta = np.arctan2(yy - cy, xx - cx)
    head_a = nx * rng.uniform(0.40, 0.44)
    head_b = ny * rng.uniform(0.45, 0.48)
    fold_phase = rng.uniform(0, 6.3, 2)
    white_phase = rng.uniform(0, 6.3)
    # Cortex folds: a wobbly brain outline.
    folds = 1 + 0.025 * np.sin(9 * theta + fold_phase[0]) + 0.02 * np.sin(14 * theta + fold_phase[1])

    brain_axes = (head_a * 0.80, head_b * 0.80)
    tumour, core = _tumour_masks(rng, shape, brain_axes, with_core)
    texture = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma=(0.8, 1.5, 1.5))
    c = rng.normal(0, 1, 5)
    sigma = 0.025 * tissue["white"]
    u, v = (xx - cx) / nx, (yy - cy) / ny

    pixels = np.empty(shape, np.uint16)
    for z in range(nz):
        w = (z - (nz - 1) / 2) / max(nz, 1)  # -0.5 … 0.5 through the stack
        taper = np.sqrt(np.clip(1 - 0.9 * w**2, 0.2, 1))  # the head narrows away from the middle slice
        r_head = np.hypot((xx - cx) / (head_a * taper), (yy - cy) / (head_b * taper))
        r_brain = r_head / 0.86 * folds
        r_white = r_head / 0.62 * (1 + 0.06 * np.sin(5 * theta + white_phase + 3 * w))
        ventricle = np.hypot((np.abs(xx - cx) - nx * 0.06) / (nx * 0.045),
                             (yy - cy + ny * 0.03) / (ny * 0.13 * (1 - 2 * abs(w)))) <= 1

        image = np.zeros((ny, nx), float)
        image[r_head <= 1.0] = tissue["fat"]
        image[r_head <= 0.95] = tissue["skull"]
        image[r_brain <= 0.98] = tissue["csf"]
        image[r_brain <= 0.95] = tissue["grey"]
        image[r_white <= 1.0] = tissue["white"]
        image[ventricle & (r_brain <= 0.9)] = tissue["csf"]
        rim = tumour[z] & ~ndimage.binary_erosion(tumour[z], structure=np.ones((3, 3), bool))
        image[tumour[z]] = tissue["tumour"]
        image[rim] = tissue["tumour"] * (1.25 if weighting == "T1" else 0.9)  # enhancing / oedematous edge
        image[core[z]] = tissue["necrosis"]

        # Tissue texture, a smooth receive-coil bias field, then Rician noise.
        image *= 1 + 0.35 * texture[z] * (image > 0)
        bias = 1 + 0.18 * (c[0] * u + c[1] * v) + 0.12 * (c[2] * u * v + c[3] * u**2 + c[4] * w)
        image *= np.clip(bias, 0.6, 1.4)
        noisy = np.hypot(image + rng.normal(0, sigma, (ny, nx)), rng.normal(0, sigma, (ny, nx)))
        pixels[z] = np.clip(np.rint(noisy), 0, 4095)
    return Phantom(image=pixels, tumour=tumour, core=core)
