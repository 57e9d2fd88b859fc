"""The run dictionary's header pass: the raw scan finds exactly what pydicom's reading finds."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from segkit.deid.rundict import _read_identifiers, _scan_identifiers, gather_identifiers
from tests.helpers.deid_builders import phi_mr
from tests.helpers.deid_foreign import PATIENTS, gsps, mr_patient, secondary_capture, structured_report


def _variants(root: Path) -> dict[str, tuple[Path, bool]]:
    """Files of every shape the scan meets: ``name -> (path, whether the raw scan must take it)``."""
    out: dict[str, tuple[Path, bool]] = {}
    base = phi_mr(root / "phi.dcm")
    out["phi_mr"] = (base, True)
    mr, rt, seg = mr_patient(root / "mr", PATIENTS[0], slices=2, size=16)
    out["mr"], out["rtstruct"], out["seg"] = (mr[0], True), (rt, True), (seg, True)
    out["sc"] = (secondary_capture(root / "sc.dcm", PATIENTS[1], text=False), True)
    out["sr"] = (structured_report(root / "sr.dcm", PATIENTS[2]), True)
    out["gsps"] = (gsps(root / "pr.dcm", PATIENTS[0], str(pydicom.dcmread(mr[0]).SOPInstanceUID)), True)

    def variant(name: str, change, fast: bool, **save) -> None:  # noqa: ANN001
        ds = pydicom.dcmread(base)
        change(ds)
        path = root / f"{name}.dcm"
        if save:
            pydicom.dcmwrite(path, ds, **save)
        else:
            ds.save_as(path)
        out[name] = (path, fast)

    def nested(ds: Dataset, *, defined: bool) -> None:
        item = Dataset()
        item.PatientName = "Zwiebelmann^Kunigunde"
        item.PatientID = "ZW-88812345"
        item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.10.1001.777"
        inner = Dataset()
        inner.RequestingPhysician = "Knoblauch^Eberhard"
        item.RequestAttributesSequence = Sequence([inner])
        ds.OtherPatientIDsSequence = Sequence([item])
        for elem in (ds["OtherPatientIDsSequence"], item["RequestAttributesSequence"]):
            elem.is_undefined_length = not defined

    variant("undefined_sequences", lambda ds: nested(ds, defined=False), True)
    variant("defined_sequences", lambda ds: nested(ds, defined=True), True)

    def utf8(ds: Dataset) -> None:
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientName = "Müller-Lüdenscheidt^Jürgen=山田^太郎"
        ds.OtherPatientIDs = ["ÄBC-12345", "XYZ-99999"]

    variant("utf8", utf8, True)

    def latin1(ds: Dataset) -> None:
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName = "Çelik^Gülşen".replace("ş", "s")
        ds.PatientID = "ÉÀ-4471"

    variant("latin1", latin1, True)

    def iso2022(ds: Dataset) -> None:
        ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
        ds.PatientName = "Yamada^Tarou=山田^太郎"

    variant("iso2022", iso2022, False)

    def item_charset(ds: Dataset) -> None:
        nested(ds, defined=False)
        ds.OtherPatientIDsSequence[0].SpecificCharacterSet = "ISO_IR 192"

    variant("item_charset", item_charset, False)
    def syntax(uid: str):  # noqa: ANN202
        def change(ds: Dataset) -> None:
            ds.file_meta.TransferSyntaxUID = uid
        return change

    variant("implicit", syntax(ImplicitVRLittleEndian), False)
    variant("big_endian", syntax(ExplicitVRBigEndian), False, implicit_vr=False, little_endian=False,
            force_encoding=True)

    def stored_as_un(name: str, tag: int, vr: str, value: bytes, fast: bool) -> None:
        """A public element stored with VR UN (as a converter that lost its VR writes it)."""
        variant(name, lambda ds: ds.add_new(tag, vr, value.decode()), fast)
        path = out[name][0]
        head = tag.to_bytes(4, "little")[2:] + tag.to_bytes(4, "little")[:2]  # group, element (little endian)
        short = head + vr.encode() + len(value).to_bytes(2, "little") + value
        data = path.read_bytes()
        assert data.count(short) == 1
        path.write_bytes(data.replace(short, head + b"UN\0\0" + len(value).to_bytes(4, "little") + value))

    stored_as_un("public_un", 0x00104000, "LT", b"Comments naming nobody", True)  # nothing to gather in it
    stored_as_un("id_as_un", 0x00101000, "LO", b"OTH-123456", False)  # an ID: pydicom decodes it
    no_meta = root / "no_meta.dcm"
    ds = pydicom.dcmread(base)
    del ds.file_meta
    ds.save_as(no_meta, enforce_file_format=False, implicit_vr=False, little_endian=True)
    raw = no_meta.read_bytes()
    if raw[128:132] == b"DICM":  # pydicom wrote a preamble after all: strip it to get a bare dataset
        raw = raw[132:]
    no_meta.write_bytes(raw)
    out["no_meta"] = (no_meta, False)
    truncated = root / "truncated.dcm"
    data = base.read_bytes()
    cut = data.index(b"\x10\x00\x10\x00PN") + 11  # inside PatientName's value
    truncated.write_bytes(data[:cut])
    out["truncated"] = (truncated, False)
    (root / "text.txt").write_text("not DICOM at all")
    out["not_dicom"] = (root / "text.txt", False)
    return out


def test_raw_scan_finds_what_pydicom_finds(tmp_path: Path) -> None:
    for name, (path, fast) in _variants(tmp_path).items():
        scanned = _scan_identifiers(str(path))
        assert (scanned is not None) == fast, f"{name}: the raw scan {'missed' if fast else 'took'} it"
        read = _read_identifiers(str(path))
        assert gather_identifiers(str(path)) == (scanned if fast else read), f"{name}: gather disagrees"
        if fast:
            assert scanned == read, f"{name}: the raw scan and pydicom disagree"  # values not printed: PHI


# the files bundled with pydicom only: get_testdata_files() would also download pydicom-data's at collection
_BUNDLED = sorted(str(p) for p in (Path(pydicom.data.__file__).parent / "test_files").glob("*.dcm"))


@pytest.mark.parametrize("path", _BUNDLED, ids=lambda p: Path(p).name)
def test_raw_scan_on_pydicom_test_files(path: str) -> None:
    """pydicom's own odd files: where the scan takes one, it finds the same; otherwise pydicom reads it."""
    scanned = _scan_identifiers(path)
    if scanned is not None:
        assert scanned == _read_identifiers(path)


