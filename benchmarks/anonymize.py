"""Benchmark ``segkit anonymize`` against deid and dicognito on the same corpus, in one run.

    python -m benchmarks.anonymize [--files 2000] [--patients 20] [--repeat 1] [--keep DIR]

Builds a corpus of small MR files (pydicom's 64×64 ``MR_small.dcm`` re-identified per patient
with realistic fake PHI: names, IDs, dates, OtherPatientIDsSequence, RequestAttributesSequence,
comments naming the patient, and a private block holding the name and MRN), then times:

- segkit, verify on (as users run it), 1 worker and the default worker count (all cores);
- deid 0.4, its default recipe through its documented API (``replace_identifiers``);
- dicognito, its documented API (``Anonymizer().anonymize(ds)`` then ``save_as``).

Prints files/s and ratios, and how many outputs of each tool still hold the planted name; for
segkit also the cost of the run dictionary: the header-only first pass (pass 1) apart from the
de-identification pass (pass 2, everything else), wall-clock and CPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def build_corpus(root: Path, files: int, patients: int) -> list[Path]:
    """Write *files* MR files for *patients* patients under *root*; return their paths."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    base = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    base.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]  # an acquisition (MR_small says DERIVED\\SECONDARY)
    per = files // patients
    paths = []
    for p in range(patients):
        family, given = f"Testperson{p:02d}", f"Anneliese{p:02d}"
        mrn = f"MRN{700000 + p * 37}"
        study, series, frame = generate_uid(), generate_uid(), generate_uid()
        for i in range(per):
            ds = base.copy()
            ds.PatientName = f"{family}^{given}"
            ds.PatientID = mrn
            ds.PatientBirthDate = f"19{50 + p:02d}0{1 + p % 9}1{p % 9}"
            ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = f"2021{1 + p % 12:02d}15"
            ds.AccessionNumber = f"ACC{900000 + p}"
            ds.InstitutionName = "Fakeville General Hospital"
            ds.ReferringPhysicianName = "Docterson^Hildegard"
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.InstanceNumber = i + 1
            ds.ImagePositionPatient = [-83.9, -91.2, 6.64 + i * 0.8]
            ds.ImageComments = f"Follow-up for {given} {family}, MRN {mrn}"
            other = Dataset()
            other.PatientID = f"H{p:03d}-{mrn}"
            other.IssuerOfPatientID = "Fakeville Regional"
            ds.OtherPatientIDsSequence = Sequence([other])
            req = Dataset()
            req.RequestedProcedureID = f"RP{p:04d}"
            req.ScheduledProcedureStepID = f"SPS{p:04d}"
            req.RequestedProcedureDescription = f"MRI brain {family}"
            ds.RequestAttributesSequence = Sequence([req])
            block = ds.private_block(0x0029, "FAKEVENDOR PHI", create=True)
            block.add_new(0x10, "LO", f"{family}^{given}")
            block.add_new(0x11, "LO", mrn)
            out = root / f"patient-{p:02d}" / f"p{p:02d}-{i:04d}.dcm"  # unique names: deid saves flat
            out.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(out, enforce_file_format=True)
            paths.append(out)
    return paths


def _planted_survivors(folder: Path, needle: bytes = b"testperson") -> int:
    n = 0
    for p in folder.rglob("*"):
        if p.is_file() and p.suffix != ".jsonl" and needle in p.read_bytes().lower():
            n += 1
    return n


def _cpu() -> float:
    """CPU seconds of this process and its finished children (load-independent cost)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def time_segkit(src: Path, out: Path, key: bytes, workers: int | None, passes: dict[str, list[float]]) -> float:
    """Wall seconds of one run; appends the header pass's ``(wall s, CPU s)`` to *passes*."""
    import segkit.deid.rundict as rundict
    from segkit.deid import anonymize_tree

    build = rundict.build_run_dictionary

    def timed_build(*args, **kwargs):  # the run dictionary's header pass, timed apart
        c, t = _cpu(), time.perf_counter()
        try:
            return build(*args, **kwargs)
        finally:
            passes["wall"].append(time.perf_counter() - t)
            passes["cpu"].append(_cpu() - c)

    shutil.rmtree(out, ignore_errors=True)
    rundict.build_run_dictionary = timed_build
    try:
        t = time.perf_counter()
        anonymize_tree(src, out, key, workers=workers, verify=True)
        return time.perf_counter() - t
    finally:
        rundict.build_run_dictionary = build


