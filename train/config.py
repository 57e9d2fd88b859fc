"""Training configuration: presets, YAML files, command-line overrides, one resolved dict.

A configuration is a nested dict with three sections, ``model``, ``train`` and
``data``, validated by ``schemas/train-config.schema.json``.  It is resolved in
this order, later wins: preset → YAML file → command-line overrides.  The
resolved dict (every switch explicit) is what a run records in
``RUN_DIR/config.yaml``.  This module imports no TensorFlow.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from segkit.errors import InputError, UsageError

__all__ = ["PRESETS", "VARIANTS", "SWITCHES", "load_config", "resolve", "parse_duration", "dump"]

VARIANTS = ("unet", "unet_transformer", "hybrid")
#: Blocks one flag each turns on or off (the paper's Table 3 and finer ablations).
SWITCHES = ("transformer", "se", "cbam", "attention_gate", "resnext")
_VARIANT_SWITCHES = {
    "unet": dict.fromkeys(SWITCHES, False),
    "unet_transformer": {**dict.fromkeys(SWITCHES, False), "transformer": True},
    "hybrid": dict.fromkeys(SWITCHES, True),
}

_PAPER: dict[str, Any] = {
    "model": {
        "variant": "hybrid",
        "backbone": "resnet50",
        "input_size": 512,
        "encoder_weights": "imagenet",
        "decoder_filters": [128, 64, 32, 16],
        "se_ratio": 16,
        "resnext_groups": 0,
        "bn_momentum": None,
        "input_mode": "2d",
        "output_prior": None,
        "gate_bias": 0.0,
        "bottleneck": {"depth": 4, "heads": 8, "hidden": 1024, "dropout": 0.1, "activation": "gelu"},
        **dict.fromkeys(SWITCHES, None),
    },
    "train": {
        "epochs": 29,
        "batch_size": 8,
        "learning_rate": 1.0e-4,
        "schedule": "constant",
        "warmup_epochs": 0,
        "ema": None,
        "lambda_dice": 1.0,
        "dice_epsilon": 1.0,
        "dice": "slice",
        "seed": 0,
        "deterministic": False,
        "checkpoint_every": 500,
        "max_to_keep": 3,
        "strategy": "auto",
        "max_time": None,
        "steps_per_epoch": None,
    },
    "data": {"shuffle": True, "read_parallelism": 0, "prefetch": 0, "contrast": None, "dihedral": False, "split": None},
}

_CPU_SMALL: dict[str, Any] = copy.deepcopy(_PAPER)
_CPU_SMALL["model"].update(
    backbone="resnet18", input_size=64, encoder_weights=None, decoder_filters=[64, 32, 16, 16], se_ratio=8, bn_momentum=0.9,
    bottleneck={"depth": 2, "heads": 4, "hidden": 256, "dropout": 0.1, "activation": "gelu"},
)
_CPU_SMALL["model"].update(input_mode="2.5d", output_prior=0.01)
_CPU_SMALL["train"].update(epochs=12, batch_size=8, learning_rate=1.0e-3, checkpoint_every=0, schedule="cosine",
                           warmup_epochs=2, dice="batch")
# Measured on the demo cohort (README, "What the CPU preset does and why"): the neighbours as channels, the
# batch Dice, warm-up + cosine decay, exact flips/quarter turns and an occasional inversion of the head's
# tissue order (T1 <-> T2-like) each raised the held-out Dice of a T2 patient when three of four training
# patients are T1; the random intensity curve (remap) lowered it at this budget, so it is off.
_CPU_SMALL["data"].update(dihedral=True, contrast={"remap": 0.0, "invert": 0.5, "hole": 0.5})
# Measured on the demo cohort and three others (docs/training-experiments.md, "Why the hybrid learned slowly"):
# gates that start open (gate_bias 3) let the hybrid use its skips from the first step (val Dice 0.77 -> 0.91);
# validating an average of the weights (ema 0.99) keeps the validation Dice steady (max drop 0.30 -> <= 0.03);
# a random brightness for a tumour's enclosed core (hole 0.5) teaches that a core bright on T2 is not target;
# inverting half the heads (invert 0.5, was 0.2) shows both tissue orders equally often (T2 test Dice 0.85 -> 0.88).
_CPU_SMALL["model"].update(gate_bias=3.0)
_CPU_SMALL["train"].update(ema=0.99)

#: Named starting points: ``paper`` (the reference paper's setup) and ``cpu-small`` (2-core CPU, tests, demo).
PRESETS: dict[str, dict[str, Any]] = {"paper": _PAPER, "cpu-small": _CPU_SMALL}


#: Settings added after the first runs were recorded, with the value those runs trained with.
_ADDED_LATER = (("model", "input_mode", "2d"), ("model", "output_prior", None), ("model", "gate_bias", 0.0), ("train", "schedule", "constant"),
                ("train", "warmup_epochs", 0), ("train", "ema", None), ("train", "dice", "slice"), ("data", "contrast", None), ("data", "split", None),
                ("data", "dihedral", False))


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` without the keys whose value is ``None`` (an option not given), recursively."""
    return {k: _drop_none(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}


def parse_duration(text: str | float | int | None) -> float | None:
    """Seconds from ``"11h30m"``, ``"45m"``, ``"90s"``, ``"1h"`` or a plain number of seconds.

    Raises
    ------
    UsageError
        If the text is not a duration.
    """
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    import re

    s = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", s)
    if not s or not m or not any(m.groups()):
        raise UsageError("--max-time", f"'{text}' is not a duration; write e.g. 11h30m, 45m or 90s.")
    h, mnt, sec = (int(g) if g else 0 for g in m.groups())
    return float(h * 3600 + mnt * 60 + sec)


def _validate(config: dict[str, Any], what: str) -> None:
    import jsonschema

    from segkit.schemas import validate

    try:
        validate(config, "train-config")
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise UsageError(what, f"invalid setting at {where}: {exc.message}.") from None


def resolve(config: dict[str, Any], what: str = "config") -> dict[str, Any]:
    """Validate ``config`` and make every ablation switch explicit.

    Switches left ``null`` take the variant's value (``unet``: all off,
    ``unet_transformer``: bottleneck only, ``hybrid``: all on); an explicit switch
    on ``hybrid`` or ``unet_transformer`` is one ablation.  ``unet`` is
    segmentation_models' own U-Net and takes no switches.

    Raises
    ------
    UsageError
        If a setting is invalid or a switch is set on the ``unet`` variant.
    """
    _validate(config, what)
    out = copy.deepcopy(config)
    for section, key, value in _ADDED_LATER:  # configs of runs made before these settings existed
        out[section].setdefault(key, value)
    model = out["model"]
    defaults = _VARIANT_SWITCHES[model["variant"]]
    for name in SWITCHES:
        if model.get(name) is None:
            model[name] = defaults[name]
        elif model["variant"] == "unet" and model[name]:
            raise UsageError(what, f"model.{name} cannot be switched on for variant 'unet' "
                                   "(segmentation_models' own U-Net); use variant 'hybrid' with switches instead.")
    if str(model.get("encoder_weights")).lower() in ("none", "random"):
        model["encoder_weights"] = None
    out["train"]["max_time"] = parse_duration(out["train"].get("max_time"))
    _validate(out, what)
    contrast = out["data"].get("contrast") or {}
    hole, fill = float(contrast.get("hole", 0.0)), float(contrast.get("fill", 0.0))
    if hole + fill > 1.0:  # one draw per sample decides: redrawn core, filled core or neither
        raise UsageError(what, f"data.contrast.hole ({hole:g}) + fill ({fill:g}) must not exceed 1: "
                               "a sample's core is either redrawn, filled or left as it is.")
    return out


def load_config(preset: str = "cpu-small", path: Path | None = None,
                overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Preset, then the YAML file, then ``overrides`` (nested dict), validated and resolved.

    Raises
    ------
    UsageError
        Unknown preset or an invalid setting (the message names the setting).
    InputError
        The YAML file cannot be read or parsed.
    """
    if preset not in PRESETS:
        raise UsageError("--preset", f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}.")
    config = copy.deepcopy(PRESETS[preset])
    what = "config"
    if path is not None:
        what = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text("utf-8"))
        except OSError as exc:
            raise InputError(str(path), f"cannot read the config file ({exc.strerror or exc}).") from None
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            at = f" at line {line + 1}" if line is not None else ""
            raise InputError(str(path), f"is not valid YAML{at}.") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise InputError(str(path), "must hold a mapping with sections model, train and data.")
        config = _merge(config, loaded)
    if overrides:
        config = _merge(config, _drop_none(overrides))
    return resolve(config, what)


def dump(config: dict[str, Any]) -> str:
    """The resolved config as YAML text (key order kept)."""
    return yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=False)
