"""Object and background augmentation: ``sample_*`` draws parameters, the rest are pure functions.

The object and its mask get one identical affine warp (scale and horizontal shear together):
the photo with linear interpolation, the mask with nearest neighbour so it stays binary.
"""
from __future__ import annotations

import cv2
import numpy as np


def _uniform(rng: np.random.Generator, spec: dict, neutral: float) -> float:
    return float(rng.uniform(spec["min"], spec["max"])) if spec["enabled"] else neutral


def sample_object_params(rng: np.random.Generator, augment: dict) -> dict:
    """Draw brightness, blur kernel, scale and shear for one object from the ``augment`` config."""
    blur = augment["blur"]
    kernel = int(rng.choice(blur["kernel_sizes"])) if blur["enabled"] else 1
    return {
        "brightness": _uniform(rng, augment["object_brightness"], 1.0),
        "blur_kernel": kernel,
        "scale": _uniform(rng, augment["scale"], 1.0),
        "shear": _uniform(rng, augment["shear"], 0.0),
    }


def sample_background_params(rng: np.random.Generator, augment: dict) -> dict:
    return {"brightness": _uniform(rng, augment["background_brightness"], 1.0)}


def brightness_lut(factor: float) -> np.ndarray | None:
    """256-entry table multiplying a channel by ``factor``, clipped to [0, 255]; None for factor 1."""
    if factor == 1.0:
        return None
    return np.clip(np.arange(256, dtype=np.float32) * factor + 0.5, 0, 255).astype(np.uint8)


def adjust_brightness(img: np.ndarray, factor: float) -> np.ndarray:
    """Multiply every channel by ``factor``, clipped to [0, 255]."""
    lut = brightness_lut(factor)
    return img if lut is None else cv2.LUT(img, lut)


def blur(img: np.ndarray, kernel: int) -> np.ndarray:
    return img if kernel <= 1 else cv2.GaussianBlur(img, (kernel, kernel), 0)


def warp_matrix(width: int, height: int, scale: float, shear: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Affine matrix for ``x' = s*x + shear*s*y + tx, y' = s*y`` and the output size that holds it all.

    ``tx`` shifts a negative shear right so that no pixel lands left of x = 0.
    """
    tx = -shear * scale * height if shear < 0 else 0.0
    matrix = np.array([[scale, shear * scale, tx], [0.0, scale, 0.0]], np.float64)
    out_w = max(1, int(np.ceil(scale * width + abs(shear) * scale * height)))
    out_h = max(1, int(np.ceil(scale * height)))
    return matrix, (out_w, out_h)


def warp_object(img: np.ndarray, mask: np.ndarray, scale: float, shear: float) -> tuple[np.ndarray, np.ndarray]:
    height, width = mask.shape
    matrix, size = warp_matrix(width, height, scale, shear)
    warped_img = cv2.warpAffine(img, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0)
    warped_mask = cv2.warpAffine(mask, matrix, size, flags=cv2.INTER_NEAREST, borderValue=0)
    return warped_img, warped_mask


def crop_to_mask(img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Cut both arrays to the mask's tight bounding box; None when the mask is empty."""
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return None
    return img[y:y + h, x:x + w], mask[y:y + h, x:x + w]


def apply_object(img: np.ndarray, mask: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """Brightness, blur, then scale+shear; returns the object and mask cropped tight, or None if it vanished."""
    img = adjust_brightness(img, params["brightness"])
    img = blur(img, params["blur_kernel"])
    img, mask = warp_object(img, mask, params["scale"], params["shear"])
    return crop_to_mask(img, mask)
