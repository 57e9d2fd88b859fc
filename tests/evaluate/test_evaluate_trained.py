"""The issue's acceptance check with a real (tiny) trained run: evaluate's per-patient Dice equals the Dice
of predict's DICOM SEG against the synthetic truth, to 1e-6."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.train
pytest.importorskip("tensorflow")
pytest.importorskip("tf_keras")
pytest.importorskip("segkit.convert.run", reason="segkit convert is not on this branch yet")
pytest.importorskip("segkit.train.fit", reason="segkit train is not on this branch yet")

from test_evaluate_run import _dice_from_seg, _synth_folder_of  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, synth_cohort: Path) -> dict[str, Path]:
    """The session cohort converted, and a tiny U-Net trained on it for three steps."""
    from segkit.convert.plan import ConvertOptions
    from segkit.convert.run import convert
    from segkit.train.fit import train_run

    root = tmp_path_factory.mktemp("trained")
    convert(synth_cohort, root / "slices.zarr", ConvertOptions(seed=1))
    train_run(root / "slices.zarr", root / "run", preset="cpu-small", progress=False,
              overrides={"model": {"variant": "unet", "input_size": 64},
                         "train": {"epochs": 1, "steps_per_epoch": 3, "batch_size": 4, "seed": 0}})
    return {"store": root / "slices.zarr", "run": root / "run"}


def test_evaluate_dice_equals_the_dice_of_the_predicted_seg(trained: dict[str, Path], synth_cohort: Path,
                                                            tmp_path: Path) -> None:
    from segkit.store.reader import open_store
    from segkit.train.evaluate import evaluate_run, store_cases
    from segkit.train.inference import load_predictor
    from segkit.train.runinfo import read_run

    run, store = trained["run"], trained["store"]
    # a threshold at which the barely trained model marks a few percent of the test pixels
    predictor = load_predictor(read_run(run))
    prob = store_cases(open_store(store), "test", predictor.predict)[0].prob
    threshold = float(np.quantile(prob, 0.97))

    doc = evaluate_run(run, store, threshold=threshold, out=tmp_path / "eval")
    row = doc["per_patient"][0]
    assert row["predicted_voxels"] > 0
    assert doc["run"]["model"] == "unet" and doc["run"]["params"] == predictor.params > 0
    assert doc["run"]["epochs"] == 1

    folder = _synth_folder_of(store, row["patient"], synth_cohort)
    result = CliRunner().invoke(__import__("segkit.cli", fromlist=["cli"]).cli,
                                ["predict", str(run), str(folder / "MR"), str(tmp_path / "p.dcm"),
                                 "--threshold", repr(threshold)])
    assert result.exit_code == 0, result.output
    truth = np.load(synth_cohort / "truth" / f"{folder.name}.npy")
    cli_eval = CliRunner().invoke(__import__("segkit.cli", fromlist=["cli"]).cli,
                                  ["evaluate", str(run), str(store), "--out", str(tmp_path / "eval-cli"),
                                   "--threshold", repr(threshold), "--no-overlays"])
    assert cli_eval.exit_code == 0, cli_eval.output
    assert f"pooled Dice {doc['pooled']['dice']:.4f}" in cli_eval.stderr
    assert (tmp_path / "eval-cli" / "per_patient.csv").read_text() == (tmp_path / "eval" / "per_patient.csv").read_text()
    assert row["dice"] == pytest.approx(_dice_from_seg(tmp_path / "p.dcm", folder, truth), abs=1e-6)
    if shutil.which("dciodvfy"):
        report = subprocess.run(["dciodvfy", str(tmp_path / "p.dcm")], capture_output=True, text=True).stderr
        assert [line for line in report.splitlines() if line.startswith("Error")] == []


def test_dihedral_tta_is_the_mean_of_the_eight_views_mapped_back(trained: dict[str, Path]) -> None:
    """Each flipped/turned view is predicted and turned back before the mean: the same numbers as doing it by hand."""
    from segkit.store.reader import open_store
    from segkit.train.evaluate import store_cases
    from segkit.train.inference import load_predictor
    from segkit.train.runinfo import read_run

    run = read_run(trained["run"])
    plain, tta = load_predictor(run, tta="none"), load_predictor(run)  # cpu-small trains on all 8 views: auto = dihedral
    assert (plain.tta, tta.tta) == ("none", "dihedral")
    store = open_store(trained["store"])
    images = np.stack([store.read(int(i))[0] for i in store.indices("test")[:6]]).astype(np.float32)
    by_hand = np.zeros_like(images)
    for turns in range(4):
        for flip in (False, True):
            view = np.rot90(images, turns, axes=(1, 2))
            view = np.ascontiguousarray(view[:, :, ::-1] if flip else view)
            prob = plain.predict(view)
            prob = prob[:, :, ::-1] if flip else prob
            by_hand += np.rot90(prob, -turns, axes=(1, 2))
    by_hand /= 8
    got = tta.predict(images)
    assert np.abs(got - by_hand).max() < 1e-4
    assert np.abs(got - plain.predict(images)).max() > 1e-3  # the views do differ: the mean is not the plain output


def test_evaluate_records_the_tta_it_used(trained: dict[str, Path], tmp_path: Path) -> None:
    from segkit.train.evaluate import evaluate_run

    auto = evaluate_run(trained["run"], trained["store"], out=tmp_path / "auto", overlays=False)
    plain = evaluate_run(trained["run"], trained["store"], out=tmp_path / "none", overlays=False, tta="none")
    assert (auto["run"]["tta"], plain["run"]["tta"]) == ("dihedral", "none")
    assert auto["provenance"][-1]["parameters"]["tta"] == "dihedral"
