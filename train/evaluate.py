"""``evaluate_run``: score a trained run on the held-out patients of a store and write the report.

The run's model predicts every original slice of the chosen split, patient by
patient (slices in volume order); :mod:`segkit.evaluate.evaluation` scores the
probabilities against the store's masks at the store's resolution and spacing,
and :mod:`segkit.evaluate.report` writes ``metrics.json``, the CSVs, ``table.md`` and the overlays.

Held-out check: the evaluated split must not hold a patient the run trained on.
The run's own record of its training patients is used when it has one;
otherwise the store must descend from the same ``convert`` step as the run's
training store (same output digest — the convert step fixes the patient split,
and augmentation keeps it), so that its split is the run's split.  Anything else
is refused: the tool cannot tell whether the numbers would be honest.

TensorFlow is imported only by the default predictor loader
(:func:`segkit.train.inference.load_predictor`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from segkit.errors import InputError, OutputExistsError, UsageError
from segkit.evaluate.compare import read_metrics, write_compare
from segkit.evaluate.evaluation import Case, evaluate_cases
from segkit.evaluate.report import write_report
from segkit.store.provenance import finish_step, provenance_step
from segkit.store.reader import Store, open_store
from segkit.train.runinfo import RunInfo, read_run

__all__ = ["Predictor", "PredictorLoader", "load_run_predictor", "predictor_loader", "evaluate_run", "check_held_out", "store_cases",
           "EVAL_SPLITS"]

log = logging.getLogger("segkit.evaluate")

EVAL_SPLITS = ("val", "test")


class Predictor(Protocol):
    """A trained model ready to segment normalised slices."""

    params: int | None
    checkpoint: str

    def predict(self, images: np.ndarray) -> np.ndarray:
        """``(n, H, W)`` float32 images in [0, 1] → ``(n, H, W)`` float32 tumour probabilities."""


PredictorLoader = Callable[[RunInfo, str], Predictor]


def load_run_predictor(run: RunInfo, checkpoint: str, tta: str = "auto") -> Predictor:
    """The run's TensorFlow model as a :class:`Predictor` with test-time augmentation ``tta`` (imports TensorFlow)."""
    from segkit.train.inference import load_predictor

    return load_predictor(run, checkpoint, tta)


def predictor_loader(tta: str = "auto") -> PredictorLoader:
    """The default :data:`PredictorLoader` with test-time augmentation ``tta``."""
    return lambda run, checkpoint: load_run_predictor(run, checkpoint, tta)


def _convert_digest(steps: Sequence[dict[str, Any]]) -> str | None:
    for step in steps:
        if step.get("name") == "convert":
            return step.get("output_digest")
    return None


def check_held_out(run: RunInfo, store: Store, split: str) -> list[str]:
    """Return the patients of ``split``, after checking none of them trained the run.

    Raises
    ------
    UsageError
        If ``split`` is not ``val`` or ``test``.
    InputError
        If the split is empty, holds a training patient of the run, or the run's
        training patients cannot be established for this store.
    """
    if split not in EVAL_SPLITS:
        raise UsageError("--split", f"must be one of {', '.join(EVAL_SPLITS)}; a run is never scored on its training split")
    patients = sorted(p for p, s in store.split.items() if s == split)
    if not patients:
        raise InputError(str(store.path), f"its {split} split is empty; convert with at least one {split} patient")
    trained = run.training_patients
    if trained is None:
        ours, theirs = _convert_digest(store.provenance), _convert_digest(run.store_steps)
        if ours is None or theirs is None or ours != theirs:
            raise InputError(str(store.path), f"does not descend from the store run {run.run_id} was trained on "
                                              "(their convert steps differ), so its held-out patients cannot be "
                                              "checked; evaluate on that store or one augmented from it")
        trained = {p for p, s in store.split.items() if s == "train"}
    leaked = sorted(set(patients) & set(trained))
    if leaked:
        raise InputError(str(store.path), f"its {split} split holds {len(leaked)} patient(s) that trained run "
                                          f"{run.run_id} (e.g. {leaked[0]}); evaluate only on held-out patients")
    return patients