def test_raw_scan_reads_past_a_large_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A header longer than the first read is left to pydicom (never half-scanned)."""
    import segkit.deid.rundict as rundict

    path = phi_mr(tmp_path / "a.dcm")
    monkeypatch.setattr(rundict, "_SCAN_HEAD", 600)  # inside the header
    assert rundict._scan_identifiers(str(path)) is None
    assert rundict.gather_identifiers(str(path)) == _read_identifiers(str(path))
    monkeypatch.setattr(rundict, "_SCAN_HEAD", path.stat().st_size)  # exactly the file: the scan is complete
    assert rundict._scan_identifiers(str(path)) == _read_identifiers(str(path))


def test_ids_of_the_builders_are_found(tmp_path: Path) -> None:
    """The scan is not vacuous: the planted name, ID and UIDs are in the sets."""
    path = phi_mr(tmp_path / "a.dcm", name="Quixote^Alonso", mrn="MRN4711042")
    names, ids, uids = _scan_identifiers(str(path))
    assert "Quixote" in names and "Alonso Quixote" in names
    assert "MRN4711042" in ids
    assert str(pydicom.dcmread(path).SOPInstanceUID) in uids


def test_implicit_and_big_endian_constants_are_known() -> None:
    from segkit.deid.rundict import _NOT_EXPLICIT_LE

    assert ImplicitVRLittleEndian in _NOT_EXPLICIT_LE and ExplicitVRBigEndian in _NOT_EXPLICIT_LE
