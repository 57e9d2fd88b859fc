"""`segkit train`: learning, run-directory artefacts, exact resume after SIGKILL, --max-time, MirroredStrategy, errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from tests.helpers.phantom_store import write_phantom_store

pytestmark = pytest.mark.train
pytest.importorskip("tensorflow")
pytest.importorskip("tf_keras")

SEGKIT = [sys.executable, "-m", "segkit.cli"]
TINY = ["--input-size", "32", "--batch-size", "4", "--steps-per-epoch", "3", "--epochs", "2",
        "--checkpoint-every", "2", "--deterministic", "--seed", "3"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return write_phantom_store(tmp_path_factory.mktemp("fit") / "phantom.zarr")


@pytest.fixture(scope="module")
def synth_store(synth_cohort, tmp_path_factory) -> Path:
    """The session's synthetic DICOM cohort through ``segkit convert`` (the real chain)."""
    from segkit.convert.run import convert

    out = tmp_path_factory.mktemp("fit") / "synth.zarr"
    convert(synth_cohort, out)
    return out


def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(SEGKIT + args, capture_output=True, text=True, env={**os.environ, **(env or {})})


def checkpoint_tensors(run: Path) -> dict[str, np.ndarray]:
    import tensorflow as tf

    path = tf.train.latest_checkpoint(str(run / "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(path)
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def history_without_time(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def test_sigkill_mid_epoch_then_resume_ends_bit_identical(store, tmp_path):
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    # both at once (they share nothing); the second is killed right after step 5 = the second step
    # of epoch 2, when its newest checkpoint is step 4
    done = subprocess.Popen(SEGKIT + ["train", str(store), str(straight), *TINY], stderr=subprocess.PIPE, text=True)
    killed = subprocess.Popen(SEGKIT + ["train", str(store), str(crashed), *TINY], stderr=subprocess.DEVNULL,
                              env={**os.environ, "SEGKIT_TEST_KILL_AFTER_STEP": "5"})
    _, err = done.communicate()
    assert done.returncode == 0, err[-2000:]
    assert killed.wait() == -signal.SIGKILL
    state = (crashed / "checkpoints" / "checkpoint").read_text()
    assert 'model_checkpoint_path: "ckpt-4"' in state and len(history_without_time(crashed)) == 1
    resumed = run_cli(["train", str(store), str(crashed), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from ckpt-4 (epoch 2, step 1 of 3)" in resumed.stderr

    a, b = checkpoint_tensors(straight), checkpoint_tensors(crashed)
    assert a.keys() == b.keys() and len(a) > 300
    differing = [k for k in a if not np.array_equal(a[k], b[k])]
    assert differing == []
    calls = [k for k in a if "calls" in k]  # the dropout counters advanced on the resumed run too
    assert calls and all(int(a[k]) > 0 for k in calls)
    assert history_without_time(straight) == history_without_time(crashed)


def test_cpu_small_learns_on_the_phantom_and_writes_the_run(store, tmp_path):
    from segkit.schemas import validate
    from segkit.train.fit import train_run
    from segkit.train.rundir import HISTORY_FIELDS, load_run_model

    run = tmp_path / "run"
    result = train_run(store, run, preset="cpu-small", overrides={"train": {"epochs": 8}}, progress=False)
    dice = [r["val_dice"] for r in result.history]
    assert len(dice) == 8 and result.global_step == 48
    assert dice[0] < 0.2 and result.best_val_dice >= 0.8, dice
    assert result.best_val_dice == max(dice)

    with open(run / "history.csv", newline="") as f:
        assert tuple(next(csv.reader(f))) == HISTORY_FIELDS
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = yaml.safe_load((run / "config.yaml").read_text())
    validate(config, "train-config")
    assert config["model"]["variant"] == "hybrid" and config["model"]["se"] is True
    steps = json.loads((run / "provenance.json").read_text())
    validate(steps, "provenance")
    assert [s["name"] for s in steps] == ["phantom", "train"]
    from segkit.store.reader import open_store

    assert steps[-1]["input_digest"] == open_store(store).digest()
    assert steps[-1]["parameters"]["environment"]["tensorflow"].startswith("2.21") and steps[-1]["seed"] == 0
    assert steps[-1]["parameters"]["slices"] == {"train": 48, "val": 12, "test": 12}
    split = open_store(store).split
    assert steps[-1]["parameters"]["patients"]["train"] == sorted(p for p, s in split.items() if s == "train")
    from segkit.train.runinfo import read_run

    assert read_run(run).training_patients == set(steps[-1]["parameters"]["patients"]["train"])
    assert steps[-1]["parameters"]["config"] == config

    import tensorflow as tf

    tags = set()
    for event_file in (run / "logs" / "val").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    tags.add(value.tag)
    assert {"loss", "dice", "iou", "precision", "recall"} <= tags

    model = load_run_model(run)
    assert tuple(model.output_shape) == (None, 64, 64, 1)


def test_max_time_checkpoints_and_resume_finishes_on_the_synthetic_cohort(synth_store, tmp_path):
    from segkit.train.fit import train_run

    run = tmp_path / "run"
    tiny = {"model": {"input_size": 32, "variant": "unet_transformer"},
            "train": {"epochs": 1, "batch_size": 4, "steps_per_epoch": 3, "max_time": 0}}
    first = train_run(synth_store, run, overrides=tiny, progress=False)
    assert first.stopped_early and first.global_step == 1 and first.epochs_done == 0
    assert "Continue with: segkit train STORE" in first.summary() and "--resume" in first.summary()
    assert not (run / "history.csv").exists()
    second = train_run(synth_store, run, resume=True, overrides={"train": {"max_time": 3600}}, progress=False)
    assert not second.stopped_early and second.global_step == 3 and second.epochs_done == 1
    assert len(second.history) == 1


def test_mirrored_strategy_on_two_logical_cpus(store, tmp_path):
    script = textwrap.dedent(f"""
        import json
        from segkit.train.backend import load
        tf = load().tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from segkit.train.fit import train_run, _make_strategy
        print(json.dumps({{"replicas": _make_strategy(tf, "mirrored").num_replicas_in_sync}}))
        r = train_run({str(store)!r}, {str(tmp_path / "run")!r}, progress=False, overrides={{
            "model": {{"input_size": 32, "variant": "unet_transformer"}},
            "train": {{"epochs": 1, "batch_size": 4, "steps_per_epoch": 2, "strategy": "mirrored"}}}})
        print(json.dumps({{"steps": r.global_step, "loss": r.history[-1]["loss"]}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, last = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
    assert first["replicas"] == 2
    assert last["steps"] == 2 and np.isfinite(last["loss"])
    import tensorflow as tf

    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")))
    counters = [n for n, _ in tf.train.list_variables(tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")))
                if "calls" in n]
    assert counters and all(int(reader.get_tensor(n)) == 2 for n in counters)  # once per step, not per replica


# ------------------------------------------------------------------------------------------- errors
def invoke(args: list[str]):
    from segkit.cli import cli

    return CliRunner().invoke(cli, args)


def test_imagenet_without_a_file_fails_before_writing_anything(store, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    run = tmp_path / "run"
    result = invoke(["train", str(store), str(run), "--preset", "paper"])
    assert result.exit_code == 1
    assert result.output.startswith("error: --encoder-weights: 'imagenet' needs the resnet50 ImageNet weights")
    assert not run.exists()


def test_bad_store_is_one_line_error_and_no_run_dir(tmp_path):
    (tmp_path / "notes.zarr").mkdir()
    result = invoke(["train", str(tmp_path / "notes.zarr"), str(tmp_path / "run")])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert result.output.startswith("error: ") and "notes.zarr: is not a segkit store" in result.output
    assert not (tmp_path / "run").exists()


def test_existing_run_needs_resume_and_resume_cannot_change_the_model(store, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("x: 1\n")
    result = invoke(["train", str(store), str(run)])
    assert result.exit_code == 1 and "already holds a run; pass --resume" in result.output
    fresh = tmp_path / "fresh"
    result = invoke(["train", str(store), str(fresh), "--resume"])
    assert result.exit_code == 1 and "is not a segkit run directory (no config.yaml)" in result.output

    from segkit.errors import UsageError
    from segkit.train.config import dump, load_config
    from segkit.train.rundir import prepare_run_dir

    tiny = {"model": {"input_size": 32, "variant": "unet_transformer"},
            "train": {"epochs": 1, "batch_size": 4, "steps_per_epoch": 1}}
    (run / "config.yaml").write_text(dump(load_config("cpu-small", overrides=tiny)))
    with pytest.raises(UsageError, match=r"--backbone: cannot change when resuming"):
        prepare_run_dir(run, None, resume=True, overrides={"model": {"backbone": "resnet34"}})
    assert prepare_run_dir(run, None, resume=True, overrides={"train": {"epochs": 40}})["train"]["epochs"] == 40

    from segkit.train.fit import train_run

    # killed before its first checkpoint: --resume starts it from the beginning with its own config
    result = train_run(store, run, resume=True, progress=False)
    assert result.global_step == 1 and result.epochs_done == 1
