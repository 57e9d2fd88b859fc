"""``segkit augment`` and ``segkit preview`` on the command line: real stores in, one-line errors out."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from segkit.cli import cli
from segkit.store.reader import open_store
from tests.helpers.store_inputs import write_source_store


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_source_store(tmp_path_factory.mktemp("cli") / "s.zarr")


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_augment_twice_with_the_same_seed_gives_identical_digests(source: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    digests = []
    for name in ("a.zarr", "b.zarr"):
        result = runner.invoke(cli, ["augment", str(source), str(tmp_path / name), "--target", "50", "--seed", "1",
                                     "--set", "rotate.angle=-10,10"])
        assert result.exit_code == 0, result.output
        assert f"wrote {tmp_path / name}: 50 training images (32 augmented), 68 slices in all" in result.stderr
        digests.append(open_store(tmp_path / name).digest())
    assert digests[0] == digests[1]
    store = open_store(tmp_path / "a.zarr")
    assert store.provenance[-1]["parameters"]["ops"]["rotate"]["angle"] == [-10.0, 10.0]


@pytest.mark.parametrize(("args", "message"), [
    (["--ops", "flip,warp"], "error: --ops: unknown op 'warp'; choose from flip, rotate, blur, contrast."),
    (["--target", "5"], "error: --target: 5 is below the 18 training originals already in the store."),
    (["--set", "rotate.angle=10"], "error: --set: rotate.angle takes a range LOW,HIGH, got '10'."),
])
def test_augment_bad_options_are_one_line_errors_and_write_nothing(source: Path, tmp_path: Path, args: list[str],
                                                                  message: str) -> None:
    result = CliRunner().invoke(cli, ["augment", str(source), str(tmp_path / "out.zarr"), *args])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [message]
    assert list(tmp_path.iterdir()) == []


def test_augment_of_a_missing_store_names_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["augment", str(tmp_path / "nope.zarr"), str(tmp_path / "out.zarr")])
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: {tmp_path / 'nope.zarr'}: no such store "
                                     "(expected a directory written by segkit convert)")
    assert list(tmp_path.iterdir()) == []


def test_preview_draws_a_grid_png_of_an_augmented_store(source: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["augment", str(source), str(tmp_path / "a.zarr"), "--target", "90"]).exit_code == 0
    pictures = []
    for name in ("one.png", "two.png"):
        result = runner.invoke(cli, ["preview", str(tmp_path / "a.zarr"), str(tmp_path / name), "--n", "8"])
        assert result.exit_code == 0, result.output
        pictures.append((tmp_path / name).read_bytes())
    assert pictures[0] == pictures[1]  # same store + seed → same picture
    width, height = _png_size(tmp_path / "one.png")
    assert width > height > 300  # two rows: a parent and three children each
    other = runner.invoke(cli, ["preview", str(tmp_path / "a.zarr"), str(tmp_path / "three.png"), "--n", "8",
                                "--seed", "5"])
    assert other.exit_code == 0 and (tmp_path / "three.png").read_bytes() != pictures[0]


def test_preview_to_a_non_png_path_is_a_one_line_error(source: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["preview", str(source), str(tmp_path / "grid.jpg")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'grid.jpg'}: the preview is a PNG; give a path ending in .png."
    assert list(tmp_path.iterdir()) == []
