"""``anonymize_tree``: de-identify a tree of DICOM files, verified in memory, written atomically, audited.

The run around the per-file pass (:mod:`segkit.deid.filepass`): it checks the folders and
settings, refuses an OUT made with other settings (the ``segkit-anonymize.json`` manifest),
walks the input tree in a fixed order, skips the files a killed run already finished (read back
from the audit), builds the run's identifier dictionary (:mod:`segkit.deid.rundict`), hands the
remaining files to one process, a pool of worker processes that die with their parent, or a Dask
cluster (:mod:`segkit.deid.cluster`), and consumes their outcomes in file order: one audit
record per file appended as it comes, then the order-independent final files — the sorted audit,
the linkage CSV, the quarantine list and OUT/DICOMDIR (:mod:`segkit.deid.dicomdir`).  The output
bytes do not depend on the number or kind of workers.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from segkit.atomic import write_atomic
from segkit.deid.dicomdir import update_dicomdir
from segkit.deid.filepass import FileOutcome, FilePass, RunConfig
from segkit.errors import InputError, LeakError, UsageError
from segkit.runlock import locks_output

__all__ = ["anonymize_tree", "AnonymizeSummary", "AUDIT_NAME"]

log = logging.getLogger("segkit.anonymize")

AUDIT_NAME = "segkit-audit.jsonl"
MANIFEST_NAME = "segkit-anonymize.json"
QUARANTINE_LIST = "segkit-quarantine.csv"


@dataclass
class AnonymizeSummary:
    """What a run did; printed by the CLI."""

    out: Path
    files: int = 0
    written: int = 0
    quarantined: int = 0
    leaked: int = 0
    resumed: int = 0
    dicomdir: str | None = None  # what became of OUT/DICOMDIR (when the input held a DICOMDIR)

    def line(self) -> str:
        return (f"{self.written} written, {self.quarantined} quarantined, {self.leaked} with leaks"
                f"{f', {self.resumed} already done' if self.resumed else ''} of {self.files} files → {self.out}"
                f"{f'; {self.dicomdir}' if self.dicomdir else ''}")


_WORKER: "FilePass | None" = None


# ------------------------------------------------------------------- the tree
def _init_pool_worker(cfg: RunConfig, run_dict: Any = None) -> None:
    """A pool worker's initializer: exit with the parent (SIGKILL included), then get ready."""
    from segkit.workers import die_with_parent

    die_with_parent()
    _init_worker(cfg, run_dict)


def _init_worker(cfg: RunConfig, run_dict: Any = None) -> None:
    global _WORKER
    if _WORKER is None or _WORKER.cfg != cfg:  # a forked worker inherits the parent's, imports and all
        _WORKER = FilePass(cfg)
    _WORKER.run_dict = run_dict


def _run_one(job: tuple[str, str]) -> FileOutcome:
    assert _WORKER is not None
    return _WORKER.process(*job)


def _settings(cfg: RunConfig, profile: Any) -> dict[str, Any]:
    """What makes the output what it is (no PHI; the key only as a keyed fingerprint)."""
    import hashlib
    import hmac

    from segkit._version import __version__

    profile_digest = hashlib.sha256(Path(cfg.profile_file).read_bytes()).hexdigest() if cfg.profile_file else None
    recipe_digest = hashlib.sha256(Path(cfg.deid_recipe).read_bytes()).hexdigest() if cfg.deid_recipe else None
    return {
        "tool": "segkit anonymize",
        "segkit": __version__,
        "profile": f"DICOM PS3.15 {profile.edition} Table E.1-1",
        "options": sorted(profile.options),
        "profile_file_sha256": profile_digest,
        "deid_recipe_sha256": recipe_digest,
        "pseudonym_pattern": cfg.pseudonym_pattern,
        "key_fingerprint": hmac.new(cfg.key, b"segkit key fingerprint", hashlib.sha256).hexdigest()[:16],
        "verify": cfg.verify,
        "pixel_policy": cfg.pixel_policy,
    }


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def _discover(root: Path) -> list[tuple[str, str]]:
    jobs = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_file():
                jobs.append((str(p), p.relative_to(root).as_posix()))
    return jobs


