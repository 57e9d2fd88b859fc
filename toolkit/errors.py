"""The one exception family segkit raises.

Every error carries *what* failed (a file, a series, an option — never PHI) and
*why*.  The CLI prints ``error: <what>: <why>`` and exits with ``exit_code``.
"""

from __future__ import annotations

__all__ = [
    "SegkitError",
    "UsageError",
    "InputError",
    "DicomError",
    "GeometryError",
    "OutputExistsError",
    "MissingExtraError",
    "NotImplementedYetError",
    "LeakError",
]


class SegkitError(Exception):
    """Base class of every error segkit raises on purpose.

    Parameters
    ----------
    what:
        The thing that failed: a path, a series pseudonym, an option name.
    why:
        One sentence saying what is wrong and, where possible, what to do.
    """

    exit_code: int = 1

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")
        self.what = str(what)
        self.why = why


class UsageError(SegkitError):
    """Arguments or options that do not fit together."""

    exit_code = 2


class InputError(SegkitError):
    """An input file or folder that cannot be used."""


class DicomError(InputError):
    """A file that is not DICOM, is truncated, or lacks what the step needs."""


class GeometryError(InputError):
    """A series whose geometry breaks the contract (missing slices, uneven spacing …)."""


class OutputExistsError(SegkitError):
    """The output path already exists and would be overwritten."""


class MissingExtraError(SegkitError):
    """An optional dependency group is not installed."""


class NotImplementedYetError(SegkitError):
    """A command that a later issue will build."""


class LeakError(SegkitError):
    """De-identified output still holds a value from the input's PHI."""

    exit_code = 3
