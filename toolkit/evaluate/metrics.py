"""Segmentation metrics on boolean masks: overlap (Dice, IoU, precision, recall) and surface distances.

Pure numpy/scipy; no TensorFlow.  Every overlap metric is a function of the
confusion counts, so per-slice, per-patient (3D) and pooled values all come
from :class:`Counts` summed over the right axes.

Conventions
-----------
* **0/0.**  A ratio whose denominator is zero is **1** when truth and prediction
  are both empty (perfect agreement: a slice without tumour on which nothing was
  predicted) and **0** otherwise (precision when nothing was predicted but tumour
  is there; recall when tumour was predicted but none is there).  So every
  overlap metric is defined and lies in [0, 1].
* **Pooled** metrics sum the counts over all slices of all patients of a split
  before dividing (the paper's "Dice/IoU/precision/recall" over a test set).
  Pooling 2D slices and pooling 3D volumes give the same counts.
* **Surface** of a mask: its voxels with at least one face-neighbour
  (6-connectivity in 3D, 4 in 2D) outside the mask; outside the array counts as
  background, so a mask touching the border has a surface there.
* **HD95** is the 95th percentile, and **MSD** (mean surface distance, also
  called ASSD) the mean, of the distances from every surface voxel of each mask
  to the nearest surface voxel of the other (both directions pooled, as in
  MedPy's ``hd95``/``assd``), in mm with the voxel spacing given.  Both empty →
  0; exactly one empty → ``nan`` (undefined: there is no surface to reach).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Counts",
    "counts",
    "slice_counts",
    "overlap",
    "surface",
    "surface_distances",
    "hd95",
    "mean_surface_distance",
    "surface_metrics",
    "mean_sd",
    "patient_bootstrap",
    "bootstrap_mean_ci",
    "BOOTSTRAP",
    "OVERLAP_METRICS",
]

OVERLAP_METRICS = ("dice", "iou", "precision", "recall")


@dataclass(frozen=True)
class Counts:
    """Confusion counts of a binary segmentation (true/false positives/negatives).

    ``Counts`` add up (``a + b``), so pooled metrics are ``sum(counts)``.
    """

    tp: int
    fp: int
    fn: int
    tn: int

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    def __radd__(self, other: int) -> Counts:  # so that sum([...]) works
        if other == 0:
            return self
        return NotImplemented

    @property
    def both_empty(self) -> bool:
        """Neither truth nor prediction has a positive voxel."""
        return self.tp == 0 and self.fp == 0 and self.fn == 0

    def _ratio(self, num: int, den: int) -> float:
        if den == 0:
            return 1.0 if self.both_empty else 0.0
        return num / den

    @property
    def dice(self) -> float:
        """``2TP / (2TP + FP + FN)``."""
        return self._ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def iou(self) -> float:
        """``TP / (TP + FP + FN)`` (Jaccard index)."""
        return self._ratio(self.tp, self.tp + self.fp + self.fn)

    @property
    def precision(self) -> float:
        """``TP / (TP + FP)``."""
        return self._ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """``TP / (TP + FN)`` (sensitivity)."""
        return self._ratio(self.tp, self.tp + self.fn)

    def metrics(self) -> dict[str, float]:
        """``{"dice", "iou", "precision", "recall"}``."""
        return {name: getattr(self, name) for name in OVERLAP_METRICS}

    def as_dict(self) -> dict[str, int]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}


def _pair(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(truth).astype(bool, copy=False)
    pred = np.asarray(pred).astype(bool, copy=False)
    if truth.shape != pred.shape:
        raise ValueError(f"truth {truth.shape} and prediction {pred.shape} must have the same shape.")
    return truth, pred


def counts(truth: np.ndarray, pred: np.ndarray) -> Counts:
    """Confusion counts over every voxel of two same-shape masks (any dimension).

    Raises
    ------
    ValueError
        If the shapes differ.
    """
    truth, pred = _pair(truth, pred)
    tp = int(np.count_nonzero(truth & pred))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(truth)) - tp
    return Counts(tp, fp, fn, int(truth.size) - tp - fp - fn)


def slice_counts(truth: np.ndarray, pred: np.ndarray) -> list[Counts]:
    """Confusion counts of each slice of two ``(n, H, W)`` stacks."""
    truth, pred = _pair(truth, pred)
    if truth.ndim != 3:
        raise ValueError(f"slice stacks must be (n, H, W), got {truth.shape}.")
    n = truth.shape[0]
    flat_t, flat_p = truth.reshape(n, -1), pred.reshape(n, -1)
    tp = np.count_nonzero(flat_t & flat_p, axis=1)
    fp = np.count_nonzero(flat_p, axis=1) - tp
    fn = np.count_nonzero(flat_t, axis=1) - tp
    tn = flat_t.shape[1] - tp - fp - fn
    return [Counts(int(a), int(b), int(c), int(d)) for a, b, c, d in zip(tp, fp, fn, tn)]


def overlap(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Dice, IoU, precision and recall of two same-shape masks (see the module's 0/0 rule)."""
    return counts(truth, pred).metrics()


