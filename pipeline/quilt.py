"""Background quilt: a rows x cols grid of tiles, each cut from a background and resized to fit.

Tile edges are integer cuts of the canvas, so neighbouring tiles meet exactly: no overlap, no gap.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from pipeline.color import channel_matrix

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 with x1/y1 exclusive


def tile_grid(width: int, height: int, rows: int, cols: int) -> list[Rect]:
    """Canvas cells in row-major order; cell edges are the rounded multiples of width/cols."""
    xs = [round(c * width / cols) for c in range(cols + 1)]
    ys = [round(r * height / rows) for r in range(rows + 1)]
    return [(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(rows) for c in range(cols)]


def sample_tiles(rng: np.random.Generator, grid: Sequence[Rect], background_sizes: Sequence[tuple[int, int]],
                 zoom: tuple[float, float], first_background: int | None = None,
                 allowed_backgrounds: Sequence[int] | None = None) -> list[dict]:
    """Pick a background and a source window for every cell.

    The window keeps the cell's aspect ratio and is as large as the background allows, divided by a
    zoom factor drawn from ``zoom``. ``first_background`` pins the first cell (the original's base image).
    ``allowed_backgrounds``: the indices a cell may draw (the sample's split's, ``output.split_by``); None = all.
    """
    tiles = []
    for cell_idx, (x0, y0, x1, y1) in enumerate(grid):
        if cell_idx == 0 and first_background is not None:
            bg = int(first_background)
        else:
            bg = pick_background(rng, len(background_sizes), allowed_backgrounds)
        bw, bh = background_sizes[bg]
        tw, th = x1 - x0, y1 - y0
        factor = float(rng.uniform(zoom[0], zoom[1])) * max(tw / bw, th / bh)
        sw = min(bw, max(1, round(tw / factor)))
        sh = min(bh, max(1, round(th / factor)))
        sx = int(rng.integers(bw - sw + 1))
        sy = int(rng.integers(bh - sh + 1))
        tiles.append({"background": bg, "src": [sx, sy, sw, sh], "dst": [x0, y0, x1, y1]})
    return tiles


def pick_background(rng: np.random.Generator, count: int, allowed: Sequence[int] | None) -> int:
    """A uniform draw among ``allowed`` (indices), or among all ``count`` backgrounds when it is None."""
    if allowed is None:
        return int(rng.integers(count))
    return int(allowed[int(rng.integers(len(allowed)))])


def render(width: int, height: int, tiles: Sequence[dict], backgrounds: Sequence[np.ndarray],
           brightness: float = 1.0, gains: Sequence[Sequence[float]] | None = None) -> np.ndarray:
    """Paint every tile's window, resized to its cell, onto a new BGR canvas.

    The colour change is applied on the way in (one pass, not two): ``brightness`` multiplies every tile,
    ``gains`` (one (b, g, r) triple per tile) on top of it per channel. A uniform brightness uses
    ``cv2.convertScaleAbs`` and per-channel gains ``cv2.transform``: both 3-5x faster than lookup tables at 1080p.
    """
    canvas = np.empty((height, width, 3), np.uint8)
    for n, tile in enumerate(tiles):
        sx, sy, sw, sh = tile["src"]
        x0, y0, x1, y1 = tile["dst"]
        window = backgrounds[tile["background"]][sy:sy + sh, sx:sx + sw]
        size = (x1 - x0, y1 - y0)
        if (sw, sh) != size:
            shrinking = sw > size[0] or sh > size[1]
            window = cv2.resize(window, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        cell = canvas[y0:y1, x0:x1]
        matrix = channel_matrix(brightness, gains[n]) if gains is not None else None
        if matrix is not None:
            cv2.transform(window, matrix, dst=cell)
        elif brightness != 1.0:
            cv2.convertScaleAbs(window, dst=cell, alpha=brightness)
        else:
            cell[...] = window
    return canvas
