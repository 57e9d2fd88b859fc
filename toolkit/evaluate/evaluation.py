"""Score predictions against truth per slice, per patient (3D) and pooled, and write the report.

This module knows nothing about models: it takes probability volumes (from a
trained run, a DICOM SEG or anything else) and truth masks, so every number
``segkit evaluate`` prints can be recomputed without TensorFlow.

Report files (all in one folder, written to a temporary folder and renamed):

* ``metrics.json`` — everything, validated by ``schemas/metrics.schema.json``;
* ``per_patient.csv`` — one row per patient series (3D metrics, HD95, MSD);
* ``per_slice.csv`` — one row per evaluated slice;
* ``table.md`` — the summary a person reads;
* ``overlays/*.png`` — image with truth and prediction outlines, for the best
  and the worst slice of each patient (needs matplotlib, the ``train`` extra).

Metric conventions are those of :mod:`segkit.evaluate.metrics` and are repeated in
``metrics.json`` under ``conventions``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segkit._version import __version__
from segkit.errors import InputError, MissingExtraError, OutputExistsError
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
    "write_report",
    "read_metrics",
    "compare_rows",
    "write_compare",
    "CONVENTIONS",
    "METRICS_FORMAT",
]

METRICS_FORMAT = "segkit-metrics"
METRICS_VERSION = 1

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

SLICE_COLUMNS = ("row", "patient", "series", "index", "position", "truth_pixels", "predicted_pixels",
                 "tp", "fp", "fn", *OVERLAP_METRICS)
PATIENT_COLUMNS = ("patient", "series", "slices", "tumour_slices", "truth_voxels", "predicted_voxels",
                   "tp", "fp", "fn", *OVERLAP_METRICS, "hd95_mm", "msd_mm")
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


# --------------------------------------------------------------------------- writers
def _csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else _fmt_csv(row.get(k))) for k in columns})
    return buf.getvalue()


def _fmt_csv(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)  # shortest round-trip text: the CSV reproduces the JSON's values exactly
    return value


def _f(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ci(interval: Sequence[float] | None, digits: int = 4) -> str:
    """`` [low, high]`` of a bootstrap interval, or nothing when there is none."""
    if not interval:
        return ""
    return f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def _msd(stat: Mapping[str, Any], digits: int = 4) -> str:
    if stat["mean"] is None:
        return "–"
    if stat["sd"] is None:
        return _f(stat["mean"], digits) + _ci(stat.get("ci95"), digits)
    return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}" + _ci(stat.get("ci95"), digits)


def _table_md(doc: Mapping[str, Any]) -> str:
    run, store, ev = doc["run"], doc["store"], doc
    head = ["Dice", "IoU", "Precision", "Recall", "HD95 (mm)", "MSD (mm)"]
    lines = [
        f"# segkit evaluation: run `{run.get('id', '?')}` on the `{doc['split']}` split",
        "",
        f"Model `{run.get('model', '?')}` ({_count(run.get('params'))} parameters, {run.get('epochs', '?')} epochs); "
        f"store `{Path(store.get('path', '?')).name}`; {_plural(ev['patients'], 'patient')}, {ev['slices']} slices "
        f"({ev['tumour_slices']} with tumour); threshold {ev['threshold']:g}.",
        "",
        "| | " + " | ".join(head) + " |",
        "|---|" + "---:|" * len(head),
    ]
    p = ev["pooled"]
    pci = p.get("ci95") or {}
    lines.append("| pooled over the split | " + " | ".join(_f(p[m]) + _ci(pci.get(m)) for m in OVERLAP_METRICS)
                 + " | – | – |")
    o = ev["over_patients"]
    lines.append("| mean ± sd over patients (3D) | "
                 + " | ".join(_msd(o[m], 2 if m.endswith("_mm") else 4) for m in SUMMARY_METRICS) + " |")
    for key, label in (("tumour", "mean ± sd over tumour slices"), ("all", "mean ± sd over all slices")):
        s = ev["over_slices"][key]
        lines.append(f"| {label} | " + " | ".join(_msd(s[m]) for m in OVERLAP_METRICS) + " | – | – |")
    lines += [
        "",
        "## Per patient",
        "",
        "| patient | series | slices | tumour slices | Dice | IoU | Precision | Recall | HD95 (mm) | MSD (mm) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in ev["per_patient"]:
        lines.append(f"| {r['patient']} | {r['series']} | {r['slices']} | {r['tumour_slices']} | "
                     + " | ".join(_f(r[m]) for m in OVERLAP_METRICS)
                     + f" | {_f(r['hd95_mm'], 2)} | {_f(r['msd_mm'], 2)} |")
    lines += ["", "[low, high]: 95 % bootstrap interval over patients (see ci95 below).",
              "", "Conventions:", ""] + [f"- {k}: {v}" for k, v in CONVENTIONS.items()] + [""]
    return "\n".join(lines)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _count(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else "?"


def _pick_overlay_slices(per_slice: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Best and worst slice (positions in ``per_slice``) by Dice, among slices with truth or prediction.

    Ties are broken by the lower slice index, so the choice is deterministic.
    """
    scored = [(k, r) for k, r in enumerate(per_slice) if r["truth_pixels"] or r["predicted_pixels"]]
    if not scored:
        return {}
    tumour = [(k, r) for k, r in scored if r["truth_pixels"]] or scored
    best = max(tumour, key=lambda kr: (kr[1]["dice"], -kr[1]["index"]))[0]
    worst = min(scored, key=lambda kr: (kr[1]["dice"], kr[1]["index"]))[0]
    return {"best": best, "worst": worst}


