"""segkit: MRI DICOM → de-identified, provenance-tracked training set → hybrid segmentation model.

The toolkit (this package) holds the DICOM and array building blocks and the CLI.
It never imports TensorFlow; ``segkit.train`` and the tf.data part of
``segkit.pipelines`` do, and only when a command needs them.
"""

from segkit._version import __version__
from segkit.errors import SegkitError

__all__ = ["__version__", "SegkitError"]
