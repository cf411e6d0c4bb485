"""Placement and pasting; the box always comes from the transformed mask's pixels."""
from __future__ import annotations

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixel-edge coordinates (x1/y1 exclusive)


def mask_box(mask: np.ndarray, x: int = 0, y: int = 0) -> Box | None:
    """Tight box of the mask's non-zero pixels, shifted by (x, y); None for an empty mask."""
    bx, by, bw, bh = cv2.boundingRect(mask)
    if bw == 0 or bh == 0:
        return None
    return (x + bx, y + by, x + bx + bw, y + by + bh)


def box_rejection(width: int, height: int, aspect: dict, min_box_size: int) -> str | None:
    """Why a box of this size is not kept (None when it is): aspect w/h outside the range, or too small."""
    if width < min_box_size or height < min_box_size:
        return f"box {width}x{height} smaller than compose.min_box_size={min_box_size}"
    ratio = width / height
    if not aspect["min"] <= ratio <= aspect["max"]:
        return f"box aspect {ratio:.2f} outside compose.aspect [{aspect['min']}, {aspect['max']}]"
    return None


def sample_position(rng: np.random.Generator, obj_w: int, obj_h: int, width: int, height: int
                    ) -> tuple[int, int] | None:
    """Top-left corner so that the object lies entirely inside the canvas; None if it cannot fit."""
    if obj_w > width or obj_h > height:
        return None
    return int(rng.integers(width - obj_w + 1)), int(rng.integers(height - obj_h + 1))


def paste(canvas: np.ndarray, obj: np.ndarray, mask: np.ndarray, x: int, y: int) -> None:
    """Copy the object's mask pixels onto the canvas in place (a hard paste)."""
    h, w = mask.shape
    np.copyto(canvas[y:y + h, x:x + w], obj, where=mask[:, :, None].astype(bool))
