"""The per-file pass of ``segkit anonymize``: one input file in, one output file and one audit record out.

:class:`FilePass` reads the file (in memory up to 64 MiB), classifies it (DICOMDIR, SOP class,
pixel data present and whole, burned-in text risk and its cleaning), walks the dataset once
applying the profile, adds the de-identification marks, serialises it to bytes in memory
(:mod:`segkit.deid.serialise`), searches those bytes (with verify) for the identifiers gathered
from the input and the run's dictionary (the pixel data value is not searched), then writes them
to a temporary name and renames it; a file not written is copied to the quarantine folder (when
there is one).  It returns one :class:`FileOutcome`, the file's audit record.  Every replacement
is a pure function of the site key and the original value, so files can be processed in any order
by any number of worker processes (local or on Dask) and the output bytes are the same;
:class:`RunConfig` is what such a process needs to build its own :class:`FilePass`.
"""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segkit.deid.dicomdir import DICOMDIR_SOP_NAME, INPUT_REASON as _DICOMDIR_REASON
from segkit.deid.peek import REQUIRED, value as peek
from segkit.deid.serialise import serialise

__all__ = ["FilePass", "RunConfig", "FileOutcome"]

_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_DEFLATED = "1.2.840.10008.1.2.1.99"
_READ_WHOLE = 64 << 20  # files up to this size are read in one go, larger ones through pydicom's file reads


@dataclass
class FileOutcome:
    """The audit record of one input file (no PHI)."""

    input: str
    status: str
    output: str | None = None
    sop_class: str | None = None
    reason: str | None = None
    actions: dict[str, int] = field(default_factory=dict)
    leaks: list[str] = field(default_factory=list)
    linkage: tuple[str, str, str, int | None] | None = None  # PHI: never written to the audit

    def audit(self) -> dict[str, Any]:
        # the fields but linkage, left out when empty (a plain read: dataclasses.asdict deep-copies every value)
        rec = {k: v for k in _AUDIT_FIELDS if (v := getattr(self, k)) not in (None, [], {})}
        rec["status"] = self.status
        return rec


_AUDIT_FIELDS = ("input", "status", "output", "sop_class", "reason", "actions", "leaks")


@dataclass(frozen=True)
class RunConfig:
    """The run's settings (site key included), all a worker process needs to build its :class:`FilePass`."""

    key: bytes
    options: frozenset[str] | None
    profile_file: str | None
    pseudonym_pattern: str
    verify: bool
    quarantine: str | None
    out: str
    want_linkage: bool
    deid_recipe: str | None
    pixel_policy: str = "clean"