def _overlay_png(path: Path, image: np.ndarray, truth: np.ndarray, pred: np.ndarray, title: str,
                 spacing: tuple[float, float]) -> None:
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - depends on the install
        raise MissingExtraError("overlays", "need matplotlib; install segkit[train] or pass --no-overlays") from None
    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    dy, dx = spacing
    h, w = image.shape
    fig = Figure(figsize=(4.0, 4.0 * (h * dy) / (w * dx) + 0.4), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1 - 0.4 / fig.get_figheight()))
    ax.imshow(image, cmap="gray", interpolation="nearest", aspect=dy / dx)
    for mask, colour in ((truth, "#00e000"), (pred, "#ff00ff")):
        if mask.any() and not mask.all():
            ax.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=1.2)
    ax.set_axis_off()
    ax.legend(handles=[Line2D([], [], color="#00e000", label="truth"), Line2D([], [], color="#ff00ff", label="prediction")],
              loc="lower right", fontsize=7, framealpha=0.6)
    fig.suptitle(title, fontsize=8, y=0.995, va="top")
    fig.savefig(path, format="png", metadata={"Software": None})


def _write_overlays(folder: Path, evaluation: Evaluation) -> list[str]:
    folder.mkdir()
    written: list[str] = []
    start = 0
    for case in evaluation.cases:
        n = case.truth.shape[0]
        rows = evaluation.per_slice[start:start + n]
        start += n
        if case.image is None:
            continue
        for which, k in sorted(_pick_overlay_slices(rows).items()):
            r = rows[k]
            stem = case.series if case.series.startswith(case.patient) else f"{case.patient}_{case.series}"
            name = f"{stem}_{which}_slice{r['index']:03d}.png"
            title = f"{case.patient} slice {r['index']}  ({which})  Dice {r['dice']:.3f}"
            _overlay_png(folder / name, case.image[k], case.truth[k], case.prob[k] >= evaluation.threshold, title,
                         case.spacing[1:])
            written.append(f"overlays/{name}")
    return written


