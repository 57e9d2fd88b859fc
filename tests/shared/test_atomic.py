"""Atomic writes: all of the file or none of it, never a temporary left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from segkit.atomic import atomic_path, write_atomic


def test_write_atomic_replaces_the_whole_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "report.json"
    write_atomic(out, "first")
    write_atomic(out, b"second")
    assert out.read_text() == "second"
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    out = tmp_path / "result.png"
    out.write_text("old")
    with pytest.raises(RuntimeError, match="half-way"):
        with atomic_path(out) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("half-way")
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.png"]