class FilePass:
    """Per-process state: the resolved profile and keyring (built once, never shared)."""

    def __init__(self, cfg: RunConfig, run_dict: Any = None) -> None:
        from segkit.deid.actions import Deidentifier
        from segkit.deid.profile import load_profile
        from segkit.deid.pseudonym import Keyring

        self.cfg = cfg
        self.run_dict = run_dict
        self.profile = load_profile(cfg.options, cfg.profile_file)
        self.keyring = Keyring(cfg.key, cfg.pseudonym_pattern)
        self.deid = Deidentifier(self.profile, self.keyring)
        self.out = Path(cfg.out)
        self.recipe = None
        self._marks: list[Any] | None = None
        # the marks' bytes per (endianness, VR encoding, character set): the same in every file
        self._marks_encoded: dict[int, tuple[Any, dict[tuple[bool, bool, str], bytes]]] = {}
        self._dirs: set[Path] = set()  # output folders this process made (or found) already
        from segkit.deid.pixels import PixelCleaner

        self.pixels = PixelCleaner(cfg.pixel_policy)
        if cfg.deid_recipe:
            from deid.config import DeidRecipe

            self.recipe = DeidRecipe(cfg.deid_recipe, base=False)

    # ---------------------------------------------------------------- one file
    def process(self, src: str, rel: str) -> FileOutcome:
        import warnings

        input_id = self.keyring.short("input", rel, 16)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom's warnings about odd inputs would name values
                outcome = self._process(Path(src), input_id)
        except Exception as exc:  # noqa: BLE001 - a bad file must never stop the batch or leak
            outcome = FileOutcome(input_id, "quarantined", reason=f"could not be processed ({type(exc).__name__})")
        if outcome.status != "written":
            self._quarantine(Path(src), rel, outcome)
        return outcome

    def _quarantine(self, src: Path, rel: str, outcome: FileOutcome) -> None:
        if not self.cfg.quarantine:
            return
        dst = Path(self.cfg.quarantine) / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)

    def _read(self, src: Path, input_id: str) -> tuple[Any, FileOutcome | None]:
        import pydicom
        from pydicom.errors import InvalidDicomError

        def source() -> Any:
            """The file's bytes in memory (one read; pydicom's many small reads and tells then cost
            less), or its path when it is large."""
            try:
                if src.stat().st_size <= _READ_WHOLE:
                    return io.BytesIO(src.read_bytes())
            except OSError:
                pass
            return src

        def named(ds: Any) -> Any:
            ds.filename = str(src)  # as when read from the path
            return ds

        try:
            ds = named(pydicom.dcmread(source()))
        except InvalidDicomError:
            try:
                ds = named(pydicom.dcmread(source(), force=True))
            except Exception:  # noqa: BLE001
                return None, FileOutcome(input_id, "quarantined", reason="not a DICOM file")
            if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
                return None, FileOutcome(input_id, "quarantined", reason="not a DICOM file")
        except Exception:  # noqa: BLE001 - truncated or corrupt
            return None, FileOutcome(input_id, "quarantined", reason="truncated or unreadable DICOM")
        return ds, None

    def _process(self, src: Path, input_id: str) -> FileOutcome:
        ds, bad = self._read(src, input_id)
        if bad is not None:
            return bad
        meta = getattr(ds, "file_meta", None)
        if meta is not None and str(peek(meta, 0x00020002, "")) == _DICOMDIR_CLASS or \
                "DirectoryRecordSequence" in ds:
            return FileOutcome(input_id, "quarantined", sop_class=DICOMDIR_SOP_NAME, reason=_DICOMDIR_REASON)
        sop = str(peek(ds, 0x00080016, "") or "").strip("\x00 ")
        if not sop or not str(peek(ds, 0x00080018, "") or "").strip("\x00 "):
            return FileOutcome(input_id, "quarantined", reason="no SOP Class UID or SOP Instance UID")
        sop_name = _sop_name(sop)
        from segkit.deid.pixels import burned_in_risk, check_pixels

        problem = check_pixels(ds, sop_name)
        if problem:
            return FileOutcome(input_id, "quarantined", sop_class=sop_name, reason=problem)
        risk, consult = burned_in_risk(ds, sop)
        pixel_counts = None
        if risk or consult:
            verdict = self.pixels.clean(ds, risk, consult)
            if verdict.quarantine:
                return FileOutcome(input_id, "quarantined", sop_class=sop_name, reason=verdict.quarantine)
            pixel_counts = verdict.counts
        return self._deidentify(ds, sop, sop_name, input_id, pixel_counts)

    def _deidentify(self, ds: Any, sop: str, sop_name: str, input_id: str, pixel_counts: Any = None
                    ) -> FileOutcome:
        from segkit.deid.actions import WalkResult

        kr = self.keyring
        patient_key = _patient_key(ds)
        study_date = str(peek(ds, 0x00080020, "") or "")
        result = WalkResult()
        meta = getattr(ds, "file_meta", None)
        # the file meta's SOP Instance UID is searched for like the walk's UIDs; with the Retain UIDs
        # option it is kept on purpose (as the walk keeps the dataset's UIDs), so it is no identifier
        if meta is not None and "retain_uids" not in self.profile.options:
            for tag in (0x00020003,):  # MediaStorageSOPInstanceUID
                v = peek(meta, tag)
                if v:
                    result.collector.add_uid(str(v))
        self.deid.walk(ds, patient_key, result)
        self.deid.finish_cleaning(result)
        if self.recipe is not None:
            self._apply_recipe(ds)
        ts = self._mark(ds, result)
        header, pixels, tail = serialise(ds, ts, self._marks_encoded)
        if pixel_counts:
            result.counts.update({k: v for k, v in pixel_counts.items() if v})
        counts = dict(sorted(result.counts.items()))
        if self.cfg.verify:
            from segkit.deid.verify import CODED_VRS, locate_leaks

            verifier: Any = result.collector.verifier(self.deid.charset(ds))
            if self.run_dict is not None:
                from segkit.deid.rundict import retained_tokens

                verifier = _Either(verifier, self.run_dict, retained_tokens(result.collector.structural))
            if verifier.leaks(header) or (tail and verifier.leaks(tail)):
                found = locate_leaks(header + tail, verifier)
                paths = [path for path, vr, _ in found if vr not in CODED_VRS]
                if paths:
                    return FileOutcome(input_id, "leak", sop_class=sop_name, actions=counts, leaks=paths,
                                       reason="an identifier of the input survived; file not written")
        rel = _output_rel(ds, kr, input_id, patient_key)
        dst = self.out / rel
        if dst.parent not in self._dirs:
            dst.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(dst.parent)
        tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
        _write_parts(tmp, (header, pixels, tail))
        os.replace(tmp, dst)
        linkage = None
        if self.cfg.want_linkage:
            linkage = (patient_key, kr.patient(patient_key), study_date.strip(), result.shift)
        return FileOutcome(input_id, "written", output=rel, sop_class=sop_name, actions=counts, linkage=linkage)

    def _apply_recipe(self, ds: Any) -> None:
        from deid.dicom.parser import DicomParser

        parser = DicomParser(ds, recipe=self.recipe)
        parser.parse(strip_sequences=False, remove_private=False)

    def _mark(self, ds: Any, result: Any) -> str:
        """Add the de-identification attributes (PS3.15 E.1.1); return the output transfer syntax."""
        if self._marks is None:
            self._marks = _mark_elements(self.profile)
            self._marks_encoded = {int(elem.tag): (elem, {}) for elem in self._marks}
        d = ds._dict  # noqa: SLF001
        for elem in self._marks:
            d[elem.tag] = elem  # shared, never mutated
        old = getattr(ds, "file_meta", None)
        ts = str(old.get("TransferSyntaxUID", "")) if old is not None else ""
        if ts == _DEFLATED:
            return "1.2.840.10008.1.2.1"  # written inflated: the verifier must see the bytes
        return ts or "1.2.840.10008.1.2"


