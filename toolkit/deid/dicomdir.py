"""A fresh DICOMDIR for OUT, built only from the de-identified files segkit wrote there.

An input DICOMDIR is quarantined (its directory records name patients); when the input held
one, OUT gets a new DICOMDIR so that it is again a DICOM File-set.  Its directory records are
made by pydicom's :class:`~pydicom.fileset.FileSet` record builders from the *output* headers,
never from the input's records, and its bytes are searched with the run's dictionary of input
identifiers before it is written (temporary name, then rename).  Same outputs and key → same
bytes: the File-set UID is keyed, the File-set ID fixed, the records ordered by patient, study
date, series number and instance number (then path).

File IDs: segkit's layout (``<pseudonym>/<study>/<modality>-<series>/<instance>.dcm``) does not
fit PS3.10's File ID rule (at most 8 components of at most 8 characters from A–Z 0–9 _), and
pydicom's ``FileSet.write`` would move every file into its own ``PTxxxxxx/STxxxxxx/…`` layout.
So the files stay where they are and each record's Referenced File ID holds segkit's own path
components: pydicom (and readers that take the path as it is) resolve them; strict PS3.10 media
readers may not.  ``FileSet.add`` is not used: it scans every instance already added (quadratic:
53 s for 3000 files) and copies each dataset into a staging folder; the same record builder
(``FileSet._recordify``) and encoder (``FileSet._write_dicomdir``) are called directly.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

__all__ = ["DICOMDIR_NAME", "DICOMDIR_SOP_NAME", "FILESET_ID", "INPUT_REASON", "DicomdirResult", "build_dicomdir",
           "rebuild_dicomdir", "update_dicomdir"]

DICOMDIR_NAME = "DICOMDIR"
#: the audit's ``sop_class`` of a quarantined input DICOMDIR (how a run, resumed or not, knows it had one)
DICOMDIR_SOP_NAME = "Media Storage Directory Storage"
_WHY = "DICOMDIR: its directory records name patients"
#: the quarantine reason of an input DICOMDIR (its audit record then says what became of OUT's new one)
INPUT_REASON = f"{_WHY}; OUT gets a new one built from the de-identified files"
FILESET_ID = "SEGKIT"
#: placeholders for Type 1 directory-record keys a de-identified file lacks (the profile empties Study ID)
_PLACEHOLDER = {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "IS": "0", "DS": "0",
                "US": 0, "UL": 0, "SS": 0, "SL": 0}
_TEXT_VRS = {"SH", "LO", "CS", "PN", "ST", "LT", "UT", "UC"}
_STUDY_TAGS = {0x00080020, 0x00080030, 0x00200010, 0x0020000D}  # study date/time/ID/UID: one per study folder
_MISSING_TAG = re.compile(r"\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)")


@dataclass
class DicomdirResult:
    """What became of OUT's DICOMDIR (no PHI: counts and tag paths only)."""

    records: int = 0
    no_record: int = 0  # outputs pydicom can make no directory record for
    duplicates: int = 0  # outputs whose SOP Instance UID an indexed output already has
    written: bool = False
    leaks: list[str] = field(default_factory=list)

    def note(self) -> str:
        """One line for the audit and the summary."""
        if self.leaks:
            more = f" and {len(self.leaks) - 5} more" if len(self.leaks) > 5 else ""
            return (f"OUT/{DICOMDIR_NAME} not written: an identifier of the input survived at "
                    f"{', '.join(self.leaks[:5])}{more}")
        left = ""
        if self.no_record:
            left += f", {self.no_record} output(s) left out: no directory record possible"
        if self.duplicates:
            left += f", {self.duplicates} output(s) left out: SOP Instance UID already indexed"
        return (f"OUT/{DICOMDIR_NAME} rebuilt from the de-identified files ({self.records} records{left}; "
                "file IDs are segkit's paths, not PS3.10 8-character IDs)")


def _pydicom_fileset() -> Any:
    import pydicom.fileset as fileset

    for name in ("_recordify", "_write_dicomdir", "_create_dicomdir"):
        if not hasattr(fileset.FileSet, name):  # pragma: no cover - guards a pydicom upgrade
            raise RuntimeError(f"pydicom.fileset.FileSet has no {name}: the DICOMDIR builder needs "
                               "pydicom 3's FileSet")
    return fileset


