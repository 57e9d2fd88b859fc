"""The one-way import rule: the toolkit never imports segkit.train, segkit.pipelines or TensorFlow.

``segkit.cli`` (the package in ``toolkit/cli/``) is the top of the graph (it dispatches to pipelines and
train, lazily) and is exempt from the static check; the run-time check below still shows that importing
it loads no heavy module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

TOOLKIT = Path(__file__).resolve().parents[2] / "toolkit"
FORBIDDEN = ("segkit.train", "segkit.pipelines", "tensorflow", "tf_keras", "keras", "segmentation_models")
HEAVY = ("tensorflow", "tf_keras", "keras", "segmentation_models")


def _module_name(path: Path) -> str:
    rel = path.relative_to(TOOLKIT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["segkit", *parts])


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def test_no_toolkit_module_imports_train_pipelines_or_tensorflow() -> None:
    offences = [
        f"{path.relative_to(TOOLKIT.parent)}:{line} imports {name}"
        for path in sorted(TOOLKIT.rglob("*.py"))
        if path.relative_to(TOOLKIT).parts[0] != "cli"
        for line, name in _imports(path)
        if _forbidden(name)
    ]
    assert not offences, "\n".join(offences)


def test_the_static_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from segkit.train import model\n    import tensorflow as tf\n")
    assert [name for _, name in _imports(bad) if _forbidden(name)] == ["segkit.train", "tensorflow"]


def test_importing_every_toolkit_module_loads_no_heavy_module() -> None:
    modules = sorted(_module_name(p) for p in TOOLKIT.rglob("*.py"))
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"importing the toolkit failed: {result.stderr.strip().splitlines()[-1]}")
    assert result.stdout.strip() == ""
