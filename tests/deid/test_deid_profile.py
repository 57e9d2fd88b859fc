"""The PS3.15 profile table, its options and overrides; keyed pseudonyms, UIDs, date shifts; the site key."""

from __future__ import annotations

import json
import stat
from importlib import resources

import pytest

from segkit.deid.profile import DEFAULT_OPTIONS, PROFILE_FILE, load_profile, parse_options, table_rows
from segkit.deid.pseudonym import MAX_SHIFT_DAYS, Keyring, generate_key, read_key, shift_date, shift_datetime
from segkit.errors import InputError, OutputExistsError, UsageError


def _tag(group: int, element: int) -> int:
    return (group << 16) | element


def test_profile_file_names_its_edition_of_the_standard():
    doc = json.loads(resources.files("segkit").joinpath("data", "deid", PROFILE_FILE).read_text())
    assert doc["edition"] == "2026c"
    assert "Table E.1-1" in doc["title"]
    assert load_profile().edition == "2026c"


def test_profile_covers_every_attribute_of_the_2026c_basic_profile_column():
    selector = pytest.importorskip("dicomanonymizer.dicomfields_selector")
    published = selector.dicom_anonymization_database_selector("dicomfields_2026c")
    category_action = {"D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D",
                       "X_Z_TAGS": "X/Z", "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*"}
    expected = {}
    for category, action in category_action.items():
        for t in published[category]:
            if len(t) == 2:
                expected[f"{t[0]:04X}{t[1]:04X}"] = action
            else:  # repeating group (gggg, eeee, group mask, element mask)
                g, e, _, emask = t
                expected[f"{g >> 8:02X}XX" + (f"{e:04X}" if emask == 0xFFFF else "XXXX")] = action
    _, rows = table_rows()
    ours = {r["tag"].upper(): r["basic"] for r in rows}
    missing = sorted(set(expected) - set(ours))
    differing = sorted(t for t in expected if t in ours and ours[t] != expected[t])
    assert not missing, f"attributes of the Basic Profile missing from the table: {missing[:10]}"
    assert not differing, f"Basic Profile actions that differ: {differing[:10]}"
    assert len(expected) >= 600


def test_default_options_shift_dates_and_clean_descriptors():
    p = load_profile()
    assert p.options == DEFAULT_OPTIONS
    assert p.actions[_tag(0x0008, 0x0020)] == "C"  # Study Date: shifted
    assert p.actions[_tag(0x0008, 0x103E)] == "C"  # Series Description: cleaned, not removed
    assert p.actions[_tag(0x0010, 0x1001)] == "X"  # Other Patient Names
    assert p.actions[_tag(0x0020, 0x000D)] == "U"  # Study Instance UID
    assert p.actions[_tag(0x0010, 0x0010)] == "P" and p.actions[_tag(0x0010, 0x0020)] == "P"


def test_basic_profile_without_options_removes_dates_and_descriptions():
    p = load_profile([])
    assert p.actions[_tag(0x0008, 0x0020)] == "Z"
    assert p.actions[_tag(0x0008, 0x103E)] == "X"


def test_options_keep_what_they_name():
    p = load_profile(parse_options(["retain-uids", "retain-device-identity", "retain-patient-characteristics"]))
    assert p.actions[_tag(0x0020, 0x000D)] == "K"
    assert p.actions[_tag(0x0018, 0x1000)] == "K"  # Device Serial Number
    assert p.actions[_tag(0x0010, 0x1010)] == "K"  # Patient's Age
    assert p.actions[_tag(0x0010, 0x0010)] == "P"  # names stay pseudonymised whatever the options


def test_option_can_be_turned_off_with_no_prefix():
    assert "clean_descriptors" not in parse_options(["no-clean-descriptors"])


def test_unknown_option_is_refused():
    with pytest.raises(UsageError, match="unknown option; choose from"):
        parse_options(["retain-everything"])


def test_full_and_modified_dates_exclude_each_other():
    with pytest.raises(UsageError, match="exclude each other"):
        parse_options(["retain-full-dates"])


def test_yaml_override_changes_one_action(tmp_path):
    f = tmp_path / "weak.yaml"
    f.write_text("actions:\n  OtherPatientNames: K\n  '(0020,4000)': X\n")
    p = load_profile(None, f)
    assert p.actions[_tag(0x0010, 0x1001)] == "K"
    assert p.actions[_tag(0x0020, 0x4000)] == "X"


def test_yaml_override_with_unknown_keyword_is_refused(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("actions:\n  PatientFavouriteColour: K\n")
    with pytest.raises(InputError, match="neither a DICOM keyword nor a tag"):
        load_profile(None, f)


def test_yaml_override_with_unknown_action_is_refused(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("actions:\n  PatientName: KEEP\n")
    with pytest.raises(InputError, match="is not one of D, Z, X, K, C, U"):
        load_profile(None, f)


# ------------------------------------------------------------------ keyed replacements
def test_uid_is_2_25_stable_and_depends_on_the_key():
    a, b = Keyring(b"a" * 32), Keyring(b"b" * 32)
    uid = "1.2.840.113619.2.55.3.1234"
    assert a.uid(uid) == Keyring(b"a" * 32).uid(uid)
    assert a.uid(uid) != b.uid(uid)
    assert a.uid(uid) != a.uid(uid + "1")
    new = a.uid(uid)
    assert new.startswith("2.25.") and len(new) <= 64 and new[5:].isdigit()
    assert int(new[5:]) < 2**128


def test_patient_pseudonym_follows_the_pattern():
    kr = Keyring(b"k" * 32, "STUDY42-{hash}")
    p = kr.patient("MRN123")
    assert p.startswith("STUDY42-") and len(p) == len("STUDY42-") + 12
    assert p != Keyring(b"q" * 32, "STUDY42-{hash}").patient("MRN123")


def test_pseudonym_pattern_must_contain_hash():
    with pytest.raises(ValueError, match=r"must contain '\{hash\}'"):
        Keyring(b"k" * 32, "STUDY42")


def test_date_shift_is_per_patient_negative_and_bounded():
    kr = Keyring(b"k" * 32)
    shifts = {kr.shift_days(f"MRN{i}") for i in range(50)}
    assert all(-MAX_SHIFT_DAYS <= s <= -1 for s in shifts)
    assert len(shifts) > 40  # patients do not share one offset
    assert kr.shift_days("MRN1") == Keyring(b"k" * 32).shift_days("MRN1")


def test_shift_date_handles_month_and_leap_year_boundaries():
    assert shift_date("20240301", -1) == "20240229"
    assert shift_date("2024.03.01", -1) == "20240229"
    assert shift_datetime("20240301101500.25+0100", -1) == "20240229101500.25+0100"
    assert shift_date("not a date", -1) is None


def test_keygen_writes_a_private_key_and_refuses_to_overwrite(tmp_path):
    path = generate_key(tmp_path / "site.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(read_key(path)) == 32
    with pytest.raises(OutputExistsError, match="a key file already exists"):
        generate_key(path)
    assert read_key(generate_key(path, overwrite=True)) != b""


def test_read_key_refuses_a_file_that_is_not_a_key(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    with pytest.raises(InputError, match="not a segkit key file"):
        read_key(bad)
