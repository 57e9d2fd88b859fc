"""``segkit anonymize`` / ``segkit keygen`` on the command line, resume after a kill, the verifier's patterns."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from segkit.cli import cli
from segkit.deid.verify import PhiCollector

from tests.helpers.deid_builders import phi_mr as _phi_mr, tree_bytes as _tree_bytes


@pytest.fixture()
def key(tmp_path: Path) -> Path:
    result = CliRunner().invoke(cli, ["keygen", str(tmp_path / "site.key")])
    assert result.exit_code == 0, result.output
    return tmp_path / "site.key"


def test_keygen_and_init_key_write_private_keys(tmp_path):
    runner = CliRunner()
    a, b = tmp_path / "a.key", tmp_path / "b.key"
    assert runner.invoke(cli, ["keygen", str(a)]).exit_code == 0
    assert runner.invoke(cli, ["anonymize", "init-key", str(b)]).exit_code == 0
    for k in (a, b):
        assert stat.S_IMODE(k.stat().st_mode) == 0o600
    assert a.read_text() != b.read_text()


def test_keygen_refuses_to_replace_a_key(key):
    result = CliRunner().invoke(cli, ["keygen", str(key)])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {key}: a key file already exists here; keep it, or choose another path"


def test_anonymize_writes_a_clean_tree_and_summary(tmp_path, key):
    _phi_mr(tmp_path / "in" / "a.dcm")
    _phi_mr(tmp_path / "in" / "b.dcm", name="Panza^Sancho", mrn="MRN0000777")
    result = CliRunner().invoke(cli, ["anonymize", str(tmp_path / "in"), str(tmp_path / "out"), "--key-file",
                                      str(key), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "2 written, 0 quarantined, 0 with leaks of 2 files" in result.output
    outputs = sorted((tmp_path / "out").rglob("*.dcm"))
    assert len(outputs) == 2
    assert len({p.parts[-4] for p in outputs}) == 2  # one folder per patient pseudonym


def test_anonymize_exits_3_when_verify_finds_a_leak(tmp_path, key):
    _phi_mr(tmp_path / "in" / "a.dcm")
    weak = tmp_path / "weak.yaml"
    weak.write_text("actions:\n  OtherPatientNames: K\n")
    result = CliRunner().invoke(cli, ["anonymize", str(tmp_path / "in"), str(tmp_path / "out"), "--key-file",
                                      str(key), "--profile", str(weak)])
    assert result.exit_code == 3
    assert "1 file(s) still held an identifier of their input" in result.output
    assert "Quixote" not in result.output


def test_anonymize_with_a_bad_key_file_is_a_one_line_error(tmp_path):
    _phi_mr(tmp_path / "in" / "a.dcm")
    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    result = CliRunner().invoke(cli, ["anonymize", str(tmp_path / "in"), str(tmp_path / "out"), "--key-file",
                                      str(bad)])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {bad}: not a segkit key file; create one with `segkit keygen KEY`"
    assert not (tmp_path / "out").exists()


def test_anonymize_with_an_unknown_option_is_a_usage_error(tmp_path, key):
    _phi_mr(tmp_path / "in" / "a.dcm")
    result = CliRunner().invoke(cli, ["anonymize", str(tmp_path / "in"), str(tmp_path / "out"), "--key-file",
                                      str(key), "--option", "retain-all"])
    assert result.exit_code == 2
    assert result.output.startswith("error: --option retain-all: unknown option; choose from")
    assert not (tmp_path / "out").exists()


def test_killed_run_restarted_ends_with_the_same_bytes(synth_cohort, tmp_path, key):
    args = [str(synth_cohort), "", "--key-file", str(key), "--workers", "1"]
    reference = tmp_path / "reference"
    args[1] = str(reference)
    assert CliRunner().invoke(cli, ["anonymize", *args]).exit_code == 0

    killed = tmp_path / "killed"
    args[1] = str(killed)
    cmd = [sys.executable, "-m", "segkit.cli", "anonymize", *args]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, start_new_session=True)
    audit = killed / "segkit-audit.jsonl"
    while proc.poll() is None:  # kill it as soon as some files are done (no time limit: waits on progress)
        if audit.exists() and len(audit.read_text().splitlines()) >= 5:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    done_before = len(audit.read_text().splitlines())
    result = CliRunner().invoke(cli, ["anonymize", *args])
    assert result.exit_code == 0, result.output
    if done_before < len(_tree_bytes(reference)):
        assert "already done" in result.output
    assert _tree_bytes(killed) == _tree_bytes(reference)
    assert not [p for p in killed.rglob(".*tmp-*")]


def test_resume_redoes_a_file_whose_output_went_missing(tmp_path, key):
    _phi_mr(tmp_path / "in" / "a.dcm")
    _phi_mr(tmp_path / "in" / "b.dcm", name="Panza^Sancho", mrn="MRN0000777")
    args = ["anonymize", str(tmp_path / "in"), str(tmp_path / "out"), "--key-file", str(key)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    before = _tree_bytes(tmp_path / "out")
    victim = sorted((tmp_path / "out").rglob("*.dcm"))[0]
    victim.unlink()
    result = CliRunner().invoke(cli, args)
    assert "1 already done" in result.output
    assert _tree_bytes(tmp_path / "out") == before


# ------------------------------------------------------------------ the verifier's patterns
def _verifier_for(**values: str):
    c = PhiCollector()
    for kind, value in values.items():
        getattr(c, f"add_{kind}")(value)
    return c.verifier()


@pytest.mark.parametrize("text", [b"DOE^JOHN ", b"John Doe", b"doe, john", b"Doe John", b"x\\John Doe"])
def test_verifier_finds_a_name_however_it_is_written(text):
    v = _verifier_for(name="Doe^John")
    assert v.leaks(b"\x00\x10" + text + b"\x00")


@pytest.mark.parametrize("text", [b"19470102", b"1947-01-02", b"02/01/1947", b"01/02/1947", b"02.01.1947",
                                  b"19470102120000"])
def test_verifier_finds_a_date_in_other_formats(text):
    v = _verifier_for(date="19470102")
    assert v.leaks(b" " + text + b" ")


def test_verifier_does_not_match_inside_longer_numbers_or_uids():
    v = _verifier_for(date="19470102", uid="1.2.826.0.1.3680043.2.1125")
    assert not v.leaks(b"2.25.11194701023")  # the date inside a longer integer
    assert not v.leaks(b"1.2.826.0.1.3680043.2.1125.7")  # the UID as a prefix of another UID
    assert v.leaks(b"\x001.2.826.0.1.3680043.2.1125\x00")


def test_verifier_finds_an_id_padded_and_in_any_case():
    v = _verifier_for(text="mrn4711042 ")
    assert v.leaks(b"PID MRN4711042 ")


def test_removed_private_text_is_searched_as_a_token():
    c = PhiCollector()
    c.add_opaque(b"\x10\x00LO\x0c\x00ZX-SECRET-77\x00")
    v = c.verifier()
    assert v.leaks(b"\x00\x08ZX-SECRET-77 ")
    assert not v.leaks(b"\x00\x08ZX-SECRET-7 ")


def test_verifier_finds_a_non_ascii_name_in_the_file_character_set_and_any_case():
    c = PhiCollector()
    c.add_name("Müller^Jürgen")
    v = c.verifier("latin-1")
    assert v.leaks(b" J\xfcrgen M\xfcller ")  # as written, Latin-1
    assert v.leaks(b" M\xdcLLER ")  # upper case, Latin-1
    assert v.leaks(" müller ".encode("utf-8"))  # UTF-8 is always tried


def test_weakened_profile_leak_of_a_latin1_name_is_caught(tmp_path):
    import pydicom as _pydicom

    from segkit.deid import anonymize_tree
    from segkit.errors import LeakError

    path = _phi_mr(tmp_path / "in" / "a.dcm", name="Müller^Jürgen")
    ds = _pydicom.dcmread(path)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageComments = "Befund: JÜRGEN MÜLLER"
    ds.save_as(path)
    assert "MÜLLER".encode("latin-1") in path.read_bytes()
    weak = tmp_path / "weak.yaml"
    weak.write_text("actions:\n  ImageComments: K\n")
    with pytest.raises(LeakError, match="still held an identifier"):
        anonymize_tree(tmp_path / "in", tmp_path / "out", b"k" * 32, profile=weak, workers=1)
    anonymize_tree(tmp_path / "in", tmp_path / "out2", b"k" * 32, workers=1)  # default profile: cleaned
    (out,) = sorted((tmp_path / "out2").rglob("*.dcm"))
    assert _pydicom.dcmread(out).ImageComments == "Befund: ***"


def test_verifier_finds_digit_ids_and_dates_glued_to_letters():
    v = _verifier_for(text="4711042", date="19470102")
    assert v.leaks(b" MRN4711042 ")
    assert v.leaks(b" DOB19470102x")
    assert not v.leaks(b" 147110420 ")  # inside a longer number


def test_free_text_is_scrubbed_of_ids_dates_and_uids():
    c = PhiCollector()
    c.add_name("Doe^Jane")
    c.add_text("4711042")
    c.add_date("19470102")
    c.add_uid("1.2.826.0.1.3680043.2.1125.99")
    text = "jane DOE, MRN4711042, born 02.01.1947, study 1.2.826.0.1.3680043.2.1125.99; MRI 3T"
    assert c.scrubber()(text, "***") == "***, MRN***, born ***, study ***; MRI 3T"


def test_resuming_with_another_key_is_refused(tmp_path, key):
    _phi_mr(tmp_path / "in" / "a.dcm")
    args = ["anonymize", str(tmp_path / "in"), str(tmp_path / "out"), "--key-file"]
    assert CliRunner().invoke(cli, [*args, str(key)]).exit_code == 0
    other = tmp_path / "other.key"
    assert CliRunner().invoke(cli, ["keygen", str(other)]).exit_code == 0
    result = CliRunner().invoke(cli, [*args, str(other)])
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: {tmp_path / 'out'}: was made with another key, profile or options; "
                                     "resume it with the same ones or choose a new output folder")


def test_output_folder_that_segkit_did_not_make_is_refused(tmp_path, key):
    _phi_mr(tmp_path / "in" / "a.dcm")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine\n")
    result = CliRunner().invoke(cli, ["anonymize", str(tmp_path / "in"), str(tmp_path / "out"), "--key-file",
                                      str(key)])
    assert result.exit_code == 2
    assert "exists and was not made by segkit anonymize" in result.output


@pytest.mark.parametrize("name", ["chrH31.dcm", "chrGerm.dcm", "chrRuss.dcm", "chrX1.dcm", "chrKoreanMulti.dcm"])
def test_verify_catches_a_kept_name_in_the_file_own_character_set(tmp_path, name):
    """Names in ISO 2022 (Japanese, Korean), Latin-1, Cyrillic and UTF-8 files, kept by a weakened profile."""
    import pydicom as _pydicom
    import pydicom.data

    from segkit.deid import anonymize_tree
    from segkit.errors import LeakError

    ds = _pydicom.dcmread(Path(pydicom.data.__file__).parent / "charset_files" / name)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR: the samples are SC/CR images, at burned-in risk
    ds.Modality = "MR"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPInstanceUID = _pydicom.uid.generate_uid()
    if "PixelData" not in ds:  # chrKoreanMulti carries a header only
        from pydicom.data import get_testdata_file

        mr = _pydicom.dcmread(get_testdata_file("MR_small.dcm"))
        for kw in ("Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated",
                   "BitsStored", "HighBit", "PixelRepresentation"):
            setattr(ds, kw, getattr(mr, kw))
        ds.add_new(0x7FE00010, "OW", mr.PixelData)
    ds.OtherPatientNames = ds.PatientName  # the same name, in the same character set
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / name, enforce_file_format=True)
    weak = tmp_path / "weak.yaml"
    weak.write_text("actions:\n  OtherPatientNames: K\n")
    with pytest.raises(LeakError, match="still held an identifier"):
        anonymize_tree(tmp_path / "in", tmp_path / "out", b"k" * 32, profile=weak, workers=1)
    assert '"(0010,1001)"' in (tmp_path / "out" / "segkit-audit.jsonl").read_text()
