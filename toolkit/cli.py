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


@cli.command(context_settings=_PASS_THROUGH)
def convert() -> None:
    """Turn DICOM images + RTSTRUCT/SEG into a Zarr slice store with provenance."""
    _not_yet("convert")


@cli.command(context_settings=_PASS_THROUGH)
def augment() -> None:
    """Grow the training split of a store reproducibly (flips, rotations, blur, contrast)."""
    _not_yet("augment")


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
def train(store: Path, run_dir: Path, config_file: Path | None, preset: str, variant: str | None,
          without: tuple[str, ...], backbone: str | None, input_size: int | None, epochs: int | None,
          steps_per_epoch: int | None, batch_size: int | None, lr: float | None, lambda_dice: float | None,
          encoder_weights: str | None, resume: bool, max_time: str | None, checkpoint_every: int | None,
          seed: int | None, deterministic: bool, strategy: str | None) -> None:
    """Train the hybrid U-Net/Transformer (or a variant) on STORE's train split into RUN_DIR."""
    from segkit.train.config import parse_duration
    from segkit.train.fit import train_run

    overrides = {
        "model": {"variant": variant, "backbone": backbone, "input_size": input_size,
                  "encoder_weights": encoder_weights,
                  **{block.replace("-", "_"): False for block in without}},
        "train": {"epochs": epochs, "steps_per_epoch": steps_per_epoch, "batch_size": batch_size,
                  "learning_rate": lr, "lambda_dice": lambda_dice, "max_time": parse_duration(max_time),
                  "checkpoint_every": checkpoint_every, "seed": seed, "deterministic": deterministic or None,
                  "strategy": strategy},
    }
    result = train_run(store, run_dir, preset=preset, config_file=config_file, overrides=overrides,
                       resume=resume, progress=True)
    click.echo(result.summary(), err=True)


@cli.command(context_settings=_PASS_THROUGH)
def evaluate() -> None:
    """Dice / IoU / precision / recall (+ HD95) of a run on held-out patients."""
    _not_yet("evaluate")


@cli.command(context_settings=_PASS_THROUGH)
def predict() -> None:
    """Segment a DICOM MR series with a trained run and write a DICOM SEG."""
    _not_yet("predict")


@cli.command(context_settings=_PASS_THROUGH)
def info() -> None:
    """Summarise a segkit store: patients, slices, split, provenance."""
    _not_yet("info")


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
