"""Object and background augmentation: ``sample_*`` draws parameters, the rest are pure functions.

The object and its mask get one identical affine warp (flip, shear, rotation and scale together):
the photo with linear interpolation, the mask with nearest neighbour so it stays binary.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline import color


def _uniform(rng: np.random.Generator, spec: dict, neutral: float) -> float:
    return float(rng.uniform(spec["min"], spec["max"])) if spec["enabled"] else neutral


def _log_uniform(rng: np.random.Generator, spec: dict) -> float:
    return float(math.exp(rng.uniform(math.log(spec["min"]), math.log(spec["max"]))))


def _chance(rng: np.random.Generator, enabled: bool, probability: float) -> bool:
    return bool(enabled and probability > 0 and rng.random() < probability)


def sample_object_params(rng: np.random.Generator, augment: dict) -> dict:
    """Draw every per-object transform from the ``augment`` config; disabled ones get their neutral value.

    Disabled transforms draw nothing, so switching one off leaves the others' draws as they were.
    """
    blur, flip = augment["blur"], augment["flip"]
    return {
        "brightness": _uniform(rng, augment["object_brightness"], 1.0),
        "blur_kernel": int(rng.choice(blur["kernel_sizes"])) if blur["enabled"] else 1,
        "scale": _uniform(rng, augment["scale"], 1.0),
        "area": _log_uniform(rng, augment["area"]) if augment["area"]["enabled"] else None,
        "shear": _uniform(rng, augment["shear"], 0.0),
        "rotation": _uniform(rng, augment["rotation"], 0.0),
        "flip_horizontal": _chance(rng, flip["enabled"], flip["horizontal"]),
        "flip_vertical": _chance(rng, flip["enabled"], flip["vertical"]),
        "hue": _uniform(rng, augment["hue"], 0.0),
        "saturation": _uniform(rng, augment["saturation"], 1.0),
        "erode": round(_uniform(rng, augment["erode"], 0.0)),
        "color_match": _uniform(rng, augment["color_match"], 0.0),
    }


def sample_image_params(rng: np.random.Generator, augment: dict, n_tiles: int) -> dict:
    """Per-image draws: background brightness, per-tile channel gains, noise and JPEG quality."""
    jitter = augment["tile_jitter"]
    gains = (rng.uniform(jitter["min"], jitter["max"], (n_tiles, 3)).round(4).tolist()
             if jitter["enabled"] else None)
    quality = augment["jpeg_quality"]
    return {
        "background_brightness": _uniform(rng, augment["background_brightness"], 1.0),
        "tile_gains": gains,
        "noise": _uniform(rng, augment["noise"], 0.0),
        "noise_seed": int(rng.integers(2**62)) if augment["noise"]["enabled"] else None,
        "jpeg_quality": round(_uniform(rng, quality, 0.0)) if quality["enabled"] else None,
    }


def adjust_brightness(img: np.ndarray, factor: float) -> np.ndarray:
    """Multiply every channel by ``factor``, clipped to [0, 255] (a 256-entry lookup table); factor 1 is a no-op."""
    if factor == 1.0:
        return img
    lut = np.clip(np.arange(256, dtype=np.float32) * factor + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(img, lut)


def blur(img: np.ndarray, kernel: int) -> np.ndarray:
    return img if kernel <= 1 else cv2.GaussianBlur(img, (kernel, kernel), 0)


def linear_part(params: dict) -> np.ndarray:
    """2x2 matrix: mirror, then horizontal shear, then rotation, then scale (the order the eye reads them)."""
    mirror = np.diag([-1.0 if params["flip_horizontal"] else 1.0, -1.0 if params["flip_vertical"] else 1.0])
    shear = np.array([[1.0, params["shear"]], [0.0, 1.0]])
    theta = math.radians(params["rotation"])
    rotation = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])  # y points down
    return params["scale"] * rotation @ shear @ mirror


def warp_matrix(width: int, height: int, linear: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Affine matrix applying ``linear`` and the output size that holds the whole warped rectangle.

    Pixel edges of the input (centres at integers, edges at -0.5 .. size-0.5) map to edges starting at -0.5.
    """
    corners = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [-0.5, height - 0.5], [width - 0.5, height - 0.5]])
    moved = corners @ linear.T
    low, high = moved.min(axis=0), moved.max(axis=0)
    matrix = np.hstack([linear, (-0.5 - low)[:, None]])
    size = (max(1, math.ceil(high[0] - low[0] - 1e-9)), max(1, math.ceil(high[1] - low[1] - 1e-9)))
    return matrix, size


def warp_object(img: np.ndarray, mask: np.ndarray, linear: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height, width = mask.shape
    matrix, size = warp_matrix(width, height, linear)
    warped_img = cv2.warpAffine(img, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0)
    warped_mask = cv2.warpAffine(mask, matrix, size, flags=cv2.INTER_NEAREST, borderValue=0)
    return warped_img, warped_mask


def hull_extents(hull: np.ndarray, linears: np.ndarray) -> np.ndarray:
    """(n, 2) widths and heights in pixels of a mask (given by its convex hull points) under n 2x2 maps."""
    moved = np.einsum("nij,pj->npi", linears, np.asarray(hull, np.float64))
    return moved.max(axis=1) - moved.min(axis=1) + 1


def area_scale(params: dict, hull: np.ndarray, canvas_area: int) -> float:
    """The scale that makes the warped object's box cover ``params['area']`` of the canvas."""
    unit = hull_extents(hull, linear_part({**params, "scale": 1.0})[None])[0]
    return math.sqrt(params["area"] * canvas_area / float(unit[0] * unit[1]))


def crop_to_mask(img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Cut both arrays to the mask's tight bounding box; None when the mask is empty."""
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return None
    return img[y:y + h, x:x + w], mask[y:y + h, x:x + w]


def apply_object(img: np.ndarray, mask: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """Erode, colour, blur, then warp; returns the object and mask cropped tight, or None if it vanished."""
    mask = color.erode_mask(mask, params["erode"])
    img = adjust_brightness(img, params["brightness"])
    img = color.hue_saturation(img, params["hue"], params["saturation"])
    img = blur(img, params["blur_kernel"])
    img, mask = warp_object(img, mask, linear_part(params))
    return crop_to_mask(img, mask)
