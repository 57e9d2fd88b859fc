"""``segkit demo``: the whole chain on a fresh synthetic cohort, one line per step.

Steps that are not built yet are reported as missing (and the steps that need
their output are skipped; the optional anonymize and augment steps are passed
over, the next step reading the output before them), so the demo always shows
how far the chain goes today.  Each step calls the library function behind its
command; a step whose library is not installed counts as not built.

Layout of the demo folder: ``raw/`` (synthetic cohort), ``clean/``
(de-identified with a fixed demo key), ``slices.zarr``, ``augmented.zarr``, ``run/``
(checkpoints, history, TensorBoard logs), ``evaluation/`` (metrics, tables,
overlays), ``prediction-seg.dcm`` (DICOM SEG of a test patient's series).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segkit.errors import MissingExtraError, NotImplementedYetError, OutputExistsError

__all__ = ["DemoStep", "DemoReport", "run_demo"]

log = logging.getLogger("segkit.demo")
MARKER = ".segkit-demo"


@dataclass
class DemoStep:
    """One step's outcome: ``done``, ``missing`` (not built yet) or ``skipped`` (needs a missing step)."""

    name: str
    status: str
    seconds: float = 0.0
    detail: str = ""


@dataclass
class DemoReport:
    """Everything the demo did, for the final summary."""

    root: Path
    steps: list[DemoStep] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        return [s.name for s in self.steps if s.status == "missing"]

    def summary(self) -> str:
        lines = [f"demo finished in {sum(s.seconds for s in self.steps):.1f} s; outputs in {self.root}"]
        if self.missing:
            lines += [f"missing: {s.name}: {s.detail}" for s in self.steps if s.status == "missing"]
        skipped = [s.name for s in self.steps if s.status == "skipped"]
        if skipped:
            lines.append("not run, they need a missing step: " + ", ".join(skipped))
        return "\n".join(lines + self.notes)


def _synth(root: Path, quick: bool) -> str:
    from segkit.synth import SynthConfig, write_cohort

    config = SynthConfig(patients=6, slices=12 if quick else 24, size=64 if quick else 128, seed=0)
    summary = write_cohort(root / "raw", config)
    return f"{summary.patients} patients, {summary.files} DICOM files -> {summary.root}"


def _library(name: str, module: str, *attrs: str) -> list[Any]:
    """Import ``attrs`` of ``module``, or report the step as not built yet."""
    try:
        mod = importlib.import_module(module)
        return [getattr(mod, a) for a in attrs]
    except (ImportError, AttributeError):
        raise NotImplementedYetError(f"segkit {name}", "not implemented yet") from None


def _dicom_input(root: Path) -> Path:
    """The de-identified cohort when anonymize ran, else the raw one."""
    return root / "clean" if (root / "clean").is_dir() else root / "raw"


def _training_store(root: Path) -> Path:
    return root / "augmented.zarr" if (root / "augmented.zarr").is_dir() else root / "slices.zarr"


#: The demo's site key: fixed and public, so the demo's pseudonyms, split and numbers are the same every
#: time.  Synthetic data only — a real site makes its secret key with ``segkit keygen``.
DEMO_KEY = hashlib.sha256(b"segkit demo site key: synthetic data only").digest()


def _anonymize(root: Path, quick: bool) -> str:
    """raw/ → clean/ (de-identified, verified); the steward's linkage and quarantine go to steward/."""
    (anonymize_tree,) = _library("anonymize", "segkit.deid", "anonymize_tree")
    steward = root / "steward"
    steward.mkdir(exist_ok=True)
    summary = anonymize_tree(root / "raw", root / "clean", DEMO_KEY, linkage=steward / "linkage.csv",
                             quarantine=steward / "quarantine", workers=1)
    return summary.line()


def _convert(root: Path, quick: bool) -> str:
    convert, options = _library("convert", "segkit.convert", "convert", "ConvertOptions")
    report = convert(_dicom_input(root), root / "slices.zarr", options(seed=0))
    return report.summary().splitlines()[0]


def _augment(root: Path, quick: bool) -> str:
    (augment_store,) = _library("augment", "segkit.augment.run", "augment_store")
    from segkit.store.reader import open_store

    originals = open_store(root / "slices.zarr").indices("train").size
    result = augment_store(root / "slices.zarr", root / "augmented.zarr", target=originals * 2, seed=0)
    return f"{result.train} training images ({result.augmented} augmented) -> {result.path}"


#: Training budget of the demo: the cpu-small preset (the paper's hybrid model with a ResNet-18 encoder and a
#: 2-block bottleneck, gates starting open; 2.5D input, batch Dice, warm-up + cosine, validation on a weight
#: average, flips/quarter turns, head inversion, random core brightness) at the cohort's own matrix (128², or
#: 64² with --quick), quick / full.  On 2 idle cores: ~0.35 s per step at 128².
DEMO_TRAINING = {
    True: {"model": {"input_size": 64},
           "train": {"epochs": 10, "steps_per_epoch": 12, "batch_size": 8, "seed": 0, "deterministic": True}},
    False: {"model": {"input_size": 128},
            "train": {"epochs": 24, "steps_per_epoch": 24, "batch_size": 8, "seed": 0, "deterministic": True}},
}


def _train(root: Path, quick: bool) -> str:
    (train_run,) = _library("train", "segkit.train.fit", "train_run")
    result = train_run(_training_store(root), root / "run", preset="cpu-small", overrides=DEMO_TRAINING[quick],
                       progress=False)
    return result.summary()


#: The run's predictor, built (and its graph traced) once for evaluate and predict: {key: predictor}.
_PREDICTOR: dict[tuple[Any, ...], Any] = {}


