"""DICOM de-identification (PS3.15 Annex E Basic Profile + options), verified, audited.

``anonymize_tree`` is the one library function behind ``segkit anonymize``;
``generate_key`` / ``read_key`` handle the site key.
"""

from segkit.deid.profile import DEFAULT_OPTIONS, OPTIONS, load_profile, parse_options
from segkit.deid.pseudonym import Keyring, generate_key, read_key
from segkit.deid.run import AUDIT_NAME, AnonymizeSummary, anonymize_tree

__all__ = ["anonymize_tree", "AnonymizeSummary", "AUDIT_NAME", "generate_key", "read_key", "Keyring",
           "load_profile", "parse_options", "OPTIONS", "DEFAULT_OPTIONS"]
