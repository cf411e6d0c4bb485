"""Placement and occlusion bookkeeping; every box comes from mask pixels, never from blended pixels.

A scene keeps an ownership map: one uint8 per canvas pixel naming the labelled object that shows
there (0 = background). Objects are pasted in order, so a later object takes over the pixels it covers;
each object's visible mask, box and visible/occluded/truncated fractions are read off that map.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.blend import clip_region

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


def sample_position(rng: np.random.Generator, obj_w: int, obj_h: int, width: int, height: int,
                    max_truncation: float = 0.0) -> tuple[int, int] | None:
    """Top-left corner; the object may hang over each edge by up to ``max_truncation`` of its size.

    With no truncation allowed the object lies entirely inside; None when no position can work.
    """
    over_x, over_y = int(obj_w * max_truncation), int(obj_h * max_truncation)
    span_x, span_y = width - obj_w + 2 * over_x, height - obj_h + 2 * over_y
    if span_x < 0 or span_y < 0:
        return None
    return int(rng.integers(span_x + 1)) - over_x, int(rng.integers(span_y + 1)) - over_y


def sample_blend(rng: np.random.Generator, blending: dict, methods: tuple[str, ...]) -> dict:
    """One blending method by weight, with its parameters."""
    weights = np.array([blending[m] for m in methods], np.float64)
    method = methods[int(rng.choice(len(methods), p=weights / weights.sum()))]
    params = {"method": method}
    if method == "feather":
        params["feather_radius"] = float(rng.uniform(blending["feather_radius"]["min"],
                                                     blending["feather_radius"]["max"]))
    elif method == "motion":
        params["motion_length"] = int(round(rng.uniform(blending["motion_length"]["min"],
                                                        blending["motion_length"]["max"])))
        params["motion_angle"] = float(rng.uniform(0.0, 180.0))
    return params


# The drawn parameters each blending method uses (the others need none).
METHOD_PARAMS = {"hard": (), "feather": ("feather_radius",), "poisson": (), "motion": ("motion_length", "motion_angle")}


def sample_blend_params(rng: np.random.Generator, blending: dict) -> dict:
    """Every method's parameters, no method: for ``compose.blending.every``, where each image of a layout pastes
    with its own method, so what is drawn (and every later draw of the sample) cannot depend on the method."""
    return {"feather_radius": float(rng.uniform(blending["feather_radius"]["min"], blending["feather_radius"]["max"])),
            "motion_length": int(round(rng.uniform(blending["motion_length"]["min"],
                                                   blending["motion_length"]["max"]))),
            "motion_angle": float(rng.uniform(0.0, 180.0))}


def blend_for(drawn: dict, method: str) -> dict:
    """``method`` with the parameters it uses, taken from ``sample_blend_params``'s draw."""
    return {"method": method, **{key: drawn[key] for key in METHOD_PARAMS[method]}}


def box_iou(a: Box, b: Box) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@dataclass
class Placed:
    """A labelled object on the canvas: its pixel counts and its current visible box."""

    area: int  # mask pixels in all
    in_canvas: int  # mask pixels inside the canvas
    visible: int  # mask pixels not covered by later objects
    box: Box

    def fractions(self) -> dict:
        return {"visible": self.visible / self.area, "truncated": 1 - self.in_canvas / self.area,
                "occluded": (self.in_canvas - self.visible) / self.area}


def new_owner_map(width: int, height: int) -> np.ndarray:
    return np.zeros((height, width), np.uint8)


def place(owner: np.ndarray, placed: list[Placed], mask: np.ndarray, x: int, y: int, rules: dict) -> str | None:
    """Claim the mask's pixels at (x, y) for a new object, if every rule still holds; else why not.

    Rules (``compose`` config): the new object's truncation and visible size; for every earlier object
    its occlusion and visible size after being covered; pairwise IoU of all visible boxes.
    On rejection the ownership map and ``placed`` are left unchanged.
    """
    height, width = owner.shape
    region = clip_region(x, y, mask.shape[1], mask.shape[0], width, height)
    if region is None:
        return "object lies outside the canvas"
    (rows, cols), (obj_rows, obj_cols) = region
    shown = mask[obj_rows, obj_cols] > 0
    area, in_canvas = int(np.count_nonzero(mask)), int(np.count_nonzero(shown))
    if in_canvas < area * (1 - rules["max_truncation"]) - 1e-9:
        return f"{1 - in_canvas / area:.0%} off the canvas, above compose.max_truncation={rules['max_truncation']}"
    box = mask_box(shown.view(np.uint8), cols.start, rows.start)
    min_size = rules["min_box_size"]
    if box is None or box[2] - box[0] < min_size or box[3] - box[1] < min_size:
        return f"visible part smaller than compose.min_box_size={min_size}"

    window = owner[rows, cols]
    saved = window.copy()
    covered = np.bincount(window[shown], minlength=len(placed) + 1)
    window[shown] = len(placed) + 1
    updates, reason = {}, None
    for j in np.flatnonzero(covered[1:]):
        earlier = placed[j]
        visible = earlier.visible - int(covered[j + 1])
        if earlier.in_canvas - visible > rules["max_occlusion"] * earlier.area + 1e-9:
            reason = f"would hide more than compose.max_occlusion={rules['max_occlusion']} of object {j + 1}"
            break
        x0, y0, x1, y1 = earlier.box
        new_box = mask_box((owner[y0:y1, x0:x1] == j + 1).view(np.uint8), x0, y0)
        if new_box is None or min(new_box[2] - new_box[0], new_box[3] - new_box[1]) < min_size:
            reason = f"would leave object {j + 1} smaller than compose.min_box_size={min_size}"
            break
        updates[j] = (visible, new_box)
    if reason is None and rules["max_iou"] < 1:  # 1 = no limit
        boxes = [updates.get(j, (0, p.box))[1] for j, p in enumerate(placed)] + [box]
        worst = max((box_iou(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:]), default=0.0)
        if worst >= rules["max_iou"]:
            reason = f"box IoU {worst:.2f} reaches compose.max_iou={rules['max_iou']}"
    if reason is not None:
        window[...] = saved
        return reason
    for j, (visible, new_box) in updates.items():
        placed[j].visible, placed[j].box = visible, new_box
    placed.append(Placed(area, in_canvas, in_canvas, box))
    return None


def visible_mask(owner: np.ndarray, index: int, box: Box) -> np.ndarray:
    """The pixels object ``index`` (0-based) shows inside its visible box, as a {0, 255} crop at the box corner."""
    x0, y0, x1, y1 = box
    return (owner[y0:y1, x0:x1] == index + 1).view(np.uint8) * np.uint8(255)
