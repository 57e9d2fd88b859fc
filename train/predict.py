"""``predict_series``: segment one DICOM MR series with a trained run and write a DICOM SEG.

The series is read with the geometry contract of ``segkit convert``
(:func:`segkit.dicom.volume.read_volume`: slices ordered along the normal, spacing
checked, rescale applied) and preprocessed exactly as ``convert`` did for the
run's training store (per-volume percentile normalisation; resampling to the
store's ``--size`` if it had one).  The run's model predicts every slice; the
probabilities are resampled back to the native matrix and written as a DICOM
SEG on the source series (:mod:`segkit.dicom.segwriter`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit.errors import OutputExistsError, UsageError
from segkit.train.evaluate import PredictorLoader, predictor_loader
from segkit.train.runinfo import read_run

__all__ = ["PredictResult", "predict_series", "series_probabilities"]


@dataclass(frozen=True)
class PredictResult:
    """What :func:`predict_series` wrote."""

    out: Path
    slices: int
    tumour_slices: int
    tumour_ml: float

    def summary(self) -> str:
        return (f"wrote {self.out}: tumour on {self.tumour_slices} of {self.slices} slices, "
                f"{self.tumour_ml:.2f} ml")


def series_probabilities(volume_array: np.ndarray, predict, size: int | None) -> np.ndarray:
    """Normalise a ``(z, rows, columns)`` series like ``convert``, predict, and return probabilities on its matrix."""
    from segkit.convert.intensity import normalise_volume
    from segkit.convert.resample import resample_image

    image, _ = normalise_volume(volume_array)
    z, rows, columns = image.shape
    if size is not None and (rows, columns) != (size, size):
        prob = predict(resample_image(image, size))
        from skimage.transform import resize

        prob = resize(prob, (z, rows, columns), order=1, mode="edge", anti_aliasing=False, preserve_range=True)
        return np.clip(prob, 0.0, 1.0).astype(np.float32)
    return np.asarray(predict(image), dtype=np.float32)


def predict_series(
    run_dir: str | os.PathLike[str],
    series_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    roi_label: str = "Tumour",
    threshold: float = 0.5,
    fractional: bool = False,
    checkpoint: str = "best",
    overwrite: bool = False,
    tta: str = "auto",
    load: PredictorLoader | None = None,
) -> PredictResult:
    """Segment the MR series in ``series_dir`` with run ``run_dir``; write a DICOM SEG to ``out``.

    Parameters
    ----------
    run_dir:
        A run directory written by ``segkit train``.
    series_dir:
        A folder holding exactly one image series (de-identified or original).
    out:
        The SEG file to write (atomically).
    roi_label:
        The segment label.
    threshold:
        Binary SEG: probability at or above which a pixel is tumour.
    fractional:
        Write probabilities (FRACTIONAL SEG) instead.
    checkpoint:
        ``best`` or ``latest``.
    overwrite:
        Replace ``out``.
    tta:
        Test-time augmentation, as in :func:`segkit.train.evaluate.evaluate_run` (default ``auto``).
    load:
        ``(RunInfo, checkpoint) -> Predictor``; default builds the run's TensorFlow model with ``tta``.

    Raises
    ------
    SegkitError
        Bad run, a folder without exactly one image series, a series that breaks the
        geometry contract, an existing ``out``.
    """
    from segkit.dicom.dicomio import scan_folder
    from segkit.dicom.segwriter import Algorithm, prediction_seg, write_dataset
    from segkit.dicom.volume import read_volume
    from segkit.train.inference import resolve_tta

    if not 0.0 <= threshold <= 1.0:
        raise UsageError("--threshold", f"must be a probability in [0, 1], got {threshold:g}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(str(out), "already exists; choose another path or pass --force")
    run = read_run(run_dir)
    resolve_tta(run.config, tta)  # a bad --tta fails before the series is read
    if checkpoint == "best":
        run.best_weights()
    scan = scan_folder(series_dir)
    if len(scan.images) != 1:
        raise UsageError(str(series_dir), f"holds {len(scan.images)} image series; pass the folder of exactly one")
    instances = next(iter(scan.images.values()))
    volume = read_volume(instances, Path(series_dir).name)
    predictor = (load or predictor_loader(tta))(run, checkpoint)
    prob = series_probabilities(volume.array, predictor.predict, run.store_size)
    headers = [inst.header for inst in instances]
    seg = prediction_seg(headers, prob, Algorithm(model=run.variant, run_id=run.run_id), label=roi_label,
                         threshold=threshold, fractional=fractional)
    write_dataset(seg, out, overwrite=overwrite)
    mask = prob >= threshold
    dy, dx = volume.pixel_spacing
    return PredictResult(out=out, slices=int(mask.shape[0]), tumour_slices=int(mask.any(axis=(1, 2)).sum()),
                         tumour_ml=float(mask.sum() * dy * dx * volume.slice_spacing / 1000.0))
