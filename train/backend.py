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
import re
import sys
import tempfile
from collections.abc import Iterator
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


#: What TensorFlow's C++ start-up writes to stderr before its logging honours TF_CPP_MIN_LOG_LEVEL
#: (absl is not initialised yet), on every CPU-only machine.  Only these lines are dropped.
_START_UP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|"
    r"Could not find cuda drivers|failed call to cuInit|Unable to register cu(DNN|FFT|BLAS) factory|"
    r"computation placer already registered|TF-TRT Warning|This TensorFlow binary is optimized"
)


@contextlib.contextmanager
def _quiet_native_start_up() -> Iterator[None]:
    """Filter TensorFlow's native start-up chatter out of file descriptor 2; pass everything else on."""
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines():
                if not _START_UP_NOISE.search(line):
                    print(line, file=sys.stderr)


def load(what: str = "segkit train") -> Backend:
    """Import TensorFlow, tf-keras and segmentation_models, or say how to install them.

    Raises
    ------
    MissingExtraError
        If the ``train`` extra is not installed; the message gives the pip command.
    """
    configure_environment()
    try:
        with _quiet_native_start_up():
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # CUDA's probe logs here, inside the filter
        import tf_keras as keras

        with contextlib.redirect_stdout(io.StringIO()):  # it announces its framework on stdout
            import segmentation_models as sm
    except ImportError as exc:
        raise MissingExtraError(
            what,
            f"needs the 'train' extra ({exc.name or exc} is not installed); install it with: {INSTALL_HINT}",
        ) from None
    return Backend(tf=tf, keras=keras, sm=sm)
