"""Write an :class:`~segkit.evaluate.evaluation.Evaluation` as a report folder.

:func:`write_report` writes, all in one folder that is built under a temporary name beside it and
renamed when complete: ``metrics.json`` (everything, validated by ``schemas/metrics.schema.json``),
``per_patient.csv`` (one row per patient series: 3D metrics, HD95, MSD), ``per_slice.csv`` (one row per
evaluated slice), ``table.md`` (the summary a person reads) and ``overlays/*.png`` (image with truth
and prediction outlines for the best and the worst slice of each patient; needs matplotlib, the
``train`` extra).  The number formatting helpers here (``_f``, ``_ci``, ``_msd``, ``_count``,
``_csv_text``) are shared with :mod:`segkit.evaluate.compare` and the cross-validation tables.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segkit._version import __version__
from segkit.errors import MissingExtraError, OutputExistsError
from segkit.evaluate.evaluation import CONVENTIONS, SUMMARY_METRICS, Evaluation
from segkit.evaluate.metrics import OVERLAP_METRICS

__all__ = [
    "write_report",
    "METRICS_FORMAT",
]

METRICS_FORMAT = "segkit-metrics"
METRICS_VERSION = 1

SLICE_COLUMNS = ("row", "patient", "series", "index", "position", "truth_pixels", "predicted_pixels",
                 "tp", "fp", "fn", *OVERLAP_METRICS)
PATIENT_COLUMNS = ("patient", "series", "slices", "tumour_slices", "truth_voxels", "predicted_voxels",
                   "tp", "fp", "fn", *OVERLAP_METRICS, "hd95_mm", "msd_mm")


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
