"""Colour transforms on BGR uint8 images: brightness/contrast/gamma, hue/saturation, per-channel gains, noise,
colour matching, mask erosion.

Per-pixel work goes through 256-entry tables (cv2.LUT) wherever the transform is a function of one channel value.
"""
from __future__ import annotations

from statistics import NormalDist

import cv2
import numpy as np

# Gaussian quantiles at (i + 0.5) / 256, rescaled to unit standard deviation: a random byte through this table
# is a draw from a 256-level discrete normal (tails cut at 2.9 sigma), exact once rounded to whole grey levels.
_NORMAL_BYTES = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)])
_NORMAL_BYTES /= _NORMAL_BYTES.std()


def hue_saturation(img: np.ndarray, hue_shift_deg: float, saturation: float) -> np.ndarray:
    """Rotate hue by ``hue_shift_deg`` and multiply saturation (clipped); (0, 1.0) returns ``img`` itself.

    Works in OpenCV's 8-bit HSV, where hue runs 0..179 in steps of 2 degrees, so the shift is rounded to 2 degrees.
    """
    shift = round(hue_shift_deg / 2) % 180
    if shift == 0 and saturation == 1.0:
        return img
    levels = np.arange(256, dtype=np.float32)
    lut = np.empty((1, 256, 3), np.uint8)
    lut[0, :, 0] = (np.arange(256) + shift) % 180
    lut[0, :, 1] = np.clip(levels * saturation + 0.5, 0, 255)
    lut[0, :, 2] = levels
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    cv2.LUT(hsv, lut, dst=hsv)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def adjust_brightness(img: np.ndarray, factor: float) -> np.ndarray:
    """Multiply every channel by ``factor``, clipped to [0, 255] (a 256-entry lookup table); factor 1 is a no-op."""
    if factor == 1.0:
        return img
    lut = np.clip(np.arange(256, dtype=np.float32) * factor + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(img, lut)


def gamma_levels(levels: np.ndarray, gamma: float) -> np.ndarray:
    """255 * (v / 255) ** gamma on levels already clipped to [0, 255]: gamma > 1 darkens the mid-tones."""
    return levels if gamma == 1.0 else 255.0 * (levels / 255.0) ** gamma


def adjust_tone(img: np.ndarray, mask: np.ndarray, brightness: float, contrast: float, gamma: float) -> np.ndarray:
    """Brightness, then contrast about the object's mean grey level (over ``mask``), then gamma: one lookup table.

    With contrast and gamma at 1 this is ``adjust_brightness`` exactly.
    """
    if contrast == 1.0 and gamma == 1.0:
        return adjust_brightness(img, brightness)
    levels = np.arange(256, dtype=np.float64) * brightness
    if contrast != 1.0:
        pivot = brightness * float(np.mean(cv2.mean(img, mask=mask)[:3]))
        levels = pivot + contrast * (levels - pivot)
    levels = gamma_levels(np.clip(levels, 0, 255), gamma)
    return cv2.LUT(img, np.clip(levels + 0.5, 0, 255).astype(np.uint8))


def paint_tile(window: np.ndarray, cell: np.ndarray, brightness: float = 1.0,
               gains: tuple[float, float, float] | None = None, contrast: float = 1.0, gamma: float = 1.0) -> None:
    """Write ``window`` into ``cell`` (same size) with the image's colour change applied on the way in.

    Brightness times the tile's per-channel ``gains``, then contrast about the tile's mean grey level, is one
    affine ``cv2.transform`` (a uniform brightness alone ``cv2.convertScaleAbs``, as fast); gamma, when not 1,
    is a second pass: a 256-entry table over the cell's rows seen as one channel (faster than a 3-channel table).
    """
    matrix = channel_matrix(brightness, gains)
    if contrast != 1.0:
        factors = np.float64(brightness) * np.asarray(gains if gains is not None else (1.0, 1.0, 1.0), np.float64)
        pivot = float(np.mean(np.asarray(cv2.mean(window)[:3]) * factors))
        affine = np.zeros((3, 4), np.float32)
        affine[:, :3] = np.diag(factors * contrast)
        affine[:, 3] = pivot * (1 - contrast)
        cv2.transform(window, affine, dst=cell)
    elif matrix is not None:
        cv2.transform(window, matrix, dst=cell)
    elif brightness != 1.0:
        cv2.convertScaleAbs(window, dst=cell, alpha=brightness)
    else:
        cell[...] = window
    if gamma != 1.0:
        table = np.clip(gamma_levels(np.arange(256, dtype=np.float64), gamma) + 0.5, 0, 255).astype(np.uint8)
        rows = cell.reshape(cell.shape[0], -1)  # a view: each row of the cell is contiguous
        cv2.LUT(rows, table, dst=rows)


def channel_matrix(brightness: float, gains: tuple[float, float, float] | None) -> np.ndarray | None:
    """3x3 float32 diagonal for ``cv2.transform``, scaling channel c by ``brightness * gains[c]`` (rounded,
    saturated); None when all are 1. About 5x faster than a 3-channel lookup table on a 1080p canvas."""
    factors = np.float32(brightness) * np.asarray(gains if gains is not None else (1.0, 1.0, 1.0), np.float32)
    if np.all(factors == 1):
        return None
    return np.diag(factors).astype(np.float32)


def add_noise(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Add zero-mean Gaussian noise of standard deviation ``sigma`` (grey levels) to every channel, clipped.

    One random byte per value, mapped through a table of Gaussian quantiles: independent per pixel, no tiling,
    and several times faster than drawing floats. Deterministic from ``seed``; sigma <= 0 returns ``img``.
    """
    if sigma <= 0:
        return img
    noise = np.rint(_NORMAL_BYTES * sigma)
    up = np.clip(noise, 0, 255).astype(np.uint8).reshape(1, 256)
    down = np.clip(-noise, 0, 255).astype(np.uint8).reshape(1, 256)
    draws = np.random.default_rng(seed).integers(0, 256, img.shape, dtype=np.uint8)
    # each draw is either >= 0 or <= 0, so saturating add then subtract is exactly clip(img + noise)
    out = cv2.add(img, cv2.LUT(draws, up))
    return cv2.subtract(out, cv2.LUT(draws, down), dst=out)


def match_color(obj: np.ndarray, mask: np.ndarray, reference: np.ndarray, strength: float) -> np.ndarray:
    """Move the object's Lab mean and spread toward ``reference``'s by ``strength`` (0 = unchanged, 1 = matched).

    Per Lab channel: x' = mean_obj + (x - mean_obj) * (std_ref / std_obj) ** strength
    + strength * (mean_ref - mean_obj), with the object's statistics taken over mask pixels only.
    Standard deviations below one level count as one, so a flat object or reference is not blown up.
    """
    if strength == 0 or reference.size == 0 or not cv2.countNonZero(mask):
        return obj
    lab = cv2.cvtColor(obj, cv2.COLOR_BGR2LAB)
    mean_obj, std_obj = (v.ravel() for v in cv2.meanStdDev(lab, mask=mask))
    mean_ref, std_ref = (v.ravel() for v in cv2.meanStdDev(cv2.cvtColor(np.ascontiguousarray(reference),
                                                                         cv2.COLOR_BGR2LAB)))
    scale = (np.maximum(std_ref, 1.0) / np.maximum(std_obj, 1.0)) ** strength
    target = mean_obj + strength * (mean_ref - mean_obj)
    table = (np.arange(256.0)[:, None] - mean_obj) * scale + target + 0.5
    lut = np.clip(table, 0, 255).astype(np.uint8)[:, None, :]
    cv2.LUT(lab, lut, dst=lab)
    return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)


def erode_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Erode by ``pixels`` with an elliptical kernel, the array edge counting as background.

    pixels <= 0, or an erosion that would leave nothing, returns ``mask`` unchanged: the object is never lost.
    """
    if pixels <= 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    eroded = cv2.erode(mask, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return eroded if cv2.countNonZero(eroded) else mask
