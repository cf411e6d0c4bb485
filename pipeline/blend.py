"""Pasting an object (BGR image + {0, 255} mask) into the canvas at (x, y), in place.

The object may hang over any canvas edge: every paste works on the overlap only, and never on the whole canvas.
"""
from __future__ import annotations

import cv2
import numpy as np

METHODS = ("hard", "feather", "poisson", "motion")

Region = tuple[tuple[slice, slice], tuple[slice, slice]]


def clip_region(x: int, y: int, w: int, h: int, width: int, height: int) -> Region | None:
    """(canvas rows, cols), (object rows, cols) of the overlap of a w x h object at (x, y) with the canvas, or None."""
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return (slice(y0, y1), slice(x0, x1)), (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))


def soft_edge(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mask's outline pixels (rows, cols: the object pixels next to background, holes and the array edge
    included) and their alpha in 1/256 steps (uint16): the 3x3 mean of the {0, 255} mask there, 2/3 on a
    straight edge, 4/9 at a convex corner. Contour tracing finds them 2-3x faster than a full-mask test."""
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0, np.uint16)
    points = np.concatenate(contours).reshape(-1, 2)
    rows, cols = points[:, 1], points[:, 0]
    box = cv2.blur(mask, (3, 3), borderType=cv2.BORDER_CONSTANT)
    return rows, cols, (box[rows, cols].astype(np.uint16) * 257 + 128) >> 8


def paste_hard(canvas: np.ndarray, obj: np.ndarray, mask: np.ndarray, x: int, y: int,
               antialias: bool = False) -> None:
    """Copy the object's mask pixels onto the canvas (cv2.copyTo: same as np.copyto(where=), 100x faster).

    ``antialias``: the outline pixels are mixed with what they cover by ``soft_edge``'s alpha, so a mask warped
    with nearest-neighbour shows no 1-px staircase; the mask itself (the label) is untouched.
    """
    region = clip_region(x, y, mask.shape[1], mask.shape[0], canvas.shape[1], canvas.shape[0])
    if region is None:
        return
    (rows, cols), (obj_rows, obj_cols) = region
    window = canvas[rows, cols]
    if antialias:
        edge_rows, edge_cols, alpha = soft_edge(mask)
        if window.shape[:2] != mask.shape:  # keep the outline pixels on the canvas
            shown = ((edge_rows >= obj_rows.start) & (edge_rows < obj_rows.stop) & (edge_cols >= obj_cols.start)
                     & (edge_cols < obj_cols.stop))
            edge_rows, edge_cols = edge_rows[shown] - obj_rows.start, edge_cols[shown] - obj_cols.start
            alpha = alpha[shown]
        alpha = alpha[:, None]
        below = window[edge_rows, edge_cols].astype(np.uint16)
    cv2.copyTo(obj[obj_rows, obj_cols], mask[obj_rows, obj_cols], dst=window)
    if antialias:
        mixed = window[edge_rows, edge_cols] * alpha + below * (np.uint16(256) - alpha) + np.uint16(128)
        window[edge_rows, edge_cols] = mixed >> 8


def feather_alpha(mask: np.ndarray, radius: float) -> np.ndarray:
    """float32 alpha in [0, 1]: the mask blurred with sigma ``radius``, then zeroed outside the mask.

    Only the inside of the edge softens (about 0.5 on the outline, 1 deep inside), so the black around a cut-out
    never bleeds in. The array edge counts as outside. radius <= 0 gives mask / 255.
    """
    if radius <= 0:
        return mask.astype(np.float32) * np.float32(1 / 255)
    ksize = 2 * int(np.ceil(3 * radius)) + 1
    blurred = cv2.GaussianBlur(mask, (ksize, ksize), radius, borderType=cv2.BORDER_CONSTANT)  # 8-bit: bit-exact
    blurred = cv2.bitwise_and(blurred, blurred, mask=mask)
    return blurred.astype(np.float32) * np.float32(1 / 255)


def paste_alpha(canvas: np.ndarray, obj: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    """canvas = alpha * obj + (1 - alpha) * canvas, rounded; ``obj`` is uint8 or float32, ``alpha`` float32 HxW.

    cv2.blendLinear does the float32 arithmetic on the overlap only (4x faster than the numpy expression).
    """
    region = clip_region(x, y, alpha.shape[1], alpha.shape[0], canvas.shape[1], canvas.shape[0])
    if region is None:
        return
    (rows, cols), (obj_rows, obj_cols) = region
    window, part, weight = canvas[rows, cols], obj[obj_rows, obj_cols], alpha[obj_rows, obj_cols]
    if part.dtype == np.uint8:
        cv2.blendLinear(part, window, weight, 1 - weight, dst=window)
    else:
        blended = cv2.blendLinear(part.astype(np.float32, copy=False), window.astype(np.float32), weight, 1 - weight)
        cv2.convertScaleAbs(blended, dst=window)  # rounds and saturates; the blend is never negative


def motion_kernel(length: int, angle_deg: float) -> np.ndarray:
    """Normalised float32 kernel of odd size 2 * (length // 2) + 1: a centred segment of ``length`` px.

    The segment is sampled finely and splatted bilinearly, so any angle gives a smooth, centred line.
    """
    size = 2 * (length // 2) + 1
    theta = np.deg2rad(angle_deg)
    t = np.linspace(-(length - 1) / 2, (length - 1) / 2, 8 * length + 1)
    px, py = size // 2 + t * np.cos(theta), size // 2 - t * np.sin(theta)  # y points down
    x0, y0 = np.floor(px).astype(int), np.floor(py).astype(int)
    fx, fy = px - x0, py - y0
    kernel = np.zeros((size + 1, size + 1))
    for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy),
                           (1, 1, fx * fy)):
        np.add.at(kernel, (y0 + dy, x0 + dx), weight)
    kernel = kernel[:size, :size]
    return (kernel / kernel.sum()).astype(np.float32)


def _filter_constant(img: np.ndarray, kernel: np.ndarray, block: int = 11) -> np.ndarray:
    """cv2.filter2D (zero border, centred anchor) by kernel blocks of at most ``block`` px.

    OpenCV switches to a DFT above about 11x11, several times slower than direct filtering for a thin line kernel
    (7 ms against 0.4 ms per 300x300x4 float32), so a larger kernel is applied block by block, skipping empty ones.
    """
    size = kernel.shape[0]
    if size <= block:
        return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    height, width, centre = img.shape[0], img.shape[1], size // 2
    padded = cv2.copyMakeBorder(img, centre, centre, centre, centre, cv2.BORDER_CONSTANT)
    out = np.zeros_like(img)
    n = -(-size // block)
    edges = [round(i * size / n) for i in range(n + 1)]  # n near-equal blocks
    for by, by1 in zip(edges, edges[1:], strict=False):
        for bx, bx1 in zip(edges, edges[1:], strict=False):
            part = np.ascontiguousarray(kernel[by:by1, bx:bx1])
            if part.any():  # out(y, x) += sum part(i, j) * padded(y + by + i, x + bx + j)
                window = padded[by:by + height + part.shape[0] - 1, bx:bx + width + part.shape[1] - 1]
                out += cv2.filter2D(window, -1, part, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)[:height, :width]
    return out


def motion_blur(obj: np.ndarray, mask: np.ndarray, length: int, angle_deg: float
                ) -> tuple[np.ndarray, np.ndarray, int]:
    """Blur object and mask along a ``length`` px line at ``angle_deg`` (0 = horizontal, counter-clockwise).

    Returns (colour, alpha, pad): both padded by ``pad`` on every side, colour float32 and un-premultiplied,
    alpha float32; paste with ``paste_alpha(canvas, colour, alpha, x - pad, y - pad)``.
    length <= 1 returns the object, mask / 255 and pad 0.
    """
    if length <= 1:
        return obj, mask.astype(np.float32) * np.float32(1 / 255), 0
    pad = length // 2 + 1
    rgba = np.zeros((mask.shape[0] + 2 * pad, mask.shape[1] + 2 * pad, 4), np.float32)
    inner = rgba[pad:-pad, pad:-pad]
    alpha = inner[:, :, 3]
    np.multiply(mask, np.float32(1 / 255), out=alpha)
    np.multiply(obj, alpha[:, :, None], out=inner[:, :, :3])  # premultiplied colour
    rgba = _filter_constant(rgba, motion_kernel(length, angle_deg))
    # un-premultiply; where alpha is ~0 so is the colour, and what it becomes there never shows
    colour = rgba[:, :, :3] / np.maximum(rgba[:, :, 3:], np.float32(1e-6))
    return colour, np.clip(rgba[:, :, 3], 0, 1), pad


POISSON_CLONES = {"normal": cv2.NORMAL_CLONE, "mixed": cv2.MIXED_CLONE}


def paste_poisson(canvas: np.ndarray, obj: np.ndarray, mask: np.ndarray, x: int, y: int, clone: str = "normal",
                  keep: float = 0.0) -> None:
    """Poisson (gradient-domain) clone of the object's mask pixels into the canvas (cv2.seamlessClone), then
    ``keep`` of the object's own pixels mixed back over the clone: a pure clone takes on the colours around the
    object and can wash it out (a flat purple square on grass keeps 6% of its contrast, bench/README.md).

    seamlessClone needs the mask's box, plus one pixel all round, inside its destination, and it copies the whole
    destination; so it runs on a canvas window one pixel larger than the mask's box, with mask pixels on the canvas
    border dropped. It places the box of the mask at ``center - size // 2``. The outline pixels of the box are the
    solver's boundary and keep the canvas values; only mask pixels are written back (the solve also retouches
    holes and concave parts inside the box). A visible part under 3x3 is pasted hard instead.
    """
    height, width = canvas.shape[:2]
    region = clip_region(x, y, mask.shape[1], mask.shape[0], width, height)
    if region is None:
        return
    (rows, cols), (obj_rows, obj_cols) = region
    shown = mask[obj_rows, obj_cols]
    # keep mask pixels off the canvas border: those rows/cols of the visible part are the ones at index 0 or -1
    top, left = int(rows.start == 0), int(cols.start == 0)
    bottom, right = shown.shape[0] - int(rows.stop == height), shown.shape[1] - int(cols.stop == width)
    bx, by, bw, bh = cv2.boundingRect(shown[top:bottom, left:right]) if top < bottom and left < right else (0, 0, 0, 0)
    if bw < 3 or bh < 3:
        paste_hard(canvas, obj, mask, x, y)
        return
    ox, oy = obj_cols.start + left + bx, obj_rows.start + top + by  # box corner in object coordinates
    cx, cy = x + ox, y + oy  # and on the canvas, at least 1 px from every canvas edge
    src = np.zeros((bh + 2, bw + 2, 3), np.uint8)
    src_mask = np.zeros((bh + 2, bw + 2), np.uint8)
    src[1:-1, 1:-1] = obj[oy:oy + bh, ox:ox + bw]
    src_mask[1:-1, 1:-1] = mask[oy:oy + bh, ox:ox + bw]
    window = canvas[cy - 1:cy + bh + 1, cx - 1:cx + bw + 1]
    center = (1 + bw // 2, 1 + bh // 2)
    # seamlessClone scribbles on a one-channel mask it is given (opencv/opencv#12053 is back): pass a copy
    cloned = cv2.seamlessClone(src, np.ascontiguousarray(window), src_mask.copy(), center, POISSON_CLONES[clone])
    if keep > 0:
        cv2.addWeighted(src, keep, cloned, 1 - keep, 0, dst=cloned)
    cv2.copyTo(cloned, src_mask, dst=window)  # the solver also retouches non-mask pixels inside the box


def blend_object(canvas: np.ndarray, obj: np.ndarray, mask: np.ndarray, x: int, y: int, method: str,
                 params: dict, blending: dict | None = None) -> None:
    """Paste with one of ``METHODS``; ``params`` holds feather_radius or motion_length / motion_angle as needed,
    ``blending`` the settings of the methods (antialias, poisson_clone, poisson_keep; defaults when None)."""
    blending = blending or {}
    if method == "hard":
        paste_hard(canvas, obj, mask, x, y, blending.get("antialias", False))
    elif method == "feather":
        paste_alpha(canvas, obj, feather_alpha(mask, params["feather_radius"]), x, y)
    elif method == "poisson":
        paste_poisson(canvas, obj, mask, x, y, blending.get("poisson_clone", "normal"),
                      blending.get("poisson_keep", 0.0))
    elif method == "motion":
        colour, alpha, pad = motion_blur(obj, mask, params["motion_length"], params["motion_angle"])
        paste_alpha(canvas, colour, alpha, x - pad, y - pad)
    else:
        raise ValueError(f"unknown blending method {method!r}; expected one of {list(METHODS)}")


def kept_contrast(before: np.ndarray, after: np.ndarray, obj: np.ndarray, mask: np.ndarray) -> float:
    """How much of a hard paste's contrast a blend kept: the mean difference (grey levels, over mask pixels and
    channels) between the blended pixels and what they covered, over the same for the object's own pixels.
    1.0 when the object does not differ from what it covers (under one grey level), so there is nothing to lose."""
    hard = float(np.mean(cv2.mean(cv2.absdiff(obj, before), mask=mask)[:3]))
    if hard < 1.0:
        return 1.0
    return float(np.mean(cv2.mean(cv2.absdiff(after, before), mask=mask)[:3])) / hard


def paste_recognisable(canvas: np.ndarray, obj: np.ndarray, mask: np.ndarray, x: int, y: int, params: dict,
                       blending: dict) -> dict:
    """``blend_object`` with ``params['method']``, and a hard paste instead when the blend kept less than
    ``blending['min_contrast']`` of the object's contrast against what it covers (``kept_contrast``, over the
    object's visible part). Returns params with ``asked`` (the method drawn), ``method`` (the one used) and
    ``contrast`` (what the drawn blend kept, rounded; None for a hard paste, which keeps it all)."""
    asked = params["method"]
    used = {**params, "asked": asked, "contrast": None}
    region = clip_region(x, y, mask.shape[1], mask.shape[0], canvas.shape[1], canvas.shape[0])
    if asked == "hard" or region is None:
        blend_object(canvas, obj, mask, x, y, asked, params, blending)
        return used
    pad = params["motion_length"] // 2 + 1 if asked == "motion" else 0  # how far the blend can reach
    outer = clip_region(x - pad, y - pad, mask.shape[1] + 2 * pad, mask.shape[0] + 2 * pad, canvas.shape[1],
                        canvas.shape[0])[0]
    saved = canvas[outer].copy()
    blend_object(canvas, obj, mask, x, y, asked, params, blending)
    (rows, cols), (obj_rows, obj_cols) = region
    inner = (slice(rows.start - outer[0].start, rows.stop - outer[0].start),
             slice(cols.start - outer[1].start, cols.stop - outer[1].start))
    kept = kept_contrast(saved[inner], canvas[rows, cols], obj[obj_rows, obj_cols], mask[obj_rows, obj_cols])
    used["contrast"] = round(kept, 3)
    if kept < blending["min_contrast"]:
        canvas[outer] = saved
        paste_hard(canvas, obj, mask, x, y, blending["antialias"])
        used["method"] = "hard"
    return used