@dataclass(frozen=True)
class _Either:
    """The file's own verifier and the run's dictionary, searched together."""

    own: Any
    run: Any
    retained: frozenset[bytes] = frozenset()

    def leaks(self, data: bytes | memoryview) -> bool:
        from segkit.deid.verify import Scan

        scan = Scan(data)  # lower-cased and tokenised once for both searches
        return self.own.leaks(scan) or self.run.leaks(scan, self.retained)


def _write_parts(path: Path, parts: tuple[bytes, ...]) -> None:
    """Write *parts* one after the other to a new file at *path* (as ``open(path, "wb")``): one
    ``writev`` call in the common case, no buffered file object."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        views = [memoryview(p) for p in parts if p]
        while views:
            written = os.writev(fd, views)
            while views and written >= len(views[0]):  # a short write: go on from where it stopped
                written -= len(views[0])
                views.pop(0)
            if views and written:
                views[0] = views[0][written:]
    finally:
        os.close(fd)


def _mark_elements(profile: Any) -> list[Any]:
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    codes = []
    for value, meaning in profile.method_codes():
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        codes.append(item)
    opts = profile.options
    temporal = ("UNMODIFIED" if "retain_full_dates" in opts else "MODIFIED" if "retain_modified_dates" in opts
                else "REMOVED")
    return [DataElement(0x00120062, "CS", "YES"),
            DataElement(0x00120063, "LO", profile.method_description()),
            DataElement(0x00120064, "SQ", Sequence(codes)),
            DataElement(0x00280303, "CS", temporal)]


def _sop_name(sop: str) -> str:
    from pydicom.uid import UID

    name = UID(sop).name
    return name if name != sop else "private or unknown SOP class"


def _patient_key(ds: Any) -> str:
    """The identity the pseudonym and date shift derive from: PatientID, else name, else study."""
    for kw, tag in (("PatientID", 0x00100020), ("PatientName", 0x00100010), ("StudyInstanceUID", 0x0020000D)):
        v = str(peek(ds, tag, "") or "").strip("\x00 ")
        if v:
            return f"{kw}:{v}" if kw != "PatientID" else v
    return ""


def _safe_name(text: str, fallback: str) -> str:
    cleaned = "".join(c for c in text if c.isalnum() or c in "-_.")
    return cleaned[:40] or fallback


def _output_rel(ds: Any, kr: Any, input_id: str, patient_key: str) -> str:
    """``<patient pseudonym>/<study>/<modality>-<series>/<instance>.dcm`` (no PHI: keyed hashes).

    Names derive from the keyed pseudonym and hashes, never from what the (possibly
    user-weakened) profile left in the header.
    """
    patient = _safe_name(kr.patient(patient_key), "unknown")
    study = kr.short("dir", kr.uid(str(peek(ds, 0x0020000D, "") or "")), 10)
    series = kr.short("dir", kr.uid(str(peek(ds, 0x0020000E, "") or "")), 10)
    modality = _safe_name(str(peek(ds, 0x00080060, "") or "").upper(), "OT")
    sop = kr.short("dir", str(peek(ds, 0x00080018, REQUIRED)), 12)
    return f"{patient}/{study}/{modality}-{series}/{sop}-{input_id[:6]}.dcm"
