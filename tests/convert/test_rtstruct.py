"""segkit.convert.rtstruct: contours → masks by geometry, even-odd, pixel centre; problems are never silent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from skimage.measure import points_in_poly

from tests.helpers.convert import load_volume, segkit_warnings
from segkit.errors import GeometryError
from segkit.convert.roi import RoiSelector
from segkit.convert.rtstruct import rtstruct_masks, rtstruct_rois
from segkit.synth.contours import mask_to_polygons

RTUTILS = "qurit+rt-utils/tests"


def _mock_volume(fixtures: Path):
    return load_volume([fixtures / RTUTILS / "mock_data/ct_1.dcm", fixtures / RTUTILS / "mock_data/ct_2.dcm"])


def test_rtutils_roi_with_a_hole_is_the_pixel_centre_xor_of_its_contours(shared_fixtures):
    volume = _mock_volume(shared_fixtures)
    ds = pydicom.dcmread(shared_fixtures / RTUTILS / "mock_data/rt.dcm")
    # rt-utils wrote this RTSTRUCT with a frame of reference of its own: strict mode refuses it …
    with pytest.raises(GeometryError, match="rt.dcm: is in another frame of reference than series test"):
        rtstruct_masks(ds, volume, label="rt.dcm")
    # … lenient mode places it by geometry
    mask = rtstruct_masks(ds, volume, strict=False)["ROI-1"]
    # expected, computed independently: axial CT at z=60, origin (-125, -125), 0.488281 mm pixels
    rows, cols = np.mgrid[:512, :512]
    centres = np.c_[cols.ravel(), rows.ravel()]
    expected = np.zeros((512, 512), bool)
    for contour in ds.ROIContourSequence[0].ContourSequence:
        pts = np.asarray(contour.ContourData, float).reshape(-1, 3)
        assert np.all(pts[:, 2] == 60.0)
        poly = (pts[:, :2] + 125.0) / 0.488281
        expected ^= points_in_poly(centres, poly).reshape(512, 512)
    np.testing.assert_array_equal(mask[0], expected)
    assert not mask[1].any()
    # the inner contour is a hole: some pixels inside the outer contour are outside the mask
    outer = ds.ROIContourSequence[0].ContourSequence[1]
    outer_poly = (np.asarray(outer.ContourData, float).reshape(-1, 3)[:, :2] + 125.0) / 0.488281
    assert (points_in_poly(centres, outer_poly).reshape(512, 512) & ~mask[0]).sum() > 0


def test_contour_on_no_slice_is_an_error_naming_the_roi(shared_fixtures):
    volume = _mock_volume(shared_fixtures)
    ds = pydicom.dcmread(shared_fixtures / RTUTILS / "empty/dummy_rt.dcm")  # third slice (z=70) not shipped
    with pytest.raises(GeometryError, match=r"dummy_rt.dcm ROI 'ROI-1': contour \d lies on no slice of series test "
                                            r"\(nearest is 5 mm away\)"):
        rtstruct_masks(ds, volume, label="dummy_rt.dcm")


def test_lenient_turns_a_contour_on_no_slice_into_a_warning(shared_fixtures, caplog):
    volume = _mock_volume(shared_fixtures)
    ds = pydicom.dcmread(shared_fixtures / RTUTILS / "empty/dummy_rt.dcm")
    with segkit_warnings(caplog):
        masks = rtstruct_masks(ds, volume, strict=False, label="dummy_rt.dcm")
    assert "lies on no slice" in caplog.text and "ignored: --lenient" in caplog.text
    assert sorted(masks) == ["ROI-1", "ROI-2", "ROI-3", "ROI-4"]
    assert all(m[0].any() or m[1].any() for m in masks.values())


def test_roi_selection_is_a_case_insensitive_regular_expression(shared_fixtures):
    volume = _mock_volume(shared_fixtures)
    ds = pydicom.dcmread(shared_fixtures / RTUTILS / "empty/dummy_rt.dcm")
    masks = rtstruct_masks(ds, volume, RoiSelector([r"roi-[12]$"]), strict=False)
    assert sorted(masks) == ["ROI-1", "ROI-2"]


def test_clinical_rtstruct_lists_every_roi_including_an_empty_one(shared_fixtures):
    ds = pydicom.dcmread(shared_fixtures / "dicompyler+dicompyler-core/tests/testdata/example_data/rtss.dcm")
    rois = {r.name: len(r.contours) for r in rtstruct_rois(ds)}
    assert len(rois) == 10 and rois["Areola"] == 0
    assert sum(rois.values()) == 441


def _synth_rtstruct(cohort: Path, patient: str = "patient-01"):
    ds = pydicom.dcmread(next((cohort / patient / "RTSTRUCT").iterdir()))
    volume = load_volume(sorted((cohort / patient / "MR").iterdir()))
    truth = np.load(cohort / "truth" / f"{patient}.npy")
    return ds, volume, truth


def test_synthetic_rtstruct_gives_back_the_truth_exactly(synth_cohort):
    ds, volume, truth = _synth_rtstruct(synth_cohort)
    np.testing.assert_array_equal(rtstruct_masks(ds, volume)["GTV"], truth)


def test_point_and_open_contours_are_skipped_with_a_warning(synth_cohort, caplog):
    ds, volume, truth = _synth_rtstruct(synth_cohort)
    contours = ds.ROIContourSequence[0].ContourSequence
    for kind, pts in (("POINT", contours[0].ContourData[:3]), ("OPEN_PLANAR", contours[0].ContourData[:9])):
        extra = Dataset()
        extra.ContourGeometricType = kind
        extra.NumberOfContourPoints = len(pts) // 3
        extra.ContourData = pts
        contours.append(extra)
    with segkit_warnings(caplog):
        mask = rtstruct_masks(ds, volume, label="rt")["GTV"]
    np.testing.assert_array_equal(mask, truth)
    assert "skipped 1 OPEN_PLANAR contour(s)" in caplog.text and "skipped 1 POINT contour(s)" in caplog.text


def test_non_planar_contour_is_an_error(synth_cohort):
    ds, volume, _ = _synth_rtstruct(synth_cohort)
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    data = [float(v) for v in contour.ContourData]
    data[0:3] = list(np.asarray(data[0:3]) + 0.9 * volume.normal)  # lift one point 0.9 mm off the plane
    contour.ContourData = [f"{v:.4f}" for v in data]
    with pytest.raises(GeometryError, match=r"rt ROI 'GTV': contour 1 is not planar \(its points span 0.9 mm"):
        rtstruct_masks(ds, volume, label="rt")


def test_degenerate_contours_do_not_crash(synth_cohort):
    ds, volume, truth = _synth_rtstruct(synth_cohort)
    contours = ds.ROIContourSequence[0].ContourSequence
    first = [float(v) for v in contours[0].ContourData]
    for pts in (first[:6], first[:3] * 3):  # two points; three identical points (zero area)
        extra = Dataset()
        extra.ContourGeometricType = "CLOSED_PLANAR"
        extra.ContourData = [f"{v:.4f}" for v in pts]
        contours.append(extra)
    np.testing.assert_array_equal(rtstruct_masks(ds, volume)["GTV"], truth)


def test_oblique_non_square_series_rasterises_its_own_outlines_exactly(shared_fixtures):
    """Outlines traced on the 50×100 oblique rt-utils series, placed with DICOM's own formula."""
    files = sorted((shared_fixtures / RTUTILS / "oriented_data").glob("*.dcm"))
    volume = load_volume(files)
    yy, xx = np.mgrid[:50, :100]
    truth = np.zeros((3, 50, 100), bool)
    for k in range(3):
        blob = ((yy - 25) / (12 + 3 * k)) ** 2 + ((xx - 40 - 5 * k) / 30) ** 2 < 1
        hole = ((yy - 25) / 4) ** 2 + ((xx - 45) / 8) ** 2 < 1
        truth[k] = blob & ~hole
    contours = []
    for f in files:
        h = pydicom.dcmread(f, stop_before_pixels=True)
        k = volume.slice_of(h.SOPInstanceUID)
        ipp = np.asarray(h.ImagePositionPatient, float)
        iop = np.asarray(h.ImageOrientationPatient, float)
        dy, dx = (float(v) for v in h.PixelSpacing)
        for poly in mask_to_polygons(truth[k]):  # (column, row) index coordinates
            pts = ipp + np.outer(poly[:, 0] * dx, iop[:3]) + np.outer(poly[:, 1] * dy, iop[3:])
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.ContourData = [f"{v:.6f}" for v in pts.ravel()]
            contours.append(c)
    ds = Dataset()
    roi = Dataset()
    roi.ROINumber, roi.ROIName = 1, "GTV"
    ds.StructureSetROISequence = Sequence([roi])
    item = Dataset()
    item.ReferencedROINumber = 1
    item.ContourSequence = Sequence(contours)
    ds.ROIContourSequence = Sequence([item])
    np.testing.assert_array_equal(rtstruct_masks(ds, volume)["GTV"], truth)


def test_contour_image_reference_is_only_a_cross_check(synth_cohort, caplog):
    ds, volume, truth = _synth_rtstruct(synth_cohort)
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    contour.ContourImageSequence[0].ReferencedSOPInstanceUID = volume.sop_instance_uids[0]  # wrong slice
    with segkit_warnings(caplog):
        mask = rtstruct_masks(ds, volume, label="rt")["GTV"]
    np.testing.assert_array_equal(mask, truth)  # placed by geometry all the same
    assert "1 contour(s) reference another image than the slice they lie on; placed by geometry" in caplog.text
