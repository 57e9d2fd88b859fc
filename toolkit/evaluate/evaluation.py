"""Score predictions against truth per slice, per patient (3D) and pooled.

This module knows nothing about models or files: it takes probability volumes (from a trained run, a
DICOM SEG or anything else) and truth masks as :class:`Case` objects, and :func:`evaluate_cases` turns
them into an :class:`Evaluation` (the per-slice and per-patient rows, the pooled scores, means over
patients and slices with bootstrap intervals), so every number ``segkit evaluate`` prints can be
recomputed without TensorFlow; :mod:`segkit.evaluate.report` writes it to disk and
:mod:`segkit.evaluate.compare` sets several runs' reports side by side.  Metric conventions are those of
:mod:`segkit.evaluate.metrics` and are repeated in ``metrics.json`` under ``conventions``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segkit.evaluate.metrics import (
    BOOTSTRAP,
    OVERLAP_METRICS,
    Counts,
    counts,
    mean_sd,
    patient_bootstrap,
    slice_counts,
    surface_metrics,
)

__all__ = [
    "Case",
    "Evaluation",
    "evaluate_cases",
    "CONVENTIONS",
]

CONVENTIONS = {
    "zero_division": "a 0/0 ratio is 1 when truth and prediction are both empty, 0 otherwise",
    "pooled": "confusion counts summed over every slice of every patient of the split, then divided "
              "(the paper's Dice/IoU/precision/recall)",
    "per_patient": "3D confusion counts over the patient's series; mean and sample sd (ddof=1) over patients",
    "surface": "voxels of the mask with a face-neighbour outside it (outside the array = background)",
    "hd95": "95th percentile of the pooled surface-to-surface distances in both directions, mm, store spacing; "
            "0 if both masks are empty, null if exactly one is",
    "msd": "mean of the same distances (mean symmetric surface distance), mm",
    "threshold": "a voxel is predicted tumour when its probability is >= threshold",
    "ci95": "95 % percentile bootstrap interval over patients (2,000 resamples of the patients with replacement, "
            "seed 0; a resample keeps all slices of each drawn patient and recomputes the statistic: pooled counts, "
            "mean over patients or mean over their slices); null with fewer than two patients",
}

SUMMARY_METRICS = (*OVERLAP_METRICS, "hd95_mm", "msd_mm")


@dataclass
class Case:
    """One patient series to score: truth, prediction probabilities and geometry.

    Attributes
    ----------
    patient, series:
        Pseudonyms (never PHI).
    spacing:
        ``(Δz, Δy, Δx)`` mm of the arrays.
    truth:
        ``(z, H, W)`` boolean, slices in volume order (ascending ``index``).
    prob:
        ``(z, H, W)`` probabilities in [0, 1] (a binary mask works too).
    index, position:
        Each slice's index in its volume and position along the normal (mm).
    rows:
        Each slice's row in the store (``-1`` when not from a store).
    image:
        ``(z, H, W)`` images for the overlays, or ``None``.
    """

    patient: str
    series: str
    spacing: tuple[float, float, float]
    truth: np.ndarray
    prob: np.ndarray
    index: np.ndarray
    position: np.ndarray
    rows: np.ndarray | None = None
    image: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.truth = np.asarray(self.truth).astype(bool, copy=False)
        self.prob = np.asarray(self.prob, dtype=np.float32)
        if self.truth.ndim != 3 or self.prob.shape != self.truth.shape:
            raise ValueError(f"Case {self.patient}/{self.series}: truth {self.truth.shape} and prediction "
                             f"{self.prob.shape} must be the same (z, H, W) shape.")
        n = self.truth.shape[0]
        self.index = np.asarray(self.index, dtype=np.int64)
        self.position = np.asarray(self.position, dtype=np.float64)
        self.rows = np.full(n, -1, dtype=np.int64) if self.rows is None else np.asarray(self.rows, dtype=np.int64)
        if not (len(self.index) == len(self.position) == len(self.rows) == n):
            raise ValueError(f"Case {self.patient}/{self.series}: index, position and rows need one value per slice.")


@dataclass
class Evaluation:
    """The scores of a set of cases at one threshold (see :func:`evaluate_cases`)."""

    threshold: float
    per_slice: list[dict[str, Any]]
    per_patient: list[dict[str, Any]]
    pooled: dict[str, Any]
    over_patients: dict[str, dict[str, Any]]
    over_slices: dict[str, dict[str, dict[str, Any]]]
    cases: list[Case] = field(repr=False, default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The JSON-ready scores (no run/store context)."""
        return {
            "threshold": self.threshold,
            "conventions": CONVENTIONS,
            "patients": len(self.per_patient),
            "slices": len(self.per_slice),
            "tumour_slices": int(sum(r["truth_pixels"] > 0 for r in self.per_slice)),
            "pooled": self.pooled,
            "bootstrap": dict(BOOTSTRAP),
            "over_patients": self.over_patients,
            "over_slices": self.over_slices,
            "per_patient": self.per_patient,
        }


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def evaluate_cases(cases: Sequence[Case], threshold: float = 0.5) -> Evaluation:
    """Score every case per slice, per patient (3D) and pooled.

    Parameters
    ----------
    cases:
        One :class:`Case` per patient series.
    threshold:
        A voxel is predicted tumour when its probability is ``>= threshold``.

    Returns
    -------
    Evaluation
    """
    per_slice: list[dict[str, Any]] = []
    per_patient: list[dict[str, Any]] = []
    pooled = Counts(0, 0, 0, 0)
    for case in cases:
        pred = case.prob >= threshold
        for k, c in enumerate(slice_counts(case.truth, pred)):
            per_slice.append({
                "row": int(case.rows[k]), "patient": case.patient, "series": case.series,
                "index": int(case.index[k]), "position": float(case.position[k]),
                "truth_pixels": c.tp + c.fn, "predicted_pixels": c.tp + c.fp,
                "tp": c.tp, "fp": c.fp, "fn": c.fn, **c.metrics(),
            })
        c3 = counts(case.truth, pred)
        pooled = pooled + c3
        per_patient.append({
            "patient": case.patient, "series": case.series, "slices": int(case.truth.shape[0]),
            "tumour_slices": int(case.truth.reshape(case.truth.shape[0], -1).any(axis=1).sum()),
            "truth_voxels": c3.tp + c3.fn, "predicted_voxels": c3.tp + c3.fp,
            "tp": c3.tp, "fp": c3.fp, "fn": c3.fn, **c3.metrics(),
            **{k: _finite(v) for k, v in surface_metrics(case.truth, pred, case.spacing).items()},
        })
    over_patients = {m: mean_sd(np.nan if r[m] is None else r[m] for r in per_patient) for m in SUMMARY_METRICS}
    tumour = [r for r in per_slice if r["truth_pixels"] > 0]
    over_slices = {
        "all": {m: mean_sd(r[m] for r in per_slice) for m in OVERLAP_METRICS},
        "tumour": {m: mean_sd(r[m] for r in tumour) for m in OVERLAP_METRICS},
    }
    pooled_ci = _add_intervals(per_patient, per_slice, over_patients, over_slices)
    return Evaluation(
        threshold=float(threshold),
        per_slice=per_slice,
        per_patient=per_patient,
        pooled={**pooled.metrics(), **pooled.as_dict(), "ci95": pooled_ci},
        over_patients=over_patients,
        over_slices=over_slices,
        cases=list(cases),
    )


