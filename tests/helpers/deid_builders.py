"""Builders shared by the de-identification tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence


def phi_mr(path: Path, *, name: str = "Quixote^Alonso", mrn: str = "MRN4711042", date: str = "20210315") -> Path:
    """pydicom's MR_small with identifiers planted in unusual places (nested private sequence too)."""
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]  # an acquisition, not a secondary capture
    ds.PatientName = name
    ds.PatientID = mrn
    ds.StudyDate = ds.SeriesDate = date
    ds.PatientBirthDate = "19470102"
    ds.OtherPatientNames = name
    ds.Manufacturer = f"{name.split('^')[0]} Imaging"  # a kept structural attribute naming the patient
    family, given = name.split("^")
    ds.ImageComments = f"Seen by Dr. Who; patient {given} {family} ({mrn}) on {date[6:8]}/{date[4:6]}/{date[:4]}"
    block = ds.private_block(0x0011, "ACME PHI", create=True)
    inner = Dataset()
    inner.private_block(0x0011, "ACME PHI", create=True).add_new(0x11, "LO", mrn)
    block.add_new(0x10, "SQ", Sequence([inner]))
    block.add_new(0x12, "LO", f"{given} {family}")
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
