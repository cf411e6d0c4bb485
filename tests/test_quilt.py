"""The background quilt: zoom levels, distinct windows per image, cross-faded seams, the manifest's tile boxes."""
from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest

from pipeline import demo, quilt
from pipeline.errors import ConfigError
from pipeline.sources import background_levels, read_image
from tests.conftest import make_config

DEFAULT_QUILT = make_config().quilt  # the shipped defaults


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return demo.ensure_demo(str(tmp_path_factory.mktemp("demo-cache")))


@pytest.fixture(scope="module")
def demo_levels(demo_root) -> tuple[list, list, list]:
    """Paint rects, and the demo backgrounds' zoom levels (arrays, sizes) as the bank stores them, by default."""
    cfg = DEFAULT_QUILT
    rects = quilt.paint_rects(cfg.width, cfg.height, cfg.rows, cfg.cols, quilt.fade_width(vars(cfg)))
    rect_w, rect_h = (max(r[i + 2] - r[i] for r in rects) for i in (0, 1))
    zooms = quilt.zoom_levels(vars(cfg.zoom))
    images = [background_levels(read_image(p), rect_w, rect_h, zooms) for p in sorted((demo_root / "back").iterdir())]
    return rects, images, [[(lv.shape[1], lv.shape[0]) for lv in bg] for bg in images]


def cell_pixels(canvas: np.ndarray, cells) -> list[np.ndarray]:
    return [canvas[y0:y1, x0:x1] for x0, y0, x1, y1 in cells]


def test_zoom_levels_are_geometric_and_the_largest_is_the_background_itself():
    assert quilt.zoom_levels({"min": 1.25, "max": 2.0, "levels": 3}) == [1.25, 1.5811, 2.0]
    assert quilt.zoom_levels({"min": 2.0, "max": 2.0, "levels": 3}) == [2.0]
    img = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    levels = background_levels(img, 960, 540, [1.25, 1.5811, 2.0])
    assert [lv.shape[:2] for lv in levels] == [(675, 1200), (854, 1518), (1080, 1920)]
    assert levels[-1] is img or np.shares_memory(levels[-1], img)  # zoom 2: the 960x540 window at its own size
    small = background_levels(img[:100, :150], 960, 540, [1.0])[0]  # enlarged to cover the window
    assert small.shape[:2] == (640, 960)


def test_every_demo_image_has_distinct_tiles_varying_in_zoom_and_position(demo_levels):
    """The demo's backgrounds have the cells' aspect (960x540): before, every tile was the whole background."""
    rects, images, sizes = demo_levels
    cells = quilt.tile_grid(1920, 1080, 2, 2)
    seen = set()
    for seed in range(30):
        rng = np.random.default_rng(seed)
        tiles = quilt.sample_tiles(rng, rects, sizes)
        assert len({t["background"] for t in tiles}) == 4  # four backgrounds for four cells
        canvas = quilt.render(1920, 1080, 2, 2, 8, tiles, [images[t["background"]][t["level"]] for t in tiles])
        for a, b in combinations(cell_pixels(canvas, cells), 2):
            assert not np.array_equal(a, b)
        seen |= {(t["level"], t["src"][0], t["src"][1]) for t in tiles}
    assert {level for level, _, _ in seen} == {0, 1, 2}
    assert len(seen) > 100  # positions vary too


@pytest.mark.parametrize("n_backgrounds", [1, 2, 3])
def test_tiles_sharing_a_background_are_distinct_and_overlap_little(demo_levels, n_backgrounds):
    """Fewer backgrounds than cells: each background serves several tiles, never with the same pixels; two
    tiles of one background overlap by at most half (guaranteed for a pair: default zoom.max=1.5 >= 4/3)."""
    rects, images, sizes = demo_levels
    cells = quilt.tile_grid(1920, 1080, 2, 2)
    overlaps = []
    for seed in range(20):
        tiles = quilt.sample_tiles(np.random.default_rng(seed), rects, sizes[:n_backgrounds], first_background=0)
        assert tiles[0]["background"] == 0
        counts = np.bincount([t["background"] for t in tiles], minlength=n_backgrounds)
        assert counts.max() - counts.min() <= 1  # spread evenly
        for a, b in combinations(tiles, 2):
            if a["background"] == b["background"]:
                wa, wb = ([v / s for v, s in zip(t["src"], sizes[t["background"]][t["level"]] * 2, strict=True)]
                          for t in (a, b))
                overlaps.append(quilt.box_iou(wa, wb))
                if counts[a["background"]] == 2:
                    assert overlaps[-1] <= quilt.MAX_SHARED_WINDOW
        canvas = quilt.render(1920, 1080, 2, 2, 0, tiles, [images[t["background"]][t["level"]] for t in tiles])
        for a, b in combinations(cell_pixels(canvas, cells), 2):
            assert not np.array_equal(a, b)
    assert max(overlaps) < 1


def test_a_window_that_cannot_move_is_mirrored_rather_than_repeated():
    """One background of exactly the cell's size and one zoom level: its four tiles are its four mirror images."""
    rng = np.random.default_rng(1)
    background = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    cells = quilt.tile_grid(160, 120, 2, 2)
    tiles = quilt.sample_tiles(rng, cells, [[(80, 60)]])
    assert sorted(t["flip"] for t in tiles) == sorted(quilt.FLIPS)
    canvas = quilt.render(160, 120, 2, 2, 0, tiles, [background] * 4)
    for a, b in combinations(cell_pixels(canvas, cells), 2):
        assert not np.array_equal(a, b)


