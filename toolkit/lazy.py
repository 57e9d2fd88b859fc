"""Public names of a stage package that load their module on first use.

``segkit.convert.convert`` or ``segkit.store.open_store`` keep working as import paths while the
package itself stays light to import (no pydicom, highdicom or zarr until a name is used).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``package.<names[name]>`` on first use of ``name``."""
    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return __getattr__
