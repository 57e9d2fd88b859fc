"""The ``segkit`` command line: a thin click layer over one library function per command.

Heavy modules (pydicom, highdicom, zarr, TensorFlow) are imported inside the
commands, so ``segkit --help`` starts fast and the DICOM commands never load
TensorFlow.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from segkit._version import __version__
from segkit.errors import NotImplementedYetError, SegkitError

log = logging.getLogger("segkit")


class SegkitGroup(click.Group):
    """A click group that turns :class:`SegkitError` into ``error: <what>: <why>``.

    Commands are listed in the order of the data flow, not alphabetically.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SegkitError as exc:
            if ctx.params.get("debug"):
                raise
            click.echo(f"error: {exc.what}: {exc.why}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("error: interrupted: stopped by the user; rerun the same command to resume", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - last line of defence, no PHI in the message
            if ctx.params.get("debug"):
                raise
            click.echo(
                f"error: internal: unexpected {type(exc).__name__} (rerun with --debug for the traceback)",
                err=True,
            )
            ctx.exit(1)


def _configure_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("segkit")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


@click.group(cls=SegkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="segkit")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("-v", "--verbose", count=True, help="More detail on stderr.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: int) -> None:
    """segkit: raw MRI DICOM → de-identified, provenance-tracked training set → hybrid
    U-Net/Transformer tumour segmentation.  Runs offline; nothing is downloaded.

    \b
    Data flow:
      anonymize  raw DICOM      -> de-identified DICOM (+ audit, leak check)
      convert    DICOM + RTSTRUCT/SEG -> slices.zarr (masks, provenance, split)
      augment    slices.zarr    -> augmented.zarr (reproducible)
      train      *.zarr         -> run dir (checkpoints, history, best weights)
      evaluate   run + *.zarr   -> metrics, tables, pictures
      predict    run + series   -> DICOM SEG
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    _configure_logging(verbose)


def _not_yet(command: str) -> NoReturn:
    raise NotImplementedYetError(f"segkit {command}", "not implemented yet (see the project's open issues)")


# --------------------------------------------------------------------------- synth
@cli.command()
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


# --------------------------------------------------------------- later issues
_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True}


@cli.command(context_settings=_PASS_THROUGH)
def anonymize() -> None:
    """De-identify raw DICOM (PS3.15 Basic Profile) with audit and leak check."""
    _not_yet("anonymize")


@cli.command()
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
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes reading series in parallel (output is identical).")
@click.option("--masks", type=click.Choice(["auto", "rtstruct", "seg"]), default="auto", show_default=True,
              help="Where masks come from; auto: SEG if a series has one (cross-checked with its RTSTRUCT), else RTSTRUCT.")
@click.option("--seg-threshold", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="FRACTIONAL SEG values at or above this are tumour.")
@click.option("--allow-uneven-spacing", is_flag=True, help="Accept series whose slices are unevenly spaced.")
@click.option("--lenient", is_flag=True,
              help="Warn instead of failing on a contour on no slice, a non-planar contour, or an RTSTRUCT whose "
                   "frame of reference differs from the series it references.")
@click.option("--force", is_flag=True, help="Replace OUT.zarr if it exists (only once the new store is complete).")
def convert(in_dir: Path, out: Path, roi: tuple[str, ...], size: int | None, val_patients: int, test_patients: int,
            seed: int, workers: int, masks: str, seg_threshold: float, allow_uneven_spacing: bool, lenient: bool,
            force: bool) -> None:
    """Turn DICOM images + RTSTRUCT/SEG in IN into the Zarr slice store OUT.zarr.

    Masks of the ROIs matching --roi are merged into one binary tumour mask per
    slice; patients are split into train/val/test with --seed before anything
    else; intensities are clipped to the 0.5-99.5 percentiles of each volume and
    scaled to [0, 1]. Nothing is left at OUT.zarr unless the whole run succeeds.
    """
    from segkit.convert import ConvertOptions, convert as run_convert

    options = ConvertOptions(roi=roi, size=size, val_patients=val_patients, test_patients=test_patients, seed=seed,
                             masks=masks, allow_uneven=allow_uneven_spacing, lenient=lenient,
                             seg_threshold=seg_threshold)
    report = run_convert(in_dir, out, options, workers=workers, overwrite=force, progress=True)
    click.echo(report.summary(), err=True)


@cli.command(context_settings=_PASS_THROUGH)
def augment() -> None:
    """Grow the training split of a store reproducibly (flips, rotations, blur, contrast)."""
    _not_yet("augment")


@cli.command(context_settings=_PASS_THROUGH)
def train() -> None:
    """Build, train and checkpoint the hybrid U-Net/Transformer model on a store."""
    from segkit.train.backend import load

    load("segkit train")
    _not_yet("train")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True,
              help="Held-out patients to score (never the training split).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Probability at or above which a pixel counts as tumour.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Report folder  [default: RUN_DIR/eval-SPLIT]")
@click.option("--checkpoint", type=click.Choice(["best", "latest"]), default="best", show_default=True,
              help="The best weights by val Dice, or the last checkpoint.")
@click.option("--compare", "compare", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="Another run to set beside this one in compare.md/.csv (repeat for more).")
@click.option("--no-overlays", is_flag=True, help="Skip the best/worst-slice PNGs.")
@click.option("--force", is_flag=True, help="Replace the report folder if it exists.")
def evaluate(run_dir: Path, store: Path, split: str, threshold: float, out: Path | None, checkpoint: str,
             compare: tuple[Path, ...], no_overlays: bool, force: bool) -> None:
    """Dice / IoU / precision / recall (+ HD95) of a run on held-out patients."""
    from segkit.train.evaluate import evaluate_run

    doc = evaluate_run(run_dir, store, split, threshold, out, checkpoint=checkpoint, compare=compare,
                       overlays=not no_overlays, overwrite=force, progress=True)
    folder = out if out is not None else run_dir / f"eval-{split}"
    p = doc["pooled"]
    click.echo(f"{doc['patients']} {split} patients, {doc['slices']} slices: pooled Dice {p['dice']:.4f}, "
               f"IoU {p['iou']:.4f}, precision {p['precision']:.4f}, recall {p['recall']:.4f}; "
               f"report in {folder}", err=True)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.argument("series_dir", type=click.Path(path_type=Path, file_okay=False))
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--roi-label", default="Tumour", show_default=True, help="Label of the SEG's segment.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Probability at or above which a pixel is tumour (binary SEG).")
@click.option("--fractional", is_flag=True, help="Write the probabilities (FRACTIONAL SEG) instead of a binary mask.")
@click.option("--checkpoint", type=click.Choice(["best", "latest"]), default="best", show_default=True)
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def predict(run_dir: Path, series_dir: Path, out: Path, roi_label: str, threshold: float, fractional: bool,
            checkpoint: str, force: bool) -> None:
    """Segment a DICOM MR series with a trained run and write a DICOM SEG."""
    from segkit.train.predict import predict_series

    result = predict_series(run_dir, series_dir, out, roi_label=roi_label, threshold=threshold,
                            fractional=fractional, checkpoint=checkpoint, overwrite=force)
    click.echo(result.summary(), err=True)


@cli.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout (schemas/info.schema.json).")
def info(store: Path, as_json: bool) -> None:
    """Summarise a segkit store: patients, slices, split, provenance."""
    import json

    from segkit.info import store_info

    summary = store_info(store)
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
    else:
        click.echo(summary.text())


@cli.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.argument("out", metavar="OUT.h5", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--force", is_flag=True, help="Replace OUT.h5 if it exists.")
def export(store: Path, out: Path, force: bool) -> None:
    """Write a store's arrays, table and attributes to HDF5 (for tools that read HDF5)."""
    from segkit.export import export_hdf5

    path = export_hdf5(store, out, overwrite=force, progress=True)
    click.echo(f"wrote {path}", err=True)


@cli.command()
@click.argument("out", type=click.Path(path_type=Path, file_okay=False), default="segkit-demo")
@click.option("--quick", is_flag=True, help="Smaller cohort and shorter training.")
@click.option("--force", is_flag=True, help="Replace OUT if it already exists.")
def demo(out: Path, quick: bool, force: bool) -> None:
    """Run the whole chain on a fresh synthetic cohort in OUT (default ./segkit-demo)."""
    from segkit.pipelines.demo import run_demo

    report = run_demo(out, quick=quick, overwrite=force)
    click.echo(report.summary(), err=True)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="segkit")


if __name__ == "__main__":  # pragma: no cover
    main()
