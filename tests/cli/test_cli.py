"""The command line: command list, one-line errors, exit codes, lazy imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from segkit.cli import cli

COMMANDS = ["synth", "anonymize", "convert", "augment", "train", "evaluate", "predict", "info", "demo"]


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def test_help_lists_every_command_in_data_flow_order(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()]
    assert [c for c in listed if c in COMMANDS] == COMMANDS


def test_version_is_the_package_version(runner: CliRunner) -> None:
    import segkit

    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"segkit, version {segkit.__version__}"


def test_synth_writes_a_cohort(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    result = runner.invoke(cli, ["synth", str(out), "--patients", "2", "--slices", "5", "--size", "32", "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["cohort.json", "patient-01", "patient-02", "truth"]
    assert np.load(out / "truth" / "patient-02.npy").shape == (5, 32, 32)
    assert "wrote 14 files for 2 patients" in result.stderr


def test_synth_into_existing_folder_is_a_one_line_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["synth", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path}: already exists; choose another folder or pass --force to replace it"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["synth"], "Missing argument 'OUT'"),
        (["synth", "x", "--patients", "0"], "Invalid value for '--patients'"),
        (["synth", "x", "--slices", "many"], "'many' is not a valid integer"),
        (["synth", "x", "--size", "16"], "Invalid value for '--size'"),
        (["synth", "x", "--colour"], "No such option '--colour'"),
        (["segment"], "No such command 'segment'"),
    ],
)
def test_bad_arguments_are_usage_errors(runner: CliRunner, tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(cli, args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback_instead_of_one_line(runner: CliRunner, tmp_path: Path) -> None:
    from segkit.errors import OutputExistsError

    result = runner.invoke(cli, ["--debug", "synth", str(tmp_path)])
    assert result.exit_code == 1
    assert isinstance(result.exception, OutputExistsError)


def test_unexpected_exceptions_do_not_print_their_message(runner: CliRunner, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import segkit.synth

    def leaky(*args, **kwargs):
        raise KeyError("Jansen^Maria")

    monkeypatch.setattr(segkit.synth, "write_cohort", leaky)
    result = runner.invoke(cli, ["synth", str(tmp_path / "c")])
    assert result.exit_code == 1
    assert "Jansen" not in result.output
    assert result.stderr.strip() == "error: internal: unexpected KeyError (rerun with --debug for the traceback)"


def test_train_without_the_extra_says_how_to_install_it(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # makes `import tensorflow` raise ImportError
    from segkit.train.backend import load
    from segkit.errors import MissingExtraError

    with pytest.raises(MissingExtraError, match=r"needs the 'train' extra .*pip install \"segkit\[train\]\""):
        load("segkit train")


def test_backend_sets_the_keras_environment_first(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from segkit.train.backend import configure_environment

    monkeypatch.setenv("SM_FRAMEWORK", "keras")
    monkeypatch.delenv("TF_USE_LEGACY_KERAS", raising=False)
    configure_environment()
    assert os.environ["SM_FRAMEWORK"] == "tf.keras"
    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"


def test_help_and_dicom_commands_do_not_import_heavy_modules() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from segkit.cli import cli\n"
        "r = CliRunner().invoke(cli, ['--help'])\n"
        "assert r.exit_code == 0\n"
        "heavy = [m for m in ('tensorflow', 'tf_keras', 'keras', 'segmentation_models', 'pydicom', 'highdicom', 'zarr')\n"
        "         if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_console_script_runs(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("segkit")
    if not exe.exists():
        pytest.skip("segkit console script not installed beside this interpreter")
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "synth" in result.stdout


def test_demo_runs_what_exists_and_names_what_is_missing(runner: CliRunner, tmp_path: Path) -> None:
    from segkit.pipelines.demo import OPTIONAL, STEPS, run_demo

    report = run_demo(tmp_path / "demo", quick=True)
    assert [s.name for s in report.steps] == [name for name, _ in STEPS]
    assert report.steps[0].name == "synth" and report.steps[0].status == "done"
    assert (tmp_path / "demo" / "raw" / "truth" / "patient-06.npy").exists()
    for step in report.steps:
        assert step.status in {"done", "missing", "skipped"}
    statuses = [s.status for s in report.steps]
    required_missing = [k for k, s in enumerate(report.steps) if s.status == "missing" and s.name not in OPTIONAL]
    if required_missing:
        first = required_missing[0]
        assert all(s == "skipped" for s in statuses[first + 1:])
        assert report.steps[first].name in report.summary()
    else:
        assert (tmp_path / "demo" / "prediction-seg.dcm").is_file()
        assert "DICOM SEG of a test patient" in report.summary()


def test_demo_replaces_its_own_folder_but_not_someone_elses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from segkit.errors import OutputExistsError
    from segkit.pipelines import demo

    monkeypatch.setattr(demo, "STEPS", [("synth", lambda root, quick: "ok")])
    demo.run_demo(tmp_path / "d")
    (tmp_path / "d" / "old.txt").write_text("from the first run")
    demo.run_demo(tmp_path / "d")
    assert not (tmp_path / "d" / "old.txt").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(OutputExistsError, match="is not a segkit demo folder"):
        demo.run_demo(mine)
    assert (mine / "thesis.tex").read_text() == "precious"


def test_demo_without_the_train_extra_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from segkit.errors import MissingExtraError
    from segkit.pipelines import demo

    def train(root: Path, quick: bool) -> str:
        raise MissingExtraError("segkit train", "needs the 'train' extra; install it with: pip install segkit[train]")

    monkeypatch.setattr(demo, "STEPS", [("synth", lambda root, quick: "ok"), ("train", train),
                                        ("evaluate", lambda root, quick: "never")])
    report = demo.run_demo(tmp_path / "d")
    assert [(s.name, s.status) for s in report.steps] == [("synth", "done"), ("train", "missing"),
                                                          ("evaluate", "skipped")]
    assert "pip install segkit[train]" in report.steps[1].detail
