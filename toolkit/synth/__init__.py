"""The built-in synthetic brain-MR cohort: real DICOM (MR, RTSTRUCT, SEG) with invented PHI and known truth.

Used by ``segkit synth``, the demo and the tests.  Layout written by :func:`write_cohort`::

    OUT/patient-NN/MR/0001.dcm …     MR Image Storage, one study and one series per patient
    OUT/patient-NN/RTSTRUCT/rtstruct.dcm   ROI "GTV" as CLOSED_PLANAR contours
    OUT/patient-NN/SEG/seg.dcm        binary DICOM SEG, segment "GTV"
    OUT/truth/patient-NN.npy          bool (z, y, x), slices by position along the normal
    OUT/cohort.json                   non-PHI summary
"""

from segkit.synth.cohort import CohortSummary, SynthConfig, patient_folder, weighting_of, write_cohort

__all__ = ["CohortSummary", "SynthConfig", "patient_folder", "weighting_of", "write_cohort"]
