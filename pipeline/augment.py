"""Object and background augmentation: ``sample_*`` draws parameters, the rest are pure functions.

The object and its mask get one identical warp (flip, shear, rotation and scale together, plus an optional
perspective tilt): the photo with linear interpolation, the mask with nearest neighbour so it stays binary.

Object size (``augment.size``) is one of SIZE_MODES, each with its own range in the config:
  scale          factor on the cut-out's own pixels (uniform)
  normalised     factor on the cut-out after resizing it to its class's median cut-out size (uniform)
  area           box area as a fraction of the canvas area (log-uniform)
  side_px        longest box side in pixels (log-uniform)
  side_fraction  the larger of box width / canvas width and box height / canvas height (log-uniform)
Box-relative modes hold for the warped object's box (to a pixel or two): the scale is solved from the mask's
convex hull under the same warp.
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


SIZE_MODES = ("scale", "normalised", "area", "side_px", "side_fraction")
# Absolute sizes are drawn log-uniformly (their ranges span decades); factors on the cut-out uniformly.
LOG_UNIFORM_SIZES = ("area", "side_px", "side_fraction")


def sample_size(rng: np.random.Generator, augment: dict) -> float:
    """One draw from the range of the ``augment.size`` mode."""
    mode = augment["size"]
    spec = augment[mode]
    return _log_uniform(rng, spec) if mode in LOG_UNIFORM_SIZES else float(rng.uniform(spec["min"], spec["max"]))


def sample_perspective(rng: np.random.Generator, spec: dict) -> list[list[float]] | None:
    """Corner offsets [[dx, dy] x 4] as fractions of the object's width and height (top-left, top-right,
    bottom-right, bottom-left): a strength drawn from [min, max], then each offset uniform in +-strength."""
    if not spec["enabled"]:
        return None
    strength = float(rng.uniform(spec["min"], spec["max"]))
    return rng.uniform(-strength, strength, (4, 2)).round(4).tolist()


def sample_object_params(rng: np.random.Generator, augment: dict) -> dict:
    """Draw every per-object transform from the ``augment`` config; disabled ones get their neutral value.

    Disabled transforms draw nothing, so switching one off leaves the others' draws as they were. ``scale`` is
    the drawn factor in the ``scale`` size mode and None in the others until ``size_scale`` solves it.
    """
    blur, flip, mode = augment["blur"], augment["flip"], augment["size"]
    brightness = _uniform(rng, augment["object_brightness"], 1.0)
    blur_kernel = int(rng.choice(blur["kernel_sizes"])) if blur["enabled"] else 1
    size = sample_size(rng, augment)
    return {
        "brightness": brightness,
        "blur_kernel": blur_kernel,
        "size": mode,
        mode: size,
        "scale": size if mode == "scale" else None,
        "shear": _uniform(rng, augment["shear"], 0.0),
        "rotation": _uniform(rng, augment["rotation"], 0.0),
        "flip_horizontal": _chance(rng, flip["enabled"], flip["horizontal"]),
        "flip_vertical": _chance(rng, flip["enabled"], flip["vertical"]),
        "hue": _uniform(rng, augment["hue"], 0.0),
        "saturation": _uniform(rng, augment["saturation"], 1.0),
        "erode": round(_uniform(rng, augment["erode"], 0.0)),
        "color_match": _uniform(rng, augment["color_match"], 0.0),
        "contrast": _uniform(rng, augment["object_contrast"], 1.0),
        "gamma": _uniform(rng, augment["object_gamma"], 1.0),
        "perspective": sample_perspective(rng, augment["perspective"]),
    }


def sample_image_params(rng: np.random.Generator, augment: dict, n_tiles: int) -> dict:
    """Per-image draws: background brightness, per-tile channel gains, noise, JPEG quality, background contrast
    and gamma."""
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
        "background_contrast": _uniform(rng, augment["background_contrast"], 1.0),
        "background_gamma": _uniform(rng, augment["background_gamma"], 1.0),
    }


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


def perspective_matrix(width: int, height: int, offsets: list[list[float]]) -> np.ndarray:
    """3x3 map moving the corners of a width x height image (pixel edges) by ``offsets`` x (width, height)."""
    corners = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]])
    moved = corners + np.asarray(offsets, np.float64) * (width, height)
    return cv2.getPerspectiveTransform(corners.astype(np.float32), moved.astype(np.float32))


def object_transform(params: dict, width: int, height: int, scale: float | None = None) -> np.ndarray:
    """The object's warp: its 2x2 linear part, or a 3x3 projective map (tilt, then the linear part) with
    perspective. ``scale`` overrides ``params['scale']`` (1.0 gives the unit-size warp)."""
    linear = linear_part(params if scale is None else {**params, "scale": scale})
    if params.get("perspective") is None:
        return linear
    lifted = np.eye(3)
    lifted[:2, :2] = linear
    return lifted @ perspective_matrix(width, height, params["perspective"])


def _project(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(n, 2) points through a 3x3 projective map."""
    moved = np.asarray(points, np.float64) @ matrix[:2, :2].T + matrix[:2, 2]
    return moved / (np.asarray(points, np.float64) @ matrix[2, :2] + matrix[2, 2])[:, None]


