"""Pixel data: is it whole (every frame decodes), may it carry burned-in text, and cleaning it.

Burned-in text is judged by evidence, not by header guesswork.  A cross-sectional image (MR,
CT, PT, NM) whose header says Burned In Annotation = NO, or says nothing and is ORIGINAL or has
no Image Type, is not at risk.  Images that are (secondary captures, screen saves, ultrasound,
OT and other camera modalities, Burned In Annotation = YES, DERIVED or SECONDARY images) are
first cleaned where deid's pixel-filter recipe gives the coordinates of a vendor's text, then
read by Tesseract; every word it finds is blacked out (padded box), or the file is quarantined
with ``pixel_policy="quarantine"``.  Cleaned pixels are written uncompressed (colour and
multi-frame images too).  Without Tesseract an at-risk image is quarantined, saying how to
install it.  Text read by OCR is never kept or logged: only the number of boxes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segkit.deid.peek import value as peek

__all__ = ["check_pixels", "burned_in_risk", "PixelCleaner", "PixelVerdict", "PIXEL_POLICIES"]

PIXEL_POLICIES = ("clean", "quarantine")
_SC_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
_US_CLASSES = {"1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.6.2", "1.2.840.10008.5.1.4.1.1.3.1"}
#: objects whose pixels are not pictures a person annotated: segmentations, dose grids, maps
_NOT_PICTURES = {"SEG", "RTDOSE", "RTSTRUCT", "RTPLAN", "REG", "PR", "KO", "SR"}
_NOT_PICTURE_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.30", "1.2.840.10008.5.1.4.1.1.481.2"}
_CROSS_SECTIONAL = {"MR", "CT", "PT", "NM"}
#: camera, screen and document modalities: their pictures often show text
_SCREEN_MODALITIES = {"OT", "US", "XC", "ES", "GM", "DOC", "SC", "IVUS", "OP"}
#: image types deid's blacklist treats as screenshots, reports or scanned documents
_SCREEN_TYPES = ("SCREEN", "SAVE", "SCREEN SAVE", "REPORTDATA", "DEMOGRAPHICDATA", "INVALID")
#: modalities with device-specific entries (and coordinates) in deid's pixel-filter recipe
_CONSULT_MODALITIES = {"US", "CT", "NM", "PT", "OT", "XA", "RF", "CR", "DX", "MG", "ES", "XC"}
_DECODER_HINT = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle pyjpegls"
#: transfer syntaxes that are always lossy (JPEG baseline/extended, JPEG-LS near-lossless)
_LOSSY_SYNTAXES = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81"}
#: OCR rounds on an image: find → black out → read again, until nothing is read (then a last
#: read in which only text beyond doubt sends the file to quarantine)
_OCR_ROUNDS = 3


def _ts(ds: Any) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""


def check_pixels(ds: Any, sop_name: str) -> str | None:
    """Why the pixel data cannot be trusted (missing, truncated, a frame that does not decode), or ``None``."""
    has_pixels = any(t in ds for t in (0x7FE00010, 0x7FE00008, 0x7FE00009))
    if not has_pixels:
        if "Image Storage" in sop_name and "Enhanced SR" not in sop_name:
            return "no pixel data in an image object"
        return None
    if 0x7FE00010 not in ds:
        return None
    ts = _ts(ds)
    from pydicom.uid import UID

    try:
        value = peek(ds, 0x7FE00010)
    except Exception:  # noqa: BLE001
        return "pixel data cannot be read"
    if value is None:
        return "empty pixel data"
    if ts and UID(ts).is_compressed:
        from pydicom.encaps import generate_fragments

        try:
            n = sum(1 for _ in generate_fragments(value))
        except Exception:  # noqa: BLE001
            return "encapsulated pixel data cannot be parsed (truncated or corrupt)"
        if not n:
            return "encapsulated pixel data has no fragments"
        return _decodes(ds, UID(ts))
    try:
        rows, cols = int(peek(ds, 0x00280010)), int(peek(ds, 0x00280011))
        spp = int(peek(ds, 0x00280002, 1) or 1)
        bits = int(peek(ds, 0x00280100))
        frames = int(peek(ds, 0x00280008, 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return "pixel data without Rows, Columns or Bits Allocated"
    expected = (rows * cols * spp * frames * bits + 7) // 8
    if str(peek(ds, 0x00280004, "")).strip() == "YBR_FULL_422":
        expected = expected * 2 // 3
    if len(value) < expected:
        return "pixel data shorter than Rows × Columns × frames (truncated)"
    return None


def _decodes(ds: Any, uid: Any) -> str | None:
    """Decode every frame of compressed pixel data; the reason it fails, or ``None``."""
    from pydicom.pixels import iter_pixels
    from pydicom.pixels.decoders.base import get_decoder

    try:
        available = get_decoder(uid).is_available
    except (NotImplementedError, ValueError):
        available = False
    if not available:
        return f"pixel data cannot be decoded: no decoder for {uid.name} is installed ({_DECODER_HINT})"
    try:
        for _ in iter_pixels(ds, as_rgb=False):
            pass
    except Exception:  # noqa: BLE001 - whatever the plugin raises, a frame does not decode
        return f"pixel data cannot be decoded ({uid.name})"
    return None


def burned_in_risk(ds: Any, sop: str) -> tuple[str | None, bool]:
    """``(risk, consult)``: why the image may show burned-in text, and whether to ask deid's pixel filters.

    Header tests decide; deid's recipe (about 2 ms a file) runs on the images at risk and on the
    modalities it has device entries for, so primary MR acquisitions are never slowed down.
    """
    if 0x7FE00010 not in ds:
        return None, False
    modality = str(peek(ds, 0x00080060, "") or "").strip().upper()
    if modality in _NOT_PICTURES or sop in _NOT_PICTURE_CLASSES:
        return None, False
    burned = str(peek(ds, 0x00280301, "") or "").strip().upper()
    if burned == "YES":
        return "BurnedInAnnotation = YES", True
    if sop.startswith(_SC_PREFIX):
        return "secondary capture", True
    if sop in _US_CLASSES or modality == "US":
        return "ultrasound", True
    if modality in _SCREEN_MODALITIES:
        return f"modality {modality}", True
    image_type = [str(v).strip().upper() for v in (peek(ds, 0x00080008) or [])]
    screen = [t for t in image_type if t in _SCREEN_TYPES]
    if screen:
        return f"ImageType {screen[0]}", True
    if burned == "NO" and modality in _CROSS_SECTIONAL:
        return None, modality in _CONSULT_MODALITIES
    derived = [t for t in image_type[:2] if t in ("DERIVED", "SECONDARY")]
    if derived:
        return f"ImageType {derived[-1]}", True
    return None, modality in _CONSULT_MODALITIES


@dataclass
class PixelVerdict:
    """What cleaning decided: a quarantine reason, or counts for the audit (no text, ever)."""

    quarantine: str | None = None
    counts: Counter[str] = field(default_factory=Counter)


class PixelCleaner:
    """deid's recipe coordinates first, then Tesseract OCR, on the images at risk (one per worker).

    Parameters
    ----------
    policy:
        ``"clean"`` blacks out the text OCR finds; ``"quarantine"`` quarantines the image instead.
    """

    def __init__(self, policy: str = "clean") -> None:
        if policy not in PIXEL_POLICIES:
            raise ValueError(f"pixel policy must be one of {PIXEL_POLICIES}, not {policy!r}")
        self.policy = policy
        self._recipe: Any = None
        self._ocr_problem: str | None | bool = False  # False: not checked yet
        self._finder: Any = None

    def _deid_recipe(self) -> Any:
        if self._recipe is None:
            import logging

            from deid.config import DeidRecipe
            from deid.logger import bot

            bot.level = 0
            logging.getLogger("deid").setLevel(logging.ERROR)
            self._recipe = DeidRecipe()
        return self._recipe

    def _ocr(self) -> str | None:
        if self._ocr_problem is False:
            from segkit.deid.ocr import TextFinder, tesseract_problem

            self._ocr_problem = tesseract_problem()
            if self._ocr_problem is None:
                self._finder = TextFinder()
        return self._ocr_problem  # type: ignore[return-value]

    def clean(self, ds: Any, risk: str | None, consult: bool) -> PixelVerdict:
        """Clean *ds*'s pixels in place where needed; say what was done or why it must be quarantined."""
        from deid.dicom.pixels.detect import has_burned_pixels

        verdict = PixelVerdict()
        result = has_burned_pixels(ds, deid=self._deid_recipe())
        flagged = [r for r in result.get("results", []) if r.get("group") != "whitelist"] if result["flagged"] else []
        arr = None
        if flagged and all(r.get("coordinates") for r in flagged):
            arr = self._decoded(ds)
            keep = _recipe_keep_mask(flagged, arr.shape[-3] if _is_colour(ds) else arr.shape[-2],
                                     arr.shape[-2] if _is_colour(ds) else arr.shape[-1])
            frames = arr[None] if arr.ndim == (3 if _is_colour(ds) else 2) else arr
            dark = frames.max() if _mono1(ds) else frames.min()
            frames[:, ~keep] = dark
            verdict.counts["pixels cleaned"] = 1
            verdict.counts["deid recipe boxes"] += int((~keep).any())
        elif flagged:
            names = sorted({str(r.get("reason", "")).strip()[:60] or r.get("group", "") for r in flagged})
            risk = risk or f"matched by deid's pixel filters: {names[0]}"
        if risk:
            problem = self._ocr()
            if problem is not None:
                verdict.quarantine = f"burned-in text risk ({risk}); OCR is not available: {problem}"
                return verdict
            arr = self._decoded(ds) if arr is None else arr
            try:
                boxes, arr = self._ocr_clean(ds, arr)
            except _TextRemains:
                verdict.quarantine = f"burned-in text risk ({risk}); text is still read after {_OCR_ROUNDS} rounds"
                return verdict
            verdict.counts["ocr checked"] += 1
            if boxes:
                if self.policy == "quarantine":
                    verdict.quarantine = (f"burned-in text found by OCR ({boxes} boxes; {risk}); "
                                          "quarantined by --pixel-policy quarantine")
                    return verdict
                verdict.counts["pixels cleaned"] = 1
                verdict.counts["ocr text boxes"] += boxes
        if verdict.counts["pixels cleaned"]:
            _store(ds, arr)
        return verdict

    # ---------------------------------------------------------------- pixels
    @staticmethod
    def _decoded(ds: Any) -> np.ndarray:
        """All frames, colour as RGB (palette colour applied), frames first."""
        arr = ds.pixel_array
        if str(ds.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            arr = apply_color_lut(arr, ds)
        return np.array(arr, order="C")  # a writable copy: cleaning works in place

    @staticmethod
    def _views(frames: np.ndarray, mono1: bool) -> list[np.ndarray]:
        """What OCR reads: frame 1, and for a cine the projection of all frames."""
        views = [frames[0]]
        if len(frames) > 1:  # static text shows in the projection of a cine, moving anatomy blurs
            views.append(frames.min(axis=0) if mono1 else frames.max(axis=0))
        return views

    def _ocr_clean(self, ds: Any, arr: np.ndarray) -> tuple[int, np.ndarray]:
        """Black out every word OCR reads (on frame 1 and the projection of all frames, applied to all).

        Returns the number of boxes and the cleaned array; raises :class:`_TextRemains` when text
        beyond doubt is still read after the last round.
        """
        from segkit.deid.ocr import to_grey8

        single = arr.ndim == (3 if _is_colour(ds) else 2)
        frames = arr[None] if single else arr
        mono1 = _mono1(ds)
        dark = frames.max() if mono1 else frames.min()
        total, copied = 0, False
        for _ in range(_OCR_ROUNDS):
            boxes = [b for view in self._views(frames, mono1) for b in self._finder.boxes(to_grey8(view, mono1))]
            if not boxes:
                return total, (frames[0] if single else frames)
            if not copied:
                frames, copied = frames.copy(), True
            for x0, y0, x1, y1 in boxes:
                frames[:, y0:y1, x0:x1] = dark
            total += len(boxes)
        # a last read: text beyond doubt sends the file to quarantine; what else Tesseract still
        # makes of the image (mostly two-letter "words" in the tissue around the boxes) is blacked
        # out too, and the file is written
        words = [w for view in self._views(frames, mono1) for w in self._finder.words(to_grey8(view, mono1))]
        if any(sure for _, sure in words):
            raise _TextRemains
        for (x0, y0, x1, y1), _ in words:
            frames[:, y0:y1, x0:x1] = dark
        return total + len(words), (frames[0] if single else frames)


def _is_colour(ds: Any) -> bool:
    return int(ds.get("SamplesPerPixel", 1) or 1) > 1 or \
        str(ds.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR"


def _mono1(ds: Any) -> bool:
    return str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1"


def _recipe_keep_mask(flagged: list[dict[str, Any]], rows: int, cols: int) -> np.ndarray:
    """deid's recipe coordinates (``[keep, "x0,y0,x1,y1" | "all"]``, in recipe order) as a keep-mask."""
    keep = np.ones((rows, cols), bool)
    for item in flagged:
        for value, coords in item.get("coordinates", []):
            for c in coords if isinstance(coords, list) else [coords]:
                x0, y0, x1, y1 = (0, 0, cols, rows) if str(c).strip().lower() == "all" else \
                    [int(float(v)) for v in str(c).split(",")]
                keep[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = bool(int(value))
    return keep


class _TextRemains(Exception):
    """OCR still reads text after every round of blacking out."""


def _store(ds: Any, arr: np.ndarray) -> None:
    """Write cleaned pixels back, uncompressed, with the Image Pixel attributes that describe them."""
    from pydicom.uid import UID

    ts = UID(_ts(ds) or "1.2.840.10008.1.2")
    old = str(ds.get("PhotometricInterpretation", "")).strip()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = "RGB" if old == "PALETTE COLOR" or samples == 3 else old  # decoded colour is RGB
    planar = samples == 3 and int(ds.get("PlanarConfiguration", 0) or 0) == 1
    if not (ts.is_compressed or photometric != old or planar):
        dtype = arr.dtype if ts.is_little_endian else arr.dtype.newbyteorder(">")
        ds.PixelData = np.ascontiguousarray(arr).astype(dtype, copy=False).tobytes()
        return
    frames_before = "NumberOfFrames" in ds
    lossy = str(ts) in _LOSSY_SYNTAXES
    bits = 8 if arr.dtype.itemsize == 1 else min(int(ds.get("BitsStored", 16) or 16), 16)
    if old == "PALETTE COLOR":
        bits = arr.dtype.itemsize * 8
        for tag in (0x00281101, 0x00281102, 0x00281103, 0x00281199, 0x00281201, 0x00281202, 0x00281203,
                    0x00281221, 0x00281222, 0x00281223):
            if tag in ds:
                del ds[tag]
    ds.set_pixel_data(np.ascontiguousarray(arr), photometric, bits, generate_instance_uid=False)
    if lossy:
        ds.LossyImageCompression = "01"
    if frames_before and "NumberOfFrames" not in ds:
        ds.NumberOfFrames = 1
