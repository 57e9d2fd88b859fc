"""Patient-level cross-validation: ``segkit train --folds K`` and ``segkit evaluate`` on the folds' parent.

The patients of the store (all of them, whatever its own split) are sorted,
shuffled with the seed and dealt into ``K`` groups.  Fold ``k`` holds out group
``k`` as its test patients, takes one patient of the next group for validation
(the choice of the best weights) and trains on the rest; with ``K`` equal to
the number of patients that is leave-one-patient-out.  Each fold is an ordinary
run directory ``PARENT/fold-01`` … whose ``config.yaml`` records its patient
split (``data.split``); augmented rows of a held-out patient are never read.

``PARENT/folds.json`` records the folds.  Training is resumable: folds that
finished are skipped, an interrupted fold resumes from its checkpoint.  The
parent's evaluation scores every fold on its own test patients and writes
``PARENT/eval-test/``: ``folds.md`` / ``folds.csv`` (one row per fold, mean ± sd
over folds) and ``metrics.json`` etc. over all held-out patients together
(each scored by the fold that did not train on it), with bootstrap intervals.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from segkit.atomic import write_atomic
from segkit.errors import InputError, OutputExistsError, UsageError

__all__ = ["fold_splits", "train_folds", "is_folds_parent", "evaluate_folds", "FOLDS_FILE"]

log = logging.getLogger("segkit.crossval")
FOLDS_FILE = "folds.json"
FOLDS_FORMAT = "segkit-folds/1"


def fold_splits(patients: list[str], k: int, seed: int = 0, val: int = 1) -> list[dict[str, str]]:
    """``k`` patient splits (patient → train/val/test); every patient is a test patient of exactly one fold.

    Raises
    ------
    UsageError
        If ``k`` < 2, ``k`` exceeds the patients, or a fold would have no training patient.
    """
    names = sorted(set(patients))
    if k < 2 or k > len(names):
        raise UsageError("--folds", f"must be between 2 and the number of patients ({len(names)}), got {k}")
    if len(names) - int(np.ceil(len(names) / k)) - val < 1:
        raise UsageError("--folds", f"{k} folds of {len(names)} patients with {val} validation patient(s) leave a "
                                    "fold without training patients")
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    groups = [list(g) for g in np.array_split(np.asarray(order, dtype=object), k)]
    folds = []
    for i, test in enumerate(groups):
        rest = [p for g in groups[i + 1:] + groups[:i] for p in g]  # the next groups first
        split = {p: "train" for p in names}
        split.update({p: "test" for p in test})
        split.update({p: "val" for p in rest[:val]})
        folds.append(dict(sorted(split.items())))
    return folds


def _fold_dir(parent: Path, i: int) -> Path:
    return parent / f"fold-{i + 1:02d}"


def is_folds_parent(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is the parent directory of a ``--folds`` training."""
    return (Path(path) / FOLDS_FILE).is_file()


def _finished(run_dir: Path) -> bool:
    import yaml

    from segkit.train.runinfo import read_run

    if not (run_dir / "config.yaml").is_file() or not (run_dir / "best.weights.h5").is_file():
        return False
    run = read_run(run_dir)
    epochs = yaml.safe_load((run_dir / "config.yaml").read_text("utf-8"))["train"]["epochs"]
    return run.epochs is not None and run.epochs >= int(epochs)