def _add_intervals(per_patient: Sequence[Mapping[str, Any]], per_slice: Sequence[Mapping[str, Any]],
                   over_patients: dict[str, dict[str, Any]], over_slices: dict[str, dict[str, dict[str, Any]]],
                   ) -> dict[str, list[float] | None]:
    """Put a bootstrap ``ci95`` (resampling patients) beside every mean; return the pooled metrics' intervals."""
    patients = sorted({r["patient"] for r in per_patient})
    unit = {p: k for k, p in enumerate(patients)}
    n = len(patients)
    # per patient: summed 3D counts, the 3D metrics, and the slice rows
    tp, fp, fn = (np.zeros(n) for _ in range(3))
    for r in per_patient:
        k = unit[r["patient"]]
        tp[k] += r["tp"]
        fp[k] += r["fp"]
        fn[k] += r["fn"]
    values = {m: [np.asarray([np.nan if r[m] is None else r[m] for r in per_patient if unit[r["patient"]] == k])
                  for k in range(n)] for m in SUMMARY_METRICS}
    slices = {key: {m: [np.asarray([r[m] for r in per_slice if unit[r["patient"]] == k and
                                    (key == "all" or r["truth_pixels"] > 0)], dtype=np.float64) for k in range(n)]
                    for m in OVERLAP_METRICS} for key in ("all", "tumour")}

    def pooled_stat(metric: str) -> Any:
        def stat(idx: np.ndarray) -> float:
            return getattr(Counts(int(tp[idx].sum()), int(fp[idx].sum()), int(fn[idx].sum()), 0), metric)
        return stat

    def mean_of(groups: list[np.ndarray]) -> Any:
        def stat(idx: np.ndarray) -> float:
            v = np.concatenate([groups[i] for i in idx]) if len(idx) else np.zeros(0)
            v = v[np.isfinite(v)]
            return float(v.mean()) if v.size else float("nan")
        return stat

    for m in SUMMARY_METRICS:
        over_patients[m]["ci95"] = patient_bootstrap(n, mean_of(values[m])) if over_patients[m]["n"] else None
    for key in ("all", "tumour"):
        for m in OVERLAP_METRICS:
            over_slices[key][m]["ci95"] = patient_bootstrap(n, mean_of(slices[key][m])) if over_slices[key][m]["n"] else None
    return {m: patient_bootstrap(n, pooled_stat(m)) for m in OVERLAP_METRICS}

