"""Contours off the slice planes (issue 10 item 6): an error naming file, ROI and distance; --snap-contours
places them; TPS rounding of on-plane contours is absorbed and the masks stay exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner

from tests.helpers.convert import patient_labels, segkit_warnings
from segkit.cli import cli
from segkit.convert.plan import ConvertOptions
from segkit.convert.run import convert
from segkit.errors import GeometryError
from segkit.convert.rtstruct import SLICE_TOLERANCE_FLOOR_MM, slice_tolerance
from segkit.store.reader import open_store


def _rtstruct(cohort: Path, patient: str) -> Path:
    return next((cohort / patient / "RTSTRUCT").iterdir())


def _normal(cohort: Path, patient: str) -> np.ndarray:
    ds = pydicom.dcmread(next((cohort / patient / "MR").iterdir()), stop_before_pixels=True)
    iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
    return np.cross(iop[:3], iop[3:])


def _rewrite_contours(path: Path, change) -> None:  # noqa: ANN001 - (n, 3) array → (n, 3) array or strings
    ds = pydicom.dcmread(path)
    for roi in ds.ROIContourSequence:
        for contour in roi.ContourSequence:
            points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
            contour.ContourData = list(change(points).ravel())
    ds.save_as(path)


def _shift_along_normal(cohort: Path, patient: str, mm: float) -> None:
    normal = _normal(cohort, patient)
    _rewrite_contours(_rtstruct(cohort, patient), lambda p: p + mm * normal)


def _masks(store_path: Path) -> np.ndarray:
    return open_store(store_path).mask[:]


def test_tolerance_is_a_tenth_of_the_spacing_with_a_floor():
    assert slice_tolerance(2.5) == pytest.approx(0.25)
    assert slice_tolerance(0.3) == SLICE_TOLERANCE_FLOOR_MM == 0.05


def test_off_plane_contour_is_an_error_with_its_distance_and_leaves_nothing(synth_cohort_copy, tmp_path):
    # synthetic spacing 2.0 mm: 0.7 mm is 0.35 of it, inside the old half-spacing snap, beyond the 0.2 mm tolerance
    _shift_along_normal(synth_cohort_copy, "patient-03", 0.7)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("was here")
    with pytest.raises(GeometryError, match=r"^patient-03/RTSTRUCT/rtstruct\.dcm ROI 'GTV': contour \d+ lies 0\.7 mm "
                                            r"off the nearest slice plane of series patient-03/MR \(tolerance 0\.2 mm"):
        convert(synth_cohort_copy, out_dir / "s.zarr")
    assert sorted(p.name for p in out_dir.iterdir()) == ["keep.txt"]


def test_off_plane_contour_is_not_covered_by_lenient(synth_cohort_copy, tmp_path):
    _shift_along_normal(synth_cohort_copy, "patient-03", 0.7)
    with pytest.raises(GeometryError, match=r"lies 0\.7 mm off.*--snap-contours"):
        convert(synth_cohort_copy, tmp_path / "out" / "s.zarr", ConvertOptions(lenient=True))
    assert not (tmp_path / "out").exists()


def test_snap_contours_places_them_on_the_nearest_slice_with_a_warning(synth_cohort, synth_cohort_copy, tmp_path,
                                                                       caplog):
    convert(synth_cohort, tmp_path / "ref.zarr", ConvertOptions(masks="rtstruct"))
    _shift_along_normal(synth_cohort_copy, "patient-03", 0.7)
    with segkit_warnings(caplog):
        convert(synth_cohort_copy, tmp_path / "s.zarr", ConvertOptions(masks="rtstruct", snap_contours=True))
    assert "patient-03/RTSTRUCT/rtstruct.dcm ROI 'GTV'" in caplog.text
    assert "up to 0.7 mm off the slice planes placed on the nearest slice (--snap-contours)" in caplog.text
    # shifted along the normal only, so on the nearest slice they give the original masks back
    np.testing.assert_array_equal(_masks(tmp_path / "s.zarr"), _masks(tmp_path / "ref.zarr"))
    assert open_store(tmp_path / "s.zarr").attrs["provenance"][-1]["parameters"]["snap_contours"] is True


def test_contour_beyond_the_stack_stays_a_lenient_case(synth_cohort_copy, tmp_path, caplog):
    # 1.5 spacings off: on no slice at all (the old rule), an error or, with --lenient, a warning
    _shift_along_normal(synth_cohort_copy, "patient-03", 100.0)
    with pytest.raises(GeometryError, match="lies on no slice of series patient-03/MR"):
        convert(synth_cohort_copy, tmp_path / "s.zarr", ConvertOptions(snap_contours=True, masks="rtstruct"))
    with segkit_warnings(caplog):
        convert(synth_cohort_copy, tmp_path / "s.zarr", ConvertOptions(lenient=True, masks="rtstruct"))
    assert "lies on no slice" in caplog.text and "ignored: --lenient" in caplog.text


def test_tps_rounding_of_an_oblique_study_still_converts_exactly(tmp_path):
    from segkit.synth import SynthConfig, write_cohort

    cohort = tmp_path / "oblique"
    write_cohort(cohort, SynthConfig(patients=2, slices=6, size=48, oblique=True, seed=5))
    for folder in sorted(cohort.glob("patient-*")):
        # a planning system writing every coordinate with 2 decimals (z included)
        _rewrite_contours(next((folder / "RTSTRUCT").iterdir()), lambda p: np.array([f"{v:.2f}" for v in p.ravel()]))
        ds = pydicom.dcmread(next((folder / "RTSTRUCT").iterdir()))
        assert all(len(str(v).split(".")[-1]) <= 2 for v in ds.ROIContourSequence[0].ContourSequence[0].ContourData)
    out = tmp_path / "s.zarr"
    convert(cohort, out, ConvertOptions(masks="rtstruct", val_patients=0, test_patients=1))
    store = open_store(out)
    labels = patient_labels(cohort)
    for patient in sorted(set(store.table["patient"])):
        rows = np.flatnonzero(store.table["patient"] == patient)
        np.testing.assert_array_equal(store.mask[int(rows[0]):int(rows[-1]) + 1].astype(bool),
                                      np.load(cohort / "truth" / f"{labels[patient]}.npy"))


def test_cli_names_the_distance_and_snap_contours_converts(synth_cohort_copy, tmp_path):
    _shift_along_normal(synth_cohort_copy, "patient-02", -0.5)
    runner = CliRunner()
    out = tmp_path / "out"
    out.mkdir()
    result = runner.invoke(cli, ["convert", str(synth_cohort_copy), str(out / "s.zarr")])
    assert result.exit_code == 1
    assert "error: patient-02/RTSTRUCT/rtstruct.dcm ROI 'GTV': contour" in result.output
    assert "lies 0.5 mm off the nearest slice plane" in result.output
    assert list(out.iterdir()) == []
    result = runner.invoke(cli, ["convert", str(synth_cohort_copy), str(out / "s.zarr"), "--snap-contours"])
    assert result.exit_code == 0, result.output
    assert (out / "s.zarr" / "zarr.json").is_file()
