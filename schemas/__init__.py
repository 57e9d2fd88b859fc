"""JSON Schemas (draft 2020-12) of every file segkit writes for others to read."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def load(name: str) -> dict[str, Any]:
    """Return the schema ``<name>.schema.json`` shipped with segkit."""
    text = resources.files(__name__).joinpath(f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


def validate(instance: Any, name: str) -> None:
    """Validate ``instance`` against schema ``name``; raise ``jsonschema.ValidationError``."""
    import jsonschema

    schema = load(name)
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(instance)
