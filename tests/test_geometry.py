"""Boxes come from mask pixels exactly; tiles cover the canvas exactly once; object and mask move together."""
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest

from pipeline import augment, compose, quilt, writers
from pipeline.render import draw_object
from tests.conftest import make_config


def random_object(rng):
    """A BGRA cut-out: a random convex polygon mask (aspect 0.5-1.5, so most draws pass), cropped tight."""
    while True:
        h, w = int(rng.integers(20, 90)), int(rng.integers(20, 90))
        pts = np.stack([rng.integers(0, w, 7), rng.integers(0, h, 7)], 1).astype(np.int32)
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [cv2.convexHull(pts)], 255)
        x, y, bw, bh = cv2.boundingRect(mask)
        if 0.5 <= bw / bh <= 1.5:
            photo = rng.integers(1, 256, (h, w, 3), dtype=np.uint8)
            return np.dstack([photo, mask])[y:y + bh, x:x + bw].copy()


def settings_dict(*overrides):
    import dataclasses

    return dataclasses.asdict(make_config(["quilt.width=400", "quilt.height=300", *overrides]))


def test_box_equals_the_painted_mask_pixels_over_many_draws():
    settings = settings_dict()
    rng = np.random.default_rng(1)
    for _ in range(300):
        obj = random_object(rng)
        img, mask, x, y, _, _ = draw_object(rng, obj, settings)
        labels = np.zeros((300, 400, 3), np.uint8)
        compose.paste(labels, np.full(img.shape, 255, np.uint8), mask, x, y)
        ys, xs = np.nonzero(labels[:, :, 0])
        assert compose.mask_box(mask, x, y) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        # the object lies entirely inside the canvas, and the box obeys the compose rules
        assert 0 <= x <= 400 - mask.shape[1] and 0 <= y <= 300 - mask.shape[0]
        w, h = xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()
        assert 0.2 <= w / h <= 2.0 and min(w, h) >= 8


def test_object_and_mask_get_the_same_warp():
    rng = np.random.default_rng(2)
    for _ in range(50):
        obj = random_object(rng)
        photo = cv2.merge([obj[:, :, 3]] * 3)  # photo bright exactly where the mask is
        params = {"brightness": 1.0, "blur_kernel": 1, "scale": float(rng.uniform(0.5, 2)),
                  "shear": float(rng.uniform(-0.3, 0.3))}
        warped_img, warped_mask = augment.warp_object(photo, obj[:, :, 3], params["scale"], params["shear"])
        bright = warped_img[:, :, 0] > 127
        inside = warped_mask > 0
        iou = (bright & inside).sum() / (bright | inside).sum()
        assert iou > 0.9
        assert set(np.unique(warped_mask)) <= {0, 255}  # nearest neighbour keeps the mask binary


def test_shear_moves_the_bottom_row_sideways():
    mask = np.full((50, 20), 255, np.uint8)
    _, warped = augment.warp_object(cv2.merge([mask] * 3), mask, 1.0, 0.4)
    top = np.nonzero(warped[0])[0]
    bottom = np.nonzero(warped[-1])[0]
    assert top.min() == 0 and bottom.min() >= 19  # x shifts by shear * y = 0.4 * 49


@pytest.mark.parametrize("width, height, rows, cols", [(1920, 1080, 2, 2), (641, 479, 3, 5), (100, 7, 7, 3)])
def test_tiles_cover_every_pixel_exactly_once(width, height, rows, cols):
    cover = np.zeros((height, width), np.int32)
    for x0, y0, x1, y1 in quilt.tile_grid(width, height, rows, cols):
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all()


def test_quilt_cells_show_one_background_each_with_no_seams():
    colours = [(10 * i, 255 - 20 * i, 100) for i in range(5)]
    backgrounds = [np.full((h, w, 3), c, np.uint8) for c, (w, h) in zip(colours, [(300, 200), (90, 400),
                                                                                  (640, 360), (50, 50), (333, 222)],
                                                                         strict=True)]
    sizes = [(b.shape[1], b.shape[0]) for b in backgrounds]
    rng = np.random.default_rng(3)
    grid = quilt.tile_grid(641, 359, 3, 4)
    tiles = quilt.sample_tiles(rng, grid, sizes, (1.0, 1.5))
    canvas = quilt.render(641, 359, tiles, backgrounds)
    for tile in tiles:
        x0, y0, x1, y1 = tile["dst"]
        assert (canvas[y0:y1, x0:x1] == colours[tile["background"]]).all()
        sx, sy, sw, sh = tile["src"]
        bw, bh = sizes[tile["background"]]
        assert 0 <= sx <= bw - sw and 0 <= sy <= bh - sh


def test_first_background_is_pinned():
    rng = np.random.default_rng(4)
    grid = quilt.tile_grid(200, 100, 2, 2)
    for pinned in range(3):
        tiles = quilt.sample_tiles(rng, grid, [(200, 100)] * 3, (1.0, 1.0), first_background=pinned)
        assert tiles[0]["background"] == pinned


def test_voc_uses_one_based_inclusive_pixels_and_escapes_names():
    xml = writers.voc_xml("000001.jpg", "a&b", 640, 480, [("a&b <cls>", (10, 20, 30, 45))])
    root = ET.fromstring(xml)
    assert root.findtext("filename") == "000001.jpg"
    assert (root.findtext("size/width"), root.findtext("size/height")) == ("640", "480")
    obj = root.find("object")
    assert obj.findtext("name") == "a&b <cls>"
    box = [int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
    assert box == [11, 21, 30, 45]  # 0-based edges [10, 30) -> 1-based pixels 11..30


def test_brightness_applied_while_painting_equals_brightening_the_canvas():
    rng = np.random.default_rng(5)
    backgrounds = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for w, h in [(300, 200), (160, 90)]]
    grid = quilt.tile_grid(320, 180, 2, 2)
    tiles = quilt.sample_tiles(rng, grid, [(300, 200), (160, 90)], (1.0, 1.3))
    for factor in (0.5, 1.0, 1.7):
        fused = quilt.render(320, 180, tiles, backgrounds, augment.brightness_lut(factor))
        assert np.array_equal(fused, augment.adjust_brightness(quilt.render(320, 180, tiles, backgrounds), factor))
