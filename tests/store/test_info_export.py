"""segkit info / export, and the convert/info/export commands end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from segkit.cli import cli
from segkit.convert.run import convert
from segkit.errors import InputError, OutputExistsError
from segkit.store.export import export_hdf5
from segkit.store.info import store_info
from segkit.schemas import validate
from segkit.store.format import TABLE_COLUMNS
from segkit.store.reader import open_store


@pytest.fixture(scope="module")
def store_path(synth_cohort, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("info") / "slices.zarr"
    convert(synth_cohort, out)
    return out


def test_info_counts_patients_slices_tumour_and_split(store_path):
    info = store_info(store_path)
    table = open_store(store_path).table
    assert info.slices == 72 and len(info.patients) == 6
    assert info.tumour_slices == int(table["has_tumour"].sum()) > 0
    assert {k: v["patients"] for k, v in info.splits.items()} == {"train": 4, "val": 1, "test": 1}
    assert sum(v["slices"] for v in info.splits.values()) == 72
    assert info.sources == {"original": 72}
    text = info.text()
    assert "72 slices of 64x64" in text and "1. convert" in text
    validate(info.as_dict(), "info")


def test_info_on_something_else_is_an_error(tmp_path):
    with pytest.raises(InputError, match="no such store"):
        store_info(tmp_path / "missing.zarr")


def test_export_writes_the_same_arrays_table_and_attributes(store_path, tmp_path):
    out = export_hdf5(store_path, tmp_path / "s.h5")
    store = open_store(store_path)
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["image"][:], store.image[:])
        np.testing.assert_array_equal(f["mask"][:], store.mask[:])
        for name, dtype in TABLE_COLUMNS.items():
            column = f["slices"][name][:]
            if dtype is str:
                column = np.array([v.decode() for v in column], dtype=object)
            np.testing.assert_array_equal(column, store.table[name])
        attrs = json.loads(f.attrs["segkit"])
    assert [s["name"] for s in attrs["provenance"]] == ["convert", "export"]
    assert attrs["provenance"][1]["input_digest"] == store.digest()
    assert attrs["split"] == store.split
    validate(attrs["provenance"], "provenance")


def test_export_is_reproducible(store_path, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a = export_hdf5(store_path, tmp_path / "a.h5")
    b = export_hdf5(store_path, tmp_path / "b.h5")
    assert a.read_bytes() == b.read_bytes()


def test_export_refuses_an_existing_file_and_a_non_store(store_path, tmp_path):
    (tmp_path / "s.h5").write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="s.h5: already exists"):
        export_hdf5(store_path, tmp_path / "s.h5")
    with pytest.raises(InputError, match="is not a segkit store"):
        export_hdf5(tmp_path, tmp_path / "t.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]
    assert (tmp_path / "s.h5").read_bytes() == b"keep me"


# --------------------------------------------------------------------------- CLI
def test_cli_convert_info_export_chain(synth_cohort, tmp_path):
    runner = CliRunner()
    store = tmp_path / "s.zarr"
    result = runner.invoke(cli, ["convert", str(synth_cohort), str(store), "--masks", "rtstruct", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "72 slices" in result.stderr and "ROI 'GTV': 6 series, matched" in result.stderr
    assert open_store(store).provenance[0]["parameters"]["seed"] == 3
    result = runner.invoke(cli, ["info", str(store)])
    assert result.exit_code == 0 and "6 patients" in result.stdout
    result = runner.invoke(cli, ["info", "--json", str(store)])
    assert json.loads(result.stdout)["slices"] == 72
    result = runner.invoke(cli, ["export", str(store), str(tmp_path / "s.h5")])
    assert result.exit_code == 0 and (tmp_path / "s.h5").is_file()


def test_cli_bad_input_prints_one_line_error_and_writes_nothing(synth_cohort_copy, tmp_path):
    (synth_cohort_copy / "patient-01" / "MR" / "0004.dcm").write_text("garbage")
    runner = CliRunner()
    result = runner.invoke(cli, ["convert", str(synth_cohort_copy), str(tmp_path / "s.zarr")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == \
        f"error: {synth_cohort_copy / 'patient-01' / 'MR' / '0004.dcm'}: is not a DICOM file (no DICM preamble)"
    assert list(tmp_path.iterdir()) == [synth_cohort_copy]
    result = runner.invoke(cli, ["info", str(tmp_path / "nope.zarr")])
    assert result.exit_code == 1 and "error: " in result.stderr and "no such store" in result.stderr
    result = runner.invoke(cli, ["convert", str(synth_cohort_copy), str(tmp_path / "s.zarr"), "--roi", "("])
    assert result.exit_code == 2 and "error: --roi: '(' is not a valid regular expression" in result.stderr
