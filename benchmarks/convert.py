"""RTSTRUCT → mask speed, memory and exactness: segkit against rt-utils and plastimatch.

Run by hand::

    python -m benchmarks.convert [--patients 6 --slices 175 --size 512] [--cohort DIR]
    python -m benchmarks.convert --phases   # where convert's CPU time goes, phase by phase

Generates (or reuses) a synthetic cohort, then runs each tool in its own
process (so peak memory is that process's own maximum resident set size):

* ``segkit convert`` — the whole command: images + RTSTRUCT masks (``--masks rtstruct``)
  + normalisation + the Zarr store, with ``--workers 1`` and ``2`` (``--workers``), checking
  that both give the same store digest;
* ``segkit masks`` — only what the reference tools do: read each series and
  rasterise its RTSTRUCT (``segkit.convert.rtstruct.rtstruct_masks``);
* ``rt-utils`` (``pip install rt-utils``) — ``RTStructBuilder.create_from(...).get_roi_mask_by_name``;
* ``plastimatch`` (Debian package) — ``plastimatch convert --input RTSTRUCT --referenced-ct SERIES``.

Each tool's masks are compared with the cohort's truth (Dice, and exact-match
count); time ratios are against ``segkit masks``.  A tool that is not installed
is reported as such.  Beside each wall time, the CPU time (user + system) the
tool used: on a shared machine the wall time grows with the load, the CPU time
hardly.

``--phases`` runs convert's steps one after another in this process
(``--masks rtstruct``, no worker) and prints the CPU time (user, system) of
each phase: header scan, planning, contour placement, per series read + hash
+ decode, masks, normalisation, compression, then shard writing and the
digests.  Serial CPU time is what contention changes least.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


# --------------------------------------------------------------------------- runners (child processes)
def _run_segkit_masks(cohort: Path, out: Path) -> None:
    import pydicom

    from segkit.dicom.dicomio import Instance, read_header
    from segkit.convert.rtstruct import rtstruct_masks
    from segkit.dicom.volume import read_volume

    for folder in sorted(cohort.glob("patient-*")):
        files = sorted((folder / "MR").iterdir())
        volume = read_volume([Instance(f, read_header(f)) for f in files], folder.name)
        ds = pydicom.dcmread(next((folder / "RTSTRUCT").iterdir()))
        np.save(out / f"{folder.name}.npy", rtstruct_masks(ds, volume)["GTV"])


def _run_rtutils(cohort: Path, out: Path) -> None:
    from rt_utils import RTStructBuilder

    for folder in sorted(cohort.glob("patient-*")):
        rt = RTStructBuilder.create_from(dicom_series_path=str(folder / "MR"),
                                         rt_struct_path=str(next((folder / "RTSTRUCT").iterdir())))
        mask = rt.get_roi_mask_by_name("GTV")  # (rows, columns, slices)
        np.save(out / f"{folder.name}.npy", mask.transpose(2, 0, 1))


RUNNERS = {"segkit-masks": _run_segkit_masks, "rt-utils": _run_rtutils}
GNU_TIME = "/usr/bin/time"


# --------------------------------------------------------------------------- measuring
def _measure(cmd: list[str]) -> tuple[float, float, int, float]:
    """Run ``cmd`` under GNU time; return (wall seconds, peak RSS MiB, exit status, CPU seconds).

    GNU time forks the tool from its own small process, so the peak RSS is the
    tool's own (measuring from here would count this process's memory, which a
    child inherits on Linux until exec).
    """
    with tempfile.NamedTemporaryFile(suffix=".time") as report:
        t0 = time.perf_counter()
        proc = subprocess.run([GNU_TIME, "-f", "%U %S %M", "-o", report.name, *cmd], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, check=False)
        wall = time.perf_counter() - t0
        user, system, peak_kib = Path(report.name).read_text().split()[-3:]
    if proc.returncode:
        last = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
        print(f"    ! {' '.join(cmd[:3])}… exited {proc.returncode}: {last}", file=sys.stderr)
    return wall, int(peak_kib) / 1024, proc.returncode, float(user) + float(system)


def _phases(cohort: Path) -> None:
    """Run convert's phases serially in this process; print each one's CPU time (user, system)."""
    import resource

    from segkit.convert.plan import ConvertOptions, _assign_pseudonyms, _place_contours, _plan
    from segkit.convert.run import _task
    from segkit.dicom.dicomio import scan_folder
    from segkit.convert.intensity import ValueCounts, normalise_volume
    from segkit.store.provenance import combine_digests, file_digest, provenance_step
    from segkit.convert.roi import RoiSelector
    from segkit.convert.rtstruct import fill_placed
    from segkit.store.shards import encode_slices
    from segkit.store.split import assign_split
    from segkit.store.writer import StoreWriter
    from segkit.dicom.volume import read_volume_pixels

    spent: dict[str, list[float]] = {}

    def now() -> tuple[float, float]:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime, r.ru_stime

    last = now()

    def phase(name: str) -> None:
        nonlocal last
        t = now()
        total = spent.setdefault(name, [0.0, 0.0])
        total[0] += t[0] - last[0]
        total[1] += t[1] - last[1]
        last = t

    wall = time.perf_counter()
    options = ConvertOptions(masks="rtstruct", val_patients=1, test_patients=1)
    select = RoiSelector(options.roi)
    scan = scan_folder(cohort)
    phase("header scan")
    plans, _, _ = _plan(scan, options, select)
    _assign_pseudonyms(plans, scan)
    phase("planning (geometry, RTSTRUCT ↔ series)")
    _place_contours(plans, scan, options, select)
    phase("contour placement")
    split = assign_split({p.patient for p in plans}, val=1, test=1, seed=0)
    step = provenance_step("convert", options.parameters(), input_digest=None, input_files=len(scan.files), seed=0)
    digests: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        with StoreWriter(Path(tmp) / "s.zarr", plans[0].geometry.matrix, provenance=[step]) as writer:
            phase("open the store")
            for plan in plans:
                task = _task(plan, scan, options, skip=0)
                counts = ValueCounts()
                volume, read = read_volume_pixels(task.geometry, task.pixels, counts=counts)
                digests.update(read)
                phase("read + hash + decode (+ value counts)")
                mask = np.zeros(volume.shape, dtype=bool)
                for _, m in fill_placed(task.placed, volume.shape).items():
                    mask |= m
                phase("masks")
                image, normalisation = normalise_volume(volume.array, counts=counts, overwrite_input=True)
                phase("normalise")
                slices = encode_slices(image, mask)
                phase("compress")
                del volume, image, mask
                writer.attrs.setdefault("spacing", {})[plan.series] = [plan.geometry.slice_spacing,
                                                                      *plan.geometry.pixel_spacing]
                writer.attrs.setdefault("normalisation", {})[plan.series] = normalisation
                writer.attrs.setdefault("series", {})[plan.series] = {"patient": plan.patient}
                writer.append_encoded(slices, patient=plan.patient, series=plan.series, split=split[plan.patient],
                                      index=np.arange(len(slices.image), dtype=np.int32),
                                      position=plan.geometry.positions)
                phase("write shards")
            writer.attrs["rois"] = {}
            writer.provenance[-1]["input_digest"] = combine_digests(
                digests.get(str(path)) or file_digest(path) for path in scan.files)
            phase("digests, table, rename")
        phase("digests, table, rename")
    wall = time.perf_counter() - wall
    total = sum(u + s for u, s in spent.values())
    print(f"\nconvert's phases, serial in one process ({len(plans)} series; python -m benchmarks.convert --phases)\n")
    print(f"{'phase':<42} {'user s':>7} {'sys s':>7} {'CPU s':>7}")
    for name, (user, system) in spent.items():
        print(f"{name:<42} {user:7.2f} {system:7.2f} {user + system:7.2f}")
    print(f"{'total':<42} {'':>7} {'':>7} {total:7.2f}   (wall {wall:.2f} s)")


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def _score(masks: dict[str, np.ndarray], cohort: Path) -> tuple[float, float, int]:
    dices, exact = [], 0
    for name, mask in masks.items():
        truth = np.load(cohort / "truth" / f"{name}.npy")
        if mask.shape != truth.shape:
            dices.append(0.0)
            continue
        dices.append(_dice(mask.astype(bool), truth))
        exact += int(np.array_equal(mask.astype(bool), truth))
    return float(np.mean(dices)), float(np.min(dices)), exact


def _segkit_store_masks(store_path: Path, cohort: Path) -> dict[str, np.ndarray]:
    import pydicom

    from segkit.store.reader import open_store

    ids = {str(pydicom.dcmread(next((f / "MR").iterdir()), stop_before_pixels=True).PatientID): f.name
           for f in sorted(cohort.glob("patient-*"))}
    folder_of = {f"patient-{i + 1:02d}": ids[pid] for i, pid in enumerate(sorted(ids))}
    store = open_store(store_path)
    table = store.table
    out = {}
    for patient in sorted(set(table["patient"])):
        rows = np.flatnonzero(table["patient"] == patient)
        out[folder_of[patient]] = store.mask[int(rows[0]):int(rows[-1]) + 1]
    return out


def _segkit() -> str:
    return shutil.which("segkit") or str(Path(sys.executable).with_name("segkit"))


def _ensure_cohort(path: Path, patients: int, slices: int, size: int) -> Path:
    """Reuse or write the cohort: one ``segkit synth`` process per patient (seed = patient index).

    Separate processes keep the generator's memory bounded by one patient at 512².
    """
    config = {"patients": patients, "slices": slices, "size": size}
    marker = path / "benchmark.json"
    if marker.is_file() and json.loads(marker.read_text()) == config:
        return path
    if path.exists():
        shutil.rmtree(path)
    print(f"writing a synthetic cohort of {patients} × {slices} slices of {size}² to {path} …", file=sys.stderr)
    (path / "truth").mkdir(parents=True)
    for i in range(patients):
        one = path.parent / f".{path.name}.one"
        subprocess.run([_segkit(), "synth", str(one), "--patients", "1", "--slices", str(slices), "--size", str(size),
                        "--seed", str(i), "--force"], check=True, stderr=subprocess.DEVNULL)
        name = f"patient-{i + 1:02d}"
        (one / "patient-01").rename(path / name)
        (one / "truth" / "patient-01.npy").rename(path / "truth" / f"{name}.npy")
        shutil.rmtree(one)
        print(f"  {name} written", file=sys.stderr)
    marker.write_text(json.dumps(config))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=6)
    parser.add_argument("--slices", type=int, default=175)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--cohort", type=Path, default=Path(tempfile.gettempdir()) / "segkit-bench-convert")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="segkit convert --workers to time")
    parser.add_argument("--phases", action="store_true", help="print the CPU time of each phase of convert instead")
    parser.add_argument("--run", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:  # child process
        RUNNERS[args.run](args.cohort, args.out)
        return

    cohort = _ensure_cohort(args.cohort, args.patients, args.slices, args.size)
    if args.phases:
        _phases(cohort)
        return
    rois = args.patients
    rows: list[tuple[str, float | None, float | None, tuple | None, str, float | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # segkit convert, the whole command, with 1 and 2 worker threads (one process: its peak RSS is all of it)
        from segkit.store.format import store_digest

        segkit = _segkit()
        held_out = "1" if args.patients >= 3 else "0"
        digests = []
        for workers in args.workers:
            store = tmp / f"s{workers}.zarr"
            wall, rss, rc, cpu = _measure([segkit, "convert", str(cohort), str(store), "--masks", "rtstruct",
                                           "--val-patients", held_out, "--test-patients", held_out,
                                           "--workers", str(workers)])
            rows.append((f"segkit convert -w{workers}", wall, rss,
                         _score(_segkit_store_masks(store, cohort), cohort) if rc == 0 else None,
                         "whole command: images + masks + normalisation + Zarr store", cpu))
            if rc == 0:
                digests.append(store_digest(store))
                shutil.rmtree(store)
        if len(set(digests)) > 1:
            print("    ! the stores of different --workers differ", file=sys.stderr)
        # masks only: segkit, rt-utils
        for name in ("segkit-masks", "rt-utils"):
            out = tmp / name
            out.mkdir()
            if name == "rt-utils":
                try:
                    import rt_utils  # noqa: F401
                except ImportError:
                    rows.append((name, None, None, None, "not installed (pip install rt-utils)", None))
                    continue
            wall, rss, rc, cpu = _measure([sys.executable, "-m", "benchmarks.convert", "--run", name,
                                           "--cohort", str(cohort), "--out", str(out)])
            masks = {p.stem: np.load(p) for p in sorted(out.glob("*.npy"))}
            rows.append((name, wall, rss, _score(masks, cohort) if rc == 0 else None, "series read + RTSTRUCT → mask",
                         cpu))
        # plastimatch, one process per patient
        if shutil.which("plastimatch") is None:
            rows.append(("plastimatch", None, None, None, "not installed (apt-get install plastimatch)", None))
        else:
            import nrrd

            total, peak, masks, ok, cpu_total = 0.0, 0.0, {}, True, 0.0
            for folder in sorted(cohort.glob("patient-*")):
                out = tmp / "plastimatch" / folder.name
                wall, rss, rc, cpu = _measure(["plastimatch", "convert", "--input", str(next((folder / "RTSTRUCT").iterdir())),
                                          "--referenced-ct", str(folder / "MR"), "--output-prefix", str(out),
                                          "--prefix-format", "nrrd"])
                total, peak, ok, cpu_total = total + wall, max(peak, rss), ok and rc == 0, cpu_total + cpu
                if rc == 0:
                    data, _ = nrrd.read(str(out / "GTV.nrrd"))
                    masks[folder.name] = data.transpose(2, 1, 0).astype(bool)
            rows.append(("plastimatch", total, peak, _score(masks, cohort) if ok else None,
                         "series read + RTSTRUCT → mask (one process per patient)", cpu_total))

    reference = next(r[1] for r in rows if r[0] == "segkit-masks")
    print(f"\n{args.patients} patients × {args.slices} slices of {args.size}², 1 ROI each "
          f"(python -m benchmarks.convert --patients {args.patients} --slices {args.slices} --size {args.size})\n")
    print(f"{'tool':<22} {'total s':>8} {'s/ROI':>7} {'CPU s':>7} {'× segkit':>9} {'peak MiB':>9} {'Dice mean':>10} "
          f"{'Dice min':>9} {'exact':>6}  note")
    for name, wall, rss, score, note, cpu in rows:
        if wall is None:
            print(f"{name:<22} {'—':>8} {'—':>7} {'—':>7} {'—':>9} {'—':>9} {'—':>10} {'—':>9} {'—':>6}  {note}")
            continue
        dice_mean, dice_min, exact = score if score else (float("nan"), float("nan"), 0)
        print(f"{name:<22} {wall:8.2f} {wall / rois:7.3f} {cpu:7.2f} {wall / reference:9.2f} {rss:9.0f} "
              f"{dice_mean:10.4f} {dice_min:9.4f} {exact:>3}/{rois}  {note}")


if __name__ == "__main__":
    main()
