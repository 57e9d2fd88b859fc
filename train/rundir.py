"""The files of a run directory other than the checkpoints: checked before a run, written by it, read back.

:func:`prepare_run_dir` checks the run directory before anything is written (a new run needs it missing
or empty; ``--resume`` takes the saved ``config.yaml``, allowing only ``epochs`` and ``max_time`` to
change); ``history.csv`` (:data:`HISTORY_FIELDS`, one row per epoch) is read back on resume and
rewritten after each epoch, ``curves.png`` is drawn from it, and each invocation appends its ``train``
step to ``provenance.json``; :func:`load_run_model` rebuilds a finished run's model from its
``config.yaml`` and ``best.weights.h5`` (or latest checkpoint).  The training loop that uses these is
:func:`segkit.train.fit.train_run`, whose module docstring lists the whole run directory.
"""

from __future__ import annotations

import csv
import io
import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segkit.atomic import write_atomic
from segkit._version import __version__
from segkit.errors import InputError, OutputExistsError, UsageError

if TYPE_CHECKING:
    from segkit.train.fit import TrainResult

__all__ = ["load_run_model", "HISTORY_FIELDS"]

METRICS = ("loss", "dice", "iou", "precision", "recall")
HISTORY_FIELDS = ("epoch", "step", *[f"{p}{m}" for p in ("", "val_") for m in METRICS], "seconds")


def _read_history(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _write_history(path: Path, rows: list[dict[str, float]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (int(row[k]) if k in ("epoch", "step") else f"{row[k]:.6f}") for k in HISTORY_FIELDS})
    write_atomic(path, buf.getvalue())


def write_curves(history: list[dict[str, float]], path: Path) -> None:
    """PNG of loss, Dice, IoU, precision and recall per epoch, train and val (the paper's Figure 5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(r["epoch"]) for r in history]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.2), constrained_layout=True)
    for ax, metric in zip(axes, METRICS):
        ax.plot(epochs, [r[metric] for r in history], marker="o", ms=3, label="train")
        ax.plot(epochs, [r[f"val_{metric}"] for r in history], marker="o", ms=3, label="val")
        ax.set_title(metric if metric != "loss" else "loss (BCE + λ·Dice)")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    write_atomic(path, buf.getvalue())


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "segkit": __version__}
    for pkg in ("tensorflow", "tf-keras", "segmentation-models", "numpy", "zarr"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def prepare_run_dir(run_dir: Path, config: dict[str, Any] | None, resume: bool,
                    overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check the run directory and return the config to train with (no files written).

    A new run needs a missing or empty ``run_dir``.  ``resume`` needs a run
    directory with ``config.yaml``; its config is used, with only ``epochs`` and
    ``max_time`` taken from ``overrides``.

    Raises
    ------
    OutputExistsError
        A new run into a directory that holds files.
    InputError
        ``resume`` on a directory that is not a segkit run.
    UsageError
        ``resume`` with overrides that would change the model or the data.
    """
    import yaml

    from segkit.train.config import resolve

    run_dir = Path(run_dir)
    if not resume:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise OutputExistsError(str(run_dir), "already holds a run; pass --resume to continue it or choose a "
                                                  "new run directory.")
        assert config is not None
        return config
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise InputError(str(run_dir), "is not a segkit run directory (no config.yaml); nothing to resume.")
    saved = resolve(yaml.safe_load(cfg_path.read_text("utf-8")), str(cfg_path))
    for section, values in (overrides or {}).items():
        for key, value in (values or {}).items():
            if value is None:
                continue
            if (section, key) in (("train", "epochs"), ("train", "max_time")):
                saved[section][key] = value
            elif saved.get(section, {}).get(key) != value:
                raise UsageError(f"--{key.replace('_', '-')}", "cannot change when resuming (the run's config.yaml "
                                                               "fixes it); only --epochs and --max-time can.")
    return resolve(saved, str(cfg_path))


def load_run_model(run_dir: Path, weights: str = "best") -> Any:
    """Rebuild a run's model from ``config.yaml`` and load ``best.weights.h5`` (or the latest checkpoint)."""
    import yaml

    from segkit.train.config import resolve
    from segkit.train.model import build_model

    run_dir = Path(run_dir)
    config = resolve(yaml.safe_load((run_dir / "config.yaml").read_text("utf-8")))
    config["model"]["encoder_weights"] = None
    model = build_model(config)
    if weights == "best":
        model.load_weights(str(run_dir / "best.weights.h5"))
    else:
        from segkit.train.backend import load

        tf = load().tf
        latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
        if config["train"].get("ema"):  # the run validated and kept its weight average: use it here too
            from segkit.train.ema import WeightAverage

            ema = WeightAverage(tf, model, float(config["train"]["ema"]))
            tf.train.Checkpoint(model=model, ema=ema.trackable()).restore(latest).expect_partial()
            ema.swap()
        else:
            tf.train.Checkpoint(model=model).restore(latest).expect_partial()
    return model


def _write_provenance(run_dir: Path, slices: Any, config: dict[str, Any], started: str, seed: int,
                      result: TrainResult) -> None:
    """Append this invocation's ``train`` step to ``RUN/provenance.json`` (schemas/provenance.schema.json).

    The file starts as the store's own provenance; every invocation (first run,
    each resume) adds one step.  The output digest covers ``best.weights.h5``,
    or the latest checkpoint's files while no epoch has finished.
    """
    from segkit.pipelines.training_store import input_digest
    from segkit.store.provenance import digest_files, finish_step

    path = run_dir / "provenance.json"
    steps = json.loads(path.read_text("utf-8")) if path.is_file() else slices.provenance
    best = run_dir / "best.weights.h5"
    if best.is_file():
        outputs = [best]
    else:
        prefix = Path(tf_latest_checkpoint(run_dir))
        outputs = sorted(prefix.parent.glob(prefix.name + ".*"))
    step = {
        "name": "train",
        "segkit_version": __version__,
        "started": started,
        "finished": None,
        "parameters": {"config": config, "store": slices.path.name, "resumed": result.resumed,
                       "slices": {s: int(slices.indices(s).size) for s in ("train", "val", "test")},
                       # which patients trained (and chose the best weights of) this run: evaluate refuses them
                       "patients": {s: sorted(p for p, v in slices.split.items() if v == s)
                                    for s in ("train", "val", "test")},
                       "environment": _versions(),
                       "result": {"epochs_done": result.epochs_done, "global_step": result.global_step,
                                  "best_val_dice": result.best_val_dice, "stopped_early": result.stopped_early}},
        "input_digest": input_digest(slices),
        "input_files": None,
        "output_digest": None,
        "seed": seed,
    }
    steps.append(finish_step(step, digest_files(outputs)))
    write_atomic(path, json.dumps(steps, indent=2, default=str) + "\n")


def tf_latest_checkpoint(run_dir: Path) -> str:
    """Path prefix of the run's newest checkpoint."""
    from segkit.train.backend import load

    return load().tf.train.latest_checkpoint(str(Path(run_dir) / "checkpoints"))
