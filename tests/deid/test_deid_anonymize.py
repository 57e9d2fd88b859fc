"""``anonymize_tree`` on the synthetic cohort and on planted identifiers.

The cohort's outputs (no identifier in any byte, audit, references, geometry, date shifts, the
same bytes whatever the worker count, linkage), verify against weakened profiles, bad inputs and
burned-in text, dciodvfy and ``segkit convert`` on the output.  pydicom's bundled files and
../shared/fixtures are in ``test_deid_real_files.py``.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from tests.helpers.deid_builders import (audit_records as _audit, bundled_root as _bundled_root,
                                         dicom_files as _dicom_files, input_identifiers as _identifiers,
                                         phi_mr as _phi_mr, tree_bytes as _tree_bytes)
from segkit.deid import AUDIT_NAME, Keyring, anonymize_tree
from segkit.deid.profile import DEFAULT_OPTIONS
from segkit.errors import LeakError, UsageError

KEY = b"\x07" * 32


# ------------------------------------------------------------------ synthetic cohort
@pytest.fixture(scope="module")
def anonymized_cohort(synth_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("anon") / "out"
    anonymize_tree(synth_cohort, out, KEY, workers=1)
    return out


def test_synthetic_cohort_leaves_no_identifier_in_any_output_byte(synth_cohort, anonymized_cohort):
    identifiers: set[str] = set()
    for f in _dicom_files(synth_cohort):
        identifiers |= _identifiers(pydicom.dcmread(f))
    assert any("^" not in i and i.startswith("MRN") for i in identifiers)  # the cohort does carry PHI
    outputs = _dicom_files(anonymized_cohort)
    assert len(outputs) == len(_dicom_files(synth_cohort))
    for f in outputs:
        data = f.read_bytes().lower()
        survivors = [i for i in identifiers if i.lower().encode() in data]
        assert not survivors, f"{f.name}: {len(survivors)} identifier(s) survived"


def test_every_dicom_input_is_written_and_other_files_are_quarantined(synth_cohort, anonymized_cohort):
    records = _audit(anonymized_cohort)
    written = [r for r in records if r["status"] == "written"]
    assert len(written) == len(_dicom_files(synth_cohort))
    others = [r for r in records if r["status"] != "written"]
    assert others and all(r["reason"] == "not a DICOM file" for r in others)  # truth .npy, cohort.json
    assert {r["sop_class"] for r in written} == {"MR Image Storage", "RT Structure Set Storage",
                                                "Segmentation Storage"}


def test_audit_records_follow_their_schema(anonymized_cohort, tmp_path):
    from segkit.schemas import validate

    for rec in _audit(anonymized_cohort):
        validate(rec, "anonymize-audit")
    _phi_mr(tmp_path / "in" / "a.dcm")
    (tmp_path / "weak.yaml").write_text("actions:\n  OtherPatientNames: K\n")
    with pytest.raises(LeakError):
        anonymize_tree(tmp_path / "in", tmp_path / "out", KEY, profile=tmp_path / "weak.yaml")
    for rec in _audit(tmp_path / "out"):
        validate(rec, "anonymize-audit")


def test_output_tree_and_audit_carry_no_identifier(synth_cohort, anonymized_cohort):
    identifiers: set[str] = set()
    for f in _dicom_files(synth_cohort):
        identifiers |= _identifiers(pydicom.dcmread(f))
    audit = (anonymized_cohort / AUDIT_NAME).read_text().lower()
    names = "\n".join(p.relative_to(anonymized_cohort).as_posix() for p in anonymized_cohort.rglob("*")).lower()
    for i in identifiers:
        assert i.lower() not in audit and i.lower() not in names
    first = pydicom.dcmread(_dicom_files(anonymized_cohort)[0])
    top = _dicom_files(anonymized_cohort)[0].relative_to(anonymized_cohort).parts[0]
    assert top == first.PatientID == str(first.PatientName)


def test_uid_references_resolve_to_output_images(anonymized_cohort):
    by_study: dict[str, dict[str, Dataset]] = {}
    others = []
    for f in _dicom_files(anonymized_cohort):
        ds = pydicom.dcmread(f)
        if ds.Modality == "MR":
            by_study.setdefault(ds.StudyInstanceUID, {})[ds.SOPInstanceUID] = ds
        else:
            others.append(ds)
    assert len(others) == 2 * len(by_study)  # one RTSTRUCT and one SEG per patient
    for ds in others:
        images = by_study[ds.StudyInstanceUID]
        frames = {im.FrameOfReferenceUID for im in images.values()}
        assert ds.FrameOfReferenceUID in frames
        series = {im.SeriesInstanceUID for im in images.values()}
        refs: list[str] = []
        if ds.Modality == "RTSTRUCT":
            rfor = ds.ReferencedFrameOfReferenceSequence[0]
            assert rfor.FrameOfReferenceUID in frames
            rs = rfor.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
            assert rs.SeriesInstanceUID in series
            refs += [c.ReferencedSOPInstanceUID for c in rs.ContourImageSequence]
            for roi in ds.ROIContourSequence:
                for contour in roi.ContourSequence:
                    refs += [c.ReferencedSOPInstanceUID for c in contour.ContourImageSequence]
            assert ds.StructureSetROISequence[0].ROIName == "GTV"
        else:
            assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID in series
            refs += [s.ReferencedSOPInstanceUID for s in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence]
            for frame in ds.PerFrameFunctionalGroupsSequence:
                for der in frame.DerivationImageSequence:
                    refs += [s.ReferencedSOPInstanceUID for s in der.SourceImageSequence]
            assert ds.SegmentSequence[0].SegmentLabel == "GTV"
        assert refs and set(refs) <= set(images)


def test_geometry_and_pixels_are_unchanged(synth_cohort, anonymized_cohort):
    kr = Keyring(KEY)
    outputs = {pydicom.dcmread(f).SOPInstanceUID: f for f in _dicom_files(anonymized_cohort)}
    for f in _dicom_files(synth_cohort):
        src = pydicom.dcmread(f)
        out = pydicom.dcmread(outputs[kr.uid(src.SOPInstanceUID)])
        for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns",
                   "SliceThickness", "RescaleSlope", "RescaleIntercept"):
            assert src.get(kw) == out.get(kw), kw
        assert src.get("PixelData") == out.get("PixelData")
        if src.Modality == "RTSTRUCT":
            assert [c.ContourData for r in src.ROIContourSequence for c in r.ContourSequence] == \
                   [c.ContourData for r in out.ROIContourSequence for c in r.ContourSequence]


def test_dates_shift_by_one_offset_per_patient(synth_cohort, anonymized_cohort):
    import datetime as dt

    kr = Keyring(KEY)
    outputs = {pydicom.dcmread(f).SOPInstanceUID: f for f in _dicom_files(anonymized_cohort)}
    shifts: dict[str, set[int]] = {}
    for f in _dicom_files(synth_cohort):
        src = pydicom.dcmread(f)
        out = pydicom.dcmread(outputs[kr.uid(src.SOPInstanceUID)])
        for kw in ("StudyDate", "SeriesDate", "ContentDate", "InstanceCreationDate"):
            if src.get(kw):
                a = dt.datetime.strptime(src.get(kw), "%Y%m%d")
                b = dt.datetime.strptime(out.get(kw), "%Y%m%d")
                shifts.setdefault(src.PatientID, set()).add((b - a).days)
        assert out.StudyTime == src.StudyTime  # a day shift keeps the time of day
        assert out.LongitudinalTemporalInformationModified == "MODIFIED"
        assert out.PatientIdentityRemoved == "YES"
        assert not out.get("PatientBirthDate")
    for patient, s in shifts.items():
        assert s == {kr.shift_days(patient)}
    assert len({next(iter(s)) for s in shifts.values()}) == len(shifts)


def test_same_key_gives_identical_bytes_whatever_the_worker_count(synth_cohort, anonymized_cohort, tmp_path):
    anonymize_tree(synth_cohort, tmp_path / "two", KEY, workers=2)
    assert _tree_bytes(tmp_path / "two") == _tree_bytes(anonymized_cohort)


def test_different_keys_give_different_pseudonyms_and_uids(synth_cohort, anonymized_cohort, tmp_path):
    anonymize_tree(synth_cohort, tmp_path / "other", b"\x08" * 32, workers=1)
    a = {pydicom.dcmread(f).PatientID for f in _dicom_files(anonymized_cohort)}
    b = {pydicom.dcmread(f).PatientID for f in _dicom_files(tmp_path / "other")}
    assert len(a) == len(b) == 6 and not a & b
    ua = {pydicom.dcmread(f).StudyInstanceUID for f in _dicom_files(anonymized_cohort)}
    ub = {pydicom.dcmread(f).StudyInstanceUID for f in _dicom_files(tmp_path / "other")}
    assert not ua & ub


def test_linkage_maps_each_patient_to_its_pseudonym_and_shift(synth_cohort, tmp_path):
    link = tmp_path / "steward" / "linkage.csv"
    link.parent.mkdir()
    anonymize_tree(synth_cohort, tmp_path / "out", KEY, linkage=link, workers=1)
    rows = list(csv.DictReader(link.open()))
    kr = Keyring(KEY)
    ids = {pydicom.dcmread(f).PatientID for f in _dicom_files(synth_cohort)}
    assert {r["patient_id"] for r in rows} == ids
    for r in rows:
        assert r["pseudonym"] == kr.patient(r["patient_id"])
        assert int(r["date_shift_days"]) == kr.shift_days(r["patient_id"])


@pytest.mark.parametrize("where", ["linkage", "quarantine"])
def test_identifying_side_files_inside_out_are_refused(synth_cohort, tmp_path, where):
    out = tmp_path / "out"
    kwargs = {where: out / "inside"}
    with pytest.raises(UsageError, match="must be outside the output"):
        anonymize_tree(synth_cohort, out, KEY, **kwargs)
    assert not out.exists()


def test_output_overlapping_input_is_refused(synth_cohort_copy):
    with pytest.raises(UsageError, match="must not overlap the input"):
        anonymize_tree(synth_cohort_copy, synth_cohort_copy / "clean", KEY)


# ------------------------------------------------------------------ verify
def test_planted_identifiers_are_removed_by_the_default_profile(tmp_path):
    src = tmp_path / "in"
    _phi_mr(src / "a.dcm")
    anonymize_tree(src, tmp_path / "out", KEY, workers=1)
    (out,) = _dicom_files(tmp_path / "out")
    data = out.read_bytes().lower()
    for s in (b"quixote", b"alonso", b"mrn4711042", b"20210315", b"15/03/2021", b"19470102"):
        assert s not in data
    ds = pydicom.dcmread(out)
    assert "OtherPatientNames" not in ds
    assert not any(e.tag.is_private for e in ds)
    assert ds.ImageComments == "Seen by Dr. Who; patient *** (***) on ***"
    assert ds.Manufacturer == "*** Imaging"  # kept because structural, scrubbed all the same


def _uids(path: Path) -> tuple[str, ...]:
    """Every UID of a file (the file meta's Media Storage SOP Instance UID included), sorted."""
    ds = pydicom.dcmread(path)
    found = [str(ds.file_meta.MediaStorageSOPInstanceUID)]
    for elem in ds.iterall():
        if elem.VR == "UI" and elem.value:
            found += [str(v) for v in (elem.value if isinstance(elem.value, MultiValue) else [elem.value])]
    return tuple(sorted(found))


def test_retain_uids_keeps_every_uid_without_a_leak_and_still_removes_names(synth_cohort_copy, tmp_path):
    """With the Retain UIDs option the inputs' UIDs are kept on purpose: verify must not count them as
    identifiers (it did for the file meta's (0002,0003) and quarantined every file), while names are
    still removed, and caught when a profile lets one through."""
    src = synth_cohort_copy
    planted = _dicom_files(src)[0]
    ds = pydicom.dcmread(planted)
    ds.OtherPatientNames = "Quixote^Alonso"
    ds.ImageComments = "Seen with Alonso Quixote"
    ds.save_as(planted)
    options = sorted(DEFAULT_OPTIONS | {"retain_uids"})
    out = tmp_path / "out"
    summary = anonymize_tree(src, out, KEY, options=options, workers=1)
    records = _audit(out)
    assert summary.leaked == 0 and not [r for r in records if r["status"] == "leak" or r.get("leaks")]
    inputs = _dicom_files(src)
    assert sum(r["status"] == "written" for r in records) == len(inputs)
    assert all(r["reason"] == "not a DICOM file" for r in records if r["status"] != "written")
    assert sorted(_uids(f) for f in _dicom_files(out)) == sorted(_uids(f) for f in inputs)
    (written,) = [f for f in _dicom_files(out) if pydicom.dcmread(f).SOPInstanceUID == ds.SOPInstanceUID]
    data = written.read_bytes().lower()
    assert b"quixote" not in data and b"alonso" not in data
    # a name the profile lets through is still caught with the option
    weak = tmp_path / "weak.yaml"
    weak.write_text("options: [retain-uids]\nactions:\n  OtherPatientNames: K\n")
    (tmp_path / "one").mkdir()
    shutil.copy(planted, tmp_path / "one" / "a.dcm")
    with pytest.raises(LeakError):
        anonymize_tree(tmp_path / "one", tmp_path / "weak-out", KEY, profile=weak, workers=1)
    (rec,) = _audit(tmp_path / "weak-out")
    assert rec["status"] == "leak" and "(0010,1001)" in rec["leaks"]


WEAKENINGS = {
    "other patient names kept": ("actions:\n  OtherPatientNames: K\n", "(0010,1001)"),
    "comment kept uncleaned": ("actions:\n  ImageComments: K\n", "(0020,4000)"),
    # not gathered from PatientID itself (kept), but found as the removed private copy of it
    "patient id kept": ("actions:\n  PatientID: K\n", "(0010,0020)"),
    "nested private sequence kept": ("options: [retain-safe-private]\nsafe_private:\n"
                                     "  - {creator: ACME PHI, element: '0x10'}\n"
                                     "  - {creator: ACME PHI, element: '0x11'}\n", "(0011,1010)[0]>(0011,1011)"),
}


@pytest.mark.parametrize("weakening", list(WEAKENINGS))
def test_verify_catches_identifiers_a_weakened_profile_lets_through(tmp_path, weakening):
    yaml_text, path = WEAKENINGS[weakening]
    profile = tmp_path / "weak.yaml"
    profile.write_text(yaml_text)
    src = tmp_path / "in"
    _phi_mr(src / "a.dcm")
    out = tmp_path / "out"
    with pytest.raises(LeakError, match=r"1 file\(s\) still held an identifier") as exc:
        anonymize_tree(src, out, KEY, profile=profile, workers=1)
    assert exc.value.exit_code == 3
    (rec,) = _audit(out)
    assert rec["status"] == "leak" and path in rec["leaks"]
    assert not _dicom_files(out)  # the leaking file was never written
    assert not [p for p in out.rglob("*") if "4711042" in p.name]
    audit = (out / AUDIT_NAME).read_text().lower()
    assert "quixote" not in audit and "4711042" not in audit


def test_weakened_profile_without_verify_does_leak(tmp_path):
    """The counterpart of the test above: what verify prevents really happens without it."""
    profile = tmp_path / "weak.yaml"
    profile.write_text(WEAKENINGS["other patient names kept"][0])
    _phi_mr(tmp_path / "in" / "a.dcm")
    anonymize_tree(tmp_path / "in", tmp_path / "out", KEY, profile=profile, workers=1, verify=False)
    (out,) = _dicom_files(tmp_path / "out")
    assert b"Quixote" in out.read_bytes()


def test_deid_recipe_header_actions_apply_on_top_of_the_profile(tmp_path):
    recipe = tmp_path / "deid.dicom"
    recipe.write_text("FORMAT dicom\n\n%header\n\nREPLACE Manufacturer ACME_RESEARCH\n")
    _phi_mr(tmp_path / "in" / "a.dcm")
    anonymize_tree(tmp_path / "in", tmp_path / "out", KEY, workers=1, deid_recipe=recipe)
    (out,) = _dicom_files(tmp_path / "out")
    assert pydicom.dcmread(out).Manufacturer == "ACME_RESEARCH"


# ------------------------------------------------------------------ bad inputs
def test_overlays_and_curves_are_removed(tmp_path):
    path = _phi_mr(tmp_path / "in" / "a.dcm")
    ds = pydicom.dcmread(path)
    ds.add_new(0x60000010, "US", 64)
    ds.add_new(0x60000011, "US", 64)
    ds.add_new(0x60000022, "LO", "Quixote annotation")
    ds.add_new(0x60003000, "OW", b"\xff" * 512)
    ds.add_new(0x50000005, "US", 2)
    ds.add_new(0x50003000, "OW", b"\x00\x01" * 8)
    ds.save_as(path)
    anonymize_tree(tmp_path / "in", tmp_path / "out", KEY, workers=1)
    (out,) = _dicom_files(tmp_path / "out")
    groups = {e.tag.group for e in pydicom.dcmread(out)}
    assert not {g for g in groups if 0x5000 <= g <= 0x60FF}


def test_bad_files_are_quarantined_with_a_reason_and_never_copied_to_out(tmp_path):
    from pydicom.data import get_testdata_file

    src, out, quarantine = tmp_path / "in", tmp_path / "out", tmp_path / "quarantine"
    good = _phi_mr(src / "good.dcm")
    (src / "notes.txt").write_text("Quixote Alonso MRN4711042\n")
    raw = good.read_bytes()
    (src / "truncated.dcm").write_bytes(raw[: len(raw) // 2])
    nopix = pydicom.dcmread(good)
    del nopix.PixelData
    nopix.save_as(src / "nopixels.dcm")
    burned = pydicom.dcmread(good)
    burned.BurnedInAnnotation = "YES"
    burned.SOPInstanceUID = pydicom.uid.generate_uid()
    burned.save_as(src / "burned.dcm")
    shutil.copy(get_testdata_file("DICOMDIR"), src / "DICOMDIR")
    anonymize_tree(src, out, KEY, quarantine=quarantine, workers=1)
    reasons = {r["input"]: r.get("reason") for r in _audit(out)}
    kr = Keyring(KEY)
    expected = {
        "notes.txt": "not a DICOM file",
        "truncated.dcm": "truncated",
        "nopixels.dcm": "no pixel data in an image object",
        "DICOMDIR": "DICOMDIR",
    }
    for name, reason in expected.items():
        assert reason in reasons[kr.short("input", name, 16)], name
        assert (quarantine / name).read_bytes() == (src / name).read_bytes()
    assert reasons[kr.short("input", "good.dcm", 16)] is None
    # Burned In Annotation = YES puts an image at risk; OCR reads no text in MR_small, so it is written
    burned_rec = next(r for r in _audit(out) if r["input"] == kr.short("input", "burned.dcm", 16))
    assert burned_rec["status"] == "written" and burned_rec["actions"]["ocr checked"] == 1
    assert "pixels cleaned" not in burned_rec["actions"]
    assert len(_dicom_files(out)) == 2
    listed = {row["path"]: row["reason"] for row in csv.DictReader((quarantine / "segkit-quarantine.csv").open())}
    assert set(listed) == set(expected)


def test_image_that_deid_locates_burned_in_text_on_is_cleaned_not_quarantined(tmp_path):
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Manufacturer = "PHILIPS"  # deid's recipe: Philips CT dose series carry text at rows 0-135
    ds.ImageType = ["ORIGINAL", "PRIMARY", "DOSE"]
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "dose.dcm")
    anonymize_tree(tmp_path / "in", tmp_path / "out", KEY, workers=1)
    (rec,) = _audit(tmp_path / "out")
    assert rec["status"] == "written" and rec["actions"]["pixels cleaned"] == 1
    cleaned = pydicom.dcmread(tmp_path / "out" / rec["output"]).pixel_array
    # the recipe's box covers this 128×128 image: every pixel becomes the darkest value
    assert ds.pixel_array.max() > ds.pixel_array.min() and (cleaned == ds.pixel_array.min()).all()


def test_secondary_capture_without_text_is_checked_by_ocr_and_written(tmp_path):
    """pydicom's JPEG secondary capture shows no text: OCR says so, and the file is written as it was."""
    (tmp_path / "in").mkdir()
    shutil.copy(_bundled_root() / "SC_jpeg_no_color_transform.dcm", tmp_path / "in" / "sc.dcm")
    anonymize_tree(tmp_path / "in", tmp_path / "out", KEY, workers=1)
    (rec,) = _audit(tmp_path / "out")
    assert rec["status"] == "written", rec.get("reason")
    assert rec["actions"]["ocr checked"] == 1 and "pixels cleaned" not in rec["actions"]
    out = pydicom.dcmread(tmp_path / "out" / rec["output"])
    assert out.PixelData == pydicom.dcmread(tmp_path / "in" / "sc.dcm").PixelData  # untouched: still JPEG


def test_input_that_is_not_a_folder_is_refused(tmp_path):
    from segkit.errors import InputError

    with pytest.raises(InputError, match="not a folder"):
        anonymize_tree(tmp_path / "missing", tmp_path / "out", KEY)


# ------------------------------------------------------------------ dciodvfy
def _dciodvfy_errors(path: Path) -> set[str]:
    import re
    import subprocess

    res = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    lines = (res.stdout + res.stderr).splitlines()
    # compare the kind of error, not the values it quotes
    return {re.sub(r"<[^>]*>|\[[^\]]*\]|= .*", "", line).strip() for line in lines if line.startswith("Error")}


@pytest.mark.dciodvfy
def test_dciodvfy_reports_no_new_errors_on_mr_rtstruct_and_seg(synth_cohort, anonymized_cohort):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not on PATH")
    kr = Keyring(KEY)
    outputs = {pydicom.dcmread(f).SOPInstanceUID: f for f in _dicom_files(anonymized_cohort)}
    patient = synth_cohort / "patient-01"
    for sub in ("MR", "RTSTRUCT", "SEG"):
        src = sorted((patient / sub).glob("*.dcm"))[0]
        out = outputs[kr.uid(pydicom.dcmread(src).SOPInstanceUID)]
        new = _dciodvfy_errors(out) - _dciodvfy_errors(src)
        assert not new, f"{sub}: {sorted(new)}"


# ------------------------------------------------------------------ convert on the output
def test_convert_gives_the_same_images_and_masks_before_and_after(synth_cohort, anonymized_cohort, tmp_path):
    """``segkit convert`` works on the de-identified tree exactly as on the raw one."""
    import hashlib

    convert_module = pytest.importorskip("segkit.convert", reason="segkit convert has not landed on this branch")
    from segkit.store.reader import open_store

    def per_patient(store_path: Path) -> list[str]:
        store = open_store(store_path)
        rows: dict[str, list[tuple[float, bytes]]] = {}
        table = store.table
        for i in range(len(store)):
            image, mask = store.read(i)
            rows.setdefault(str(table["patient"][i]), []).append(
                (float(table["position"][i]) if "position" in table else i, image.tobytes() + mask.tobytes()))
        digests = []
        for slices in rows.values():
            h = hashlib.sha256()
            for _, data in sorted(slices, key=lambda s: s[0]):
                h.update(data)
            digests.append(h.hexdigest())
        return sorted(digests)

    for masks in ("rtstruct", "seg"):
        options = convert_module.ConvertOptions(masks=masks)
        convert_module.convert(synth_cohort, tmp_path / f"raw-{masks}.zarr", options)
        convert_module.convert(anonymized_cohort, tmp_path / f"anon-{masks}.zarr", options)
        assert per_patient(tmp_path / f"raw-{masks}.zarr") == per_patient(tmp_path / f"anon-{masks}.zarr")


def test_short_tokens_are_the_base32_prefix_of_the_digest() -> None:
    """Keyring.short encodes only the bytes it needs: the same tokens as base64.b32encode of the whole digest."""
    import base64

    kr = Keyring(bytes(range(32)))
    for i in range(500):
        value = f"1.2.826.0.1.{i * 7919}"
        for n in (1, 10, 12, 16, 20):
            assert kr.short("dir", value, n) == base64.b32encode(kr.digest("dir", value)).decode()[:n].lower()


def test_write_parts_goes_on_after_short_writes(tmp_path, monkeypatch):
    """The output is written with writev; a short write (allowed by POSIX) is continued, not lost."""
    import os as _os

    from segkit.deid.filepass import _write_parts

    real = _os.writev

    def short(fd, views):  # at most 7 bytes per call, as a full disk or a signal might cut it
        return real(fd, [bytes(b"".join(bytes(v) for v in views)[:7])])

    monkeypatch.setattr(_os, "writev", short)
    parts = (b"header-" * 5, b"", b"pixels" * 11, b"tail")
    _write_parts(tmp_path / "f.dcm", parts)
    assert (tmp_path / "f.dcm").read_bytes() == b"".join(parts)
