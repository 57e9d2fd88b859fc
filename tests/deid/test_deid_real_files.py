"""``anonymize_tree`` on real DICOM files: pydicom's bundled files and ../shared/fixtures.

Every readable file pydicom ships is written or quarantined with no identifier left; each
transfer syntax keeps its pixel bytes (deflated input is written inflated, undecodable pixel
data is quarantined); segkit's fast top-level writer gives pydicom's bytes; the shared RTSTRUCT
and SEG fixtures keep their references.  The synthetic cohort is in ``test_deid_anonymize.py``.
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import pydicom
import pytest

from tests.helpers.deid_builders import (audit_records as _audit, bundled_root as _bundled_root,
                                         dicom_files as _dicom_files, input_identifiers as _identifiers)
from segkit.deid import Keyring, anonymize_tree, load_profile

KEY = b"\x07" * 32


# ------------------------------------------------------------------ pydicom's bundled files
def _readable_bundled_files() -> list[Path]:
    """The files shipped inside pydicom that it reads (never the ones pydicom would download)."""
    files = []
    for p in sorted(_bundled_root().rglob("*")):
        if not p.is_file() or p.suffix.lower() in (".json", ".txt", ".py", ".gz", ".bz2", ".xml", ".npy"):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pydicom.dcmread(p)
        except Exception:  # noqa: BLE001 - only the files pydicom reads
            continue
        files.append(p)
    return files


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's notes on the odd values of its own samples
def test_pydicom_bundled_files_are_written_or_quarantined_and_leak_nothing(tmp_path):
    files = _readable_bundled_files()
    assert len(files) > 60
    src = tmp_path / "in"
    rels = [f.relative_to(_bundled_root()).as_posix() for f in files]
    for f, rel in zip(files, rels):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, src / rel)
    out = tmp_path / "out"
    anonymize_tree(src, out, KEY, quarantine=tmp_path / "q", workers=2)
    kr = Keyring(KEY)
    records = {r["input"]: r for r in _audit(out)}
    assert len(records) == len(files)
    compressed_written: set[str] = set()
    structural = load_profile().keep_text  # kept verbatim: Manufacturer, CodingSchemeDesignator …
    for f, rel in zip(files, rels):
        rec = records[kr.short("input", rel, 16)]
        assert rec["status"] in ("written", "quarantined"), rel
        assert "could not be processed" not in rec.get("reason", ""), f"{rel}: {rec.get('reason')}"
        if rec["status"] != "written":
            assert (tmp_path / "q" / rel).is_file()
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            original = pydicom.dcmread(f, force=True)
            anon = pydicom.dcmread(out / rec["output"], stop_before_pixels=True)
        text = "\n".join(str(e.value) for e in anon.iterall() if e.VR != "SQ" and e.tag not in structural).lower()
        for ident in _identifiers(original):  # as a word: 'TOSHIBA' may stay inside Manufacturer 'TOSHIBA_MEC'
            assert not re.search(rf"(?<![a-z0-9_]){re.escape(ident.lower())}(?![a-z0-9_])", text), \
                f"{rel}: an identifier survived"
        assert anon.PatientIdentityRemoved == "YES"
        if anon.file_meta.TransferSyntaxUID.is_compressed:
            compressed_written.add(anon.file_meta.TransferSyntaxUID)
    assert len(compressed_written) >= 2  # compressed pixel data passes through (see the test below)


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_expb.dcm",
                                  "MR_small_padded.dcm"])
def test_each_transfer_syntax_keeps_its_pixel_bytes(tmp_path, name):
    src = pydicom.dcmread(_bundled_root() / name)
    src.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]  # pydicom's sample says DERIVED\\SECONDARY (a screenshot risk)
    (tmp_path / "in").mkdir()
    src.save_as(tmp_path / "in" / "mr.dcm")
    anonymize_tree(tmp_path / "in", tmp_path / "out", KEY, workers=1)
    (rec,) = _audit(tmp_path / "out")
    assert rec["status"] == "written", rec.get("reason")
    out = pydicom.dcmread(tmp_path / "out" / rec["output"])
    assert out.file_meta.TransferSyntaxUID == src.file_meta.TransferSyntaxUID
    assert out.PixelData == src.PixelData
    assert out.PatientName != src.PatientName


def test_fast_writer_matches_pydicom_writer_on_bundled_files():
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    from segkit.deid.serialise import _write_top_level

    checked = 0
    for f in _readable_bundled_files():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a_ds, b_ds = pydicom.dcmread(f), pydicom.dcmread(f)
        implicit, little = a_ds.original_encoding
        if implicit is None:
            continue
        a, b = DicomBytesIO(), DicomBytesIO()
        for fp in (a, b):
            fp.is_implicit_VR, fp.is_little_endian = implicit, little
        try:
            write_dataset(a, a_ds)
        except (TypeError, ValueError):
            continue  # a file pydicom itself cannot write back unchanged
        _write_top_level(b, b_ds)
        assert a.getvalue() == b.getvalue(), f.name
        checked += 1
    assert checked > 50


def test_deflated_input_is_written_inflated_so_its_bytes_can_be_verified(tmp_path):
    from pydicom.data import get_testdata_file
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

    src = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    src.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    src.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    (tmp_path / "in").mkdir()
    src.save_as(tmp_path / "in" / "deflated.dcm")
    assert b"CompressedSamples" not in (tmp_path / "in" / "deflated.dcm").read_bytes()  # hidden by deflate
    anonymize_tree(tmp_path / "in", tmp_path / "out", KEY, workers=1)
    (rec,) = _audit(tmp_path / "out")
    out = pydicom.dcmread(tmp_path / "out" / rec["output"])
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert out.PixelData == pydicom.dcmread(tmp_path / "in" / "deflated.dcm").PixelData


def test_compressed_pixels_that_do_not_decode_are_quarantined(tmp_path):
    src = pydicom.dcmread(_bundled_root() / "MR_small_jpeg_ls_lossless.dcm")
    src.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    data = bytearray(src.PixelData)
    for i in range(64, len(data) - 16, 7):  # scramble the JPEG-LS stream, keep the item structure
        data[i] ^= 0x5A
    src.PixelData = bytes(data)
    (tmp_path / "in").mkdir()
    src.save_as(tmp_path / "in" / "broken.dcm")
    anonymize_tree(tmp_path / "in", tmp_path / "out", KEY, workers=1)
    (rec,) = _audit(tmp_path / "out")
    assert rec["status"] == "quarantined"
    assert rec["reason"] == "pixel data cannot be decoded (JPEG-LS Lossless Image Compression)"


# ------------------------------------------------------------------ shared fixtures (RTSTRUCT, SEG)
def test_rtstruct_and_seg_fixtures_keep_their_references(shared_fixtures, tmp_path):
    src = tmp_path / "in"
    for rel in ("qurit+rt-utils/tests/mock_data", "QIICR+dcmqi/data/segmentations/ct-3slice",
                "QIICR+dcmqi/data/segmentations/liver.dcm",
                "ImagingDataCommons+highdicom/data/test_files/ct_image.dcm",
                "ImagingDataCommons+highdicom/data/test_files/seg_image_ct_binary_single_frame.dcm"):
        dst = src / rel.replace("/", "_")
        if (shared_fixtures / rel).is_dir():
            shutil.copytree(shared_fixtures / rel, dst)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(shared_fixtures / rel, dst)
    out = tmp_path / "out"
    anonymize_tree(src, out, KEY, workers=1)
    images, derived = {}, []
    for f in _dicom_files(out):
        ds = pydicom.dcmread(f)
        if ds.Modality in ("RTSTRUCT", "SEG"):
            derived.append(ds)
        else:
            images[ds.SOPInstanceUID] = ds
    assert {d.Modality for d in derived} == {"RTSTRUCT", "SEG"}
    kr = Keyring(KEY)
    for ds in derived:
        refs = []
        for elem in ds.iterall():
            if elem.keyword == "ReferencedSOPInstanceUID":
                refs.append(elem.value)
        assert refs and all(r.startswith("2.25.") for r in refs)
        resolved = [r for r in refs if r in images]
        assert resolved, ds.Modality
        for r in resolved:
            assert images[r].FrameOfReferenceUID == ds.FrameOfReferenceUID if "FrameOfReferenceUID" in ds else True
    # every reference that resolved before resolves after, to the image the keyed UID names
    originals = {pydicom.dcmread(f).SOPInstanceUID for f in _dicom_files(src)}
    for f in _dicom_files(src):
        orig = pydicom.dcmread(f)
        if orig.Modality not in ("RTSTRUCT", "SEG"):
            continue
        before = {e.value for e in orig.iterall() if e.keyword == "ReferencedSOPInstanceUID"} & originals
        assert before
        assert {kr.uid(u) for u in before} <= set(images)


def test_every_shared_fixture_is_written_or_quarantined_without_leaks(shared_fixtures, tmp_path):
    out = tmp_path / "out"
    anonymize_tree(shared_fixtures, out, KEY, quarantine=tmp_path / "q", workers=2)
    records = _audit(out)
    assert sum(r["status"] == "written" for r in records) >= 30
    assert all(r["status"] in ("written", "quarantined") for r in records)
    allowed = ("not a DICOM file", "burned-in text risk", "no pixel data in an image object")
    assert all(r.get("reason", "").startswith(allowed) for r in records if r["status"] == "quarantined")
