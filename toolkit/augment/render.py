"""One augmented slice in as few passes over its pixels as give the same bytes as the op-by-op path.

:func:`render` replays recorded steps (flip → rotate → blur → contrast) like
chaining each op's :meth:`segkit.augment.ops.Op.apply`, with the very same
floating-point operations in the same order (so the same bytes: a test checks
it on every op combination), but

* every op writes into a preallocated buffer (``dst=`` / ``out=``), the last one
  straight into the caller's output row, so a sample allocates nothing;
* contrast is one pass per arithmetic step, in place (no temporaries);
* an empty mask is not warped: the warp of zeros is exactly zeros.

What is *not* fused, and why: flip and rotation stay two calls (a flip is a
plain copy, ~0.1 ms; folding it into the warp's matrix interpolates the
mirrored neighbours in the other order, which changes the last bit of about
one pixel in ten), and contrast is not a lookup table (a table of ``x**gamma``
is not ``powf`` at every input).  The blur is OpenCV's separable Gaussian.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

__all__ = ["render"]

_FLIP = {"horizontal": 1, "vertical": 0}
_IN_PLACE = {"contrast"}


def render(image: np.ndarray, mask: np.ndarray, steps: Sequence[Mapping[str, Any]],
           out_image: np.ndarray | None = None, out_mask: np.ndarray | None = None,
           scratch: np.ndarray | None = None,
           mask_scratch: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Apply recorded steps to one slice, writing the result into ``out_image`` / ``out_mask``.

    Parameters
    ----------
    image, mask:
        2-D float32 slice and uint8 0/1 mask (never modified).
    steps:
        The recorded transform, ``{"op": name, **params}`` in application order.
    out_image, out_mask:
        C-contiguous float32 / uint8 arrays of the slice's shape to write into
        (e.g. rows of a block); allocated when absent.
    scratch:
        A float32 buffer of the slice's shape for intermediate results; allocated when absent.
    mask_scratch:
        A ``(2, H, W)`` float32 buffer for the rotation of a non-empty mask (the
        mask as float and its warp); allocated when needed and absent.  Reusing
        it matters: two fresh 1 MB arrays per 512² rotation cost more in page
        faults than the mask's warp itself.

    Returns
    -------
    out_image, out_mask
    """
    image = np.ascontiguousarray(image, dtype=np.float32)
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    if out_image is None:
        out_image = np.empty_like(image)
    if out_mask is None:
        out_mask = np.empty_like(mask)
    names = [step["op"] for step in steps]
    if not names:
        np.copyto(out_image, image)
        np.copyto(out_mask, mask)
        return out_image, out_mask
    if scratch is None and any(n not in _IN_PLACE for n in names[1:]):
        scratch = np.empty_like(image)
    # Buffers from the last op backwards: it writes out_image; an op that reads its
    # input while writing (all but contrast) needs a buffer other than its successor's.
    targets: list[np.ndarray] = [out_image] * len(names)
    for i in range(len(names) - 2, -1, -1):
        nxt = targets[i + 1]
        targets[i] = nxt if names[i + 1] in _IN_PLACE else (scratch if nxt is out_image else out_image)

    current, current_mask = image, mask
    mask_is_input = True
    for step, dst in zip(steps, targets):
        op = step["op"]
        if op == "flip":
            code = _FLIP[step["axis"]]
            cv2.flip(current, code, dst=dst)
            cv2.flip(current_mask.copy() if current_mask is out_mask else current_mask, code, dst=out_mask)
            current_mask, mask_is_input = out_mask, False
        elif op == "rotate":
            current_mask = _rotate(current, current_mask, float(step["angle"]), dst, out_mask, mask_scratch)
            mask_is_input = False
        elif op == "blur":
            s = float(step["sigma"])
            cv2.GaussianBlur(current, (0, 0), sigmaX=s, sigmaY=s, dst=dst, borderType=cv2.BORDER_REFLECT_101)
        elif op == "contrast":
            _contrast(current, dst, float(step["gamma"]), float(step["gain"]), float(step["bias"]))
        else:
            raise KeyError(op)
        current = dst
    if mask_is_input:
        np.copyto(out_mask, mask)
    return out_image, out_mask


def _rotate(image: np.ndarray, mask: np.ndarray, angle: float, dst: np.ndarray, out_mask: np.ndarray,
            mask_scratch: np.ndarray | None = None) -> np.ndarray:
    """:class:`segkit.augment.ops.Rotate` into ``dst`` / ``out_mask`` (``mask`` may be ``out_mask``)."""
    from segkit.augment.ops import _rotation_matrix

    h, w = image.shape
    matrix = _rotation_matrix(angle, (w - 1) / 2.0, (h - 1) / 2.0)
    fill = float(image.min())
    cv2.warpAffine(image, matrix, (w, h), dst=dst, flags=cv2.INTER_LINEAR,
                   borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
    if not mask.any():  # bilinear weights of four zeros and a zero border: exactly zero
        out_mask.fill(0)
        return out_mask
    if mask_scratch is None:
        mask_scratch = np.empty((2, h, w), np.float32)
    as_float, soft = mask_scratch[0], mask_scratch[1]
    np.copyto(as_float, mask, casting="unsafe")  # 0/1 → 0.0/1.0, as mask.astype(np.float32)
    cv2.warpAffine(as_float, matrix, (w, h), dst=soft, flags=cv2.INTER_LINEAR,
                   borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    np.greater_equal(soft, 0.5, out=out_mask.view(np.bool_))
    return out_mask


def _contrast(src: np.ndarray, dst: np.ndarray, gamma: float, gain: float, bias: float) -> None:
    """:class:`segkit.augment.ops.Contrast`, the same float32 operations, in ``dst`` (may be ``src``)."""
    lo, hi = float(src.min()), float(src.max())
    if hi <= lo:
        if dst is not src:
            np.copyto(dst, src)
        return
    span = np.float32(hi - lo)
    np.subtract(src, np.float32(lo), out=dst)
    np.divide(dst, span, out=dst)
    np.clip(dst, 0.0, 1.0, out=dst)
    np.power(dst, np.float32(gamma), out=dst)
    np.multiply(dst, np.float32(gain), out=dst)
    np.add(dst, np.float32(bias), out=dst)
    np.clip(dst, 0.0, 1.0, out=dst)
    np.multiply(dst, span, out=dst)
    np.add(dst, np.float32(lo), out=dst)
    np.clip(dst, lo, hi, out=dst)
