"""The ``segkit`` command line: a thin click layer over one library function per command.

Heavy modules (pydicom, highdicom, zarr, TensorFlow) are imported inside the
commands, so ``segkit --help`` starts fast and the DICOM commands never load
TensorFlow.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from segkit._version import __version__
from segkit.errors import SegkitError, UsageError
from segkit.logsetup import configure_logging

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
    configure_logging(logging.DEBUG if verbose else logging.INFO)


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


@cli.group(cls=_DefaultCommandGroup)
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


@cli.command()
@click.argument("key", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing key.")
def keygen(key: Path, force: bool) -> None:
    """Write a new random site key for `segkit anonymize` to KEY (file mode 0600)."""
    _keygen(key, force)


def _keygen(key: Path, force: bool) -> None:
    from segkit.deid import generate_key

    generate_key(key, overwrite=force)
    click.echo(f"wrote a new site key to {key} (mode 0600); keep it secret and backed up", err=True)


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


@cli.command()
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


@cli.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--n", "n", type=click.IntRange(1, 256), default=16, show_default=True, help="Number of tiles.")
@click.option("--seed", type=int, default=0, show_default=True, help="Chooses the slices shown.")
def preview(store: Path, out: Path, n: int, seed: int) -> None:
    """Draw a grid PNG of originals and augmented samples, tumour outlined, ops under each tile."""
    from segkit.augment.preview import render_preview

    click.echo(f"wrote {render_preview(store, out, n=n, seed=seed)}", err=True)


_TRAIN_BLOCKS = ("transformer", "se", "cbam", "attention-gate", "resnext")


@cli.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
              help="YAML settings (schemas/train-config.schema.json) applied over the preset.")
@click.option("--preset", type=click.Choice(["paper", "cpu-small"]), default="cpu-small", show_default=True,
              help="paper: ResNet-50, 512², batch 8, 29 epochs, ImageNet encoder; cpu-small: ResNet-18, 64², no "
                   "pretrained weights.")
@click.option("--model", "variant", type=click.Choice(["hybrid", "unet", "unet_transformer"]), help="Model variant.")
@click.option("--without", "without", type=click.Choice(_TRAIN_BLOCKS), multiple=True,
              help="Ablation: build the variant without this block (repeatable).")
@click.option("--backbone", help="segmentation_models backbone (resnet18, resnet34, resnet50 …).")
@click.option("--input-size", type=click.IntRange(32), help="Model input size (multiple of 32).")
@click.option("--epochs", type=click.IntRange(1), help="Epochs in total (also when resuming).")
@click.option("--steps-per-epoch", type=click.IntRange(1), help="Cap on steps per epoch.")
@click.option("--batch-size", type=click.IntRange(1), help="Global batch size.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), help="Adam learning rate.")
@click.option("--lambda-dice", type=click.FloatRange(0), help="λ in BCE + λ·Dice.")
@click.option("--encoder-weights", help="Local Keras .h5 of the backbone without top, 'imagenet' (file in "
                                        "~/.keras/models) or 'none'.")
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR from its latest checkpoint.")
@click.option("--max-time", help="Checkpoint and stop cleanly after this long (e.g. 11h30m); exit 0.")
@click.option("--checkpoint-every", type=click.IntRange(0), help="Also checkpoint every N steps.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), help="Seed of weights, data order and dropout.")
@click.option("--deterministic", is_flag=True, help="TensorFlow op determinism: bit-identical runs and resumes.")
@click.option("--strategy", type=click.Choice(["auto", "default", "mirrored", "multiworker"]),
              help="tf.distribute strategy (auto: multi-worker with TF_CONFIG, mirrored with several GPUs).")
@click.option("--input-mode", type=click.Choice(["2d", "2.5d"]),
              help="2d: the slice as grey; 2.5d: the slice between its two neighbours as the 3 channels.")
@click.option("--folds", type=click.IntRange(2), default=None,
              help="Patient-level K-fold cross-validation over all the store's patients into RUN_DIR/fold-XX "
                   "(K = number of patients: leave-one-patient-out).")
def train(store: Path, run_dir: Path, config_file: Path | None, preset: str, variant: str | None,
          without: tuple[str, ...], backbone: str | None, input_size: int | None, epochs: int | None,
          steps_per_epoch: int | None, batch_size: int | None, lr: float | None, lambda_dice: float | None,
          encoder_weights: str | None, resume: bool, max_time: str | None, checkpoint_every: int | None,
          seed: int | None, deterministic: bool, strategy: str | None, input_mode: str | None,
          folds: int | None) -> None:
    """Train the hybrid U-Net/Transformer (or a variant) on STORE's train split into RUN_DIR."""
    overrides = _train_overrides(variant, without, backbone, input_size, encoder_weights, epochs, steps_per_epoch,
                                 batch_size, lr, lambda_dice, max_time, checkpoint_every, seed, deterministic,
                                 strategy, input_mode)
    if folds:
        from segkit.train.crossval import train_folds

        results = train_folds(store, run_dir, folds, preset=preset, config_file=config_file, overrides=overrides,
                              resume=resume, progress=True)
        for result in results:
            click.echo(result.summary(), err=True)
        click.echo(f"{folds} folds in {run_dir}; score them with: segkit evaluate {run_dir} {store}", err=True)
        return
    from segkit.train.fit import train_run

    result = train_run(store, run_dir, preset=preset, config_file=config_file, overrides=overrides,
                       resume=resume, progress=True)
    click.echo(result.summary(), err=True)


