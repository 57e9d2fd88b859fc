"""Small helpers shared by the convert tests (not fixtures: plain functions)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom

from segkit.dicom.dicomio import Instance, read_header
from segkit.dicom.volume import Volume, read_volume


def instances(paths: Iterable[Path]) -> list[Instance]:
    return [Instance(Path(p), read_header(Path(p))) for p in paths]


def load_volume(folder_or_files: Path | Iterable[Path], allow_uneven: bool = False) -> Volume:
    if isinstance(folder_or_files, Path):
        files = sorted(p for p in folder_or_files.iterdir() if p.is_file() and p.suffix != ".txt")
    else:
        files = list(folder_or_files)
    return read_volume(instances(files), "test", allow_uneven=allow_uneven)


def patient_labels(cohort: Path) -> dict[str, str]:
    """Store pseudonym (patient-NN in PatientID order) → synth folder name."""
    ids = {}
    for folder in sorted(cohort.glob("patient-*")):
        ds = pydicom.dcmread(next((folder / "MR").iterdir()), stop_before_pixels=True)
        ids[str(ds.PatientID)] = folder.name
    return {f"patient-{i + 1:02d}": ids[pid] for i, pid in enumerate(sorted(ids))}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * float((a & b).sum()) / float(total)


@contextmanager
def segkit_warnings(caplog) -> Iterator[None]:  # noqa: ANN001 - pytest's LogCaptureFixture
    """Capture segkit's warnings even after the CLI has stopped them propagating to the root logger."""
    logger = logging.getLogger("segkit")
    level = logger.level
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)
