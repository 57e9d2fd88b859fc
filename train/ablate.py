"""``segkit ablate STORE OUT``: the paper's Table 3 (and its finer ablations) as one command.

Trains every variant with the same config, seed and budget — ``unet``,
``unet_transformer``, ``hybrid`` and ``hybrid`` without each of its blocks —
into ``OUT/<variant>/`` (or, with ``folds``, ``OUT/<variant>/fold-XX``),
evaluates each on its held-out patients and writes ``OUT/ablation.md`` and
``OUT/ablation.csv``: one row per variant, pooled Dice / IoU / precision / recall
and HD95 with 95 % bootstrap intervals over patients.  Resumable: a variant that
finished training is not trained again, an interrupted one resumes from its
checkpoint, and a variant's evaluation is reused when present.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from segkit.atomic import write_atomic
from segkit.errors import UsageError

__all__ = ["VARIANT_ROWS", "variant_overrides", "ablate"]

log = logging.getLogger("segkit.ablate")

#: (row name, model variant, block switched off) in table order.
VARIANT_ROWS: tuple[tuple[str, str, str | None], ...] = (
    ("unet", "unet", None),
    ("unet_transformer", "unet_transformer", None),
    ("hybrid", "hybrid", None),
    *((f"hybrid-without-{b.replace('_', '-')}", "hybrid", b)
      for b in ("transformer", "se", "cbam", "attention_gate", "resnext")),
)


def variant_overrides(variant: str, without: str | None) -> dict[str, Any]:
    """The model overrides of one row (every switch back to the variant's own, one block off)."""
    from segkit.train.config import SWITCHES

    model: dict[str, Any] = {"variant": variant, **dict.fromkeys(SWITCHES, None)}
    if without:
        model[without] = False
    return {"model": model}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(base))
    for key, value in over.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def ablate(store: str | Path, out: str | Path, *, folds: int | None = None, preset: str = "cpu-small",
           config_file: str | Path | None = None, overrides: dict[str, Any] | None = None,
           variants: list[str] | None = None, progress: bool = True, load: Any = None) -> list[dict[str, Any]]:
    """Train and evaluate every variant of :data:`VARIANT_ROWS` (or the ``variants`` named) into ``out``.

    Returns the table's rows (as :func:`segkit.evaluate.compare.compare_rows`, with the row name as ``run``).

    Raises
    ------
    UsageError
        An unknown variant name.
    """
    from segkit.evaluate.compare import compare_markdown, compare_rows, read_metrics, write_compare
    from segkit.train.config import load_config
    from segkit.train.crossval import evaluate_folds, train_folds
    from segkit.train.evaluate import evaluate_run
    from segkit.train.fit import train_run

    known = [r[0] for r in VARIANT_ROWS]
    chosen = variants or known
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise UsageError("--variant", f"unknown variant {unknown[0]!r}; choose from {', '.join(known)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    docs = []
    for name, variant, without in (r for r in VARIANT_ROWS if r[0] in chosen):
        run_dir = out / name
        over = _merge(overrides or {}, variant_overrides(variant, without))
        log.info("ablate: %s", name)
        if folds:
            train_folds(store, run_dir, folds, preset=preset, config_file=config_file, overrides=over,
                        resume=run_dir.exists(), progress=progress)
            report = run_dir / "eval-test"
            if not (report / "metrics.json").is_file():
                evaluate_folds(run_dir, store, "test", overlays=False, overwrite=True, load=load)
        else:
            if not _trained(run_dir):
                if (run_dir / "config.yaml").is_file():
                    train_run(store, run_dir, resume=True, progress=progress)
                else:
                    config = load_config(preset, Path(config_file) if config_file else None, over)
                    train_run(store, run_dir, config, progress=progress)
            report = run_dir / "eval-test"
            if not (report / "metrics.json").is_file():
                evaluate_run(run_dir, store, "test", out=report, overlays=False, overwrite=True, load=load)
        doc = read_metrics(report)
        doc["run"] = {**doc["run"], "id": name}
        docs.append(doc)
    rows = compare_rows(docs)
    write_compare(docs, out)
    text = ("# Ablation (the paper's Table 3)\n\nSame store, config, seed and budget for every row"
            + (f"; {folds}-fold patient-level cross-validation, all held-out patients pooled" if folds else
               "; the store's test patients") + ".\n\n" + compare_markdown(rows))
    write_atomic(out / "ablation.md", text)
    (out / "compare.csv").replace(out / "ablation.csv")
    (out / "compare.md").unlink()
    return rows


def _trained(run_dir: Path) -> bool:
    from segkit.train.crossval import _finished

    return _finished(run_dir)