def _invent(ds: Any, tag: int, rel: str, kr: Any) -> bool:
    """Put a placeholder for a missing Type 1 key into *ds* (the record's view, never the file)."""
    from pydicom.datadict import dictionary_VR
    from pydicom.dataelem import DataElement

    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return False
    parts = rel.split("/")
    basis = "/".join(parts[:1] if tag >> 16 == 0x0010 else parts[:2] if tag in _STUDY_TAGS else parts[:-1])
    if tag == 0x00100020:
        value: Any = parts[0]  # Patient ID: the pseudonym folder the file is in
    elif vr in _PLACEHOLDER:
        value = _PLACEHOLDER[vr]
    elif vr == "UI":
        value = kr.uid(f"segkit-dicomdir\x00{tag:08X}\x00{basis}")
    elif vr in _TEXT_VRS:
        value = kr.dummy("dicomdir", f"{tag:08X}\x00{basis}", 10)
    else:
        return False
    if tag in ds and ds[tag].value == value:
        return False  # already invented and still refused: give up on this file
    ds[tag] = DataElement(tag, vr, value)
    return True


def _records(fs: Any, ds: Any, rel: str, kr: Any) -> list[Any]:
    """pydicom's directory records for one output (highest level first)."""
    for _ in range(12):
        try:
            return list(fs._recordify(ds))  # noqa: SLF001 - FileSet.add's record builder, without its staging
        except ValueError as exc:
            m = _MISSING_TAG.search(str(exc))
            if m is None or not _invent(ds, int(m[1] + m[2], 16), rel, kr):
                raise
    raise ValueError("too many missing Type 1 attributes")


def _order(ds: Any, rel: str) -> tuple[Any, ...]:
    """Patient, study (by date), series (by number), instance (by number): the order records are listed in."""
    def number(keyword: str) -> int:
        try:
            return int(str(ds.get(keyword, "") or "").strip())
        except ValueError:
            return 2**63

    parts = rel.split("/")
    return (parts[0], str(ds.get("StudyDate", "") or ""), str(ds.get("StudyTime", "") or ""), "/".join(parts[:2]),
            number("SeriesNumber"), "/".join(parts[:-1]), number("InstanceNumber"), rel)


def build_dicomdir(out: Path, outputs: Iterable[str], kr: Any) -> tuple[bytes, DicomdirResult]:
    """Encode a DICOMDIR for the files *outputs* (paths relative to *out*); the result counts its records.

    Only the outputs' headers are read; a file for which pydicom can make no directory record,
    whose path is not ASCII, or whose SOP Instance UID an earlier file already has, is left out.
    """
    import pydicom
    from pydicom import config
    from pydicom.dataelem import DataElement
    from pydicom.filebase import DicomFileLike

    fileset = _pydicom_fileset()
    fs = fileset.FileSet()
    entries: list[tuple[tuple[Any, ...], list[Any]]] = []
    result = DicomdirResult()
    rels = sorted(set(outputs))
    for rel in rels:
        try:
            rel.encode("ascii")
            ds = pydicom.dcmread(out / rel, stop_before_pixels=True)
            if not ds.get("StudyInstanceUID"):  # else the STUDY record has no key
                _invent(ds, 0x0020000D, rel, kr)
            recs = _records(fs, ds, rel, kr)
            recs[-1]["ReferencedFileID"] = DataElement(0x00041500, "CS", rel.split("/"),
                                                       validation_mode=config.IGNORE)
            nodes = [fileset.RecordNode(rec) for rec in recs]
        except (ValueError, KeyError, TypeError, AttributeError, OSError, UnicodeError):
            result.no_record += 1
            continue
        entries.append((_order(ds, rel), nodes))
    entries.sort(key=lambda e: e[0])
    index: dict[tuple[int, str], Any] = {}
    seen: set[str] = set()
    for _, nodes in entries:
        leaf = nodes[-1]
        if leaf.key in seen:
            result.duplicates += 1
            continue
        seen.add(leaf.key)
        parent = fs._tree  # noqa: SLF001 - linked by key here: RecordNode.add scans siblings (quadratic)
        for node in nodes[:-1]:
            found = index.get((id(parent), node.key))
            if found is None:
                node.parent = parent
                found = index[(id(parent), node.key)] = node
            parent = found
        leaf.parent = parent
    fs.ID = FILESET_ID
    fs.UID = kr.uid("segkit-fileset\x00" + hashlib.sha256("\n".join(rels).encode()).hexdigest())
    from segkit.deid.serialise import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION

    dicomdir = fs._create_dicomdir()  # noqa: SLF001
    dicomdir.file_meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    dicomdir.file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    fs._ds = dicomdir  # noqa: SLF001 - so the encoder uses segkit's File Meta, not pydicom's version
    buf = io.BytesIO()
    fs._write_dicomdir(DicomFileLike(buf))  # noqa: SLF001 - FileSet.write's encoder, without moving files
    result.records = len(seen)
    return buf.getvalue(), result


