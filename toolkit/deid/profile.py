"""The de-identification profile: PS3.15 Table E.1-1 as a data table, plus options and overrides.

The table ships as package data (``segkit/data/deid/ps3.15-e1-1-<edition>.json``) and
names its edition. :func:`load_profile` resolves the standard's combined actions and
the selected options into one concrete action per tag, once, so the per-file walk is
a dictionary lookup.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from segkit.errors import InputError, UsageError

__all__ = ["Profile", "load_profile", "OPTIONS", "DEFAULT_OPTIONS", "parse_options", "CODES", "PROFILE_FILE"]

PROFILE_FILE = "ps3.15-e1-1-2026c.json"
RULES_FILE = "segkit-rules.json"

#: the standard's options segkit offers, with their CID 7050 codes (DCM scheme)
OPTIONS: dict[str, tuple[str, str]] = {
    "retain_modified_dates": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    "retain_full_dates": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "retain_patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain_device_identity": ("113109", "Retain Device Identity Option"),
    "retain_institution_identity": ("113112", "Retain Institution Identity Option"),
    "retain_uids": ("113110", "Retain UIDs Option"),
    "retain_safe_private": ("113111", "Retain Safe Private Option"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
}
BASIC_CODE = ("113100", "Basic Application Confidentiality Profile")
CODES = OPTIONS
DEFAULT_OPTIONS = frozenset({"retain_modified_dates", "clean_descriptors"})

#: how a combined action of the table is resolved without IOD context: keep the attribute
#: present but empty where the standard allows it (Type 2 safe), remove it otherwise.
_COMBINED = {"X/Z": "Z", "Z/D": "Z", "X/D": "X", "X/Z/D": "Z", "X/Z/U*": "K", "D": "D", "Z": "Z", "X": "X",
             "K": "K", "C": "C", "U": "U", "P": "P"}
#: PatientName and PatientID become the keyed pseudonym (action P)
_PSEUDONYM_TAGS = (0x00100010, 0x00100020)
_VALID = {"D", "Z", "X", "K", "C", "U", "P", "X/Z", "Z/D", "X/D", "X/Z/D", "X/Z/U*"}
_TAG_RE = re.compile(r"^\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?$")


@dataclass(frozen=True)
class Profile:
    """A resolved profile: one concrete action per tag for one set of options.

    Attributes
    ----------
    edition:
        Edition of DICOM PS3.15 the table was taken from (e.g. ``2026c``).
    options:
        The options applied (names of :data:`OPTIONS`).
    actions:
        Tag (int) → action: ``K`` keep, ``X`` remove, ``Z`` empty, ``D`` dummy, ``U`` keyed UID,
        ``C`` clean (dates shifted, text scrubbed), ``P`` patient pseudonym.
    repeating:
        ``(mask, value, action)`` for the repeating groups (curves 50xx, overlays 60xx).
    keep_text, clean_text:
        Tags of public text attributes not in the table that are kept / cleaned.
    text_vrs:
        VRs treated as text by the rule for public attributes the table does not list.
    safe_private:
        ``(private creator, element byte)`` pairs kept with ``retain_safe_private``.
    """

    edition: str
    options: frozenset[str]
    actions: dict[int, str]
    repeating: tuple[tuple[int, int, str], ...]
    keep_text: frozenset[int]
    clean_text: frozenset[int]
    text_vrs: frozenset[str]
    safe_private: frozenset[tuple[str, int]]
    source: str = "built-in"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def method_description(self) -> str:
        """The DeidentificationMethod text: profile edition and options."""
        return f"segkit: PS3.15 {self.edition} Basic Profile + {len(self.options)} options (see codes)"

    def method_codes(self) -> list[tuple[str, str]]:
        """(code value, meaning) pairs of CID 7050 for the profile and its options."""
        return [BASIC_CODE] + [OPTIONS[o] for o in sorted(self.options)]


def _data_path(name: str) -> Any:
    return resources.files("segkit").joinpath("data", "deid", name)


def table_rows() -> tuple[str, list[dict[str, Any]]]:
    """The shipped table: ``(edition, rows)``; each row has tag, keyword, name, vr, basic, options."""
    doc = json.loads(_data_path(PROFILE_FILE).read_text(encoding="utf-8"))
    return doc["edition"], doc["attributes"]


def parse_options(specs: Iterable[str]) -> frozenset[str]:
    """Turn ``--option`` values into an option set, starting from :data:`DEFAULT_OPTIONS`.

    ``NAME`` (dashes or underscores) turns an option on, ``no-NAME`` turns it off.

    Raises
    ------
    UsageError
        For an unknown option name.
    """
    opts = set(DEFAULT_OPTIONS)
    for spec in specs:
        name = spec.strip().lower().replace("-", "_")
        off = name.startswith("no_")
        if off:
            name = name[3:]
        if name not in OPTIONS:
            raise UsageError(f"--option {spec}", f"unknown option; choose from {', '.join(sorted(OPTIONS))} "
                                                 "(prefix no- to turn one off)")
        (opts.discard if off else opts.add)(name)
    if {"retain_full_dates", "retain_modified_dates"} <= opts:
        raise UsageError("--option", "retain_full_dates and retain_modified_dates exclude each other; "
                                     "add no-retain-modified-dates to keep full dates")
    return frozenset(opts)


def _parse_tag(text: str, where: str) -> int:
    from pydicom.datadict import tag_for_keyword

    text = str(text).strip()
    m = _TAG_RE.match(text.replace(" ", ""))
    if m:
        return (int(m[1], 16) << 16) | int(m[2], 16)
    tag = tag_for_keyword(text)
    if tag is None:
        raise InputError(where, f"{text!r} is neither a DICOM keyword nor a tag like (0010,1001)")
    return int(tag)


def _resolve(basic: str, options: dict[str, str], enabled: frozenset[str]) -> str:
    chosen = [a for o, a in options.items() if o in enabled]
    if "K" in chosen:
        return "K"
    if "C" in chosen:
        return "C"
    return _COMBINED[basic]


def load_profile(
    options: Iterable[str] | None = None,
    override: str | os.PathLike[str] | None = None,
) -> Profile:
    """Load the shipped Table E.1-1 and resolve it for *options*.

    Parameters
    ----------
    options:
        Option names (see :data:`OPTIONS`); ``None`` means :data:`DEFAULT_OPTIONS`.
    override:
        A YAML file that changes the profile: ``actions`` (keyword or tag → D/Z/X/K/C/U),
        ``safe_private`` (list of ``{creator, element}``), ``keep_public_text`` (keywords),
        ``options`` (list, same syntax as ``--option``).

    Raises
    ------
    InputError
        If the override file cannot be read or names an unknown attribute or action.
    """
    from pydicom.datadict import tag_for_keyword

    enabled = DEFAULT_OPTIONS if options is None else frozenset(options)
    edition, rows = table_rows()
    rules = json.loads(_data_path(RULES_FILE).read_text(encoding="utf-8"))
    actions: dict[int, str] = {}
    repeating: list[tuple[int, int, str]] = []
    for row in rows:
        action = _resolve(row["basic"], row.get("options", {}), enabled)
        tag = row["tag"].upper()
        if "X" in tag[:4] or "X" in tag[4:]:
            mask = int("".join("0" if c == "X" else "F" for c in tag), 16)
            value = int(tag.replace("X", "0"), 16)
            repeating.append((mask, value, action))
        else:
            actions[int(tag, 16)] = action
    for kw in rules.get("dummy_when_combined", []):
        tag = tag_for_keyword(kw)
        if tag is not None and actions.get(tag) == "Z":
            actions[tag] = "D"
    for tag in _PSEUDONYM_TAGS:
        actions[tag] = "P"
    keep_text = {tag_for_keyword(k) for k in rules["keep_public_text"]}
    clean_text = {tag_for_keyword(k) for k in rules["clean_public_text"]}
    safe_private = {(s["creator"].strip(), int(s["element"], 16)) for s in rules["safe_private"]}
    source = "built-in"
    if override is not None:
        source = str(override)
        doc = _read_yaml(Path(override))
        if "options" in doc:
            enabled = parse_options(doc["options"])
            if options is not None:
                enabled = enabled | frozenset(options)
            return _apply_override(load_profile(enabled), doc, Path(override))
        return _apply_override(
            Profile(edition, enabled, actions, tuple(repeating), frozenset(t for t in keep_text if t),
                    frozenset(t for t in clean_text if t), frozenset(rules["public_text_vrs"]),
                    frozenset(safe_private)), doc, Path(override))
    return Profile(edition, enabled, actions, tuple(repeating), frozenset(t for t in keep_text if t),
                   frozenset(t for t in clean_text if t), frozenset(rules["public_text_vrs"]),
                   frozenset(safe_private), source)


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise InputError(str(path), f"cannot read the profile ({exc.strerror or type(exc).__name__})") from None
    except yaml.YAMLError as exc:
        raise InputError(str(path), f"not valid YAML ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise InputError(str(path), "a profile file must be a mapping with actions / safe_private / options")
    unknown = set(doc) - {"actions", "safe_private", "keep_public_text", "options"}
    if unknown:
        raise InputError(str(path), f"unknown key(s) {sorted(unknown)}; use actions, safe_private, "
                                    "keep_public_text, options")
    return doc


def _apply_override(base: Profile, doc: dict[str, Any], path: Path) -> Profile:
    from pydicom.datadict import tag_for_keyword

    actions = dict(base.actions)
    for key, action in (doc.get("actions") or {}).items():
        action = str(action).strip().upper()
        if action not in _VALID:
            raise InputError(str(path), f"action {action!r} for {key} is not one of D, Z, X, K, C, U, P")
        actions[_parse_tag(key, str(path))] = _COMBINED[action]
    safe = set(base.safe_private)
    for entry in doc.get("safe_private") or []:
        try:
            safe.add((str(entry["creator"]).strip(), int(str(entry["element"]), 16)))
        except (KeyError, TypeError, ValueError):
            raise InputError(str(path), "each safe_private entry needs creator and element (hex, e.g. 0x10)") from None
    keep = set(base.keep_text)
    for kw in doc.get("keep_public_text") or []:
        tag = tag_for_keyword(kw)
        if tag is None:
            raise InputError(str(path), f"{kw!r} in keep_public_text is not a DICOM keyword")
        keep.add(tag)
    return Profile(base.edition, base.options, actions, base.repeating, frozenset(keep), base.clean_text,
                   base.text_vrs, frozenset(safe), str(path))