def train_folds(store: str | Path, parent: str | Path, k: int, *, preset: str = "cpu-small",
                config_file: str | Path | None = None, overrides: dict[str, Any] | None = None,
                resume: bool = False, progress: bool = True) -> list[Any]:
    """Train ``k`` folds of ``store`` into ``parent/fold-XX`` (see the module docstring).

    Returns the :class:`~segkit.train.fit.TrainResult` of each fold that ran now.

    Raises
    ------
    OutputExistsError
        ``parent`` holds files and ``resume`` is not given.
    InputError, UsageError
        Bad store or config; ``resume`` with another store or fold count than recorded.
    """
    from segkit.pipelines.training_store import input_digest, open_training_store
    from segkit.train.config import load_config
    from segkit.train.fit import train_run

    parent = Path(parent)
    slices = open_training_store(store)
    patients = sorted(set(slices.table["patient"].tolist()))
    record_path = parent / FOLDS_FILE
    if resume and record_path.is_file():
        record = json.loads(record_path.read_text("utf-8"))
        if record["k"] != k or record["store_digest"] != input_digest(slices):
            raise UsageError("--resume", f"{parent} holds {record['k']} folds of another store or fold count; "
                                         "resume with the same store and --folds")
        config = None
    else:
        if parent.exists() and any(parent.iterdir()):
            raise OutputExistsError(str(parent), "already holds files; pass --resume to continue its folds or "
                                                 "choose a new directory")
        config = load_config(preset, Path(config_file) if config_file else None, overrides)
        splits = fold_splits(patients, k, int(config["train"]["seed"]))
        record = {"format": FOLDS_FORMAT, "k": k, "seed": int(config["train"]["seed"]),
                  "store": str(slices.path), "store_digest": input_digest(slices),
                  "folds": [{"fold": i + 1, "dir": _fold_dir(parent, i).name,
                             "test": sorted(p for p, s in sp.items() if s == "test"),
                             "val": sorted(p for p, s in sp.items() if s == "val"), "split": sp}
                            for i, sp in enumerate(splits)]}
        parent.mkdir(parents=True, exist_ok=True)
        write_atomic(record_path, json.dumps(record, indent=2) + "\n")
    results = []
    for i, fold in enumerate(record["folds"]):
        run_dir = _fold_dir(parent, i)
        if _finished(run_dir):
            log.info("fold %d/%d already trained: %s", i + 1, k, run_dir)
            continue
        log.info("fold %d/%d: test %s, val %s", i + 1, k, ", ".join(fold["test"]), ", ".join(fold["val"]))
        again = (run_dir / "config.yaml").is_file()
        if again:
            results.append(train_run(store, run_dir, resume=True, progress=progress,
                                     overrides={"train": {k2: v for k2, v in ((overrides or {}).get("train") or {}).items()
                                                          if k2 in ("epochs", "max_time")}}))
        else:
            cfg = config if config is not None else _fold_config(parent, record, preset, config_file, overrides)
            cfg = json.loads(json.dumps(cfg))
            cfg["data"]["split"] = fold["split"]
            results.append(train_run(store, run_dir, cfg, progress=progress))
        if results[-1].stopped_early:
            break
    return results


def _fold_config(parent: Path, record: dict[str, Any], preset: str, config_file: Any, overrides: Any) -> dict:
    """The config of a fold not started yet when resuming: the first fold's, else the options given."""
    import yaml

    from segkit.train.config import load_config, resolve

    for fold in record["folds"]:
        cfg_path = parent / fold["dir"] / "config.yaml"
        if cfg_path.is_file():
            return resolve(yaml.safe_load(cfg_path.read_text("utf-8")))
    return load_config(preset, Path(config_file) if config_file else None, overrides)


# ----------------------------------------------------------------------------------------- evaluation
FOLD_COLUMNS = ("fold", "run", "test_patients", "slices", "dice", "iou", "precision", "recall", "hd95_mm")


