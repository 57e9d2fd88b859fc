"""Write a whole synthetic cohort: per patient MR + RTSTRUCT + SEG, plus truth masks."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from segkit.errors import OutputExistsError, UsageError
from segkit.synth.dicom import make_uids, mr_datasets, rtstruct_dataset, seg_dataset
from segkit.synth.geometry import make_geometry
from segkit.synth.phantom import make_phantom
from segkit.synth.phi import fake_identity

__all__ = ["SynthConfig", "CohortSummary", "write_cohort", "patient_folder", "weighting_of"]

log = logging.getLogger(__name__)
COHORT_FORMAT = "segkit-synth-cohort/1"


@dataclass(frozen=True)
class SynthConfig:
    """What to generate.  Same config (seed included) ⇒ byte-identical files."""

    patients: int = 6
    slices: int = 24
    size: int = 128
    pixel_spacing: float = 0.84
    slice_thickness: float = 2.0
    oblique: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.patients < 1:
            raise UsageError("--patients", f"must be at least 1, got {self.patients}")
        if self.slices < 4:
            raise UsageError("--slices", f"must be at least 4 so a tumour fits, got {self.slices}")
        if self.size < 32:
            raise UsageError("--size", f"must be at least 32 pixels, got {self.size}")
        if not (self.pixel_spacing > 0 and self.slice_thickness > 0):
            raise UsageError("--pixel-spacing/--slice-thickness", "must be positive")

    @property
    def fingerprint(self) -> str:
        """Identifies the cohort in its UIDs (different configs never share a UID)."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class CohortSummary:
    """What :func:`write_cohort` wrote."""

    root: Path
    patients: int
    files: int
    patient_dirs: list[str] = field(default_factory=list)


def patient_folder(index: int) -> str:
    """Folder name of patient ``index`` (0-based): ``patient-01`` …; carries no PHI."""
    return f"patient-{index + 1:02d}"


def weighting_of(index: int) -> str:
    """Every third patient is T2-weighted: six patients give 4 T1 + 2 T2 as in the reference study."""
    return "T2" if index % 3 == 2 else "T1"


def _save(ds, path: Path) -> None:  # noqa: ANN001 - pydicom Dataset
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_cohort(out: str | os.PathLike[str], config: SynthConfig = SynthConfig(), *, overwrite: bool = False,
                 progress: bool = False) -> CohortSummary:
    """Generate the synthetic cohort described by ``config`` into folder ``out``.

    The cohort is built in a temporary folder beside ``out`` and renamed into place
    only when complete, so an interrupted run leaves nothing at ``out``.

    Raises
    ------
    OutputExistsError
        If ``out`` exists and ``overwrite`` is false.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(str(out), "is a file, not a folder; choose another path")
    if out.exists() and not overwrite:
        raise OutputExistsError(str(out), "already exists; choose another folder or pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        summary = _write(tmp, config, progress)
        if out.exists():
            trash = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(trash)
            tmp.rename(out)
            shutil.rmtree(trash)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary.root = out
    return summary


def _write(root: Path, config: SynthConfig, progress: bool) -> CohortSummary:
    from tqdm import tqdm

    shape = (config.slices, config.size, config.size)
    seeds = np.random.SeedSequence(config.seed).spawn(config.patients)
    summary = CohortSummary(root=root, patients=config.patients, files=0)
    manifest: dict = {"format": COHORT_FORMAT, "config": asdict(config), "patients": []}
    (root / "truth").mkdir()
    for i in tqdm(range(config.patients), desc="synth", unit="patient", disable=not progress, leave=False):
        name = patient_folder(i)
        weighting = weighting_of(i)
        rng = np.random.default_rng(seeds[i])
        who = fake_identity(rng)
        geometry = make_geometry(rng, shape, config.pixel_spacing, config.slice_thickness, config.oblique)
        phantom = make_phantom(rng, shape, weighting, with_core=(i % 2 == 0))
        uids = make_uids(config.fingerprint, name, config.slices)
        mr = mr_datasets(phantom.image, geometry, who, uids, weighting, study_id=f"{1000 + i}")
        for k, ds in enumerate(mr):
            _save(ds, root / name / "MR" / f"{k + 1:04d}.dcm")
        _save(rtstruct_dataset(mr, phantom.tumour, geometry, who, uids), root / name / "RTSTRUCT" / "rtstruct.dcm")
        _save(seg_dataset(mr, phantom.tumour, who, uids), root / name / "SEG" / "seg.dcm")
        np.save(root / "truth" / f"{name}.npy", phantom.tumour)
        summary.files += len(mr) + 2
        summary.patient_dirs.append(name)
        tumour_slices = [int(k) for k in np.nonzero(phantom.tumour.any(axis=(1, 2)))[0]]
        manifest["patients"].append({
            "folder": name,
            "weighting": weighting,
            "slices": config.slices,
            "rows": config.size,
            "columns": config.size,
            "tumour_voxels": int(phantom.tumour.sum()),
            "tumour_slices": tumour_slices,
            "core_slices": [int(k) for k in np.nonzero(phantom.core.any(axis=(1, 2)))[0]],
            "orientation": geometry.orientation,
        })
        log.debug("synth: %s (%s) %d slices, %d tumour voxels", name, weighting, config.slices,
                  int(phantom.tumour.sum()))
    (root / "cohort.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return summary