def test_windows_that_can_barely_move_under_faded_seams_are_mirrored_too():
    """Faded seams grow each rect, so one level a little larger than the rects leaves a few px of play: such
    near-repeats of a window are mirrored like exact repeats, not painted the same way round four times."""
    rects = quilt.paint_rects(1920, 1080, 2, 2, 8)
    assert max(x1 - x0 for x0, _, x1, _ in rects) == 964
    for seed in range(5):
        tiles = quilt.sample_tiles(np.random.default_rng(seed), rects, [[(970, 546)]])
        assert sorted(t["flip"] for t in tiles) == sorted(quilt.FLIPS)
    cells = quilt.tile_grid(320, 240, 2, 2)  # one level 1.5 cells wide: windows may overlap by less than half, yet
    for seed in range(5):                   # four overlapping windows of one background are four mirrorings
        tiles = quilt.sample_tiles(np.random.default_rng(seed), cells, [[(240, 120)]])
        assert sorted(t["flip"] for t in tiles) == sorted(quilt.FLIPS)


@pytest.mark.parametrize("fade", [1, 6, 9])
def test_faded_seams_ramp_linearly_between_flat_tiles(fade):
    """Flat colours per tile: away from seams each cell is its colour; across a seam the value goes linearly
    from one tile's colour to the other's over ``fade`` px, and at a corner it is the bilinear mix."""
    width, height, rows, cols = 200, 120, 2, 3
    rects = quilt.paint_rects(width, height, rows, cols, fade)
    colours = np.array([[0, 40, 250], [90, 200, 10], [250, 0, 120], [30, 30, 30], [200, 220, 240], [5, 160, 80]])
    tiles = quilt.sample_tiles(np.random.default_rng(0), rects, [[(300, 200)]] * 6)
    sources = [np.full((200, 300, 3), colours[t["background"]], np.uint8) for t in tiles]
    canvas = quilt.render(width, height, rows, cols, fade, tiles, sources).astype(float)
    colour = np.array([colours[t["background"]] for t in tiles], float).reshape(rows, cols, 3)
    xs, ys = quilt.grid_edges(width, height, rows, cols)

    def share(pos, edges):  # (cell index, share of the next cell) at a pixel: strips start fade // 2 before edges
        for k, edge in enumerate(edges[1:-1]):
            t = (pos + 0.5 - (edge - fade // 2)) / fade
            if 0 < t < 1:
                return k, t
        return max(k for k in range(len(edges) - 1) if edges[k] <= pos), 0.0

    for y in range(height):
        r, ty = share(y, ys)
        for x in range(0, width, 7 if fade > 1 else 1):
            c, tx = share(x, xs)
            row = colour[r] if ty == 0 else (1 - ty) * colour[r] + ty * colour[r + 1]
            expected = row[c] if tx == 0 else (1 - tx) * row[c] + tx * row[c + 1]
            assert np.abs(canvas[y, x] - expected).max() <= 1.5, (x, y)  # <= 0.5 per mix, 3 at a corner


def test_hard_seams_paint_cells_only_and_fade_grows_the_rects():
    assert quilt.paint_rects(100, 60, 2, 2, 0) == quilt.tile_grid(100, 60, 2, 2)
    assert quilt.paint_rects(100, 60, 2, 2, 8) == [(0, 0, 54, 34), (46, 0, 100, 34), (0, 26, 54, 60),
                                                   (46, 26, 100, 60)]


def test_manifest_tiles_use_the_box_convention_and_map_into_each_file(generate, demo_root):
    out = generate(demo_root, "samples.per_class=2", "output.formats=[voc]")
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    cells = quilt.tile_grid(320, 240, 2, 2)
    zooms = quilt.zoom_levels(vars(DEFAULT_QUILT.zoom))
    for record in records:
        keys = set()
        for tile, cell in zip(record["tiles"], cells, strict=True):
            x0, y0, x1, y1 = tile["dst"]
            assert x0 <= cell[0] and y0 <= cell[1] and x1 >= cell[2] and y1 >= cell[3]  # grown by the fade
            assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240
            sx0, sy0, sx1, sy1 = tile["src"]
            assert 0 <= sx0 < sx1 <= demo.BACKGROUND_SIZE[0] and 0 <= sy0 < sy1 <= demo.BACKGROUND_SIZE[1]  # own pixels
            assert tile["zoom"] in zooms and tile["flip"] == "none"
            keys.add((tile["background"], tuple(tile["src"])))
        assert len(keys) == 4


@pytest.mark.parametrize("overrides, message", [
    (["quilt.seams=soft"], r"quilt.seams: must be one of \['hard', 'fade'\], got 'soft'"),
    (["quilt.seam_width=0"], r"quilt.seam_width: must be in \[1, 540\] .* got 0"),
    (["quilt.rows=4", "quilt.seam_width=300"], r"quilt.seam_width: must be in \[1, 270\] .* got 300"),
    (["quilt.zoom.levels=0"], r"quilt.zoom.levels: must be in \[1, 16\], got 0"),
])
def test_bad_quilt_settings_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config(overrides)