def _train_overrides(variant: str | None, without: tuple[str, ...], backbone: str | None, input_size: int | None,
                     encoder_weights: str | None, epochs: int | None, steps_per_epoch: int | None,
                     batch_size: int | None, lr: float | None, lambda_dice: float | None, max_time: str | None,
                     checkpoint_every: int | None, seed: int | None, deterministic: bool, strategy: str | None,
                     input_mode: str | None) -> dict:
    from segkit.train.config import parse_duration

    return {
        "model": {"variant": variant, "backbone": backbone, "input_size": input_size,
                  "encoder_weights": encoder_weights, "input_mode": input_mode,
                  **{block.replace("-", "_"): False for block in without}},
        "train": {"epochs": epochs, "steps_per_epoch": steps_per_epoch, "batch_size": batch_size,
                  "learning_rate": lr, "lambda_dice": lambda_dice, "max_time": parse_duration(max_time),
                  "checkpoint_every": checkpoint_every, "seed": seed, "deterministic": deterministic or None,
                  "strategy": strategy},
    }


@cli.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--folds", type=click.IntRange(2), default=None, help="Cross-validate every variant with K folds.")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
              help="YAML settings applied over the preset (the same for every variant).")
@click.option("--preset", type=click.Choice(["paper", "cpu-small"]), default="cpu-small", show_default=True)
@click.option("--variant", "variants", multiple=True,
              help="Only this row (repeatable): unet, unet_transformer, hybrid, hybrid-without-BLOCK.")
@click.option("--epochs", type=click.IntRange(1), help="Epochs of every run.")
@click.option("--steps-per-epoch", type=click.IntRange(1), help="Cap on steps per epoch.")
@click.option("--input-size", type=click.IntRange(32), help="Model input size (multiple of 32).")
@click.option("--batch-size", type=click.IntRange(1), help="Global batch size.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), help="Seed of every run.")
@click.option("--deterministic", is_flag=True, help="TensorFlow op determinism.")
def ablate(store: Path, out: Path, folds: int | None, config_file: Path | None, preset: str,
           variants: tuple[str, ...], epochs: int | None, steps_per_epoch: int | None, input_size: int | None,
           batch_size: int | None, seed: int | None, deterministic: bool) -> None:
    """Train and score unet, unet_transformer, hybrid and each hybrid without one block (the paper's Table 3).

    Same seed and budget for every row; OUT/ablation.md and .csv hold the table with 95 % bootstrap
    intervals over patients.  Run it again to resume.
    """
    from segkit.train.ablate import ablate as run_ablation

    overrides = {"model": {"input_size": input_size},
                 "train": {"epochs": epochs, "steps_per_epoch": steps_per_epoch, "batch_size": batch_size,
                           "seed": seed, "deterministic": deterministic or None}}
    from segkit.train.config import _drop_none

    rows = run_ablation(store, out, folds=folds, preset=preset, config_file=config_file,
                        overrides=_drop_none(overrides), variants=list(variants) or None, progress=True)
    click.echo(f"{len(rows)} variants; table in {out / 'ablation.md'}", err=True)


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
    """Dice / IoU / precision / recall (+ HD95) of a run on held-out patients.

    RUN_DIR may be the parent of `segkit train --folds`: every fold is scored on its own held-out
    patients and RUN_DIR/eval-SPLIT/folds.md gives each fold, mean ± sd over folds and all pooled.
    """
    from segkit.train.crossval import evaluate_folds, is_folds_parent
    from segkit.train.evaluate import evaluate_run

    if is_folds_parent(run_dir):
        doc = evaluate_folds(run_dir, store, split, threshold, out, checkpoint=checkpoint,
                             overlays=not no_overlays, overwrite=force, progress=True)
        o = doc["over_folds"]["dice"]
        click.echo(f"{len(doc['folds'])} folds: Dice {o['mean']:.4f} ± {o['sd'] or 0:.4f} over folds; pooled over "
                   f"all {doc['patients']} held-out patients {doc['pooled']['dice']:.4f}; report in "
                   f"{out if out is not None else run_dir / f'eval-{split}'}", err=True)
        return
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

    from segkit.store.info import store_info

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
    from segkit.store.export import export_hdf5

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
