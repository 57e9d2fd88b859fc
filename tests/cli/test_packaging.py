"""Packaging: every Python package in the source folders is installed by a non-editable install."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _declared() -> tuple[set[str], dict[str, str]]:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(setuptools["packages"]), setuptools["package-dir"]


def test_every_subpackage_is_listed_in_pyproject() -> None:
    packages, package_dir = _declared()
    found = set()
    for name, folder in package_dir.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    missing = sorted(found - packages)
    assert not missing, f"pyproject.toml [tool.setuptools] packages lacks {missing}: a wheel install would miss them"


def test_every_listed_package_exists() -> None:
    packages, package_dir = _declared()
    for pkg in packages:
        head = max((n for n in package_dir if pkg == n or pkg.startswith(n + ".")), key=len)
        folder = ROOT / package_dir[head] / Path(*pkg[len(head):].lstrip(".").split(".")) if pkg != head else ROOT / package_dir[head]
        assert (folder / "__init__.py").is_file(), f"{pkg} is listed but {folder} has no __init__.py"
