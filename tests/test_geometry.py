"""Boxes come from mask pixels exactly; tiles cover the canvas exactly once; object and mask move together."""
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest

from pipeline import augment, compose, quilt, writers
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


def params_for(**kw):
    base = {"scale": 1.0, "shear": 0.0, "rotation": 0.0, "flip_horizontal": False, "flip_vertical": False}
    return {**base, **kw}


def test_object_and_mask_get_the_same_warp():
    rng = np.random.default_rng(2)
    for _ in range(50):
        obj = random_object(rng)
        photo = cv2.merge([obj[:, :, 3]] * 3)  # photo bright exactly where the mask is
        params = params_for(scale=float(rng.uniform(0.5, 2)), shear=float(rng.uniform(-0.3, 0.3)),
                            rotation=float(rng.uniform(-180, 180)), flip_horizontal=bool(rng.integers(2)),
                            flip_vertical=bool(rng.integers(2)))
        warped_img, warped_mask = augment.warp_object(photo, obj[:, :, 3], augment.linear_part(params))
        bright = warped_img[:, :, 0] > 127
        inside = warped_mask > 0
        iou = (bright & inside).sum() / (bright | inside).sum()
        assert iou > 0.9
        assert set(np.unique(warped_mask)) <= {0, 255}  # nearest neighbour keeps the mask binary
        # nothing is cut off: the warped mask keeps its area (up to interpolation) and stays off the border
        assert abs(inside.sum() - (obj[:, :, 3] > 0).sum() * params["scale"] ** 2) < 0.15 * inside.sum() + 20


def test_shear_moves_the_bottom_row_sideways():
    mask = np.full((50, 20), 255, np.uint8)
    _, warped = augment.warp_object(cv2.merge([mask] * 3), mask, augment.linear_part(params_for(shear=0.4)))
    top = np.nonzero(warped[0])[0]
    bottom = np.nonzero(warped[-1])[0]
    assert top.min() == 0 and bottom.min() >= 19  # x shifts by shear * y = 0.4 * 49


def test_flips_mirror_exactly_and_a_quarter_turn_swaps_width_and_height():
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    mask = np.full((30, 50), 255, np.uint8)
    flipped, _ = augment.warp_object(img, mask, augment.linear_part(params_for(flip_horizontal=True)))
    assert np.array_equal(flipped, img[:, ::-1])
    flipped, _ = augment.warp_object(img, mask, augment.linear_part(params_for(flip_vertical=True)))
    assert np.array_equal(flipped, img[::-1])
    turned, turned_mask = augment.warp_object(img, mask, augment.linear_part(params_for(rotation=90)))
    assert turned_mask.shape == (50, 30)
    assert np.array_equal(turned, np.rot90(img))  # counter-clockwise, as the config says


@pytest.mark.parametrize("perspective", [False, True])
def test_box_size_modes_give_the_asked_size(perspective):
    rng = np.random.default_rng(8)
    width, height = 400, 300
    measure = {"area": lambda w, h: w * h / (width * height), "side_px": lambda w, h: max(w, h),
               "side_fraction": lambda w, h: max(w / width, h / height)}
    draws = {"area": (0.01, 0.2), "side_px": (30, 150), "side_fraction": (0.1, 0.5)}
    for n in range(30):
        mode = list(measure)[n % 3]
        obj = random_object(rng)
        hull = cv2.convexHull(cv2.findNonZero(obj[:, :, 3])).reshape(-1, 2)
        params = params_for(shear=float(rng.uniform(-0.3, 0.3)), rotation=float(rng.uniform(-30, 30)), size=mode,
                            perspective=rng.uniform(-0.2, 0.2, (4, 2)).tolist() if perspective else None)
        params[mode] = float(rng.uniform(*draws[mode]))
        params["scale"] = augment.size_scale(params, hull, obj.shape[:2], (width, height))
        transform = augment.object_transform(params, obj.shape[1], obj.shape[0])
        _, mask = augment.crop_to_mask(*augment.warp_object(obj[:, :, :3], obj[:, :, 3], transform))
        assert measure[mode](mask.shape[1], mask.shape[0]) == pytest.approx(params[mode], rel=0.1, abs=2)


def place_scene(rng, rules, n_objects, width=200, height=150):
    """Random placements through compose.place; returns what was accepted as (mask, x, y) too."""
    owner = compose.new_owner_map(width, height)
    placed, accepted = [], []
    for _ in range(n_objects):
        mask = random_object(rng)[:, :, 3]
        x, y = int(rng.integers(-40, width)), int(rng.integers(-40, height))
        if compose.place(owner, placed, mask, x, y, rules) is None:
            accepted.append((mask, x, y))
    return owner, placed, accepted


def test_placement_bookkeeping_matches_an_independent_repaint():
    rules = {"max_truncation": 0.3, "max_occlusion": 0.6, "max_iou": 0.7, "min_box_size": 6}
    rng = np.random.default_rng(9)
    margin, width, height = 100, 200, 150
    for _ in range(30):
        owner, placed, accepted = place_scene(rng, rules, 8, width, height)
        assert len(placed) == len(accepted)
        labels = np.zeros((height + 2 * margin, width + 2 * margin), np.int32)  # truncated parts land in the margin
        full = []
        for n, (mask, x, y) in enumerate(accepted, start=1):
            one = np.zeros_like(labels, bool)
            one[margin + y:margin + y + mask.shape[0], margin + x:margin + x + mask.shape[1]] = mask > 0
            labels[one] = n
            full.append(one)
        on_canvas = labels[margin:margin + height, margin:margin + width]
        boxes = []
        for n, obj in enumerate(placed, start=1):
            ys, xs = np.nonzero(on_canvas == n)
            assert obj.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert obj.visible == len(xs) and np.array_equal(owner == n, on_canvas == n)
            area = full[n - 1].sum()
            in_canvas = full[n - 1][margin:margin + height, margin:margin + width].sum()
            f = obj.fractions()
            assert f["visible"] == pytest.approx(len(xs) / area)
            assert f["truncated"] == pytest.approx(1 - in_canvas / area)
            assert f["occluded"] == pytest.approx((in_canvas - len(xs)) / area)
            assert f["truncated"] <= rules["max_truncation"] + 1e-9 and f["occluded"] <= rules["max_occlusion"] + 1e-9
            assert min(obj.box[2] - obj.box[0], obj.box[3] - obj.box[1]) >= rules["min_box_size"]
            boxes.append(obj.box)
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert compose.box_iou(a, b) < rules["max_iou"]


