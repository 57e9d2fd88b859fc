"""Speed of segkit's surface distances (HD95, MSD) against reference implementations, same masks, same run.

    python -m benchmarks.metrics [--slices 24] [--size 512] [--repeat 3]

References:
* KD-tree: surfaces from scikit-image's ``find_boundaries`` and nearest neighbours with
  ``scipy.spatial.cKDTree`` in mm — the usual way HD95 is computed outside MONAI;
* scikit-image's ``hausdorff_distance`` (the maximum, not the 95th percentile; a speed reference).

Prints each tool's median time, its ratio to segkit, and checks the HD95 values agree.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy import ndimage


def _blob(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape, dtype=np.float32)
    c = np.asarray(shape, dtype=np.float32) / 2 + rng.normal(0, 2, 3)
    r = np.asarray([shape[0] / 3, shape[1] / 6, shape[2] / 7])
    blob = ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 <= 1
    noise = ndimage.gaussian_filter(rng.normal(size=shape).astype(np.float32), 3) > 0.05
    return blob ^ (noise & ndimage.binary_dilation(blob, iterations=3))


def _kdtree_hd95(truth: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...]) -> float:
    from scipy.spatial import cKDTree
    from skimage.segmentation import find_boundaries

    def points(mask: np.ndarray) -> np.ndarray:
        padded = np.pad(mask, 1)
        edge = find_boundaries(padded, connectivity=1, mode="inner") & padded
        return (np.argwhere(edge) - 1) * np.asarray(spacing)

    a, b = points(truth), points(pred)
    d_ab = cKDTree(b).query(a)[0]
    d_ba = cKDTree(a).query(b)[0]
    return float(np.percentile(np.concatenate([d_ab, d_ba]), 95))


def _skimage_hausdorff(truth: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...]) -> float:
    from skimage.metrics import hausdorff_distance

    return float(hausdorff_distance(truth, pred))  # voxel units; speed reference only


def _time(fn, repeat: int) -> tuple[float, float]:
    times, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def main() -> None:
    from segkit.evaluate.metrics import hd95, mean_surface_distance

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=24)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    shape = (args.slices, args.size, args.size)
    spacing = (2.0, 0.84, 0.84)
    truth, pred = _blob(shape, 0), _blob(shape, 1)
    print(f"masks {shape}, spacing {spacing} mm, truth {int(truth.sum())} voxels, prediction {int(pred.sum())}")
    ours_t, ours = _time(lambda: hd95(truth, pred, spacing), args.repeat)
    msd_t, _ = _time(lambda: mean_surface_distance(truth, pred, spacing), args.repeat)
    kd_t, kd = _time(lambda: _kdtree_hd95(truth, pred, spacing), args.repeat)
    sk_t, _ = _time(lambda: _skimage_hausdorff(truth, pred, spacing), args.repeat)
    print(f"{'tool':<34}{'median s':>10}{'× segkit':>10}  HD95 mm")
    print(f"{'segkit hd95 (EDT)':<34}{ours_t:>10.3f}{1.0:>10.2f}  {ours:.4f}")
    print(f"{'segkit mean surface distance':<34}{msd_t:>10.3f}{msd_t / ours_t:>10.2f}")
    print(f"{'KD-tree (skimage+cKDTree)':<34}{kd_t:>10.3f}{kd_t / ours_t:>10.2f}  {kd:.4f}")
    print(f"{'skimage hausdorff_distance (max)':<34}{sk_t:>10.3f}{sk_t / ours_t:>10.2f}")
    print("HD95 agrees" if abs(ours - kd) < 1e-9 else f"HD95 DIFFERS by {ours - kd:.3g} mm")


if __name__ == "__main__":
    main()
