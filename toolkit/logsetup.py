"""How segkit's messages reach people: plain lines on stderr, for the CLI and its worker processes."""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging"]


def configure_logging(level: int) -> None:
    """Send the ``segkit`` loggers' messages at ``level`` and above to stderr as bare lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("segkit")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
