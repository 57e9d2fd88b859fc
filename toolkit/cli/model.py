"""The ``segkit`` commands that train and use a model: train, ablate, evaluate, predict, demo.

Each command turns its options into a call of one library function of :mod:`segkit.train` or
:mod:`segkit.pipelines`, imported inside the command so that ``segkit --help`` and the DICOM commands
never load TensorFlow, and prints one summary line on stderr; the commands are added to the ``segkit``
group, in the order of the data flow, by :mod:`segkit.cli`.
"""

from __future__ import annotations

from pathlib import Path

import click


_TRAIN_BLOCKS = ("transformer", "se", "cbam", "attention-gate", "resnext")


#: evaluate's and predict's --tta (segkit.train.inference.resolve_tta).
_tta_option = click.option(
    "--tta", type=click.Choice(["auto", "none", "flips", "dihedral"]), default="auto", show_default=True,
    help="Test-time augmentation: the mean over flips (4 views) or all flips and quarter turns (8); "
         "auto = dihedral for a run trained on them (cpu-small), else none.")


@click.command()
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


@click.command()
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


@click.command()
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
@_tta_option
@click.option("--force", is_flag=True, help="Replace the report folder if it exists.")
def evaluate(run_dir: Path, store: Path, split: str, threshold: float, out: Path | None, checkpoint: str,
             compare: tuple[Path, ...], no_overlays: bool, tta: str, force: bool) -> None:
    """Dice / IoU / precision / recall (+ HD95) of a run on held-out patients.

    RUN_DIR may be the parent of `segkit train --folds`: every fold is scored on its own held-out
    patients and RUN_DIR/eval-SPLIT/folds.md gives each fold, mean ± sd over folds and all pooled.
    """
    from segkit.train.crossval import evaluate_folds, is_folds_parent
    from segkit.train.evaluate import evaluate_run

    if is_folds_parent(run_dir):
        doc = evaluate_folds(run_dir, store, split, threshold, out, checkpoint=checkpoint,
                             overlays=not no_overlays, overwrite=force, progress=True, tta=tta)
        o = doc["over_folds"]["dice"]
        click.echo(f"{len(doc['folds'])} folds: Dice {o['mean']:.4f} ± {o['sd'] or 0:.4f} over folds; pooled over "
                   f"all {doc['patients']} held-out patients {doc['pooled']['dice']:.4f}; report in "
                   f"{out if out is not None else run_dir / f'eval-{split}'}", err=True)
        return
    doc = evaluate_run(run_dir, store, split, threshold, out, checkpoint=checkpoint, compare=compare,
                       overlays=not no_overlays, overwrite=force, progress=True, tta=tta)
    folder = out if out is not None else run_dir / f"eval-{split}"
    p = doc["pooled"]
    click.echo(f"{doc['patients']} {split} patients, {doc['slices']} slices: pooled Dice {p['dice']:.4f}, "
               f"IoU {p['iou']:.4f}, precision {p['precision']:.4f}, recall {p['recall']:.4f}; "
               f"report in {folder}", err=True)


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.argument("series_dir", type=click.Path(path_type=Path, file_okay=False))
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--roi-label", default="Tumour", show_default=True, help="Label of the SEG's segment.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Probability at or above which a pixel is tumour (binary SEG).")
@click.option("--fractional", is_flag=True, help="Write the probabilities (FRACTIONAL SEG) instead of a binary mask.")
@click.option("--checkpoint", type=click.Choice(["best", "latest"]), default="best", show_default=True)
@_tta_option
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def predict(run_dir: Path, series_dir: Path, out: Path, roi_label: str, threshold: float, fractional: bool,
            checkpoint: str, tta: str, force: bool) -> None:
    """Segment a DICOM MR series with a trained run and write a DICOM SEG."""
    from segkit.train.predict import predict_series

    result = predict_series(run_dir, series_dir, out, roi_label=roi_label, threshold=threshold,
                            fractional=fractional, checkpoint=checkpoint, overwrite=force, tta=tta)
    click.echo(result.summary(), err=True)


@click.command()
@click.argument("out", type=click.Path(path_type=Path, file_okay=False), default="segkit-demo")
@click.option("--quick", is_flag=True, help="Smaller cohort and shorter training.")
@click.option("--force", is_flag=True, help="Replace OUT if it already exists.")
def demo(out: Path, quick: bool, force: bool) -> None:
    """Run the whole chain on a fresh synthetic cohort in OUT (default ./segkit-demo)."""
    from segkit.pipelines.demo import run_demo

    report = run_demo(out, quick=quick, overwrite=force)
    click.echo(report.summary(), err=True)
