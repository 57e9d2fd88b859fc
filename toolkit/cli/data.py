"""``segkit`` commands for the data: synth, anonymize, keygen, convert, augment, preview, info, export.

Each command checks its options, calls one library function of its stage (:mod:`segkit.synth`,
:mod:`segkit.deid`, :mod:`segkit.convert`, :mod:`segkit.augment`, :mod:`segkit.store`), imported inside
the command so that ``segkit --help`` loads none of them, and prints one summary line on stderr; the
commands are added to the ``segkit`` group, in the order of the data flow, by :mod:`segkit.cli`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from segkit.errors import UsageError


@click.command()
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--patients", type=click.IntRange(1, 999), default=6, show_default=True,
              help="Number of patients; every third one is T2-weighted (6 → 4 T1 + 2 T2).")
@click.option("--slices", type=click.IntRange(4, 2000), default=24, show_default=True, help="Slices per series.")
@click.option("--size", type=click.IntRange(32, 2048), default=128, show_default=True, help="Matrix (rows = columns).")
@click.option("--pixel-spacing", type=click.FloatRange(0.05, 10, min_open=False), default=0.84, show_default=True,
              help="In-plane pixel spacing, mm.")
@click.option("--slice-thickness", type=click.FloatRange(0.1, 20), default=2.0, show_default=True,
              help="Slice thickness = spacing between slices, mm.")
@click.option("--oblique", is_flag=True, help="Tilt the acquisition plane (a patient-specific oblique orientation).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed → byte-identical cohort.")
@click.option("--force", is_flag=True, help="Replace OUT if it already exists.")
def synth(out: Path, patients: int, slices: int, size: int, pixel_spacing: float, slice_thickness: float,
          oblique: bool, seed: int, force: bool) -> None:
    """Write a synthetic brain-MR cohort (MR + RTSTRUCT + SEG + truth masks) to OUT."""
    from segkit.synth import SynthConfig, write_cohort

    config = SynthConfig(patients=patients, slices=slices, size=size, pixel_spacing=pixel_spacing,
                         slice_thickness=slice_thickness, oblique=oblique, seed=seed)
    summary = write_cohort(out, config, overwrite=force, progress=True)
    click.echo(f"wrote {summary.files} files for {summary.patients} patients to {out}", err=True)


class _DefaultCommandGroup(click.Group):
    """A group whose first argument, when it is not a subcommand, goes to a default subcommand.

    So both ``segkit anonymize IN OUT --key-file K`` and ``segkit anonymize init-key KEY`` work.
    """

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "IN OUT --key-file KEY [OPTIONS]  |  init-key KEY")


@click.group(cls=_DefaultCommandGroup)
def anonymize() -> None:
    """De-identify raw DICOM (PS3.15 Basic Profile) with audit and leak check.

    \b
    segkit anonymize IN OUT --key-file KEY [options]   (see `segkit anonymize run --help`)
    segkit anonymize init-key KEY                       (a new site key, mode 0600)
    """


@anonymize.command("run")
@click.argument("src", metavar="IN", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("out", metavar="OUT", type=click.Path(path_type=Path, file_okay=False))
@click.option("--key-file", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Site key (`segkit keygen KEY`): same key → same pseudonyms, UIDs and date shifts.")
@click.option("--linkage", type=click.Path(path_type=Path, dir_okay=False),
              help="CSV for the data steward: PatientID → pseudonym, study date → shift. Must be outside OUT.")
@click.option("--profile", "profile_file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="YAML changing the profile (actions, safe_private, keep_public_text, options).")
@click.option("--option", "options", multiple=True, metavar="NAME",
              help="Turn a PS3.15 option on (e.g. retain-uids, retain-device-identity, retain-patient-"
                   "characteristics, retain-safe-private) or off with no-NAME (defaults: retain-modified-dates, "
                   "clean-descriptors).")
@click.option("--quarantine", type=click.Path(path_type=Path, file_okay=False),
              help="Folder (outside OUT) that receives every file that is not written, with the reason.")
@click.option("--workers", type=click.IntRange(1, 256), default=None, help="Processes (default: all cores).")
@click.option("--dask", "dask", metavar="ADDRESS", default=None,
              help="Spread files over a Dask cluster: a scheduler address (tcp://host:8786) or local[:N] "
                   "(needs the 'dask' extra; output is identical).")
@click.option("--no-verify", is_flag=True, help="Skip the leak check of each output (not recommended).")
@click.option("--pseudonym-pattern", default="SK-{hash}", show_default=True,
              help="Patient pseudonym; {hash} = 12 keyed base-32 characters.")
@click.option("--deid-recipe", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="A deid recipe whose header actions are applied on top of the profile.")
@click.option("--pixel-policy", type=click.Choice(["clean", "quarantine"]), default="clean", show_default=True,
              help="Burned-in text that OCR finds on an image at risk: black out its boxes, or quarantine the file.")
def anonymize_run(src: Path, out: Path, key_file: Path, linkage: Path | None, profile_file: Path | None,
                  options: tuple[str, ...], quarantine: Path | None, workers: int | None, dask: str | None,
                  no_verify: bool, pseudonym_pattern: str, deid_recipe: Path | None, pixel_policy: str) -> None:
    """De-identify every file under IN into OUT (organised by pseudonym/study/series)."""
    from segkit.deid import anonymize_tree, parse_options, read_key

    if "{hash}" not in pseudonym_pattern:
        raise UsageError("--pseudonym-pattern", "must contain {hash}")
    summary = anonymize_tree(src, out, read_key(key_file), options=parse_options(options) if options else None,
                             profile=profile_file, linkage=linkage, quarantine=quarantine, workers=workers,
                             verify=not no_verify, pseudonym_pattern=pseudonym_pattern, deid_recipe=deid_recipe,
                             progress=sys.stderr.isatty(), pixel_policy=pixel_policy, dask=dask)
    click.echo(summary.line(), err=True)


@anonymize.command("init-key")
@click.argument("key", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing key (pseudonyms made with it can no longer be "
                                            "matched).")
def anonymize_init_key(key: Path, force: bool) -> None:
    """Write a new random site key to KEY (file mode 0600)."""
    _keygen(key, force)


@click.command()
@click.argument("key", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing key.")
def keygen(key: Path, force: bool) -> None:
    """Write a new random site key for `segkit anonymize` to KEY (file mode 0600)."""
    _keygen(key, force)


def _keygen(key: Path, force: bool) -> None:
    from segkit.deid import generate_key

    generate_key(key, overwrite=force)
    click.echo(f"wrote a new site key to {key} (mode 0600); keep it secret and backed up", err=True)


@click.command()
@click.argument("in_dir", metavar="IN", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("out", metavar="OUT.zarr", type=click.Path(path_type=Path))
@click.option("--roi", "roi", multiple=True, metavar="PATTERN",
              help="Case-insensitive regular expression on ROI/segment names; repeatable. "
                   "Default: common tumour names (GTV, tumo(u)r, lesion, neoplasm, metasta…).")
@click.option("--size", type=click.IntRange(8, 4096), default=None,
              help="Resample every slice to NxN (default: keep the native matrix, which all series must share).")
@click.option("--val-patients", type=click.IntRange(0), default=1, show_default=True, help="Patients in validation.")
@click.option("--test-patients", type=click.IntRange(0), default=1, show_default=True, help="Patients in test.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the patient split.")
@click.option("--workers", type=click.IntRange(1, 64), default=lambda: min(2, os.cpu_count() or 1),
              show_default="2, or 1 on one core",
              help="Series converted in parallel, in threads (output is identical; ~0.4 GB each at 175x512²).")
@click.option("--dask", "dask", metavar="ADDRESS", default=None,
              help="Spread series over a Dask cluster: a scheduler address (tcp://host:8786) or local[:N] "
                   "(needs the 'dask' extra; output is identical).")
@click.option("--masks", type=click.Choice(["auto", "rtstruct", "seg"]), default="auto", show_default=True,
              help="Where masks come from; auto: SEG if a series has one (cross-checked with its RTSTRUCT), else RTSTRUCT.")
@click.option("--seg-threshold", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="FRACTIONAL SEG values at or above this are tumour.")
@click.option("--allow-uneven-spacing", is_flag=True, help="Accept series whose slices are unevenly spaced.")
@click.option("--lenient", is_flag=True,
              help="Warn instead of failing on a contour on no slice, a non-planar contour, or an RTSTRUCT whose "
                   "frame of reference differs from the series it references (contours off the slice planes "
                   "need --snap-contours).")
@click.option("--snap-contours", is_flag=True,
              help="Place contours that lie off every slice plane (more than a tenth of the spacing, 0.05 mm at "
                   "least) on the nearest slice with a warning, instead of failing.")
@click.option("--force", is_flag=True, help="Replace OUT.zarr if it exists (only once the new store is complete).")
def convert(in_dir: Path, out: Path, roi: tuple[str, ...], size: int | None, val_patients: int, test_patients: int,
            seed: int, workers: int, dask: str | None, masks: str, seg_threshold: float, allow_uneven_spacing: bool,
            lenient: bool, snap_contours: bool, force: bool) -> None:
    """Turn DICOM images + RTSTRUCT/SEG in IN into the Zarr slice store OUT.zarr.

    Masks of the ROIs matching --roi are merged into one binary tumour mask per
    slice; patients are split into train/val/test with --seed before anything
    else; intensities are clipped to the 0.5-99.5 percentiles of each volume and
    scaled to [0, 1]. Nothing is left at OUT.zarr unless the whole run succeeds.
    """
    from segkit.convert.plan import ConvertOptions
    from segkit.convert.run import convert as run_convert

    options = ConvertOptions(roi=roi, size=size, val_patients=val_patients, test_patients=test_patients, seed=seed,
                             masks=masks, allow_uneven=allow_uneven_spacing, lenient=lenient,
                             seg_threshold=seg_threshold, snap_contours=snap_contours)
    report = run_convert(in_dir, out, options, workers=workers, dask=dask, overwrite=force, progress=True)
    click.echo(report.summary(), err=True)


@click.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--target", type=click.IntRange(1), default=6080, show_default=True,
              help="Training images in DST, originals included.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same input + seed → byte-identical store.")
@click.option("--ops", default="flip,rotate,blur,contrast", show_default=True,
              help="Comma-separated ops to draw from.")
@click.option("--set", "settings", multiple=True, metavar="OP.KEY=VALUE",
              help="Change an op's range or probability, e.g. rotate.angle=-10,10 or blur.p=0.3 (repeatable).")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Processes; the output does not depend on it.")
@click.option("--force", is_flag=True, help="Replace DST if it already exists.")
def augment(src: Path, dst: Path, target: int, seed: int, ops: str, settings: tuple[str, ...], workers: int,
            force: bool) -> None:
    """Grow the training split of a store reproducibly (flips, rotations, blur, contrast).

    Copies every slice of SRC to DST unchanged, then adds augmented training
    images until the train split holds exactly --target.  Each one records its
    parent row and ops; validation and test patients are never augmented.  A
    killed run resumes when the same command is run again.
    """
    from segkit.augment.run import augment_store
    from segkit.augment.plan import parse_settings

    result = augment_store(src, dst, target=target, seed=seed, ops=ops.split(","),
                           op_settings=parse_settings(settings), workers=workers, overwrite=force, progress=True)
    resumed = f" (resumed at row {result.resumed_from})" if result.resumed_from else ""
    click.echo(f"wrote {result.path}: {result.train} training images ({result.augmented} augmented), "
               f"{result.slices} slices in all{resumed}", err=True)


@click.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--n", "n", type=click.IntRange(1, 256), default=16, show_default=True, help="Number of tiles.")
@click.option("--seed", type=int, default=0, show_default=True, help="Chooses the slices shown.")
def preview(store: Path, out: Path, n: int, seed: int) -> None:
    """Draw a grid PNG of originals and augmented samples, tumour outlined, ops under each tile."""
    from segkit.augment.preview import render_preview

    click.echo(f"wrote {render_preview(store, out, n=n, seed=seed)}", err=True)


@click.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout (schemas/info.schema.json).")
def info(store: Path, as_json: bool) -> None:
    """Summarise a segkit store: patients, slices, split, provenance."""
    import json

    from segkit.store.info import store_info

    summary = store_info(store)
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
    else:
        click.echo(summary.text())


@click.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.argument("out", metavar="OUT.h5", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--force", is_flag=True, help="Replace OUT.h5 if it exists.")
def export(store: Path, out: Path, force: bool) -> None:
    """Write a store's arrays, table and attributes to HDF5 (for tools that read HDF5)."""
    from segkit.store.export import export_hdf5

    path = export_hdf5(store, out, overwrite=force, progress=True)
    click.echo(f"wrote {path}", err=True)
