"""segkit.dicom.volume: series → (z, y, x) + geometry, and the geometry errors."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from segkit.errors import DicomError, GeometryError
from tests.helpers.convert import instances, load_volume

CT2 = "pydicom+pydicom/src/pydicom/data/test_files/dicomdirtests/77654033/CT2"
ORIENTED = "qurit+rt-utils/tests/oriented_data"


def _mr(cohort: Path, patient: str = "patient-01") -> list[Path]:
    return sorted((cohort / patient / "MR").iterdir())


def test_slices_are_ordered_by_position_not_file_order(synth_cohort):
    files = _mr(synth_cohort)
    shuffled = files[:]
    random.Random(3).shuffle(shuffled)
    a, b = load_volume(files), load_volume(shuffled)
    np.testing.assert_array_equal(a.array, b.array)
    assert a.sop_instance_uids == b.sop_instance_uids
    assert np.all(np.diff(a.positions) > 0)
    np.testing.assert_allclose(np.diff(a.positions), 2.0)
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    lowest = min(headers, key=lambda h: float(np.dot(h.ImagePositionPatient, a.normal)))
    assert a.sop_instance_uids[0] == lowest.SOPInstanceUID


def test_affine_maps_every_slice_origin_to_its_index(synth_cohort):
    vol = load_volume(_mr(synth_cohort))
    for f in _mr(synth_cohort):
        h = pydicom.dcmread(f, stop_before_pixels=True)
        k = vol.slice_of(h.SOPInstanceUID)
        np.testing.assert_allclose(vol.to_index(np.array(h.ImagePositionPatient, float))[0], [0, 0, k], atol=1e-4)
        np.testing.assert_allclose(vol.affine @ [0, 0, k, 1], [*map(float, h.ImagePositionPatient), 1], atol=1e-4)


def test_rescale_slope_and_intercept_are_applied(tmp_path):
    path = Path(get_testdata_file("CT_small.dcm"))
    ds = pydicom.dcmread(path)
    assert float(ds.RescaleIntercept) != 0 or float(ds.RescaleSlope) != 1
    vol = load_volume([path])
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(vol.array[0], expected.astype(np.float32))


def test_non_square_oblique_series_keeps_rows_and_columns(shared_fixtures):
    vol = load_volume(shared_fixtures / ORIENTED)
    assert vol.shape == (3, 50, 100)
    assert vol.pixel_spacing == (3.5, 2.5)
    np.testing.assert_allclose(vol.row_dir, [0.9541666, -0.2080757, 0.2151061])
    assert vol.slice_spacing == pytest.approx(4.5, abs=0.05)


def test_missing_slice_is_an_error_naming_the_series(synth_cohort):
    files = _mr(synth_cohort)
    ordered = sorted(files, key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).SliceLocation))
    with pytest.raises(GeometryError, match=r"series test: is missing 1 slice\(s\) after slice 4 \(gap 4 mm, spacing 2 mm\)"):
        load_volume(ordered[:5] + ordered[6:])


def test_uneven_spacing_is_an_error_unless_allowed(shared_fixtures):
    with pytest.raises(GeometryError, match=r"is missing 161 slice\(s\) after slice 0 \(gap 202 mm"):
        load_volume(shared_fixtures / CT2)
    files = sorted((shared_fixtures / CT2).iterdir())
    with pytest.raises(GeometryError, match=r"has uneven slice spacing \(1.25 to 204 mm\)"):
        load_volume(files[:1] + files[2:])  # -99.48, 104.27, 105.52: no whole number of slices fits
    vol = load_volume(shared_fixtures / CT2, allow_uneven=True)
    np.testing.assert_allclose(vol.positions, [-99.48, 103.02, 104.27, 105.52], atol=1e-4)


def _copy_with(tmp_path: Path, files: list[Path], change) -> list[Path]:
    out = []
    for i, f in enumerate(files):
        dst = tmp_path / f.name
        ds = pydicom.dcmread(f)
        if i == 2:
            change(ds)
        ds.save_as(dst)
        out.append(dst)
    return out


def test_mixed_orientation_is_an_error(synth_cohort, tmp_path):
    def tilt(ds):
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0.9950042, 0.0998334]

    with pytest.raises(GeometryError, match="mixes slice orientations"):
        load_volume(_copy_with(tmp_path, _mr(synth_cohort), tilt))


def test_mixed_frame_of_reference_is_an_error(synth_cohort, tmp_path):
    def other_frame(ds):
        ds.FrameOfReferenceUID = "2.25.1234"

    with pytest.raises(GeometryError, match="mixes frames of reference"):
        load_volume(_copy_with(tmp_path, _mr(synth_cohort), other_frame))


def test_two_slices_at_one_position_is_an_error(synth_cohort, tmp_path):
    files = _mr(synth_cohort)
    dup = tmp_path / "dup.dcm"
    ds = pydicom.dcmread(files[0])
    ds.SOPInstanceUID = "2.25.99"
    ds.save_as(dup)
    with pytest.raises(GeometryError, match="two slices at the same position"):
        load_volume([*files, dup])


def test_truncated_file_is_an_error_naming_it(synth_cohort, tmp_path):
    files = _mr(synth_cohort)
    broken = tmp_path / "0001.dcm"
    data = files[0].read_bytes()
    broken.write_bytes(data[: len(data) - 3000])
    with pytest.raises(DicomError, match=rf"{broken}: has unreadable pixel data|{broken}: cannot be parsed"):
        load_volume([broken, *files[1:]])


def test_file_without_pixel_data_is_an_error(synth_cohort, tmp_path):
    files = _mr(synth_cohort)
    ds = pydicom.dcmread(files[0])
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm")
    with pytest.raises(DicomError, match="nopix.dcm: has no pixel data"):
        load_volume([tmp_path / "nopix.dcm", *files[1:]])


def test_not_dicom_is_an_error(tmp_path):
    path = tmp_path / "x.dcm"
    path.write_text("hello")
    with pytest.raises(DicomError, match=r"x.dcm: is not a DICOM file"):
        instances([path])


def test_sheared_stack_is_an_error(synth_cohort, tmp_path):
    def shift(ds):
        ds.ImagePositionPatient = [f"{float(v) + d:.4f}" for v, d in zip(ds.ImagePositionPatient, (1.0, 0.0, 0.0))]

    with pytest.raises(GeometryError, match=r"has slices shifted within their plane \(sheared stack or gantry tilt\)"):
        load_volume(_copy_with(tmp_path, _mr(synth_cohort), shift))


def test_scan_passes_over_segkit_records_silently_but_counts_other_non_dicom(synth_cohort_copy: Path) -> None:
    from segkit.dicom.dicomio import scan_folder

    (synth_cohort_copy / "segkit-audit.jsonl").write_text("{}\n")
    (synth_cohort_copy / "segkit-anonymize.json").write_text("{}\n")
    scan = scan_folder(synth_cohort_copy)
    # cohort.json and the six truth .npy files are someone else's: counted, named by reason.
    assert scan.skipped == {"not DICOM (by file name)": 7}
    assert len(scan.images) == 6