@dataclass(frozen=True)
class _RunOnly:
    """The run dictionary as a verifier (what :func:`segkit.deid.verify.locate_leaks` needs)."""

    run: Any
    retained: frozenset[bytes] = frozenset()

    def leaks(self, data: bytes | memoryview) -> bool:
        return bool(self.run.leaks(data, self.retained))


def _structural_tokens(data: bytes, keep_text: frozenset[int]) -> frozenset[bytes]:
    """The words of the kept structural text the records carry (Code Meaning of an SR record …)."""
    import pydicom

    from segkit.deid.rundict import retained_tokens

    ds = pydicom.dcmread(io.BytesIO(data))
    return retained_tokens(str(e.value) for e in ds.iterall() if e.tag in keep_text and e.value)


def rebuild_dicomdir(out: Path, outputs: Iterable[str], kr: Any, run_dict: Any = None,
                     keep_text: frozenset[int] = frozenset()) -> DicomdirResult:
    """Build OUT's DICOMDIR, search its bytes with *run_dict* (if given), write it atomically.

    As for every output, a hit in a number or code (IS, CS …) is a coincidence, and so is a name
    made only of words that kept structural text (*keep_text*: the profile's) carries; any other
    hit means the DICOMDIR is not written (and a previous one is removed).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's notes on the long, lower-case File ID components
        data, result = build_dicomdir(out, outputs, kr)
        if run_dict is not None and run_dict.leaks(data):
            from segkit.deid.verify import CODED_VRS, locate_leaks

            verifier: Any = _RunOnly(run_dict, _structural_tokens(data, keep_text))
            if verifier.leaks(data):
                result.leaks = [p for p, vr, _ in locate_leaks(data, verifier) if vr not in CODED_VRS]
    dst = out / DICOMDIR_NAME
    if result.leaks:
        dst.unlink(missing_ok=True)
        return result
    if not (dst.is_file() and dst.read_bytes() == data):
        tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")  # the run's stale-temp sweep knows this name
        tmp.write_bytes(data)
        os.replace(tmp, dst)
    result.written = True
    return result


def update_dicomdir(out: Path, records: dict[str, dict[str, Any]], kr: Any, run_dict: Any,
                    inputs: list[str] | None, workers: int, *, keep_uids: bool = False,
                    keep_text: frozenset[int] = frozenset()) -> DicomdirResult | None:
    """OUT's DICOMDIR at the end of a run: rebuilt from the written files if the input held one.

    *records*: the run's audit records by input id (those of input DICOMDIRs get the result as
    their reason); *inputs*: the input paths when verifying, else ``None``; *keep_uids*,
    *keep_text*: the profile's Retain UIDs option and kept structural text.  Returns ``None``
    (and removes a DICOMDIR an earlier run left in OUT) when the input held no DICOMDIR.
    """
    had = [k for k, rec in records.items() if rec.get("sop_class") == DICOMDIR_SOP_NAME]
    if not had:
        (out / DICOMDIR_NAME).unlink(missing_ok=True)
        return None
    if inputs is not None and run_dict is None:  # a resumed run with nothing left to do verifies it too
        from segkit.deid.rundict import build_run_dictionary

        run_dict = build_run_dictionary(inputs, workers, keep_uids=keep_uids)
    written = [r["output"] for r in records.values() if r.get("status") == "written"]
    result = rebuild_dicomdir(out, written, kr, run_dict if inputs is not None else None, keep_text)
    for k in had:
        records[k]["reason"] = f"{_WHY}; {result.note()}"
    return result