def _shared_predictor(run: Any, checkpoint: str) -> Any:
    """``evaluate_run``/``predict_series``' ``load``: one predictor per run weights file, reused by the next step."""
    from segkit.train.evaluate import load_run_predictor

    weights = run.path / "best.weights.h5"
    key = (str(run.path.resolve()), checkpoint, weights.stat().st_mtime_ns if weights.exists() else None)
    if key not in _PREDICTOR:
        _PREDICTOR.clear()
        _PREDICTOR[key] = load_run_predictor(run, checkpoint)
    return _PREDICTOR[key]


def _evaluate(root: Path, quick: bool) -> str:
    (evaluate_run,) = _library("evaluate", "segkit.train.evaluate", "evaluate_run")
    doc = evaluate_run(root / "run", root / "slices.zarr", "test", out=root / "evaluation", load=_shared_predictor)
    p = doc["pooled"]
    return (f"{doc['patients']} test patient{'' if doc['patients'] == 1 else 's'}, {doc['slices']} slices: Dice {p['dice']:.3f}, IoU {p['iou']:.3f}, "
            f"precision {p['precision']:.3f}, recall {p['recall']:.3f} -> {root / 'evaluation'}")


def _test_series_folder(root: Path) -> Path:
    """The folder of the first test patient's MR series (naming as ``segkit convert`` does)."""
    from segkit.dicom.dicomio import scan_folder
    from segkit.store.reader import open_store

    patient = next(p for p, s in sorted(open_store(root / "slices.zarr").split.items()) if s == "test")
    scan = scan_folder(_dicom_input(root))
    series = sorted(scan.images.values(), key=lambda inst: str(inst[0].path))
    ids = sorted({str(inst[0].header.get("PatientID", "")) for inst in series})
    for instances in series:
        header = instances[0].header
        pid = str(header.get("PatientID", ""))
        deidentified = str(header.get("PatientIdentityRemoved", "")).upper() == "YES"
        if (pid if deidentified else f"patient-{ids.index(pid) + 1:02d}") == patient:
            return instances[0].path.parent
    return series[0][0].path.parent


def _predict(root: Path, quick: bool) -> str:
    (predict_series,) = _library("predict", "segkit.train.predict", "predict_series")
    try:
        result = predict_series(root / "run", _test_series_folder(root), root / "prediction-seg.dcm",
                                load=_shared_predictor)
    finally:
        _PREDICTOR.clear()  # the model is not needed after the last step
    return result.summary()


# The chain in order; each step reads what the steps before it wrote under the demo folder.
# Optional steps, when not built yet, are passed over: the next step reads the output before them.
STEPS: list[tuple[str, Callable[[Path, bool], str]]] = [
    ("synth", _synth),
    ("anonymize", _anonymize),
    ("convert", _convert),
    ("augment", _augment),
    ("train", _train),
    ("evaluate", _evaluate),
    ("predict", _predict),
]
OPTIONAL = {"anonymize", "augment"}


def _closing_notes(root: Path) -> list[str]:
    notes = []
    table = root / "evaluation" / "table.md"
    if table.is_file():
        lines = table.read_text("utf-8").split("## Per patient")[0].strip().splitlines()
        notes += ["", *[line for line in lines if line.startswith("|")], ""]
        notes.append(f"pictures (best/worst slice per patient): {root / 'evaluation' / 'overlays'}")
    if (root / "run" / "logs").is_dir():
        notes.append(f"TensorBoard logs: {root / 'run' / 'logs'}  (tensorboard --logdir {root / 'run' / 'logs'})")
    if (root / "prediction-seg.dcm").is_file():
        notes.append(f"DICOM SEG of a test patient: {root / 'prediction-seg.dcm'}")
    return notes


def run_demo(out: str | Path = "segkit-demo", *, quick: bool = False, overwrite: bool = False) -> DemoReport:
    """Run every step of the chain into folder ``out`` and report each step's time.

    A folder that an earlier demo made (it holds the ``.segkit-demo`` marker) is
    replaced; any other existing folder only with ``overwrite``.

    Raises
    ------
    OutputExistsError
        If ``out`` exists, is not an earlier demo's folder, and ``overwrite`` is false.
    """
    root = Path(out)
    if root.exists():
        # A folder an earlier demo made is the demo's own to replace; anything else needs --force.
        if not (overwrite or (root / MARKER).is_file()):
            raise OutputExistsError(str(root), "already exists and is not a segkit demo folder; "
                                    "choose another folder or pass --force to replace it")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / MARKER).write_text("made by `segkit demo`; the next demo run into this folder replaces it\n")
    report = DemoReport(root=root)
    blocked = False
    for name, step in STEPS:
        if blocked:
            report.steps.append(DemoStep(name, "skipped", detail="needs a step that is not built yet"))
            log.info("%-10s skipped (needs a step that is not built yet)", name)
            continue
        start = time.perf_counter()
        try:
            detail = step(root, quick)
        except NotImplementedYetError:
            optional = name in OPTIONAL
            detail = "not built yet" + ("; the next step reads the output before it" if optional else "")
            report.steps.append(DemoStep(name, "missing", detail=detail))
            log.info("%-10s %s", name, detail)
            blocked = blocked or not optional
            continue
        except MissingExtraError as exc:  # e.g. train without TensorFlow: say how to install it
            report.steps.append(DemoStep(name, "missing", detail=exc.why))
            log.info("%-10s %s", name, exc.why)
            blocked = True
            continue
        seconds = time.perf_counter() - start
        report.steps.append(DemoStep(name, "done", seconds, detail))
        log.info("%-10s %6.1f s  %s", name, seconds, detail)
    report.notes = _closing_notes(root)
    return report
