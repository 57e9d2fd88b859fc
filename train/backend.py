"""Load TensorFlow / tf-keras / segmentation_models the one way segkit supports.

segmentation-models 1.0.1 runs on tf.keras only when ``SM_FRAMEWORK=tf.keras``
is set before it is imported, and TensorFlow 2.21 hands out Keras 3 unless
``TF_USE_LEGACY_KERAS=1`` is set before TensorFlow is imported.  Both are set
here, before any of them is imported, so users never have to.
"""

from __future__ import annotations

import contextlib
import io
import os
from types import ModuleType
from typing import NamedTuple

from segkit.errors import MissingExtraError

INSTALL_HINT = 'pip install "segkit[train]"  (from a checkout: pip install -e ".[train]")'
REQUIRED_ENV = {"SM_FRAMEWORK": "tf.keras", "TF_USE_LEGACY_KERAS": "1"}


class Backend(NamedTuple):
    """The three modules the model code uses."""

    tf: ModuleType
    keras: ModuleType
    sm: ModuleType


def configure_environment() -> None:
    """Set the variables segmentation_models and TensorFlow read at import time."""
    os.environ.update(REQUIRED_ENV)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def load(what: str = "segkit train") -> Backend:
    """Import TensorFlow, tf-keras and segmentation_models, or say how to install them.

    Raises
    ------
    MissingExtraError
        If the ``train`` extra is not installed; the message gives the pip command.
    """
    configure_environment()
    try:
        import tensorflow as tf
        import tf_keras as keras

        with contextlib.redirect_stdout(io.StringIO()):  # it announces its framework on stdout
            import segmentation_models as sm
    except ImportError as exc:
        raise MissingExtraError(
            what,
            f"needs the 'train' extra ({exc.name or exc} is not installed); install it with: {INSTALL_HINT}",
        ) from None
    return Backend(tf=tf, keras=keras, sm=sm)
