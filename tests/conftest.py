"""Shared test inputs: the synthetic cohort, pydicom's bundled files, ../shared/fixtures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """``../shared/fixtures`` beside the checkout (CI has it; a user's clone may not)."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"real DICOM fixtures not found at {SHARED_FIXTURES} (only present in the project's own checkouts)")
    return SHARED_FIXTURES


@pytest.fixture(scope="session")
def synth_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic cohort (6 patients: 4 T1 + 2 T2, 12 slices of 64×64), written once per session.

    Treat it as read-only: copy it (see ``synth_cohort_copy``) before changing anything.
    """
    from segkit.synth import SynthConfig, write_cohort

    out = tmp_path_factory.mktemp("synth") / "cohort"
    write_cohort(out, SynthConfig(patients=6, slices=12, size=64, seed=7))
    return out


@pytest.fixture()
def synth_cohort_copy(synth_cohort: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the session cohort."""
    dst = tmp_path / "cohort"
    shutil.copytree(synth_cohort, dst)
    return dst


def has_dciodvfy() -> bool:
    return shutil.which("dciodvfy") is not None
