"""segkit.convert on the synthetic cohort: masks equal the truth; errors stop the run and write nothing."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.helpers.convert import dice, patient_labels, segkit_warnings
from segkit.convert.plan import ConvertOptions
from segkit.convert.run import convert
from segkit.errors import DicomError, GeometryError, InputError, OutputExistsError, UsageError
from segkit.store.provenance import digest_files
from segkit.schemas import validate
from segkit.store.format import store_digest
from segkit.store.reader import open_store
from segkit.store.split import assign_split


def _masks_by_patient(store) -> dict[str, np.ndarray]:
    table = store.table
    out = {}
    for patient in sorted(set(table["patient"])):
        rows = np.flatnonzero(table["patient"] == patient)
        assert np.all(np.diff(rows) == 1) and list(table["index"][rows]) == list(range(len(rows)))
        out[patient] = store.mask[int(rows[0]):int(rows[-1]) + 1].astype(bool)
    return out


@pytest.fixture(scope="module")
def converted(synth_cohort, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("convert") / "slices.zarr"
    convert(synth_cohort, out)
    return out


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- masks
@pytest.mark.parametrize("masks", ["rtstruct", "seg"])
def test_masks_equal_the_synthetic_truth(synth_cohort, tmp_path, masks):
    out = tmp_path / "s.zarr"
    convert(synth_cohort, out, ConvertOptions(masks=masks))
    store = open_store(out)
    labels = patient_labels(synth_cohort)
    for patient, mask in _masks_by_patient(store).items():
        truth = np.load(synth_cohort / "truth" / f"{labels[patient]}.npy")
        assert dice(mask, truth) >= 0.99
        np.testing.assert_array_equal(mask, truth)  # both paths are exact on pixel-edge outlines
    assert {info["mask_source"] for info in store.attrs["series"].values()} == {masks.upper()}


def test_auto_uses_the_seg_and_cross_checks_it_with_the_rtstruct(converted, synth_cohort):
    store = open_store(converted)
    labels = patient_labels(synth_cohort)
    for patient, mask in _masks_by_patient(store).items():
        np.testing.assert_array_equal(mask, np.load(synth_cohort / "truth" / f"{labels[patient]}.npy"))
    for info in store.attrs["series"].values():
        assert info["mask_source"] == "SEG" and info["seg_rtstruct_dice"] == 1.0 and info["rois"] == {"GTV": "matched"}


def test_oblique_cohort_converts_exactly(tmp_path):
    from segkit.synth import SynthConfig, write_cohort

    cohort = tmp_path / "oblique"
    write_cohort(cohort, SynthConfig(patients=2, slices=6, size=48, oblique=True, seed=5))
    labels = patient_labels(cohort)
    for masks in ("rtstruct", "seg"):
        out = tmp_path / f"{masks}.zarr"
        convert(cohort, out, ConvertOptions(masks=masks, val_patients=0, test_patients=1))
        for patient, mask in _masks_by_patient(open_store(out)).items():
            np.testing.assert_array_equal(mask, np.load(cohort / "truth" / f"{labels[patient]}.npy"))


# --------------------------------------------------------------------------- store content
def test_store_holds_every_slice_with_table_attributes_and_provenance(converted, synth_cohort):
    store = open_store(converted)
    assert len(store) == 6 * 12 and store.attrs["size"] == [64, 64]
    validate(store.attrs, "store")
    validate(store.provenance, "provenance")
    table = store.table
    assert set(table["source"]) == {"original"} and set(table["parent"]) == {-1}
    for series, spacing in store.attrs["spacing"].items():
        assert spacing == pytest.approx([2.0, 0.84, 0.84])
        rows = table["series"] == series
        np.testing.assert_allclose(np.diff(table["position"][rows]), 2.0, atol=1e-6)
    truth_slices = sum(int(np.load(f).any(axis=(1, 2)).sum()) for f in (synth_cohort / "truth").glob("*.npy"))
    assert int(table["has_tumour"].sum()) == truth_slices
    (step,) = store.provenance
    files = [p for p in synth_cohort.rglob("*.dcm")]
    assert step["name"] == "convert" and step["input_files"] == len(files) == 6 * 14
    assert step["input_digest"] == digest_files(files)
    assert step["output_digest"] == store_digest(converted)
    assert step["parameters"]["masks"] == "auto" and step["parameters"]["roi"][0] == "gtv"
    assert store.attrs["rois"] == {"seen": {"GTV": 6}, "matched": {"GTV": 6}, "empty": {}}


def test_images_are_percentile_normalised_per_volume(converted, synth_cohort):
    store = open_store(converted)
    series = "patient-01-s1"
    norm = store.attrs["normalisation"][series]
    rows = np.flatnonzero(store.table["series"] == series)
    image = store.image[int(rows[0]):int(rows[-1]) + 1]
    assert image.min() == 0.0 and image.max() == 1.0
    folder = patient_labels(synth_cohort)["patient-01"]
    datasets = sorted((pydicom.dcmread(f) for f in (synth_cohort / folder / "MR").iterdir()),
                      key=lambda d: float(d.SliceLocation))
    raw = np.stack([d.pixel_array.astype(np.float64) for d in datasets])
    low, high = np.percentile(raw, [0.5, 99.5])
    assert (norm["low"], norm["high"]) == pytest.approx((low, high))
    np.testing.assert_allclose(image, np.clip((raw - low) / (high - low), 0, 1), atol=1e-6)


def test_split_is_per_patient_seeded_and_recorded(converted):
    store = open_store(converted)
    assert sorted(store.split.values()) == ["test", "train", "train", "train", "train", "val"]
    assert store.split == assign_split(store.split, val=1, test=1, seed=0)
    for patient, split in store.split.items():
        assert set(store.table["split"][store.table["patient"] == patient]) == {split}
    splits = {seed: assign_split([f"p{i}" for i in range(6)], seed=seed) for seed in range(4)}
    assert len({json.dumps(s) for s in splits.values()}) > 1  # the seed matters
    assert assign_split([f"p{i}" for i in reversed(range(6))], seed=2) == splits[2]  # the order does not


def test_patients_are_named_by_pseudonym_never_by_their_ids(converted, synth_cohort):
    store = open_store(converted)
    secrets = set()
    for f in synth_cohort.rglob("*.dcm"):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        secrets |= {str(ds.PatientID), str(ds.PatientName), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                    str(ds.SOPInstanceUID), str(ds.get("AccessionNumber", "")), str(ds.get("StudyDate", ""))}
    secrets.discard("")
    readable = json.dumps(store.attrs) + json.dumps({k: v.tolist() for k, v in store.table.items()})
    raw = b"".join(p.read_bytes() for p in converted.rglob("*") if p.is_file())
    for secret in secrets:
        assert secret not in readable and secret.encode() not in raw
    assert sorted(store.split) == [f"patient-{i:02d}" for i in range(1, 7)]


def test_deidentified_input_keeps_its_pseudonymous_patient_ids(synth_cohort_copy, tmp_path):
    for f in synth_cohort_copy.rglob("*.dcm"):
        ds = pydicom.dcmread(f)
        ds.PatientIdentityRemoved = "YES"
        ds.PatientID = "ANON" + f.parts[-3][-2:]
        ds.save_as(f)
    convert(synth_cohort_copy, tmp_path / "s.zarr")
    assert sorted(open_store(tmp_path / "s.zarr").split) == [f"ANON{i:02d}" for i in range(1, 7)]


# --------------------------------------------------------------------------- determinism
def test_same_input_gives_byte_identical_store_files_whatever_the_workers(synth_cohort, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    convert(synth_cohort, tmp_path / "a.zarr")
    convert(synth_cohort, tmp_path / "b.zarr", workers=2)
    files_a = {p.relative_to(tmp_path / "a.zarr"): p.read_bytes() for p in (tmp_path / "a.zarr").rglob("*") if p.is_file()}
    files_b = {p.relative_to(tmp_path / "b.zarr"): p.read_bytes() for p in (tmp_path / "b.zarr").rglob("*") if p.is_file()}
    assert files_a.keys() == files_b.keys()
    differing = [str(k) for k in files_a if files_a[k] != files_b[k]]
    assert differing == []


def test_file_names_and_order_do_not_change_the_store(synth_cohort, synth_cohort_copy, converted, tmp_path):
    rng = random.Random(1)
    for folder in synth_cohort_copy.glob("patient-*/MR"):
        files = sorted(folder.iterdir())
        names = [f"x{rng.randrange(10**6):06d}.dcm" for _ in files]
        for f, name in zip(files, names):
            f.rename(folder / name)
    convert(synth_cohort_copy, tmp_path / "s.zarr")
    assert store_digest(tmp_path / "s.zarr") == store_digest(converted)


# --------------------------------------------------------------------------- options
def test_size_resamples_slices_and_records_the_new_spacing(synth_cohort, tmp_path):
    from segkit.convert.resample import resample_mask

    labels = patient_labels(synth_cohort)
    for masks in ("rtstruct", "seg"):
        out = tmp_path / f"{masks}.zarr"
        convert(synth_cohort, out, ConvertOptions(size=32, masks=masks))
        store = open_store(out)
        assert store.image.shape == (72, 32, 32) and store.attrs["size"] == [32, 32]
        assert all(s == pytest.approx([2.0, 1.68, 1.68]) for s in store.attrs["spacing"].values())
        for patient, mask in _masks_by_patient(store).items():
            truth = resample_mask(np.load(synth_cohort / "truth" / f"{labels[patient]}.npy"), 32)
            if masks == "seg":
                np.testing.assert_array_equal(mask, truth)
            else:  # outlines rasterised on the coarser grid
                assert dice(mask, truth) > 0.85


def test_series_with_different_matrices_need_size_and_nothing_is_written(synth_cohort, tmp_path):
    from segkit.synth import SynthConfig, write_cohort

    mixed = tmp_path / "mixed"
    shutil.copytree(synth_cohort / "patient-01", mixed / "a")
    write_cohort(tmp_path / "other", SynthConfig(patients=1, slices=6, size=48, seed=11))
    shutil.copytree(tmp_path / "other" / "patient-01", mixed / "b")
    out = tmp_path / "out" / "s.zarr"
    with pytest.raises(UsageError, match=r"--size: the series have different matrices \(48x48, 64x64\); pass --size N"):
        convert(mixed, out, ConvertOptions(val_patients=0, test_patients=0))
    assert not out.parent.exists()
    convert(mixed, out, ConvertOptions(val_patients=0, test_patients=0, size=40))
    assert open_store(out).image.shape == (18, 40, 40)


def test_roi_that_matches_nothing_is_an_error_listing_the_rois_seen(synth_cohort, tmp_path):
    with pytest.raises(InputError, match=r"no image series has an RTSTRUCT or SEG structure matching --roi "
                                         r"\(ROIs seen: GTV\)"):
        convert(synth_cohort, tmp_path / "s.zarr", ConvertOptions(roi=("^ctv$",)))
    assert _leftovers(tmp_path) == []
    convert(synth_cohort, tmp_path / "s.zarr", ConvertOptions(roi=("^gtv$",)))
    assert len(open_store(tmp_path / "s.zarr")) == 72


def test_series_without_masks_is_left_out_with_a_warning(synth_cohort_copy, tmp_path, caplog):
    shutil.rmtree(synth_cohort_copy / "patient-03" / "RTSTRUCT")
    shutil.rmtree(synth_cohort_copy / "patient-03" / "SEG")
    with segkit_warnings(caplog):
        report = convert(synth_cohort_copy, tmp_path / "s.zarr")
    assert "series patient-03/MR: no RTSTRUCT or SEG references it; left out" in caplog.text
    assert report.patients == 5 and report.skipped_series == 1 and report.slices == 60


# --------------------------------------------------------------------------- errors
def _break_not_dicom(cohort: Path) -> None:
    (cohort / "patient-02" / "MR" / "notes.dcm").write_text("not an image")


def _break_truncated(cohort: Path) -> None:
    f = cohort / "patient-04" / "MR" / "0005.dcm"
    f.write_bytes(f.read_bytes()[:-2000])


def _break_missing_slice(cohort: Path) -> None:
    (cohort / "patient-05" / "MR" / "0006.dcm").unlink()


def _break_orphan_rtstruct(cohort: Path) -> None:
    shutil.rmtree(cohort / "patient-06" / "MR")


def _break_mixed_orientation(cohort: Path) -> None:
    f = cohort / "patient-01" / "MR" / "0003.dcm"
    ds = pydicom.dcmread(f)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0.9950042, 0.0998334]
    ds.save_as(f)


@pytest.mark.parametrize("damage, error, message", [
    (_break_not_dicom, DicomError, r"patient-02/MR/notes.dcm: is not a DICOM file"),
    (_break_truncated, DicomError, r"patient-04/MR/0005.dcm: (has unreadable pixel data|cannot be parsed)"),
    (_break_missing_slice, GeometryError, r"series patient-05/MR: is missing 1 slice\(s\) after slice"),
    (_break_orphan_rtstruct, GeometryError, r"patient-06/(RTSTRUCT|SEG)/\S+: references no image in the input and "
                                            r"its frame of reference matches no series"),
    (_break_mixed_orientation, GeometryError, r"series patient-01/MR: mixes slice orientations"),
])
def test_bad_input_is_an_error_naming_it_and_nothing_is_written(synth_cohort_copy, tmp_path, damage, error, message):
    damage(synth_cohort_copy)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(error, match=message):
        convert(synth_cohort_copy, out_dir / "s.zarr")
    assert _leftovers(out_dir) == []


def test_existing_output_is_refused_before_reading_anything(tmp_path):
    (tmp_path / "s.zarr").mkdir()
    with pytest.raises(OutputExistsError, match="s.zarr: already exists"):
        convert(tmp_path / "nowhere", tmp_path / "s.zarr")


def test_too_few_patients_for_the_split_is_a_usage_error(synth_cohort, tmp_path):
    with pytest.raises(UsageError, match="3 validation \\+ 3 test patients leave none of the 6 patient\\(s\\)"):
        convert(synth_cohort, tmp_path / "s.zarr", ConvertOptions(val_patients=3, test_patients=3))
    assert _leftovers(tmp_path) == []


def test_seg_without_its_series_is_an_error(synth_cohort_copy, tmp_path):
    shutil.rmtree(synth_cohort_copy / "patient-02" / "MR")
    shutil.rmtree(synth_cohort_copy / "patient-02" / "RTSTRUCT")
    with pytest.raises(GeometryError, match=r"patient-02/SEG/seg.dcm: references no image in the input and its "
                                            r"frame of reference matches no series"):
        convert(synth_cohort_copy, tmp_path / "out" / "s.zarr")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- real fixtures end to end
def _gather(tmp_path: Path, files: list[Path]) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for f in files:
        shutil.copy(f, folder / f.name)
    return folder


def test_rtutils_mock_study_converts_to_the_pixel_centre_mask_with_lenient(shared_fixtures, tmp_path):
    from tests.helpers.convert import load_volume
    from segkit.convert.rtstruct import rtstruct_masks

    mock = shared_fixtures / "qurit+rt-utils/tests/mock_data"
    folder = _gather(tmp_path, [mock / "ct_1.dcm", mock / "ct_2.dcm", mock / "rt.dcm"])
    options = ConvertOptions(roi=("roi-1",), val_patients=0, test_patients=0)
    with pytest.raises(GeometryError, match=r"rt.dcm: is in another frame of reference than series \."):
        convert(folder, tmp_path / "s.zarr", options)
    convert(folder, tmp_path / "s.zarr", ConvertOptions(**{**options.__dict__, "lenient": True}))
    store = open_store(tmp_path / "s.zarr")
    expected = rtstruct_masks(pydicom.dcmread(mock / "rt.dcm"), load_volume([mock / "ct_1.dcm", mock / "ct_2.dcm"]),
                              strict=False)["ROI-1"]
    np.testing.assert_array_equal(store.mask[:].astype(bool), expected)
    assert list(store.table["has_tumour"]) == [True, False]
    assert store.attrs["series"][store.table["series"][0]]["modality"] == "CT"


def test_dcmqi_liver_seg_converts_to_its_nrrd_ground_truth(shared_fixtures, tmp_path):
    nrrd = pytest.importorskip("nrrd", reason="pynrrd (the 'test' extra) reads the dcmqi ground truth")
    root = shared_fixtures / "QIICR+dcmqi/data/segmentations"
    folder = _gather(tmp_path, [*sorted((root / "ct-3slice").iterdir()), root / "liver.dcm"])
    convert(folder, tmp_path / "s.zarr", ConvertOptions(roi=("liver",), val_patients=0, test_patients=0))
    truth, _ = nrrd.read(str(root / "liver_seg.nrrd"))
    np.testing.assert_array_equal(open_store(tmp_path / "s.zarr").mask[:], truth.transpose(2, 1, 0) == 1)


def test_an_interrupted_convert_resumes_and_gives_the_same_store(synth_cohort, tmp_path, monkeypatch):
    import functools

    import segkit.convert.run as convert_module
    from segkit.store.writer import StoreWriter

    # 8-slice shards so that a few 12-slice series fill whole shards
    monkeypatch.setattr(convert_module, "StoreWriter", functools.partial(StoreWriter, shard_slices=8))
    convert(synth_cohort, tmp_path / "ref.zarr")
    real = convert_module._convert_series
    calls: list[str] = []

    def interrupted_at_the_fourth_series(task):
        calls.append(task.where)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(convert_module, "_convert_series", interrupted_at_the_fourth_series)
    with pytest.raises(KeyboardInterrupt):
        convert(synth_cohort, tmp_path / "s.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".s.zarr.partial", "ref.zarr"]

    calls.clear()
    monkeypatch.setattr(convert_module, "_convert_series", lambda task: calls.append(task.where) or real(task))
    report = convert(synth_cohort, tmp_path / "s.zarr")
    # 3 series (36 slices) were done, 32 of them in whole shards: series 3 is redone from its 9th slice
    assert len(calls) == 4 and report.slices == 72
    assert store_digest(tmp_path / "s.zarr") == store_digest(tmp_path / "ref.zarr")
    assert open_store(tmp_path / "s.zarr").attrs["rois"] == open_store(tmp_path / "ref.zarr").attrs["rois"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.zarr", "s.zarr"]


def test_released_volume_gives_back_only_the_slices_it_is_told():
    from segkit.convert.series import _released_volume

    for shape in [(3, 512, 512), (4, 7, 9), (1, 1, 1)]:  # whole pages per slice; pages shared by two slices
        pages, volume = _released_volume(shape)
        volume[...] = 5.0
        pages.release(1 % shape[0])
        kept = [k for k in range(shape[0]) if k != 1 % shape[0]]
        assert (volume[kept] == 5.0).all()
        released = volume[1 % shape[0]]
        assert ((released == 0.0) | (released == 5.0)).all()
        if shape[1] * shape[2] * 4 >= 2 * pages.page:
            assert (released == 0.0).any()