def store_cases(store: Store, split: str, predict: Callable[[np.ndarray], np.ndarray] | None = None,
                *, progress: bool = False) -> list[Case]:
    """One :class:`Case` per series of ``split`` (original slices, volume order), predicted with ``predict``.

    ``predict`` maps ``(n, H, W)`` images to probabilities; ``None`` leaves the
    probabilities at zero (for tests of the plumbing).
    """
    table = store.table
    rows = store.indices(split, source="original")
    series_of = table["series"][rows]
    spacing = store.attrs.get("spacing", {})
    cases = []
    groups = sorted(set(series_of))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(rows), desc=f"evaluate {split}", unit="slice", leave=False)
    try:
        for series in groups:
            sel = rows[series_of == series]
            sel = sel[np.argsort(table["index"][sel], kind="stable")]
            images = np.stack([np.asarray(store.image[int(i)], dtype=np.float32) for i in sel])
            truth = np.stack([np.asarray(store.mask[int(i)]) for i in sel]).astype(bool)
            prob = predict(images) if predict is not None else np.zeros(images.shape, np.float32)
            if series not in spacing:
                raise InputError(str(store.path), f"records no spacing for series {series}")
            cases.append(Case(
                patient=str(table["patient"][sel[0]]), series=str(series),
                spacing=tuple(float(v) for v in spacing[series]), truth=truth, prob=prob,
                index=table["index"][sel], position=table["position"][sel], rows=sel, image=images,
            ))
            if bar is not None:
                bar.update(len(sel))
    finally:
        if bar is not None:
            bar.close()
    return cases


def _lineage(run: RunInfo, store: Store) -> list[dict[str, Any]]:
    """The steps behind the scores: the run's provenance (its store's steps and its train steps) when it
    follows the provenance schema, else the evaluated store's."""
    import jsonschema

    from segkit.schemas import validate

    if run.steps:
        try:
            validate(run.steps, "provenance")
            return [dict(s) for s in run.steps]
        except jsonschema.ValidationError:
            log.info("run %s: provenance.json does not follow the provenance schema; recording the store's",
                     run.run_id)
    return store.provenance


