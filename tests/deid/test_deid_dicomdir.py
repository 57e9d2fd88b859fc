"""``anonymize_tree`` on a DICOM File-set: the input DICOMDIR is quarantined, OUT gets one built from its outputs."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from pydicom.fileset import FileSet

from tests.helpers.deid_builders import tree_bytes
from segkit.deid import AUDIT_NAME, Keyring, anonymize_tree
from segkit.errors import LeakError

KEY = b"\x07" * 32
#: pydicom's bundled File-set: a DICOMDIR made by dcmmkdir and the 31 files it references (3 patients)
_FILESET = Path(pydicom.data.get_testdata_file("DICOMDIR")).parent
_PATIENT_FOLDERS = ("77654033", "98892001", "98892003")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's notes on odd values of its samples


def _copy_fileset(dst: Path, *, with_dicomdir: bool = True) -> Path:
    dst.mkdir(parents=True)
    if with_dicomdir:
        shutil.copy(_FILESET / "DICOMDIR", dst / "DICOMDIR")
    for folder in _PATIENT_FOLDERS:
        shutil.copytree(_FILESET / folder, dst / folder)
    return dst


@pytest.fixture()
def fileset_in(tmp_path: Path) -> Path:
    return _copy_fileset(tmp_path / "in")


def _audit(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / AUDIT_NAME).read_text().splitlines()]


def _identifiers(src: Path) -> set[bytes]:
    """Every patient name component, patient ID and non-registered UID of the input (DICOMDIR records included)."""
    found: set[str] = set()

    def visit(ds: pydicom.Dataset) -> None:
        for elem in ds:
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
            elif elem.VR == "PN" and elem.value:
                found.update(c for c in str(elem.value).replace("=", "^").split("^") if len(c.strip()) >= 4)
            elif elem.keyword in ("PatientID", "OtherPatientIDs", "AccessionNumber") and elem.value:
                found.add(str(elem.value).strip())
            elif elem.VR == "UI" and elem.value:
                values = elem.value if isinstance(elem.value, pydicom.multival.MultiValue) else [elem.value]
                found.update(str(v) for v in values if str(v) not in pydicom.uid.UID_dictionary)

    for f in sorted(p for p in src.rglob("*") if p.is_file()):
        ds = pydicom.dcmread(f)
        visit(ds.file_meta)
        visit(ds)
    return {i.lower().encode() for i in found if len(i) >= 4}


def test_fileset_input_gets_a_fresh_dicomdir_built_from_the_outputs(fileset_in, tmp_path):
    out, quarantine = tmp_path / "out", tmp_path / "q"
    summary = anonymize_tree(fileset_in, out, KEY, quarantine=quarantine, workers=1)
    assert summary.written == 31 and summary.quarantined == 1
    assert summary.dicomdir is not None and "31 records" in summary.dicomdir and "31 records" in summary.line()

    # the old DICOMDIR is quarantined as before, byte for byte, never copied to OUT
    assert (quarantine / "DICOMDIR").read_bytes() == (fileset_in / "DICOMDIR").read_bytes()
    audit = _audit(out)
    old = next(r for r in audit if r["input"] == Keyring(KEY).short("input", "DICOMDIR", 16))
    assert old["status"] == "quarantined" and "directory records name patients" in old["reason"]
    assert "OUT/DICOMDIR rebuilt" in old["reason"] and "not PS3.10 8-character IDs" in old["reason"]

    # the new one is a File-set pydicom reads back, and it references exactly the written files
    dicomdir = out / "DICOMDIR"
    fs = FileSet(pydicom.dcmread(dicomdir))
    assert fs.ID == "SEGKIT" and str(fs.UID).startswith("2.25.")
    written = {r["output"] for r in audit if r["status"] == "written"}
    referenced = {}
    for instance in fs:
        path = Path(instance.path)
        assert path.is_file() and path.resolve().is_relative_to(out.resolve())
        referenced[path.relative_to(out).as_posix()] = instance
    assert set(referenced) == written  # segkit's layout is kept: no file moved, renamed or added
    for rel, instance in referenced.items():
        ds = pydicom.dcmread(out / rel, stop_before_pixels=True)
        assert instance.SOPInstanceUID == ds.SOPInstanceUID
        assert instance.PatientID == ds.PatientID == rel.split("/")[0]  # the pseudonym
        assert instance.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
    assert len({i.PatientID for i in fs}) == 2 and len({i.StudyInstanceUID for i in fs}) == 6

    # no name, ID or UID of the input (files or old DICOMDIR records) is in the new DICOMDIR's bytes
    data = dicomdir.read_bytes().lower()
    identifiers = _identifiers(fileset_in)
    assert b"archibald" in identifiers and b"77654033" in identifiers and len(identifiers) > 40
    assert not {i for i in identifiers if i in data}


def test_a_second_run_and_other_worker_counts_give_the_same_dicomdir(fileset_in, tmp_path):
    anonymize_tree(fileset_in, tmp_path / "one", KEY, workers=1)
    anonymize_tree(fileset_in, tmp_path / "two", KEY, workers=2)
    first = (tmp_path / "one" / "DICOMDIR").read_bytes()
    assert (tmp_path / "two" / "DICOMDIR").read_bytes() == first
    assert tree_bytes(tmp_path / "two") == tree_bytes(tmp_path / "one")
    anonymize_tree(fileset_in, tmp_path / "one", KEY, workers=2)  # a run over a finished OUT changes nothing
    assert (tmp_path / "one" / "DICOMDIR").read_bytes() == first
    anonymize_tree(fileset_in, tmp_path / "other-key", b"\x08" * 32, workers=1)
    assert (tmp_path / "other-key" / "DICOMDIR").read_bytes() != first


def test_resumed_run_ends_with_the_same_dicomdir(fileset_in, tmp_path):
    reference = tmp_path / "reference"
    anonymize_tree(fileset_in, reference, KEY, workers=1)
    resumed = tmp_path / "resumed"
    shutil.copytree(reference, resumed)
    # as a run killed after 10 files leaves it: part of the audit, no DICOMDIR, a temporary file
    audit = resumed / AUDIT_NAME
    audit.write_text("".join(audit.read_text().splitlines(keepends=True)[:10]))
    (resumed / "DICOMDIR").rename(resumed / ".DICOMDIR.tmp-4242")
    summary = anonymize_tree(fileset_in, resumed, KEY, workers=2)
    assert summary.resumed == 10
    assert tree_bytes(resumed) == tree_bytes(reference)
    # killed after every file was done, before the DICOMDIR: nothing left to do but the DICOMDIR
    (resumed / "DICOMDIR").unlink()
    summary = anonymize_tree(fileset_in, resumed, KEY, workers=1)
    assert summary.resumed == 32 and "31 records" in summary.line()
    assert tree_bytes(resumed) == tree_bytes(reference)


def test_input_without_a_dicomdir_gets_none(tmp_path):
    src = _copy_fileset(tmp_path / "in", with_dicomdir=False)
    summary = anonymize_tree(src, tmp_path / "out", KEY, workers=1)
    assert summary.written == 31 and summary.dicomdir is None and "DICOMDIR" not in summary.line()
    assert not (tmp_path / "out" / "DICOMDIR").exists()
    # the same OUT resumed after IN gained a DICOMDIR gets one; when IN loses it again, so does OUT
    shutil.copy(_FILESET / "DICOMDIR", src / "DICOMDIR")
    anonymize_tree(src, tmp_path / "out", KEY, workers=1)
    assert (tmp_path / "out" / "DICOMDIR").is_file()
    (src / "DICOMDIR").unlink()
    anonymize_tree(src, tmp_path / "out", KEY, workers=1)
    assert not (tmp_path / "out" / "DICOMDIR").exists()


def test_type1_record_keys_the_profile_removed_get_placeholders_in_the_record_only(fileset_in, tmp_path):
    out = tmp_path / "out"
    anonymize_tree(fileset_in, out, KEY, options=["clean_descriptors"], workers=1)  # dates removed, Study ID too
    fs = FileSet(pydicom.dcmread(out / "DICOMDIR"))
    assert len(fs) == 31
    for instance in fs:
        ds = pydicom.dcmread(instance.path, stop_before_pixels=True)
        assert not ds.get("StudyDate") and not ds.get("StudyID")  # the files are as the profile left them
        assert instance.StudyDate == "19000101"
        assert len(instance.StudyID) == 10 and instance.StudyID.isalnum()  # keyed token of the study's UID
    by_study: dict[str, set[str]] = {}
    for instance in fs:
        by_study.setdefault(instance.StudyInstanceUID, set()).add(instance.StudyID)
    assert all(len(ids) == 1 for ids in by_study.values()) and len(by_study) == 6


def test_dicomdir_that_would_carry_an_identifier_is_not_written(fileset_in, tmp_path, monkeypatch):
    import segkit.deid.dicomdir as dicomdir

    real = dicomdir._records

    def leaky(fs, ds, rel, kr):  # a builder bug that copied the input DICOMDIR's patient name
        records = real(fs, ds, rel, kr)
        records[0].PatientName = "Doe^Archibald"
        return records

    out = tmp_path / "out"
    anonymize_tree(fileset_in, out, KEY, workers=1)
    assert (out / "DICOMDIR").is_file()
    monkeypatch.setattr(dicomdir, "_records", leaky)
    with pytest.raises(LeakError, match="OUT/DICOMDIR still held an identifier"):
        anonymize_tree(fileset_in, out, KEY, workers=1)
    assert not (out / "DICOMDIR").exists()  # neither the leaky one nor the earlier one
    old = next(r for r in _audit(out) if r["input"] == Keyring(KEY).short("input", "DICOMDIR", 16))
    assert "OUT/DICOMDIR not written" in old["reason"] and "(0004,1220)[0]>(0010,0010)" in old["reason"]
    assert "archibald" not in (out / AUDIT_NAME).read_text().lower()
    # --no-verify trusts the builder (as it trusts the profile)
    anonymize_tree(fileset_in, tmp_path / "unverified", KEY, workers=1, verify=False)
    assert b"Doe^Archibald" in (tmp_path / "unverified" / "DICOMDIR").read_bytes()


def test_cli_anonymize_of_a_fileset_writes_a_dicomdir(fileset_in, tmp_path):
    from segkit.cli import cli

    runner = CliRunner()
    key = tmp_path / "site.key"
    assert runner.invoke(cli, ["keygen", str(key)]).exit_code == 0
    result = runner.invoke(cli, ["anonymize", str(fileset_in), str(tmp_path / "out"), "--key-file", str(key),
                                 "--quarantine", str(tmp_path / "q"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "31 written, 1 quarantined" in result.output and "OUT/DICOMDIR rebuilt" in result.output
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(FileSet(pydicom.dcmread(tmp_path / "out" / "DICOMDIR"))) == 31
    assert (tmp_path / "q" / "DICOMDIR").is_file()


@pytest.mark.dciodvfy
def test_dciodvfy_finds_only_the_documented_file_id_limitation(fileset_in, tmp_path):
    import subprocess

    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not on PATH")
    anonymize_tree(fileset_in, tmp_path / "out", KEY, workers=1)
    res = subprocess.run(["dciodvfy", str(tmp_path / "out" / "DICOMDIR")], capture_output=True, text=True, check=False)
    lines = (res.stdout + res.stderr).splitlines()
    assert any(line.strip() == "BasicDirectory" for line in lines)  # checked against the Basic Directory IOD
    errors = [line for line in lines if line.startswith("Error")]
    # segkit's paths as Referenced File IDs: lower case, '-', '.', longer than 16 (README: Limitation)
    assert errors and all("Referenced File ID" in line or "invalid data values for Value Representations" in line
                          for line in errors), errors
