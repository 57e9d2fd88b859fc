"""Reading DICOM: a series of files into a `Volume` (pixels + geometry), header scans, UIDs, and writing DICOM SEG.

Takes DICOM files; gives `Volume`s (`segkit.dicom.volume.read_volume`) and SEG datasets.
"""
