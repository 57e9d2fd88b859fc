"""``anonymize_tree`` on DICOM that segkit did not write: MR studies with RTSTRUCT/SEG, screen saves, SR, GSPS."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

import tests.helpers.deid_foreign as F
from segkit.deid import AUDIT_NAME, Keyring, anonymize_tree

KEY = b"\x0b" * 32


def _audit(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / AUDIT_NAME).read_text().splitlines()]


def _outputs(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.dcm") if p.is_file())


def _scan_for(identifiers: set[str], root: Path) -> list[tuple[str, str]]:
    """An independent byte scan (not segkit's verifier): every identifier, any case, as a word."""
    hits = []
    patterns = {i: re.compile(rb"(?<![A-Za-z0-9])" + re.escape(i.lower().encode()) + rb"(?![A-Za-z0-9])")
                for i in identifiers}
    for f in sorted(root.rglob("*")):
        if not f.is_file():
            continue
        data = f.read_bytes().lower()
        hits += [(f.name, i) for i, pat in patterns.items() if pat.search(data)]
    return hits


@pytest.fixture(scope="module")
def foreign_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three MR patients (images, RTSTRUCT, SEG) plus a screen save, an SR and a GSPS of patient 1."""
    root = tmp_path_factory.mktemp("foreign") / "in"
    first = []
    for i, p in enumerate(F.PATIENTS):
        images, _, _ = F.mr_patient(root / f"patient{i}", p)
        first.append(pydicom.dcmread(images[0]).SOPInstanceUID)
    a = F.PATIENTS[0]
    F.secondary_capture(root / "patient0" / "SC" / "SC0001", a)
    F.structured_report(root / "patient0" / "SR" / "SR0001", a, first[0])
    F.gsps(root / "patient0" / "PR" / "PR0001", a, first[0])
    return root


@pytest.fixture(scope="module")
def foreign_out(foreign_study: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("foreign-out") / "out"
    anonymize_tree(foreign_study, out, KEY, workers=2)
    return out


def test_clean_mr_series_without_image_type_is_written(foreign_study, foreign_out):
    mr_inputs = sorted(foreign_study.glob("patient*/MR/*"))
    assert mr_inputs and all("ImageType" not in pydicom.dcmread(f) for f in mr_inputs)
    records = _audit(foreign_out)
    mr = [r for r in records if r.get("sop_class") == "MR Image Storage"]
    assert len(mr) == len(mr_inputs) and all(r["status"] == "written" for r in mr)
    assert all("ocr checked" not in r["actions"] for r in mr)  # not at risk: OCR never ran on them
    assert all(r["status"] == "written" for r in records), [r.get("reason") for r in records]


def test_every_rtstruct_and_seg_reference_resolves_inside_out(foreign_out):
    images, derived = {}, []
    for f in _outputs(foreign_out):
        ds = pydicom.dcmread(f)
        (derived if ds.Modality in ("RTSTRUCT", "SEG", "SR", "PR") else []).append(ds)
        if ds.Modality == "MR":
            images[ds.SOPInstanceUID] = ds
    assert {d.Modality for d in derived} == {"RTSTRUCT", "SEG", "SR", "PR"}
    for ds in derived:
        refs = {e.value for e in ds.iterall() if e.keyword == "ReferencedSOPInstanceUID"} - {ds.StudyInstanceUID}
        assert refs, ds.Modality
        assert refs <= set(images), f"{ds.Modality}: {len(refs - set(images))} reference(s) point outside OUT"
        if "FrameOfReferenceUID" in ds:
            assert {images[r].FrameOfReferenceUID for r in refs} == {ds.FrameOfReferenceUID}


def test_independent_scan_finds_no_identifier_of_the_inputs(foreign_study, foreign_out):
    identifiers: set[str] = set()
    for p in F.PATIENTS:
        identifiers |= p.identifiers()
    identifiers |= {"Hufnagel", "Korbinian", "Sauerampfer", "Gisela", "Sonnenfeld"}
    for f in (f for f in foreign_study.rglob("*") if f.is_file()):
        ds = pydicom.dcmread(f)
        identifiers |= {str(e.value) for e in ds.iterall() if e.VR == "UI" and str(e.value).startswith(F._PREFIX)}
    assert len(identifiers) > 40
    assert _scan_for(identifiers, foreign_out) == []


def test_structured_report_keeps_no_name_and_its_content_is_shifted_and_remapped(foreign_out):
    a = F.PATIENTS[0]
    (sr,) = [pydicom.dcmread(f) for f in _outputs(foreign_out) if pydicom.dcmread(f).Modality == "SR"]
    items = {}
    for e in sr.iterall():
        if e.keyword in ("PersonName", "TextValue", "Date", "DateTime", "UID", "Time"):
            items.setdefault(e.keyword, []).append(str(e.value))
    assert set(items) == {"PersonName", "TextValue", "Date", "DateTime", "UID", "Time"}  # all still there
    assert all(a.family.lower() not in v.lower() and "hufnagel" not in v.lower() for v in items["PersonName"])
    (text,) = items["TextValue"]
    assert "no change since" in text  # the report survives, scrubbed
    for ident in (a.family, a.given, a.mrn, a.study_date, "14.02.1958"):
        assert ident.lower() not in text.lower()
    (date,) = items["Date"]
    assert date != a.study_date and len(date) == 8
    assert items["DateTime"][0][:8] == date  # one shift for the whole patient
    assert items["UID"] == [Keyring(KEY).uid(a.study_uid)] == [sr.StudyInstanceUID]
    assert items["Time"] == ["101500"]


def test_presentation_state_text_and_acquisition_context_keep_no_name(foreign_out):
    a = F.PATIENTS[0]
    (pr,) = [pydicom.dcmread(f) for f in _outputs(foreign_out) if pydicom.dcmread(f).Modality == "PR"]
    text = [str(e.value) for e in pr.iterall() if e.VR in ("LO", "ST", "UT", "LT", "SH", "PN")]
    assert text
    assert not [t for t in text if a.family.lower() in t.lower() or a.mrn.lower() in t.lower()]


# ------------------------------------------------------------------ burned-in text
def _ocr_words(path: Path) -> str:
    """What Tesseract reads in every frame of *path* (independent of segkit's OCR code)."""
    import pytesseract

    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    frames = arr if arr.ndim == (4 if ds.SamplesPerPixel == 3 else 3) else arr[None]
    words = []
    for frame in frames:
        grey = frame.max(axis=-1) if frame.ndim == 3 else frame
        grey = grey.astype(np.uint8)
        for img in (grey, 255 - grey):
            words.append(pytesseract.image_to_string(img))
    return " ".join(words).upper()


needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None,
                                     reason="Tesseract OCR is not installed (apt-get install tesseract-ocr)")


@needs_tesseract
@pytest.mark.parametrize("variant", [{}, {"colour": True}, {"frames": 3}, {"compress": "jpeg"}],
                         ids=["grey", "rgb", "multiframe", "jpeg"])
def test_secondary_capture_with_a_rendered_name_is_cleaned(tmp_path, variant):
    a = F.PATIENTS[0]
    src = F.secondary_capture(tmp_path / "in" / "sc", a, **variant)
    before = _ocr_words(src)
    assert a.family.upper() in before  # the name can be read in the input
    anonymize_tree(tmp_path / "in", tmp_path / "out", KEY, workers=1)
    (rec,) = _audit(tmp_path / "out")
    assert rec["status"] == "written", rec.get("reason")
    assert rec["actions"]["pixels cleaned"] == 1 and rec["actions"]["ocr text boxes"] >= 2
    out = tmp_path / "out" / rec["output"]
    after = _ocr_words(out)
    for part in (a.family, a.given, a.mrn, a.mrn[2:]):
        assert part.upper() not in after
    ds = pydicom.dcmread(out)
    assert not ds.file_meta.TransferSyntaxUID.is_compressed
    assert ds.pixel_array.shape == pydicom.dcmread(src).pixel_array.shape
    if variant.get("compress"):
        assert ds.LossyImageCompression == "01"
    # the picture outside the text survives (the 'organ' in the lower half)
    rows = 1 if int(ds.get("NumberOfFrames", 1) or 1) > 1 else 0
    assert np.take(ds.pixel_array, range(200, 256), axis=rows).astype(int).sum() > 0


@needs_tesseract
def test_secondary_capture_with_text_is_quarantined_with_pixel_policy_quarantine(tmp_path):
    a = F.PATIENTS[0]
    F.secondary_capture(tmp_path / "in" / "sc", a)
    anonymize_tree(tmp_path / "in", tmp_path / "out", KEY, workers=1, quarantine=tmp_path / "q",
                   pixel_policy="quarantine")
    (rec,) = _audit(tmp_path / "out")
    assert rec["status"] == "quarantined"
    assert rec["reason"].startswith("burned-in text found by OCR") and "--pixel-policy quarantine" in rec["reason"]
    assert a.family.lower() not in json.dumps(rec).lower()
    assert not _outputs(tmp_path / "out") and (tmp_path / "q" / "sc").is_file()


@needs_tesseract
def test_screen_save_without_text_is_checked_and_written_unchanged(tmp_path):
    src = F.secondary_capture(tmp_path / "in" / "sc", F.PATIENTS[1], text=False)
    anonymize_tree(tmp_path / "in", tmp_path / "out", KEY, workers=1)
    (rec,) = _audit(tmp_path / "out")
    assert rec["status"] == "written" and rec["actions"]["ocr checked"] == 1
    assert "pixels cleaned" not in rec["actions"]
    assert pydicom.dcmread(tmp_path / "out" / rec["output"]).PixelData == pydicom.dcmread(src).PixelData


def test_without_tesseract_images_at_risk_are_quarantined_saying_how_to_install_it(tmp_path, monkeypatch):
    a = F.PATIENTS[0]
    F.secondary_capture(tmp_path / "in" / "sc", a)
    F.mr_patient(tmp_path / "in" / "mr", a, slices=2)
    empty = tmp_path / "no-tesseract"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    anonymize_tree(tmp_path / "in", tmp_path / "out", KEY, workers=1)
    records = _audit(tmp_path / "out")
    sc = [r for r in records if r.get("sop_class") == "Secondary Capture Image Storage"]
    assert len(sc) == 1 and sc[0]["status"] == "quarantined"
    assert "OCR is not available" in sc[0]["reason"] and "apt-get install tesseract-ocr" in sc[0]["reason"]
    others = [r for r in records if r is not sc[0]]
    assert len(others) == 4 and all(r["status"] == "written" for r in others)  # 2 MR, RTSTRUCT, SEG


def test_without_the_pytesseract_binding_images_at_risk_are_quarantined(tmp_path, monkeypatch):
    import sys

    F.secondary_capture(tmp_path / "in" / "sc", F.PATIENTS[0])
    monkeypatch.setitem(sys.modules, "pytesseract", None)  # import fails as if not installed
    anonymize_tree(tmp_path / "in", tmp_path / "out", KEY, workers=1)
    (rec,) = _audit(tmp_path / "out")
    assert rec["status"] == "quarantined" and "pytesseract" in rec["reason"]


def test_output_bytes_do_not_depend_on_the_worker_count(foreign_study, foreign_out, tmp_path):
    anonymize_tree(foreign_study, tmp_path / "one", KEY, workers=1)

    def tree(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert tree(tmp_path / "one") == tree(foreign_out)


def test_a_name_of_patient_a_in_patient_b_file_is_caught(tmp_path):
    """The run's dictionary (every input's names and IDs) is searched in every output, not each file's own."""
    from click.testing import CliRunner

    from segkit.cli import cli as main
    from segkit.deid import generate_key

    a, b = F.PATIENTS[0], F.PATIENTS[1]
    F.mr_patient(tmp_path / "in" / "a", a, slices=2)
    images, _, _ = F.mr_patient(tmp_path / "in" / "b", b, slices=2)
    F.plant_in_free_text(images[0], a)  # StudyDescription of B names A; cleaning scrubs only B's own identifiers
    key = generate_key(tmp_path / "site.key")
    res = CliRunner().invoke(main, ["anonymize", str(tmp_path / "in"), str(tmp_path / "out"), "--key-file", str(key),
                                    "--workers", "1"])
    assert res.exit_code == 3, res.output
    records = _audit(tmp_path / "out")
    (leak,) = [r for r in records if r["status"] == "leak"]
    assert leak["leaks"] == ["(0008,1030)"]
    assert a.family.lower() not in ((tmp_path / "out" / AUDIT_NAME).read_text() + res.output).lower()
    assert sum(r["status"] == "written" for r in records) == len(records) - 1
    assert _scan_for({a.family}, tmp_path / "out") == []


@needs_tesseract
def test_derived_ct_series_without_text_is_written_whole(shared_fixtures, tmp_path):
    """rt-utils' oblique CT series is DERIVED\\SECONDARY (at risk) and shows no text: Tesseract reads
    two- and three-letter "words" into its anatomy, which must not send a slice to quarantine."""
    src = tmp_path / "in"
    shutil.copytree(shared_fixtures / "qurit+rt-utils/tests/oriented_data", src, ignore=shutil.ignore_patterns("*.txt"))
    out = tmp_path / "out"
    summary = anonymize_tree(src, out, KEY, workers=1)
    assert (summary.written, summary.quarantined) == (3, 0)
    audit = [json.loads(line) for line in (out / AUDIT_NAME).read_text().splitlines()]
    assert all(r["status"] == "written" for r in audit) and len(audit) == 3
    written = sorted(pydicom.dcmread(f).ImagePositionPatient[2] for f in out.rglob("*.dcm"))
    originals = sorted(pydicom.dcmread(f).ImagePositionPatient[2] for f in src.glob("*.dcm"))
    assert written == originals  # the series keeps every slice, so it still converts


@pytest.mark.parametrize("masks", ["rtstruct", "seg"])
def test_converting_the_de_identified_foreign_study_gives_the_original_masks(foreign_study, foreign_out, tmp_path,
                                                                            masks):
    """The whole study follows through: images, RTSTRUCT and SEG written by other tools still convert
    after de-identification, to the same masks and the same images, patient by patient."""
    from segkit.convert.plan import ConvertOptions
    from segkit.convert.run import convert
    from segkit.store.reader import open_store

    def by_patient(store_path: Path) -> list[tuple[int, bytes, bytes]]:
        store = open_store(store_path)
        rows: dict[str, list[tuple[float, bytes, bytes]]] = {}
        for i in range(len(store)):
            image, mask = store.read(i)
            rows.setdefault(str(store.table["patient"][i]), []).append(
                (float(store.table["position"][i]), image.tobytes(), mask.tobytes()))
        return sorted((len(r), b"".join(x[1] for x in sorted(r)), b"".join(x[2] for x in sorted(r)))
                      for r in rows.values())

    raw = tmp_path / "raw"
    shutil.copytree(foreign_study, raw, ignore=shutil.ignore_patterns("SC", "SR", "PR"))
    convert(raw, tmp_path / "raw.zarr", ConvertOptions(masks=masks))
    anon = tmp_path / "anon"
    shutil.copytree(foreign_out, anon, ignore=shutil.ignore_patterns("OT-*", "SR-*", "PR-*", "DICOMDIR", "segkit-*"))
    convert(anon, tmp_path / "anon.zarr", ConvertOptions(masks=masks))
    before, after = by_patient(tmp_path / "raw.zarr"), by_patient(tmp_path / "anon.zarr")
    assert len(before) == 3 and before == after
    assert all(np.frombuffer(m, np.uint8).any() for _, _, m in before)  # each patient has a tumour
