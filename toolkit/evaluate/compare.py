"""Set several runs' evaluation reports side by side (``segkit evaluate --compare``, ``segkit ablate``).

:func:`read_metrics` reads and validates a ``metrics.json`` written by
:func:`segkit.evaluate.report.write_report`; :func:`compare_rows` makes one row per report (model
variant, parameters, epochs, pooled Dice / IoU / precision / recall and mean HD95, each with its 95 %
bootstrap interval over patients), and :func:`write_compare` writes them as ``compare.md`` and
``compare.csv``: the paper's Table 3 for any cohort.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from segkit.errors import InputError
from segkit.evaluate.metrics import OVERLAP_METRICS
from segkit.evaluate.report import _ci, _count, _csv_text, _f

__all__ = [
    "read_metrics",
    "compare_rows",
    "write_compare",
]


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
