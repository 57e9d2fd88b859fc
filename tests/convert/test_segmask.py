"""segkit.convert.segmask: DICOM SEG → masks through highdicom, placed by source instance or position."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.helpers.convert import load_volume
from segkit.errors import GeometryError
from segkit.convert.roi import RoiSelector
from segkit.convert.segmask import seg_masks, seg_segments

DCMQI = "QIICR+dcmqi/data/segmentations"
HIGHDICOM = "ImagingDataCommons+highdicom/data/test_files"
CT2 = "pydicom+pydicom/src/pydicom/data/test_files/dicomdirtests/77654033/CT2"


def _nrrd(path: Path) -> np.ndarray:
    nrrd = pytest.importorskip("nrrd", reason="pynrrd (the 'test' extra) reads the dcmqi ground truth")
    data, header = nrrd.read(str(path))
    assert header["space"] == "left-posterior-superior"
    return data.transpose(2, 1, 0)  # NRRD (x, y, z) → (z, y, x)


@pytest.mark.parametrize("seg, images, truths", [
    ("liver.dcm", "ct-3slice", ["liver_seg.nrrd"]),
    ("partial_overlaps.dcm", "ct-3slice",
     ["partial_overlaps-1.nrrd", "partial_overlaps-2.nrrd", "partial_overlaps-3.nrrd"]),
    ("23x38x3/seg/label.seg", "23x38x3/image", ["23x38x3/nrrd/label.nrrd"]),
    ("24x38x3/seg/label.seg", "24x38x3/image", ["24x38x3/nrrd/label.nrrd"]),
    ("sparse-labelmap-noppv.dcm", "24x38x3/image", ["sparse_labelmap_noppv_seg.nrrd"]),
    ("sparse-labelmap-ppv5.dcm", "24x38x3/image", ["sparse_labelmap_ppv5_seg.nrrd"]),
])
def test_dcmqi_segs_equal_their_nrrd_ground_truth(shared_fixtures, seg, images, truths):
    root = shared_fixtures / DCMQI
    ds = pydicom.dcmread(root / seg)
    volume = load_volume(root / images)
    masks = seg_masks(ds, volume)
    names = seg_segments(ds)
    checked = 0
    for truth_file in truths:
        truth = _nrrd(root / truth_file)
        for value in np.unique(truth)[1:]:  # each file holds non-overlapping segments labelled by number
            if value == ds.get("PixelPaddingValue"):  # dcmqi marks the frame a sparse labelmap omits
                assert not any(m[truth == value].any() for m in masks.values())
                continue
            np.testing.assert_array_equal(masks[names[int(value)]], truth == value)
            checked += 1
    assert checked == (5 if "overlaps" in seg else 1)


def _frames_by_source(ds) -> dict[tuple[str, int], np.ndarray]:
    """(referenced SOP Instance UID, segment number) → frame, read with pydicom alone."""
    pixels = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    out = {}
    for i, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        number = int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        out[(uid, number)] = pixels[i]
    return out


@pytest.mark.parametrize("name", ["seg_image_ct_binary.dcm", "seg_image_ct_binary_fractional.dcm",
                                  "seg_image_ct_binary_overlap.dcm"])
def test_highdicom_segs_are_placed_by_source_instance(shared_fixtures, name):
    ds = pydicom.dcmread(shared_fixtures / HIGHDICOM / name)
    volume = load_volume(shared_fixtures / CT2, allow_uneven=True)
    masks = seg_masks(ds, volume)
    frames = _frames_by_source(ds)
    scale = float(ds.get("MaximumFractionalValue", 1))
    names = seg_segments(ds)
    for (uid, number), frame in frames.items():
        k = volume.slice_of(uid)
        np.testing.assert_array_equal(masks[names[number]][k], frame / scale >= 0.5)
    covered = {volume.slice_of(uid) for uid, _ in frames}
    for m in masks.values():
        assert not m[[k for k in range(volume.shape[0]) if k not in covered]].any()


def test_fractional_seg_uses_the_threshold(shared_fixtures):
    ds = pydicom.dcmread(shared_fixtures / HIGHDICOM / "seg_image_ct_true_fractional.dcm")
    volume = load_volume(shared_fixtures / CT2, allow_uneven=True)
    frames = _frames_by_source(ds)
    values = np.concatenate([f.ravel() for f in frames.values()]) / float(ds.MaximumFractionalValue)
    assert len(np.unique(values)) > 2  # truly fractional
    for threshold in (0.2, 0.5, 0.8):
        got = sum(int(m.sum()) for m in seg_masks(ds, volume, threshold=threshold).values())
        assert got == int((values >= threshold).sum())


def test_single_frame_seg_on_a_single_slice(shared_fixtures):
    ds = pydicom.dcmread(shared_fixtures / HIGHDICOM / "seg_image_ct_binary_single_frame.dcm")
    volume = load_volume([shared_fixtures / HIGHDICOM / "ct_image.dcm"])
    mask = seg_masks(ds, volume)["first segment"]
    np.testing.assert_array_equal(mask[0], ds.pixel_array.astype(bool))


def test_segments_are_chosen_by_label(shared_fixtures):
    root = shared_fixtures / DCMQI
    masks = seg_masks(pydicom.dcmread(root / "partial_overlaps.dcm"), load_volume(root / "ct-3slice"),
                      RoiSelector([r"blue"]))
    assert sorted(masks) == ["DARK_BLUE", "LIGHT_BLUE"]


def test_seg_of_another_frame_of_reference_is_an_error(shared_fixtures):
    ds = pydicom.dcmread(shared_fixtures / HIGHDICOM / "seg_image_ct_binary.dcm")
    volume = load_volume(shared_fixtures / DCMQI / "ct-3slice")
    with pytest.raises(GeometryError, match="seg.dcm: is in another frame of reference than series test"):
        seg_masks(ds, volume, label="seg.dcm")


def test_synthetic_seg_gives_back_the_truth_exactly(synth_cohort):
    ds = pydicom.dcmread(next((synth_cohort / "patient-02" / "SEG").iterdir()))
    volume = load_volume(sorted((synth_cohort / "patient-02" / "MR").iterdir()))
    np.testing.assert_array_equal(seg_masks(ds, volume)["GTV"], np.load(synth_cohort / "truth" / "patient-02.npy"))