def projective_warp_matrix(width: int, height: int, matrix: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """``matrix`` shifted so the warped rectangle's bounding box starts at pixel edge -0.5, and the output size."""
    corners = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [-0.5, height - 0.5], [width - 0.5, height - 0.5]])
    moved = _project(corners, matrix)
    low, high = moved.min(axis=0), moved.max(axis=0)
    shift = np.array([[1.0, 0.0, -0.5 - low[0]], [0.0, 1.0, -0.5 - low[1]], [0.0, 0.0, 1.0]])
    size = (max(1, math.ceil(high[0] - low[0] - 1e-9)), max(1, math.ceil(high[1] - low[1] - 1e-9)))
    return shift @ matrix, size


def warp_object(img: np.ndarray, mask: np.ndarray, transform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Warp photo (linear interpolation) and mask (nearest neighbour) by a 2x2 linear part or a 3x3 projective
    map, into an array that holds the whole warped rectangle."""
    height, width = mask.shape
    if transform.shape == (2, 2):
        matrix, size = warp_matrix(width, height, transform)
        warped_img = cv2.warpAffine(img, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0)
        warped_mask = cv2.warpAffine(mask, matrix, size, flags=cv2.INTER_NEAREST, borderValue=0)
        return warped_img, warped_mask
    matrix, size = projective_warp_matrix(width, height, transform)
    warped_img = cv2.warpPerspective(img, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0)
    warped_mask = cv2.warpPerspective(mask, matrix, size, flags=cv2.INTER_NEAREST, borderValue=0)
    return warped_img, warped_mask


def hull_extents(hull: np.ndarray, linears: np.ndarray) -> np.ndarray:
    """(n, 2) widths and heights in pixels of a mask (given by its convex hull points) under n 2x2 maps."""
    moved = np.einsum("nij,pj->npi", linears, np.asarray(hull, np.float64))
    return moved.max(axis=1) - moved.min(axis=1) + 1


def unit_extents(hull: np.ndarray, params: dict, width: int, height: int) -> np.ndarray:
    """Width and height in pixels of the mask's box under the object's warp at scale 1 (perspective included:
    a projective map keeps a convex hull convex, so the hull's extremes are the mask's)."""
    transform = object_transform(params, width, height, scale=1.0)
    if transform.shape == (2, 2):
        return hull_extents(hull, transform[None])[0]
    moved = _project(hull, transform)
    return moved.max(axis=0) - moved.min(axis=0) + 1


def size_to_scale(mode: str, value: float, extents: np.ndarray, canvas: tuple[int, int],
                  normalise: float = 1.0) -> np.ndarray:
    """Scale factors giving size ``value`` in ``mode`` to boxes of ``extents`` (n, 2) at scale 1.

    ``normalise`` is the cut-out's factor to its class's median size (``normalised`` mode only).
    Increasing in ``value``, so the ends of a range give the smallest and largest scales.
    """
    extents = np.asarray(extents, np.float64)
    w, h = extents[..., 0], extents[..., 1]
    width, height = canvas
    if mode == "scale":
        return np.full(w.shape, float(value))
    if mode == "normalised":
        return np.full(w.shape, float(value) * normalise)
    if mode == "area":
        return np.sqrt(value * (width * height) / (w * h))
    if mode == "side_px":
        return value / np.maximum(w, h)
    if mode == "side_fraction":
        return value / np.maximum(w / width, h / height)
    raise ValueError(f"unknown size mode {mode!r}; expected one of {list(SIZE_MODES)}")


def size_scale(params: dict, hull: np.ndarray, shape: tuple[int, int], canvas: tuple[int, int],
               normalise: float = 1.0) -> float:
    """The scale factor that gives the object (mask of ``shape``, hull ``hull``) its drawn size."""
    mode = params["size"]
    if mode in ("scale", "normalised"):
        return float(size_to_scale(mode, params[mode], np.ones((1, 2)), canvas, normalise)[0])
    extents = unit_extents(hull, params, shape[1], shape[0])
    return float(size_to_scale(mode, params[mode], extents[None], canvas)[0])


def crop_to_mask(img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Cut both arrays to the mask's tight bounding box; None when the mask is empty."""
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return None
    return img[y:y + h, x:x + w], mask[y:y + h, x:x + w]


def apply_object(img: np.ndarray, mask: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """Erode, colour, blur, then warp; returns the object and mask cropped tight, or None if it vanished."""
    mask = color.erode_mask(mask, params["erode"])
    img = color.adjust_tone(img, mask, params["brightness"], params["contrast"], params["gamma"])
    img = color.hue_saturation(img, params["hue"], params["saturation"])
    img = blur(img, params["blur_kernel"])
    img, mask = warp_object(img, mask, object_transform(params, mask.shape[1], mask.shape[0]))
    return crop_to_mask(img, mask)
