"""Per-volume robust intensity normalisation."""

from __future__ import annotations

import numpy as np

__all__ = ["PERCENTILES", "normalise_volume"]

PERCENTILES = (0.5, 99.5)


def normalise_volume(array: np.ndarray, percentiles: tuple[float, float] = PERCENTILES) -> tuple[np.ndarray, dict]:
    """Clip a volume to its ``percentiles`` and scale it to [0, 1].

    Returns
    -------
    (numpy.ndarray, dict)
        The float32 volume and its parameters ``{"method", "percentiles", "low", "high"}``.
        A constant volume maps to zeros.
    """
    low, high = (float(v) for v in np.percentile(array, percentiles))
    params = {"method": "percentile-clip", "percentiles": list(percentiles), "low": low, "high": high}
    if high <= low:
        return np.zeros(array.shape, dtype=np.float32), params
    out = np.clip(array, low, high).astype(np.float32, copy=False)  # one volume-sized copy, no float64
    out -= np.float32(low)
    out /= np.float32(high - low)
    return out, params
