"""What a run directory says about itself, read without TensorFlow.

A run directory (written by ``segkit train``, see :mod:`segkit.train.fit`) holds
``config.yaml`` (the resolved configuration), ``provenance.json``
(the training store's provenance steps followed by one ``train`` step per invocation),
``history.csv`` and ``best.weights.h5``.  Evaluation and prediction need from it:
the model variant and input size, how many epochs it trained, which store (and
so which patients) it learnt from, and how that store was preprocessed.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segkit.errors import InputError

__all__ = ["RunInfo", "read_run"]


@dataclass(frozen=True)
class RunInfo:
    """The facts of one run directory.

    Attributes
    ----------
    path:
        The run directory.
    config:
        The resolved configuration (``model``, ``train``, ``data``).
    steps:
        Provenance steps, oldest first; the last is the train step.
    epochs:
        Epochs trained (from the train step, else ``history.csv``), or ``None``.
    """

    path: Path
    config: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    epochs: int | None = None

    @property
    def run_id(self) -> str:
        """The run's name (its folder name)."""
        return self.path.resolve().name

    @property
    def variant(self) -> str:
        return str(self.config.get("model", {}).get("variant", "?"))

    @property
    def input_size(self) -> int | None:
        size = self.config.get("model", {}).get("input_size")
        return int(size) if size else None

    @property
    def train_step(self) -> dict[str, Any] | None:
        """The last ``train`` step, or ``None``."""
        for step in reversed(self.steps):
            if step.get("name", step.get("step")) == "train":
                return step
        return None

    @property
    def store_steps(self) -> list[dict[str, Any]]:
        """The provenance steps of the store the run trained on."""
        return [s for s in self.steps if s.get("name", s.get("step")) != "train"]

    @property
    def convert_step(self) -> dict[str, Any] | None:
        """The ``convert`` step of the training store (which fixed the patient split)."""
        for step in self.store_steps:
            if step.get("name") == "convert":
                return step
        return None

    @property
    def training_patients(self) -> set[str] | None:
        """Patients whose slices trained the run, when the run records them (else ``None``).

        Read from the train step's ``parameters`` (or ``input``): ``patients: {"train": [...]}``
        or ``split: {patient: split}``.
        """
        step = self.train_step or {}
        for key in ("parameters", "input"):
            record = step.get(key)
            if not isinstance(record, Mapping):
                continue
            patients = record.get("patients")
            if isinstance(patients, Mapping) and isinstance(patients.get("train"), Sequence):
                return {str(p) for p in patients["train"]}
            split = record.get("split")
            if isinstance(split, Mapping):
                return {str(p) for p, s in split.items() if s == "train"}
        return None

    @property
    def store_size(self) -> int | None:
        """``--size`` the training store was converted with (``None``: native matrix)."""
        step = self.convert_step
        if step is None:
            return None
        size = step.get("parameters", {}).get("size")
        return int(size) if size else None

    def best_weights(self) -> Path:
        """``best.weights.h5``.

        Raises
        ------
        InputError
            If the run has no best weights yet.
        """
        path = self.path / "best.weights.h5"
        if not path.is_file():
            raise InputError(str(self.path), "has no best.weights.h5 yet (train at least one epoch, or pass "
                                             "--checkpoint latest)")
        return path


def _epochs(path: Path, steps: list[dict[str, Any]]) -> int | None:
    for step in reversed(steps):
        parameters = step.get("parameters") if isinstance(step.get("parameters"), Mapping) else {}
        for result in (step.get("result"), parameters.get("result")):
            if isinstance(result, Mapping) and isinstance(result.get("epochs_done"), int):
                return int(result["epochs_done"])
    history = path / "history.csv"
    if history.is_file():
        with history.open(newline="", encoding="utf-8") as fh:
            return sum(1 for _ in csv.DictReader(fh))
    return None


def read_run(run_dir: str | Path) -> RunInfo:
    """Read a run directory's configuration and provenance.

    Raises
    ------
    InputError
        If ``run_dir`` is not a segkit run directory (no ``config.yaml``) or its files are unreadable.
    """
    import yaml

    path = Path(run_dir)
    cfg = path / "config.yaml"
    if not cfg.is_file():
        raise InputError(str(path), "is not a segkit run directory (no config.yaml); pass the folder segkit train wrote")
    try:
        config = yaml.safe_load(cfg.read_text("utf-8")) or {}
        prov_path = path / "provenance.json"
        prov = json.loads(prov_path.read_text("utf-8")) if prov_path.is_file() else {}
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise InputError(str(path), f"has an unreadable config.yaml or provenance.json ({type(exc).__name__})") from None
    steps = prov.get("steps", []) if isinstance(prov, Mapping) else prov  # a list of steps, or {"steps": [...]}
    steps = [dict(s) for s in steps if isinstance(s, Mapping)] if isinstance(steps, list) else []
    return RunInfo(path=path, config=dict(config), steps=steps, epochs=_epochs(path, steps))
