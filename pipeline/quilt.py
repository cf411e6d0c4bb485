"""Background quilt: a rows x cols grid of tiles, each a window cut from a background at one of its zoom levels.

Cells are integer cuts of the canvas, so neighbouring cells meet exactly. Each background is stored once per
zoom level (``zoom_levels``), scaled so that a window the size of a tile shows 1/zoom of the widest window of
that aspect: painting a tile is then a plain copy, never a resize. A hard seam is a straight cut between
cells; a faded seam cross-fades neighbouring tiles over ``fade`` px, each tile's weight a linear ramp across
the seam (the weights of all tiles sum to 1 everywhere), so each tile paints a rect grown into its neighbours.
Rects and windows are [x0, y0, x1, y1]: pixel edges, x1/y1 exclusive.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import cv2
import numpy as np

from pipeline.color import paint_tile
from pipeline.compose import box_iou

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 with x1/y1 exclusive

# Two tiles of one image cut from the same background aim to overlap by at most this IoU (in the background's
# own coordinates). Such tiles are cut from its most zoomed-in level: up to WINDOW_DRAWS random windows, then its
# corners, one of which is always far enough from any one earlier window when zoom.max >= 4/3.
MAX_SHARED_WINDOW = 0.5
WINDOW_DRAWS = 20


def grid_edges(width: int, height: int, rows: int, cols: int) -> tuple[list[int], list[int]]:
    """Column and row edges: the rounded multiples of width/cols and height/rows."""
    return ([round(c * width / cols) for c in range(cols + 1)], [round(r * height / rows) for r in range(rows + 1)])


def tile_grid(width: int, height: int, rows: int, cols: int) -> list[Rect]:
    """Canvas cells in row-major order."""
    xs, ys = grid_edges(width, height, rows, cols)
    return [(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(rows) for c in range(cols)]


def _grown(edges: list[int], i: int, fade: int) -> tuple[int, int]:
    """Cell i's span along one axis, grown across each inner edge to the end of that edge's fade ramp."""
    lo = edges[i] - fade // 2 if i > 0 else edges[0]
    hi = edges[i + 1] - fade // 2 + fade if i < len(edges) - 2 else edges[-1]
    return lo, hi


def paint_rects(width: int, height: int, rows: int, cols: int, fade: int = 0) -> list[Rect]:
    """What each tile paints, row-major: its cell, grown into its neighbours by the fade ramps (fade 0: the cell)."""
    xs, ys = grid_edges(width, height, rows, cols)
    rects = []
    for r in range(rows):
        y0, y1 = _grown(ys, r, fade)
        rects += [(x0, y0, x1, y1) for x0, x1 in (_grown(xs, c, fade) for c in range(cols))]
    return rects


def fade_width(quilt: dict) -> int:
    """The cross-fade width in px of the ``quilt`` settings; 0 for hard seams."""
    return quilt["seam_width"] if quilt["seams"] == "fade" else 0


def zoom_levels(zoom: dict) -> list[float]:
    """``zoom['levels']`` zoom factors spread geometrically over [min, max], ascending, without repeats
    (one level, or min == max: just min)."""
    return sorted({round(float(z), 4) for z in np.geomspace(zoom["min"], zoom["max"], zoom["levels"])})


def level_size(width: int, height: int, rect_w: int, rect_h: int, zoom: float) -> tuple[int, int]:
    """Size of a width x height background scaled so that a rect_w x rect_h window shows 1/zoom of the widest
    window of that aspect (never smaller than the window)."""
    factor = zoom * max(rect_w / width, rect_h / height)
    return max(rect_w, round(width * factor)), max(rect_h, round(height * factor))


def pick_background(rng: np.random.Generator, count: int, allowed: Sequence[int] | None) -> int:
    """A uniform draw among ``allowed`` (indices), or among all ``count`` backgrounds when it is None."""
    if allowed is None:
        return int(rng.integers(count))
    return int(allowed[int(rng.integers(len(allowed)))])


def draw_backgrounds(rng: np.random.Generator, n_backgrounds: int, n_cells: int, first: int | None = None
                     ) -> list[int]:
    """A background per cell: each at most once per image while there are enough, then again in a new draw.
    ``first`` pins the first cell (the original's base image)."""
    order = [] if first is None else [int(first)]
    left_out = first  # the first round leaves the pinned background out
    while len(order) < n_cells:
        free = n_backgrounds - (left_out is not None)
        if free == 0:
            left_out, free = None, n_backgrounds
        picks = rng.choice(free, size=min(free, n_cells - len(order)), replace=False)
        order += [int(p) + (left_out is not None and p >= left_out) for p in picks]
        left_out = None
    return order


# Mirror images of a window, in the order they are used when a window can only repeat an earlier one.
FLIPS = {"none": None, "horizontal": 1, "vertical": 0, "both": -1}


def _windows(rng: np.random.Generator, sizes: Sequence[Sequence[int]], width: int, height: int, shared: bool):
    """Candidate (level, x, y) windows: one random one; for a background ``shared`` by several tiles,
    WINDOW_DRAWS random ones on its last (most zoomed-in) level, then that level's 4 corners."""
    if not shared:
        level = int(rng.integers(len(sizes)))
        lw, lh = sizes[level]
        yield level, int(rng.integers(lw - width + 1)), int(rng.integers(lh - height + 1))
        return
    level, (lw, lh) = len(sizes) - 1, sizes[-1]
    for _ in range(WINDOW_DRAWS):
        yield level, int(rng.integers(lw - width + 1)), int(rng.integers(lh - height + 1))
    for x, y in ((0, 0), (lw - width, lh - height), (lw - width, 0), (0, lh - height)):
        yield level, x, y


def sample_tiles(rng: np.random.Generator, rects: Sequence[Rect], level_sizes: Sequence[Sequence[Sequence[int]]],
                 first_background: int | None = None, allowed_backgrounds: Sequence[int] | None = None) -> list[dict]:
    """Pick a background, a zoom level and a window position for every rect.

    ``allowed_backgrounds``: the indices the rects may draw (the sample's split's, ``output.split_by``; it holds
    ``first_background``); None = all.

    ``level_sizes[b]`` lists background b's level sizes (w, h) by ascending zoom, each at least as large as every
    rect. A background serves several tiles only when there are fewer backgrounds than tiles; its windows then
    overlap by at most MAX_SHARED_WINDOW where the sizes allow (always for two of them when zoom.max >= 4/3;
    else the least overlapping candidate is taken), and they never show the same pixels the same way round: a
    window that overlaps an earlier one at all is mirrored unlike it, which keeps up to four apart (a repeated
    window when one level is the size of the rect; near-repeats when faded seams grow the rects).
    """
    pool = list(range(len(level_sizes))) if allowed_backgrounds is None else list(allowed_backgrounds)
    first = None if first_background is None else pool.index(first_background)
    order = [pool[n] for n in draw_backgrounds(rng, len(pool), len(rects), first)]
    tiles, taken = [], {}  # taken: background -> its windows so far (fractions of the background) and flips
    for (x0, y0, x1, y1), bg in zip(rects, order, strict=True):
        width, height, earlier = x1 - x0, y1 - y0, taken.setdefault(bg, [])
        best = None
        for level, sx, sy in _windows(rng, level_sizes[bg], width, height, order.count(bg) > 1):
            lw, lh = level_sizes[bg][level]
            window = (sx / lw, sy / lh, (sx + width) / lw, (sy + height) / lh)
            overlap = max((box_iou(window, w) for w, _ in earlier), default=0.0)
            if best is None or overlap < best[0]:
                best = (overlap, level, [sx, sy, sx + width, sy + height], window)
            if overlap <= MAX_SHARED_WINDOW:
                break
        _, level, src, window = best
        used = {flip for w, flip in earlier if box_iou(window, w) > 0}
        flip = next((f for f in FLIPS if f not in used), "none")
        earlier.append((window, flip))
        tiles.append({"background": bg, "level": level, "src": src, "dst": [x0, y0, x1, y1], "flip": flip})
    return tiles


def ramp(positions: np.ndarray, edges: list[int], i: int, fade: int) -> np.ndarray:
    """Cell i's float32 weight at pixel ``positions`` along one axis: 1 inside, a linear ramp across each inner
    edge from 0 to 1 over ``fade`` px (pixel centres), 0 beyond; neighbouring cells' ramps sum to 1."""
    centres = positions.astype(np.float32) + np.float32(0.5)
    weight = np.ones(len(positions), np.float32)
    if i > 0:
        weight *= np.clip((centres - (edges[i] - fade // 2)) / fade, 0, 1)
    if i < len(edges) - 2:
        weight *= np.clip((edges[i + 1] - fade // 2 + fade - centres) / fade, 0, 1)
    return weight


@functools.lru_cache(maxsize=8)
def fade_plan(width: int, height: int, rows: int, cols: int, fade: int) -> tuple:
    """Per tile (row-major), the parts of its paint rect that earlier tiles reach, each as (rect, share): the
    tile's weight over the sum of its own and the earlier tiles' weights there, in 1/256 steps (uint16, repeated
    for the 3 channels). Painting the tiles in order and mixing each part as share x tile + (256 - share) x
    canvas leaves every pixel at sum(weight x tile) of all tiles. A pure function of the layout, kept per process.
    """
    xs, ys = grid_edges(width, height, rows, cols)
    plan = []
    for n, (x0, y0, x1, y1) in enumerate(paint_rects(width, height, rows, cols, fade)):
        r, c = divmod(n, cols)
        top = ys[r] - fade // 2 + fade if r > 0 else y0  # rows [y0, top) are the seam shared with the row above
        rects = ([(x0, y0, x1, top)] if r > 0 else []) + ([(x0, top, xs[c] - fade // 2 + fade, y1)] if c > 0 else [])
        parts = []
        for px0, py0, px1, py1 in rects:
            at_y, at_x = np.arange(py0, py1), np.arange(px0, px1)
            wy, wx = ramp(at_y, ys, r, fade), ramp(at_x, xs, c, fade)
            above = sum((ramp(at_y, ys, k, fade) for k in range(r)), np.zeros(len(at_y), np.float32))
            left = sum((ramp(at_x, xs, k, fade) for k in range(c)), np.zeros(len(at_x), np.float32))
            own = np.outer(wy, wx)
            share = np.rint(256 * own / (own + above[:, None] + np.outer(wy, left))).astype(np.uint16)
            parts.append(((px0, py0, px1, py1), np.repeat(share[:, :, None], 3, axis=2)))
        plan.append(tuple(parts))
    return tuple(plan)


def render(width: int, height: int, rows: int, cols: int, fade: int, tiles: Sequence[dict],
           sources: Sequence[np.ndarray], brightness: float = 1.0, gains: Sequence[Sequence[float]] | None = None,
           contrast: float = 1.0, gamma: float = 1.0) -> np.ndarray:
    """Paint every tile's window onto a new BGR canvas; ``sources[n]`` is the zoom level tile n cuts from.

    The colour change is applied on the way in (``color.paint_tile``): ``brightness`` multiplies every tile,
    ``gains`` (one (b, g, r) triple per tile) on top of it per channel, ``contrast`` about each tile's mean
    grey, then ``gamma``. Tiles are painted in order; with ``fade`` > 0, where a tile's
    paint rect overlaps earlier tiles it is mixed with them (``fade_plan``; integer arithmetic, as
    cv2.blendLinear is 2x slower on these thin strips).
    """
    canvas = np.empty((height, width, 3), np.uint8)
    plan = fade_plan(width, height, rows, cols, fade) if fade > 0 else [()] * len(tiles)
    for n, (tile, parts) in enumerate(zip(tiles, plan, strict=True)):
        x0, y0, x1, y1 = tile["src"]
        window = sources[n][y0:y1, x0:x1]
        if tile["flip"] != "none":
            window = cv2.flip(window, FLIPS[tile["flip"]])
        dx0, dy0, dx1, dy1 = tile["dst"]
        earlier = [canvas[py0:py1, px0:px1].astype(np.uint16) for (px0, py0, px1, py1), _ in parts]
        paint_tile(window, canvas[dy0:dy1, dx0:dx1], brightness, gains[n] if gains is not None else None, contrast,
                   gamma)
        for ((px0, py0, px1, py1), share), before in zip(parts, earlier, strict=True):
            part = canvas[py0:py1, px0:px1]
            mixed = part * share  # uint16: at most 255 x 256
            before *= np.uint16(256) - share
            mixed += before
            mixed += np.uint16(128)
            mixed >>= 8
            part[...] = mixed
    return canvas