def _load_done(audit: Path, out: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    if not audit.exists():
        return done
    for line in audit.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill: that file is redone
        if rec.get("status") == "written" and not (out / rec.get("output", "")).is_file():
            continue
        done[rec["input"]] = rec
    return done


def _remove_stale_temps(out: Path) -> None:
    for dirpath, _, filenames in os.walk(out):
        for name in filenames:
            if name.startswith(".") and ".tmp-" in name:
                os.unlink(Path(dirpath) / name)


@locks_output("out", "anonymize")  # a second run into the same OUT is refused at once
def anonymize_tree(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    key: bytes,
    *,
    options: Iterable[str] | None = None,
    profile: str | os.PathLike[str] | None = None,
    linkage: str | os.PathLike[str] | None = None,
    quarantine: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    verify: bool = True,
    pseudonym_pattern: str = "SK-{hash}",
    deid_recipe: str | os.PathLike[str] | None = None,
    progress: bool = False,
    pixel_policy: str = "clean",
    dask: str | Any | None = None,
) -> AnonymizeSummary:
    """De-identify every file under *src* into *out* (PS3.15 Basic Profile + options).

    Parameters
    ----------
    src, out:
        Input tree (read only) and output tree (``<pseudonym>/<study>/<modality>-<series>/``);
        *out* gets ``segkit-audit.jsonl``, one record per input file.  A run over an *out*
        that a killed run left behind skips the files already done.
    key:
        The site key (:func:`segkit.deid.pseudonym.read_key`).
    options:
        Profile options (names of :data:`segkit.deid.profile.OPTIONS`); ``None`` = defaults
        (retain modified dates, clean descriptors).
    profile:
        A YAML file that changes the profile (see :func:`segkit.deid.profile.load_profile`).
    linkage:
        A CSV file (outside *out*) mapping original PatientID → pseudonym and study date →
        shift, for the data steward.  Without it nothing reversible is written.
    quarantine:
        Folder (outside *out*) that receives a copy of every file not written, with
        ``segkit-quarantine.csv`` giving the reason.  Without it they are only listed.
    workers:
        Processes; default: all cores.  The output does not depend on it.  With *dask* they
        still read the headers for the run dictionary (and build a DICOMDIR).
    verify:
        Search each output's bytes for the run's identifiers before writing it.
    pixel_policy:
        What to do with burned-in text that OCR finds on an image at risk: ``"clean"`` (black
        out its boxes, write the pixels uncompressed) or ``"quarantine"``.
    dask:
        Spread the files over a Dask cluster instead of local processes: a scheduler address
        (``tcp://host:8786``), ``"local"`` / ``"local:N"`` (a LocalCluster of N processes for this
        run) or a ``distributed.Client``; the output is the same (see :mod:`segkit.deid.cluster`).

    Returns
    -------
    AnonymizeSummary

    Raises
    ------
    UsageError
        If the folders overlap or the linkage/quarantine path is inside *out*.
    LeakError
        (exit code 3) after the run, if verify found an identifier in any output; those
        files are not written and the audit names the tag paths.
    """
    from segkit.deid.profile import load_profile

    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise InputError(str(src), "not a folder")
    if _inside(out, src) or _inside(src, out):
        raise UsageError(str(out), "the output folder must not overlap the input folder")
    for name, path in (("--linkage", linkage), ("--quarantine", quarantine)):
        if path is not None and (_inside(Path(path), out) or _inside(Path(path), src) and name == "--quarantine"):
            raise UsageError(name, f"{path} must be outside the output (and input) folder: "
                                   "it holds identifying data")
    from segkit.deid.pixels import PIXEL_POLICIES

    if pixel_policy not in PIXEL_POLICIES:
        raise UsageError("--pixel-policy", f"must be one of {', '.join(PIXEL_POLICIES)}")
    if dask is not None:
        from segkit.deid.cluster import check_dask

        check_dask(dask)
    resolved = load_profile(options, profile)  # fail early on a bad profile, before touching OUT
    cfg = RunConfig(bytes(key), None if options is None else frozenset(options),
                    None if profile is None else str(profile), pseudonym_pattern, verify,
                    None if quarantine is None else str(quarantine), str(out), linkage is not None,
                    None if deid_recipe is None else str(deid_recipe), pixel_policy)
    settings = _settings(cfg, resolved)
    manifest = out / MANIFEST_NAME
    if out.exists() and any(out.iterdir()):
        try:
            previous = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise UsageError(str(out), "exists and was not made by segkit anonymize; choose a new output folder") \
                from None
        if previous != settings:
            raise UsageError(str(out), "was made with another key, profile or options; resume it with the same "
                                       "ones or choose a new output folder")
    out.mkdir(parents=True, exist_ok=True)
    if not manifest.exists():
        _atomic_text(manifest, json.dumps(settings, indent=1, sort_keys=True) + "\n")
    _remove_stale_temps(out)
    audit_path = out / AUDIT_NAME
    done = _load_done(audit_path, out)
    jobs = _discover(src)
    summary = AnonymizeSummary(out=out, files=len(jobs))
    linkage_rows: set[tuple[str, str, str, str]] = set()
    link_partial = Path(f"{linkage}.partial") if linkage is not None else None
    if link_partial is not None and link_partial.exists() and done:
        with open(link_partial, newline="", encoding="utf-8") as fh:
            linkage_rows.update(tuple(r) for r in csv.reader(fh))  # type: ignore[misc]
    from segkit.deid.pseudonym import Keyring

    ids = Keyring(cfg.key, pseudonym_pattern)
    todo = []
    records: dict[str, dict[str, Any]] = {}
    quarantined_rows: list[tuple[str, str, str]] = []
    for job in jobs:
        iid = ids.short("input", job[1], 16)
        if iid in done:
            records[iid] = done[iid]
            summary.resumed += 1
            if done[iid]["status"] != "written":  # a killed run wrote no quarantine list: its rows come from here
                quarantined_rows.append((job[1], iid, done[iid].get("reason", "")))
        else:
            todo.append(job)
    nworkers = max(1, workers or os.cpu_count() or 1)
    run_dict = None
    if verify and todo:  # every input's identifiers, done files included: the check must not depend on resume
        from segkit.deid.rundict import build_run_dictionary

        run_dict = build_run_dictionary([p for p, _ in jobs], nworkers, keep_uids="retain_uids" in resolved.options)
    with open(audit_path, "a", encoding="utf-8") as audit_fh, \
            (open(link_partial, "a", newline="", encoding="utf-8") if link_partial else _Null()) as link_fh, \
            closing(_outcomes(cfg, todo, nworkers, progress, run_dict, dask)) as outcomes:
        link_writer = csv.writer(link_fh) if link_partial else None
        for (path, rel), outcome in zip(todo, outcomes):
            rec = outcome.audit()
            records[outcome.input] = rec
            audit_fh.write(json.dumps(rec, sort_keys=True) + "\n")
            audit_fh.flush()
            if outcome.linkage is not None and link_writer is not None:
                row = tuple("" if v is None else str(v) for v in outcome.linkage)
                if row not in linkage_rows:
                    linkage_rows.add(row)  # type: ignore[arg-type]
                    link_writer.writerow(row)
                    link_fh.flush()
            if outcome.status != "written":
                quarantined_rows.append((rel, outcome.input, outcome.reason or ""))
                log.debug("quarantined %s: %s", outcome.input, outcome.reason)
    # final, order-independent files
    for rec in records.values():
        status = rec["status"]
        summary.written += status == "written"
        summary.quarantined += status == "quarantined"
        summary.leaked += status == "leak"
    dicomdir = update_dicomdir(out, records, ids, run_dict, [p for p, _ in jobs] if verify else None, nworkers,
                               keep_uids="retain_uids" in resolved.options, keep_text=resolved.keep_text)
    summary.dicomdir = dicomdir.note() if dicomdir else None
    _atomic_text(audit_path, "".join(json.dumps(records[k], sort_keys=True) + "\n" for k in sorted(records)))
    if linkage is not None:
        rows = sorted(linkage_rows)
        text = io.StringIO()
        w = csv.writer(text, lineterminator="\n")
        w.writerow(["patient_id", "pseudonym", "study_date", "date_shift_days"])
        w.writerows(rows)
        _atomic_text(Path(linkage), text.getvalue())
        with open(link_partial, "w", newline="", encoding="utf-8") as fh:  # type: ignore[arg-type]
            csv.writer(fh).writerows(rows)
    if quarantine is not None and (quarantined_rows or done):
        qfile = Path(quarantine) / QUARANTINE_LIST
        Path(quarantine).mkdir(parents=True, exist_ok=True)
        old = []
        if qfile.exists():
            with open(qfile, newline="", encoding="utf-8") as fh:
                old = [tuple(r) for r in csv.reader(fh)][1:]
        rows = sorted(set(old) | set(quarantined_rows))
        text = io.StringIO()
        w = csv.writer(text, lineterminator="\n")
        w.writerow(["path", "input", "reason"])
        w.writerows(rows)
        _atomic_text(qfile, text.getvalue())
    if summary.leaked or dicomdir and dicomdir.leaks:
        what = " and ".join(filter(None, (f"{summary.leaked} file(s)" if summary.leaked else "",
                                          "OUT/DICOMDIR" if dicomdir and dicomdir.leaks else "")))
        raise LeakError(str(audit_path), f"{what} still held an identifier of their input and "
                                         "were not written; the audit names the tag paths")
    return summary


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _outcomes(cfg: RunConfig, jobs: list[tuple[str, str]], workers: int, progress: bool,
              run_dict: Any = None, dask: str | Any | None = None) -> Iterator[FileOutcome]:
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), unit="file", disable=not progress, desc="anonymize", leave=False)
    try:
        if dask is not None and jobs:
            from segkit.deid.cluster import dask_outcomes

            with closing(dask_outcomes(dask, cfg, jobs, run_dict)) as results:
                for outcome in results:
                    yield outcome
                    bar.update()
            return
        if workers == 1 or len(jobs) < 2:
            worker = FilePass(cfg, run_dict)
            for job in jobs:
                yield worker.process(*job)
                bar.update()
            return
        _init_worker(cfg, run_dict)  # build (and import) once in the parent: forked workers start ready
        import pydicom.filereader  # noqa: F401 - imported before the fork, not once per worker
        import pydicom.filewriter  # noqa: F401

        with ProcessPoolExecutor(max_workers=workers, initializer=_init_pool_worker, initargs=(cfg, run_dict)) as pool:
            for outcome in pool.map(_run_one, jobs, chunksize=max(1, min(64, len(jobs) // (workers * 8) or 1))):
                yield outcome
                bar.update()
    finally:
        bar.close()


def _atomic_text(path: Path, text: str) -> None:
    write_atomic(path, text)
