"""Builders shared by the de-identification tests (not a test module)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from segkit.deid import AUDIT_NAME


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


def dicom_files(root: Path) -> list[Path]:
    """The ``*.dcm`` files under *root*, sorted."""
    return sorted(p for p in root.rglob("*.dcm") if p.is_file())


def audit_records(out: Path) -> list[dict]:
    """The records of OUT's audit (``segkit-audit.jsonl``), in file order."""
    return [json.loads(line) for line in (out / AUDIT_NAME).read_text().splitlines()]


def input_identifiers(ds: Dataset) -> set[str]:
    """The identifying strings of an input, gathered independently of segkit's own collector."""
    found: set[str] = set()
    public = {str(e.value).strip().lower() for e in ds.iterall() if not e.tag.is_private and e.VR != "SQ"}

    def visit(d: Dataset) -> None:
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
            elif elem.VR == "PN" and elem.value:
                for comp in str(elem.value).replace("=", "^").split("^"):
                    if len(comp.strip()) >= 4:
                        found.add(comp.strip())
            elif elem.VR == "UI" and elem.value and elem.keyword not in (
                    "SOPClassUID", "ReferencedSOPClassUID", "TransferSyntaxUID", "MediaStorageSOPClassUID",
                    "ImplementationClassUID"):
                values = elem.value if isinstance(elem.value, (list, pydicom.multival.MultiValue)) else [elem.value]
                found.update(str(v) for v in values if len(str(v)) > 20 and str(v) not in pydicom.uid.UID_dictionary)
            elif elem.keyword in ("PatientID", "AccessionNumber", "PatientBirthDate", "InstitutionName",
                                  "PatientAddress", "PatientTelephoneNumbers", "StudyDate") and elem.value:
                if len(str(elem.value).strip()) >= 4:
                    found.add(str(elem.value).strip())
            elif elem.tag.is_private and elem.VR in ("LO", "SH", "LT", "ST", "UT", "PN") and elem.value:
                # a private copy of a public value the profile keeps (e.g. the model name) is no identifier
                if len(str(elem.value).strip()) >= 6 and str(elem.value).strip().lower() not in public:
                    found.add(str(elem.value).strip())

    visit(ds)
    # words of the values the profile keeps verbatim (an institution called "Here" and a
    # Manufacturer "Manufacturer name here") are not identifiers of the patient
    kept = " ".join(str(ds.get(k, "")).lower() for k in ("Manufacturer", "ManufacturerModelName", "SoftwareVersions"))
    return {f for f in found if sum(c.isalnum() for c in f) >= 4
            and not re.search(rf"(?<![a-z0-9_]){re.escape(f.lower())}(?![a-z0-9_])", kept)}


def bundled_root() -> Path:
    """The folder of the sample files shipped inside pydicom."""
    import pydicom.data

    return Path(pydicom.data.__file__).parent / "test_files"
