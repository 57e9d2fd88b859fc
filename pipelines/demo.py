"""``segkit demo``: the whole chain on a fresh synthetic cohort, one line per step.

Steps that are not built yet are reported as missing (and the steps that need
their output are skipped), so the demo always shows how far the chain goes today.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from segkit.errors import NotImplementedYetError, OutputExistsError

__all__ = ["DemoStep", "DemoReport", "run_demo"]

log = logging.getLogger("segkit.demo")
MARKER = ".segkit-demo"


@dataclass
class DemoStep:
    """One step's outcome: ``done``, ``missing`` (not built yet) or ``skipped`` (needs a missing step)."""

    name: str
    status: str
    seconds: float = 0.0
    detail: str = ""


@dataclass
class DemoReport:
    """Everything the demo did, for the final summary."""

    root: Path
    steps: list[DemoStep] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        return [s.name for s in self.steps if s.status == "missing"]

    def summary(self) -> str:
        lines = [f"demo finished in {sum(s.seconds for s in self.steps):.1f} s; outputs in {self.root}"]
        if self.missing:
            lines.append("not built yet: " + ", ".join(self.missing) + " (the demo runs them once they exist)")
        skipped = [s.name for s in self.steps if s.status == "skipped"]
        if skipped:
            lines.append("not run, they need a missing step: " + ", ".join(skipped))
        return "\n".join(lines)


def _synth(root: Path, quick: bool) -> str:
    from segkit.synth import SynthConfig, write_cohort

    config = SynthConfig(patients=6, slices=12 if quick else 24, size=64 if quick else 128, seed=0)
    summary = write_cohort(root / "raw", config)
    return f"{summary.patients} patients, {summary.files} DICOM files -> {summary.root}"


def _not_built(name: str) -> Callable[[Path, bool], str]:
    def step(root: Path, quick: bool) -> str:
        raise NotImplementedYetError(f"segkit {name}", "not implemented yet")

    return step


# The chain in order; each step reads what the steps before it wrote under the demo folder.
STEPS: list[tuple[str, Callable[[Path, bool], str]]] = [
    ("synth", _synth),
    ("anonymize", _not_built("anonymize")),
    ("convert", _not_built("convert")),
    ("augment", _not_built("augment")),
    ("train", _not_built("train")),
    ("evaluate", _not_built("evaluate")),
    ("predict", _not_built("predict")),
]


def run_demo(out: str | Path = "segkit-demo", *, quick: bool = False, overwrite: bool = False) -> DemoReport:
    """Run every step of the chain into folder ``out`` and report each step's time.

    A folder that an earlier demo made (it holds the ``.segkit-demo`` marker) is
    replaced; any other existing folder only with ``overwrite``.

    Raises
    ------
    OutputExistsError
        If ``out`` exists, is not an earlier demo's folder, and ``overwrite`` is false.
    """
    root = Path(out)
    if root.exists():
        # A folder an earlier demo made is the demo's own to replace; anything else needs --force.
        if not (overwrite or (root / MARKER).is_file()):
            raise OutputExistsError(str(root), "already exists and is not a segkit demo folder; "
                                    "choose another folder or pass --force to replace it")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / MARKER).write_text("made by `segkit demo`; the next demo run into this folder replaces it\n")
    report = DemoReport(root=root)
    blocked = False
    for name, step in STEPS:
        if blocked:
            report.steps.append(DemoStep(name, "skipped", detail="needs a step that is not built yet"))
            log.info("%-10s skipped (needs a step that is not built yet)", name)
            continue
        start = time.perf_counter()
        try:
            detail = step(root, quick)
        except NotImplementedYetError:
            report.steps.append(DemoStep(name, "missing", detail="not built yet"))
            log.info("%-10s not built yet", name)
            blocked = True
            continue
        seconds = time.perf_counter() - start
        report.steps.append(DemoStep(name, "done", seconds, detail))
        log.info("%-10s %6.1f s  %s", name, seconds, detail)
    return report