def _json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_report(
    evaluation: Evaluation,
    out: str | os.PathLike[str],
    *,
    split: str,
    run: Mapping[str, Any],
    store: Mapping[str, Any],
    provenance: Sequence[Mapping[str, Any]] = (),
    overlays: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``metrics.json``, ``per_patient.csv``, ``per_slice.csv``, ``table.md`` and overlays to ``out``.

    Parameters
    ----------
    evaluation:
        From :func:`evaluate_cases`.
    out:
        The report folder; written beside itself under a temporary name and renamed when complete.
    split:
        The evaluated split (``test``, ``val`` …).
    run, store:
        Context recorded in ``metrics.json`` (run: ``id``, ``dir``, ``model``, ``params``,
        ``epochs``, ``checkpoint``; store: ``path``, ``digest``).  No PHI.
    provenance:
        Steps that led here (the evaluate step last).
    overlays:
        Draw the best/worst-slice PNGs (needs matplotlib).
    overwrite:
        Replace an existing ``out``.

    Returns
    -------
    dict
        The ``metrics.json`` document.

    Raises
    ------
    OutputExistsError
        If ``out`` exists and ``overwrite`` is false.
    """
    from segkit.schemas import validate

    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(str(out), "already exists; choose another folder or pass --force")
    doc: dict[str, Any] = {
        "format": METRICS_FORMAT,
        "version": METRICS_VERSION,
        "segkit_version": __version__,
        "split": split,
        "run": dict(run),
        "store": dict(store),
        **evaluation.summary(),
        "overlays": [],
        "provenance": [dict(s) for s in provenance],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        if overlays:
            doc["overlays"] = _write_overlays(tmp / "overlays", evaluation)
        doc = json.loads(_json_text(doc))  # plain JSON types only (and no NaN)
        validate(doc, "metrics")
        (tmp / "metrics.json").write_text(_json_text(doc), encoding="utf-8")
        (tmp / "per_patient.csv").write_text(_csv_text(evaluation.per_patient, PATIENT_COLUMNS), encoding="utf-8")
        (tmp / "per_slice.csv").write_text(_csv_text(evaluation.per_slice, SLICE_COLUMNS), encoding="utf-8")
        (tmp / "table.md").write_text(_table_md(doc), encoding="utf-8")
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return doc


def _replace(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- comparing runs
def read_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a ``metrics.json`` (``path`` may be the file or its folder).

    Raises
    ------
    InputError
        If there is no such file, or it is not valid segkit metrics.
    """
    from segkit.schemas import validate

    path = Path(path)
    file = path / "metrics.json" if path.is_dir() else path
    if not file.is_file():
        raise InputError(str(path), "has no metrics.json (run segkit evaluate first)")
    try:
        doc = json.loads(file.read_text("utf-8"))
        validate(doc, "metrics")
    except (ValueError, Exception) as exc:  # json.JSONDecodeError, jsonschema.ValidationError
        raise InputError(str(file), f"is not a valid segkit metrics.json ({type(exc).__name__})") from None
    return doc


COMPARE_COLUMNS = ("run", "model", "params", "epochs", "split", "patients",
                   *[c for m in OVERLAP_METRICS for c in (m, f"{m}_ci_low", f"{m}_ci_high")],
                   "hd95_mm", "hd95_mm_ci_low", "hd95_mm_ci_high")


def compare_rows(docs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per ``metrics.json``: model variant, params, epochs, pooled Dice/IoU/P/R, mean HD95.

    The paper's Table 3 for any cohort.  All documents should come from the same
    store and split; rows say which split they are from.
    """
    rows = []
    for doc in docs:
        run = doc["run"]
        pci = doc["pooled"].get("ci95") or {}
        hci = doc["over_patients"]["hd95_mm"].get("ci95") or [None, None]
        row = {
            "run": run.get("id", "?"), "model": run.get("model", "?"), "params": run.get("params"),
            "epochs": run.get("epochs"), "split": doc["split"], "patients": doc["patients"],
            "hd95_mm": doc["over_patients"]["hd95_mm"]["mean"], "hd95_mm_ci_low": hci[0], "hd95_mm_ci_high": hci[1],
        }
        for m in OVERLAP_METRICS:
            low, high = pci.get(m) or [None, None]
            row.update({m: doc["pooled"][m], f"{m}_ci_low": low, f"{m}_ci_high": high})
        rows.append(row)
    return rows


def compare_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The comparison as a Markdown table (pooled overlap metrics, mean HD95 over patients)."""
    lines = [
        "| run | model | params | epochs | Dice | IoU | Precision | Recall | HD95 (mm) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['run']} | {r['model']} | {_count(r['params'])} | {r['epochs'] if r['epochs'] is not None else '?'} | "
                     + " | ".join(_f(r[m]) + _row_ci(r, m) for m in OVERLAP_METRICS)
                     + f" | {_f(r['hd95_mm'], 2)}{_row_ci(r, 'hd95_mm', 2)} |")
    split = {r["split"] for r in rows}
    note = f"Pooled over the `{split.pop()}` split; HD95 is the mean over patients." if len(split) == 1 else \
        "Warning: the runs were evaluated on different splits."
    note += " [low, high]: 95 % bootstrap interval over patients (2,000 resamples, seed 0)."
    return "\n".join(lines) + "\n\n" + note + "\n"


def _row_ci(row: Mapping[str, Any], metric: str, digits: int = 4) -> str:
    low, high = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
    return "" if low is None or high is None else _ci([low, high], digits)


def write_compare(docs: Sequence[Mapping[str, Any]], out: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Write ``compare.md`` and ``compare.csv`` into folder ``out`` (created if needed).

    Returns
    -------
    list of dict
        The rows of the table.
    """
    rows = compare_rows(docs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("compare.md", compare_markdown(rows)), ("compare.csv", _csv_text(rows, COMPARE_COLUMNS))):
        tmp = out / f".{name}.partial"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)
    return rows