def time_deid(files: list[Path], out: Path) -> float:
    import logging

    from deid.config import DeidRecipe
    from deid.dicom import replace_identifiers
    from deid.logger import bot

    bot.level = 0
    logging.disable(logging.WARNING)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t = time.perf_counter()
    replace_identifiers(dicom_files=[str(f) for f in files], deid=DeidRecipe(), save=True, output_folder=str(out))
    return time.perf_counter() - t


def time_dicognito(files: list[Path], out: Path) -> float:
    import pydicom
    from dicognito.anonymizer import Anonymizer

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t = time.perf_counter()
    anonymizer = Anonymizer()
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        anonymizer.anonymize(ds)
        ds.save_as(out / f"{i:05d}.dcm")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=1, help="best of N timings per tool")
    ap.add_argument("--keep", type=Path, help="keep the corpus and outputs here")
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="segkit-bench-"))
    src = work / "corpus"
    shutil.rmtree(src, ignore_errors=True)
    files = build_corpus(src, args.files, args.patients)
    key = os.urandom(32)
    n = len(files)
    cores = os.cpu_count() or 1
    one_name, many_name = "segkit (1 worker)", f"segkit ({cores} workers, default)"
    passes = {name: {"wall": [], "cpu": []} for name in (one_name, many_name)}
    runs = {
        one_name: lambda: time_segkit(src, work / "segkit-1", key, 1, passes[one_name]),
        many_name: lambda: time_segkit(src, work / "segkit-n", key, None, passes[many_name]),
        "deid (default recipe)": lambda: time_deid(files, work / "deid"),
        "dicognito": lambda: time_dicognito(files, work / "dicognito"),
    }
    outdirs = dict(zip(runs, ["segkit-1", "segkit-n", "deid", "dicognito"]))
    rate, cpu, best = {}, {}, {}
    for name, fn in runs.items():
        walls, cpus = [], []
        for _ in range(args.repeat):
            c0 = _cpu()
            walls.append(fn())
            cpus.append(_cpu() - c0)
        best[name] = walls.index(min(walls))
        rate[name] = n / walls[best[name]]
        cpu[name] = 1000 * min(cpus) / n
        if name in passes:
            passes[name]["total_wall"] = walls[best[name]]
            passes[name]["total_cpu"] = cpus[best[name]]
    print(f"corpus: {n} MR files, {args.patients} patients, PHI planted in a private block; {cores} cores "
          f"(shared machine: other jobs may be running)")
    print(f"{'tool':34s} {'files/s':>9s} {'CPU ms/file':>12s}  planted name survives in")
    for name, r in rate.items():
        print(f"{name:34s} {r:9.1f} {cpu[name]:12.2f}  {_planted_survivors(work / outdirs[name])} files")
    print("run dictionary (pass 1: header-only read of every input) vs de-identification (pass 2), "
          "in the fastest segkit run:")
    for name, p in passes.items():
        i = best[name]
        w1, c1 = p["wall"][i], p["cpu"][i]
        w2, c2 = p["total_wall"] - w1, p["total_cpu"] - c1
        print(f"  {name:32s} pass 1 {w1:6.2f} s ({1000 * c1 / n:.2f} CPU ms/file, {100 * w1 / p['total_wall']:.0f}% "
              f"of wall)   pass 2 {w2:6.2f} s ({1000 * c2 / n:.2f} CPU ms/file)")
    one, many = rate[one_name], rate[many_name]
    dg, de = rate["dicognito"], rate["deid (default recipe)"]
    print(f"load average during the run: {os.getloadavg()[0]:.1f} (files/s are wall-clock; CPU ms/file is less "
          "affected by other jobs, not immune: on a shared machine it rises with the load)")
    print(f"ratios: segkit-1/dicognito {one / dg:.2f} (goal >= 1.0); segkit-default/dicognito {many / dg:.2f} "
          f"(goal >= 1.5); segkit-default/deid {many / de:.2f} (goal >= 6.0); segkit-1/deid {one / de:.2f}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
