"""Soft drop shadows under pasted objects (``augment.shadow``, off by default).

A shadow is the object's mask, shifted, blurred and scaled by an opacity; it darkens only the background it
falls on (canvas pixels no labelled object owns yet), never an object, and it never touches the ownership map,
so boxes and masks are the same with or without shadows. Its draws come from a child generator spawned off the
sample's generator (``Generator.spawn`` does not advance the parent), so switching shadows on or off moves no
other draw of the sample.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.blend import clip_region


def sample(rng: np.random.Generator, spec: dict) -> dict | None:
    """Offsets (fractions of the object's box width / height), blur and opacity; None when shadows are off."""
    if not spec["enabled"]:
        return None
    child = rng.spawn(1)[0]
    return {key: round(float(child.uniform(spec[key]["min"], spec[key]["max"])), 4)
            for key in ("offset_x", "offset_y", "blur", "opacity")}


def shade(mask: np.ndarray, blur: float) -> tuple[np.ndarray, int]:
    """The mask padded by ``pad`` px on every side and softened: (uint8 alpha, pad).

    ``blur`` is the edge softness as a fraction of the object's longer side, about one Gaussian sigma. The blur is
    ``cv2.stackBlur`` (a tent-shaped kernel; its cost does not grow with the radius, unlike a large GaussianBlur's).
    """
    sigma = blur * max(mask.shape)
    radius = round(math.sqrt(6) * sigma)  # a tent of half-width r + 1 has sigma (r + 1) / sqrt(6)
    pad = radius + 1
    alpha = cv2.copyMakeBorder(mask, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    if radius > 0:
        alpha = cv2.stackBlur(alpha, (2 * radius + 1, 2 * radius + 1))
    return alpha, pad


def cast(canvas: np.ndarray, owner: np.ndarray | None, mask: np.ndarray, x: int, y: int, params: dict | None) -> None:
    """Darken the canvas, in place, under the shadow of the object whose mask sits at (x, y).

    Only pixels where ``owner`` is 0 (no labelled object; None: anywhere) get darker, each by at most
    ``opacity``; nothing ever gets lighter. A no-op when ``params`` is None.
    """
    if params is None or params["opacity"] <= 0:
        return
    height, width = mask.shape
    alpha, pad = shade(mask, params["blur"])
    left = x + round(params["offset_x"] * width) - pad
    top = y + round(params["offset_y"] * height) - pad
    region = clip_region(left, top, alpha.shape[1], alpha.shape[0], canvas.shape[1], canvas.shape[0])
    if region is None:
        return
    (rows, cols), (alpha_rows, alpha_cols) = region
    darkness = cv2.convertScaleAbs(alpha[alpha_rows, alpha_cols], alpha=params["opacity"])
    if owner is not None:
        darkness[owner[rows, cols] != 0] = 0
    keep = np.uint8(255) - darkness
    window = canvas[rows, cols]
    # round(pixel * keep / 255) never exceeds the pixel, and keep = 255 leaves it as it was
    cv2.multiply(window, cv2.merge([keep, keep, keep]), dst=window, scale=1 / 255)
