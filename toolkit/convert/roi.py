"""Which structures count as tumour: ``--roi`` patterns and the report of what was seen."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from segkit.errors import UsageError

__all__ = ["DEFAULT_ROI_PATTERNS", "RoiSelector", "RoiReport"]

#: Common names of a tumour structure (case-insensitive, anywhere in the name).
DEFAULT_ROI_PATTERNS: tuple[str, ...] = (
    r"gtv", r"tumou?r", r"lesion", r"neoplasm", r"metasta",
)


class RoiSelector:
    """Match ROI / segment names against case-insensitive regular expressions.

    Parameters
    ----------
    patterns:
        Regular expressions searched anywhere in the name; ``None`` or empty
        means :data:`DEFAULT_ROI_PATTERNS`.

    Raises
    ------
    UsageError
        If a pattern is not a valid regular expression.
    """

    def __init__(self, patterns: Sequence[str] | None = None) -> None:
        self.patterns = tuple(patterns) if patterns else DEFAULT_ROI_PATTERNS
        compiled = []
        for pattern in self.patterns:
            try:
                compiled.append(re.compile(pattern, re.IGNORECASE))
            except re.error as exc:
                raise UsageError("--roi", f"{pattern!r} is not a valid regular expression ({exc})") from None
        self._compiled = compiled

    def __call__(self, name: str) -> bool:
        return any(p.search(name) for p in self._compiled)


@dataclass
class RoiReport:
    """Every ROI/segment name seen, per kind of source, and what became of it."""

    seen: dict[str, int] = field(default_factory=dict)  # name → number of series it appeared in
    matched: dict[str, int] = field(default_factory=dict)
    empty: dict[str, int] = field(default_factory=dict)  # matched but no pixel inside

    def add(self, name: str, matched: bool, empty: bool) -> None:
        self.seen[name] = self.seen.get(name, 0) + 1
        if matched:
            self.matched[name] = self.matched.get(name, 0) + 1
            if empty:
                self.empty[name] = self.empty.get(name, 0) + 1

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {"seen": dict(sorted(self.seen.items())), "matched": dict(sorted(self.matched.items())),
                "empty": dict(sorted(self.empty.items()))}

    def lines(self) -> list[str]:
        """Human-readable lines for stderr."""
        out = []
        for name in sorted(self.seen):
            state = "matched" if name in self.matched else "not matched"
            if name in self.empty:
                state += f", empty in {self.empty[name]}"
            out.append(f"  ROI {name!r}: {self.seen[name]} series, {state}")
        return out