def surface(mask: np.ndarray) -> np.ndarray:
    """The surface voxels of a boolean mask (face-connected to background; outside = background)."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask.copy()
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def surface_distances(truth: np.ndarray, pred: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distances (mm) from each surface voxel of either mask to the other mask's surface, pooled.

    Parameters
    ----------
    truth, pred:
        Same-shape boolean masks, 2D ``(y, x)`` or 3D ``(z, y, x)``.
    spacing:
        Voxel size per axis in mm, in the array's axis order (e.g. ``(Δz, Δy, Δx)``).

    Returns
    -------
    numpy.ndarray
        1-D float64: truth→prediction distances followed by prediction→truth
        distances.  Empty when both masks are empty.

    Raises
    ------
    ValueError
        If the shapes differ, ``spacing`` does not match the dimension, or only one mask is empty.
    """
    from scipy import ndimage

    truth, pred = _pair(truth, pred)
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != truth.ndim or min(spacing) <= 0:
        raise ValueError(f"spacing {spacing} must give one positive size per axis of a {truth.ndim}-D mask.")
    t_any, p_any = bool(truth.any()), bool(pred.any())
    if not t_any and not p_any:
        return np.empty(0, dtype=np.float64)
    if not t_any or not p_any:
        raise ValueError("Surface distances are undefined when exactly one mask is empty.")
    # Only the box around both masks matters; a one-voxel background margin keeps "outside = background".
    box = ndimage.find_objects((truth | pred).astype(np.uint8))[0]
    truth, pred = np.pad(truth[box], 1), np.pad(pred[box], 1)
    st, sp = surface(truth), surface(pred)
    to_truth = ndimage.distance_transform_edt(~st, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~sp, sampling=spacing)
    return np.concatenate([to_pred[st], to_truth[sp]]).astype(np.float64)


def surface_metrics(truth: np.ndarray, pred: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """``{"hd95_mm", "msd_mm"}`` from one pass over the surfaces (0 if both empty, ``nan`` if one is)."""
    truth, pred = _pair(truth, pred)
    t_any, p_any = bool(truth.any()), bool(pred.any())
    if not t_any and not p_any:
        return {"hd95_mm": 0.0, "msd_mm": 0.0}
    if t_any != p_any:
        return {"hd95_mm": float("nan"), "msd_mm": float("nan")}
    d = surface_distances(truth, pred, spacing)
    return {"hd95_mm": float(np.percentile(d, 95)), "msd_mm": float(np.mean(d))}


def hd95(truth: np.ndarray, pred: np.ndarray, spacing: Sequence[float]) -> float:
    """95th-percentile symmetric Hausdorff distance in mm (0 if both empty, ``nan`` if one is)."""
    return surface_metrics(truth, pred, spacing)["hd95_mm"]


def mean_surface_distance(truth: np.ndarray, pred: np.ndarray, spacing: Sequence[float]) -> float:
    """Mean symmetric surface distance in mm (0 if both empty, ``nan`` if one is)."""
    return surface_metrics(truth, pred, spacing)["msd_mm"]


def mean_sd(values: Iterable[float]) -> dict[str, float | int | None]:
    """Mean and sample standard deviation (ddof=1) of the finite values.

    Returns
    -------
    dict
        ``{"mean", "sd", "n"}``; ``n`` counts the finite values used; ``mean`` is
        ``None`` when there is none and ``sd`` is ``None`` when there are fewer than two.
    """
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    v = v[np.isfinite(v)]
    return {
        "mean": float(v.mean()) if v.size else None,
        "sd": float(v.std(ddof=1)) if v.size > 1 else None,
        "n": int(v.size),
    }


#: Settings of every bootstrap interval segkit reports: 2,000 resamples of the patients, seed 0, 95 %.
BOOTSTRAP = {"unit": "patient", "resamples": 2000, "seed": 0, "level": 0.95, "method": "percentile"}


def patient_bootstrap(n_patients: int, statistic: Callable[[np.ndarray], float], *,
                      resamples: int = BOOTSTRAP["resamples"], seed: int = BOOTSTRAP["seed"],
                      level: float = BOOTSTRAP["level"]) -> list[float] | None:
    """Percentile bootstrap interval of ``statistic`` over patients (``scipy.stats.bootstrap``).

    Each resample draws ``n_patients`` patients with replacement (seeded) and
    calls ``statistic`` with their indices (``0 … n_patients − 1``, repeats
    allowed), so a statistic over slices or pooled counts resamples whole patients,
    never single slices.

    Returns
    -------
    list of float or None
        ``[low, high]``; ``None`` with fewer than two patients (no spread to resample).
    """
    if n_patients < 2:
        return None
    from scipy.stats import bootstrap

    def stat(idx: np.ndarray) -> float:
        return float(statistic(np.asarray(idx, dtype=np.int64)))

    import warnings

    with warnings.catch_warnings():  # identical patients: a degenerate (zero-width) distribution is the answer
        warnings.simplefilter("ignore")
        res = bootstrap((np.arange(n_patients),), stat, n_resamples=int(resamples), confidence_level=float(level),
                        method="percentile", vectorized=False, random_state=np.random.default_rng(int(seed)))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(low) and np.isfinite(high)):
        return None
    return [low, high]


def bootstrap_mean_ci(values: Sequence[float], **kw: float) -> list[float] | None:
    """Bootstrap interval of the mean of one value per patient (non-finite values are left out)."""
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    v = v[np.isfinite(v)]
    return patient_bootstrap(v.size, lambda idx: v[idx].mean(), **kw)
