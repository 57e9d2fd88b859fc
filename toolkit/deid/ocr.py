"""Find burned-in text in pixels with Tesseract (Debian's ``tesseract-ocr``, through pytesseract), offline.

Only the boxes are returned, never the text read: the text may be PHI.  Tesseract reads dark
text on a light page best, so a frame with a dark background (most medical images) is inverted
first, and small frames are enlarged twice so that annotation fonts reach Tesseract's preferred
size.  Page segmentation mode 11 ("sparse text") finds scattered annotations in any corner.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

import numpy as np

__all__ = ["TextFinder", "tesseract_problem", "to_grey8", "INSTALL_HINT"]

INSTALL_HINT = ("install Tesseract OCR (Debian/Ubuntu: apt-get install tesseract-ocr; "
                "then pip install pytesseract if segkit was installed without it)")
#: a word Tesseract reads with less confidence than this is noise (tissue, edges), not text
MIN_CONFIDENCE = 30.0
#: a word read at least this confidently, with two or more letters or digits, is text beyond doubt:
#: what is still read after the last blackout round decides quarantine only if it is this sure
#: (Tesseract reads two- or three-letter "words" into anatomy at 30–58 % on DERIVED CT and MR)
CONFIDENT = 60.0
#: boxes are grown by this fraction of their height (at least PAD_MIN pixels) before blackout
PAD_FRACTION, PAD_MIN = 0.3, 3


def tesseract_problem() -> str | None:
    """Why OCR cannot run here (no binding, no binary, no English model), or ``None``."""
    try:
        import pytesseract
    except ImportError:
        return f"the pytesseract binding is not installed; {INSTALL_HINT}"
    cmd = pytesseract.pytesseract.tesseract_cmd
    if shutil.which(cmd) is None and not os.path.isfile(cmd):
        return f"the tesseract program is not on PATH; {INSTALL_HINT}"
    try:
        langs = pytesseract.get_languages(config="")
    except Exception:  # noqa: BLE001 - a broken install says anything
        return f"tesseract does not run; {INSTALL_HINT}"
    if "eng" not in langs:
        return "tesseract has no English model; apt-get install tesseract-ocr-eng"
    return None


def to_grey8(frame: np.ndarray, monochrome1: bool = False) -> np.ndarray:
    """One frame (rows × cols, or rows × cols × samples) as 8-bit grey, text kept bright or dark as shown.

    Colour frames take the brightest channel (coloured text stays bright); the range is
    stretched min to max.
    """
    a = frame.max(axis=-1) if frame.ndim == 3 else frame
    a = a.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    g = ((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    return 255 - g if monochrome1 else g


@dataclass
class TextFinder:
    """Boxes of the words Tesseract reads in 8-bit grey frames.

    Parameters
    ----------
    min_confidence:
        Words read with less confidence are ignored.
    """

    min_confidence: float = MIN_CONFIDENCE

    def __post_init__(self) -> None:
        # one Tesseract thread per call: the worker processes already use every core
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")

    def boxes(self, grey: np.ndarray) -> list[tuple[int, int, int, int]]:
        """``(x0, y0, x1, y1)`` (exclusive, padded, clipped) of every word found in *grey*."""
        return [box for box, _ in self.words(grey)]

    def words(self, grey: np.ndarray) -> list[tuple[tuple[int, int, int, int], bool]]:
        """Each word found in *grey*: its padded, clipped box and whether it is text beyond doubt."""
        import cv2
        import pytesseract

        img = grey
        if float(np.median(img)) < 128:
            img = 255 - img  # light text on dark → dark text on light
        scale = 2 if max(img.shape) <= 800 else 1
        if scale > 1:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        data = pytesseract.image_to_data(img, config="--psm 11", output_type=pytesseract.Output.DICT)
        h, w = grey.shape
        found = []
        for text, conf, left, top, width, height in zip(data["text"], data["conf"], data["left"], data["top"],
                                                       data["width"], data["height"]):
            alnum = sum(ch.isalnum() for ch in str(text))
            if float(conf) < self.min_confidence or alnum < 1:
                continue
            x0, y0 = left / scale, top / scale
            x1, y1 = (left + width) / scale, (top + height) / scale
            pad = max(PAD_MIN, PAD_FRACTION * (y1 - y0))
            box = (max(0, int(x0 - pad)), max(0, int(y0 - pad)), min(w, int(np.ceil(x1 + pad))), min(h, int(np.ceil(y1 + pad))))
            found.append((box, float(conf) >= CONFIDENT and alnum >= 2))
        return found