def evaluate_folds(parent: str | Path, store: str | Path, split: str = "test", threshold: float = 0.5,
                   out: str | Path | None = None, *, checkpoint: str = "best", overlays: bool = True,
                   overwrite: bool = False, progress: bool = False, tta: str = "auto",
                   load: Any = None) -> dict[str, Any]:
    """Score every fold on its own held-out patients and aggregate (see the module docstring).

    ``tta`` is each fold's test-time augmentation, as in :func:`segkit.train.evaluate.evaluate_run`.

    Returns the ``metrics.json`` document over all held-out patients, with
    ``folds`` (one summary per fold, and mean ± sd over folds) added.
    """
    from segkit.evaluate.evaluation import evaluate_cases
    from segkit.evaluate.metrics import OVERLAP_METRICS, mean_sd
    from segkit.evaluate.report import write_report
    from segkit.pipelines.training_store import with_split
    from segkit.store.reader import open_store
    from segkit.train.evaluate import check_held_out, evaluate_run, predictor_loader, store_cases
    from segkit.train.runinfo import read_run

    parent = Path(parent)
    record = json.loads((parent / FOLDS_FILE).read_text("utf-8"))
    out = Path(out) if out is not None else parent / f"eval-{split}"
    if out.exists() and not overwrite:
        raise OutputExistsError(str(out), "already exists; choose another folder or pass --force")
    opened = open_store(store)
    rows, cases, seen = [], [], set()
    for fold in record["folds"]:
        run_dir = parent / fold["dir"]
        if not (run_dir / "best.weights.h5").is_file():
            raise InputError(str(run_dir), "has not trained yet; run segkit train --folds … --resume first")
        run = read_run(run_dir)
        # one predictor per fold, for its own report and for the pooled one (built and traced once)
        predictor = (load or predictor_loader(tta))(run, checkpoint)
        doc = evaluate_run(run_dir, store, split, threshold, run_dir / f"eval-{split}", checkpoint=checkpoint,
                           overlays=overlays, overwrite=True, progress=progress, tta=tta,
                           load=lambda _run, _checkpoint, built=predictor: built)
        view = with_split(opened, run.config["data"]["split"])
        held = check_held_out(run, view, split)
        if seen & set(held):
            raise InputError(str(parent), f"patient {sorted(seen & set(held))[0]} is held out by two folds")
        seen |= set(held)
        cases += store_cases(view, split, predictor.predict)
        p = doc["pooled"]
        rows.append({"fold": fold["fold"], "run": fold["dir"], "test_patients": " ".join(held),
                     "slices": doc["slices"], **{m: p[m] for m in OVERLAP_METRICS},
                     "hd95_mm": doc["over_patients"]["hd95_mm"]["mean"]})
    over_folds = {m: mean_sd(np.nan if r[m] is None else r[m] for r in rows) for m in (*OVERLAP_METRICS, "hd95_mm")}
    evaluation = evaluate_cases(cases, threshold)
    doc = write_report(evaluation, out, split=split,
                       run={"id": parent.resolve().name, "dir": str(parent), "model": read_run(parent / record["folds"][0]["dir"]).variant,
                            "params": None, "epochs": None, "checkpoint": checkpoint,
                            "tta": getattr(predictor, "tta", "none")},
                       store={"path": str(opened.path),
                              "digest": opened.provenance[-1].get("output_digest") if opened.provenance else None},
                       overlays=False, overwrite=True)
    _write_fold_tables(out, rows, over_folds, doc)
    return {**doc, "folds": rows, "over_folds": over_folds}


def _write_fold_tables(out: Path, rows: list[dict[str, Any]], over_folds: dict[str, Any], doc: dict[str, Any]) -> None:
    from segkit.evaluate.report import _ci, _f, _msd

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(FOLD_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r[k] is None else r[k]) for k in FOLD_COLUMNS})
    write_atomic(out / "folds.csv", buf.getvalue())
    p, pci = doc["pooled"], doc["pooled"].get("ci95") or {}
    lines = ["| fold | test patients | slices | Dice | IoU | Precision | Recall | HD95 (mm) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['fold']} | {r['test_patients']} | {r['slices']} | "
                     + " | ".join(_f(r[m]) for m in ("dice", "iou", "precision", "recall"))
                     + f" | {_f(r['hd95_mm'], 2)} |")
    lines.append("| mean ± sd over folds | | | " + " | ".join(_msd(over_folds[m]) for m in ("dice", "iou", "precision", "recall"))
                 + f" | {_msd(over_folds['hd95_mm'], 2)} |")
    lines.append(f"| all held-out patients, pooled | {doc['patients']} | {doc['slices']} | "
                 + " | ".join(_f(p[m]) + _ci(pci.get(m)) for m in ("dice", "iou", "precision", "recall"))
                 + f" | {_msd(doc['over_patients']['hd95_mm'], 2)} |")
    text = ("# Cross-validation\n\nEach fold's pooled scores on its own held-out patients; then mean ± sd over "
            "folds; then every held-out patient pooled, with its 95 % bootstrap interval over patients.\n\n"
            + "\n".join(lines) + "\n")
    write_atomic(out / "folds.md", text)
