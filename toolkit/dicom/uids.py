"""Deterministic DICOM UIDs.

``pydicom.uid.generate_uid(prefix=None)`` ignores its entropy sources and returns a
random UUID, so it cannot give reproducible output.  Here a UID is the decimal
form of a name-based (version 5) UUID under the ``2.25`` root (PS3.5 §B.2), so
the same parts always give the same UID and different parts practically never
collide.
"""

from __future__ import annotations

import uuid

__all__ = ["uid_from", "SEGKIT_NAMESPACE", "IMPLEMENTATION_UID"]

SEGKIT_NAMESPACE = uuid.UUID("6f1d8a3e-4c1b-5b7e-9a53-2d0c5e9b7a11")


def uid_from(*parts: str) -> str:
    """Return ``2.25.<int>`` derived from ``parts`` (at most 44 characters, always valid)."""
    name = "\x1f".join(parts)
    return f"2.25.{uuid.uuid5(SEGKIT_NAMESPACE, name).int}"


#: ImplementationClassUID of every file segkit writes.
IMPLEMENTATION_UID = uid_from("segkit implementation class")