def _scores_digest(summary: dict[str, Any]) -> str:
    text = json.dumps(summary, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def evaluate_run(
    run_dir: str | os.PathLike[str],
    store: str | os.PathLike[str],
    split: str = "test",
    threshold: float = 0.5,
    out: str | os.PathLike[str] | None = None,
    *,
    checkpoint: str = "best",
    compare: Sequence[str | os.PathLike[str]] = (),
    overlays: bool = True,
    overwrite: bool = False,
    progress: bool = False,
    tta: str = "auto",
    load: PredictorLoader | None = None,
) -> dict[str, Any]:
    """Score run ``run_dir`` on the ``split`` patients of ``store``; write the report to ``out``.

    Parameters
    ----------
    run_dir:
        A run directory written by ``segkit train``.
    store:
        A segkit store whose ``split`` patients did not train the run.
    split:
        ``test`` (default) or ``val``.
    threshold:
        Probability at or above which a pixel counts as tumour.
    out:
        Report folder (default ``RUN_DIR/eval-<split>``).
    checkpoint:
        ``best`` (the best weights by val Dice) or ``latest`` (last checkpoint).
    compare:
        Further run directories to set beside this one in ``compare.md``/``compare.csv``
        (their own ``eval-<split>`` report is reused when it is for the same store and threshold, else they
        are evaluated into ``OUT/compare/``).
    overlays:
        Draw best/worst overlay PNGs per patient.
    overwrite:
        Replace an existing report folder.
    progress:
        Progress bar on stderr.
    tta:
        Test-time augmentation (:func:`segkit.train.inference.resolve_tta`): ``auto`` (default: the 8
        flips and quarter turns for a run trained on them, else none), ``none``, ``flips``, ``dihedral``.
        Recorded in the report as ``run.tta``.
    load:
        ``(RunInfo, checkpoint) -> Predictor``; default builds the run's TensorFlow model with ``tta``.

    Returns
    -------
    dict
        The ``metrics.json`` document.

    Raises
    ------
    SegkitError
        Bad run directory or store, a split that is not held out, an existing output.
    """
    if not 0.0 <= threshold <= 1.0:
        raise UsageError("--threshold", f"must be a probability in [0, 1], got {threshold:g}")
    if checkpoint not in ("best", "latest"):
        raise UsageError("--checkpoint", "must be 'best' or 'latest'")
    from segkit.train.inference import resolve_tta

    run = read_run(run_dir)
    resolve_tta(run.config, tta)  # a bad --tta fails before anything is read
    opened = open_store(store)
    fold_split = (run.config.get("data") or {}).get("split")
    if fold_split:  # a cross-validation fold: its held-out patients are the fold's, not the store's
        from segkit.pipelines.training_store import with_split

        opened = with_split(opened, fold_split)
    check_held_out(run, opened, split)
    out = Path(out) if out is not None else run.path / f"eval-{split}"
    if out.exists() and not overwrite:
        raise OutputExistsError(str(out), "already exists; choose another folder or pass --force")
    if checkpoint == "best":
        run.best_weights()
    compare_runs = [read_run(c) for c in compare]  # fail on a bad --compare before the long work
    predictor = (load or predictor_loader(tta))(run, checkpoint)
    used_tta = getattr(predictor, "tta", "none")  # a predictor without the attribute averages no views
    store_digest = opened.provenance[-1].get("output_digest") if opened.provenance else None
    parameters = {"run": run.run_id, "store": opened.path.name, "split": split, "threshold": threshold,
                  "checkpoint": checkpoint, "tta": used_tta}
    step = provenance_step("evaluate", parameters, input_digest=store_digest)
    evaluation = evaluate_cases(store_cases(opened, split, predictor.predict, progress=progress), threshold)
    doc = write_report(
        evaluation, out, split=split,
        run={"id": run.run_id, "dir": str(run.path), "model": run.variant, "params": predictor.params,
             "epochs": run.epochs, "checkpoint": predictor.checkpoint, "tta": used_tta},
        store={"path": str(opened.path), "digest": store_digest},
        provenance=[*_lineage(run, opened), finish_step(step, _scores_digest(evaluation.summary()))],
        overlays=overlays, overwrite=overwrite,
    )
    if compare_runs:
        docs = [doc]
        for k, other in enumerate(compare_runs, start=1):
            docs.append(_metrics_for(other, opened, split, threshold, out / "compare" / f"{k:02d}-{other.run_id}",
                                     checkpoint, progress, tta, load))
        write_compare(docs, out)
    return doc


def _metrics_for(run: RunInfo, store: Store, split: str, threshold: float, folder: Path, checkpoint: str,
                 progress: bool, tta: str, load: PredictorLoader | None) -> dict[str, Any]:
    """The run's report on (store, split, threshold, test-time augmentation): its own ``eval-<split>`` when
    that matches, else evaluated now into ``folder`` (the other run's folder is never touched)."""
    from segkit.train.inference import resolve_tta

    own = run.path / f"eval-{split}"
    digest = store.provenance[-1].get("output_digest") if store.provenance else None
    if (own / "metrics.json").is_file():
        doc = read_metrics(own)
        same_tta = load is not None or doc["run"].get("tta", "none") == resolve_tta(run.config, tta)
        if doc["store"].get("digest") == digest and doc["threshold"] == threshold and same_tta:
            return doc
        log.info("evaluating %s again: its own report is for another store, threshold or --tta", run.run_id)
    return evaluate_run(run.path, store.path, split, threshold, folder, checkpoint=checkpoint, overlays=False,
                        overwrite=True, progress=progress, tta=tta, load=load)