def test_rejected_placement_changes_nothing():
    rules = {"max_truncation": 0.0, "max_occlusion": 0.1, "max_iou": 1.0, "min_box_size": 1}
    owner = compose.new_owner_map(100, 100)
    placed = []
    square = np.full((40, 40), 255, np.uint8)
    assert compose.place(owner, placed, square, 10, 10, rules) is None
    before = owner.copy()
    assert "max_occlusion" in compose.place(owner, placed, square, 20, 20, rules)  # would hide 56%
    assert "max_truncation" in compose.place(owner, placed, square, 70, 70, rules)
    assert np.array_equal(owner, before) and len(placed) == 1 and placed[0].visible == 1600
    assert compose.place(owner, placed, square, 46, 10, rules) is None  # 4 px of overlap hides 10%: allowed
    assert placed[0].visible == 1600 - 4 * 40 and placed[0].box == (10, 10, 46, 50)


@pytest.mark.parametrize("width, height, rows, cols", [(1920, 1080, 2, 2), (641, 479, 3, 5), (100, 7, 7, 3)])
def test_tiles_cover_every_pixel_exactly_once(width, height, rows, cols):
    cover = np.zeros((height, width), np.int32)
    for x0, y0, x1, y1 in quilt.tile_grid(width, height, rows, cols):
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all()


def test_quilt_cells_show_one_background_each_with_hard_seams():
    colours = [(10 * i, 255 - 20 * i, 100) for i in range(5)]
    sizes = [(300, 200), (90, 400), (640, 360), (160, 120), (333, 222)]
    grid = quilt.tile_grid(641, 359, 3, 4)
    cell_w, cell_h = (max(c[i + 2] - c[i] for c in grid) for i in (0, 1))
    levels = [[quilt.level_size(w, h, cell_w, cell_h, z) for z in (1.0, 1.5)] for w, h in sizes]
    rng = np.random.default_rng(3)
    tiles = quilt.sample_tiles(rng, grid, levels, first_background=2)
    sources = [np.full((*levels[t["background"]][t["level"]][::-1], 3), colours[t["background"]], np.uint8)
               for t in tiles]
    canvas = quilt.render(641, 359, 3, 4, 0, tiles, sources)
    assert tiles[0]["background"] == 2
    for tile in tiles:
        x0, y0, x1, y1 = tile["dst"]
        assert (canvas[y0:y1, x0:x1] == colours[tile["background"]]).all()
        sx0, sy0, sx1, sy1 = tile["src"]
        lw, lh = levels[tile["background"]][tile["level"]]
        assert 0 <= sx0 < sx1 <= lw and 0 <= sy0 < sy1 <= lh and (sx1 - sx0, sy1 - sy0) == (x1 - x0, y1 - y0)


def test_voc_uses_one_based_inclusive_pixels_and_escapes_names():
    obj = {"class": "a&b <cls>", "box": [10, 20, 30, 45], "truncated": 0.0, "occluded": 0.0, "difficult": False}
    xml = writers.voc_xml("000001.jpg", "a&b", 640, 480, [obj])
    root = ET.fromstring(xml)
    assert root.findtext("filename") == "000001.jpg"
    assert (root.findtext("size/width"), root.findtext("size/height")) == ("640", "480")
    obj = root.find("object")
    assert obj.findtext("name") == "a&b <cls>"
    box = [int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
    assert box == [11, 21, 30, 45]  # 0-based edges [10, 30) -> 1-based pixels 11..30


def test_colour_applied_while_painting_equals_recolouring_the_canvas():
    rng = np.random.default_rng(5)
    sizes = [(300, 200), (160, 90)]
    grid = quilt.tile_grid(320, 180, 2, 2)
    levels = [[quilt.level_size(w, h, 160, 90, z) for z in (1.0, 1.3)] for w, h in sizes]
    images = [[rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for w, h in bg] for bg in levels]
    tiles = quilt.sample_tiles(rng, grid, levels)
    sources = [images[t["background"]][t["level"]] for t in tiles]
    plain = quilt.render(320, 180, 2, 2, 0, tiles, sources)
    for factor in (0.5, 1.0, 1.7):
        assert np.array_equal(quilt.render(320, 180, 2, 2, 0, tiles, sources, factor),
                              cv2.convertScaleAbs(plain, alpha=factor))
    gains = rng.uniform(0.8, 1.2, (len(tiles), 3))
    jittered = quilt.render(320, 180, 2, 2, 0, tiles, sources, 1.3, gains).astype(np.int32)
    for tile, gain in zip(tiles, gains, strict=True):
        x0, y0, x1, y1 = tile["dst"]
        expected = np.clip(plain[y0:y1, x0:x1] * (1.3 * gain) + 0.5, 0, 255).astype(np.int32)
        assert np.abs(jittered[y0:y1, x0:x1] - expected).max() <= 1
