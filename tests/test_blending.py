"""Objects stay recognisable: blends that wash an object out fall back to a hard paste (and say so), hard pastes
get a soft outline while the label mask stays exact."""
from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from pipeline import blend, compose, demo
from pipeline.errors import ConfigError
from pipeline.sources import decode_object, scan
from tests.conftest import make_config

# pycocotools' RLE decoder predates numpy 2's copy keyword (as in test_scenes.py)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
BLENDING = dataclasses.asdict(make_config().compose.blending)  # the shipped defaults
GREEN, PURPLE, GREY, ORANGE = (60, 140, 70), (160, 40, 160), (128, 128, 128), (40, 140, 230)


def square(size: int, colour) -> tuple[np.ndarray, np.ndarray]:
    return np.full((size, size, 3), colour, np.uint8), np.full((size, size), 255, np.uint8)


def disc(size: int, colour) -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (size // 2, size // 2), size // 2 - 1, 255, -1)
    return np.full((size, size, 3), colour, np.uint8), mask


def surface(colour, seed: int, shape=(240, 320)) -> np.ndarray:
    """A flat colour with some grain, like a photo of grass or a painted rim."""
    noise = np.random.default_rng(seed).integers(-12, 13, (*shape, 3))
    return np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)


def contrast(before: np.ndarray, after: np.ndarray, mask: np.ndarray) -> float:
    """Mean colour difference over the mask, in grey levels (independent of blend.kept_contrast)."""
    on = mask > 0
    return float(np.abs(after[on].astype(int) - before[on].astype(int)).mean())


@pytest.fixture(scope="module")
def demo_inputs(tmp_path_factory):
    root = demo.ensure_demo(str(tmp_path_factory.mktemp("demo-cache")))
    catalog = scan(root, "photo", "photo_copy", "back")
    objects = [decode_object(s, 8)[0] for name in catalog.classes for s in catalog.objects[name]]
    return objects, [cv2.imread(str(p))[:240, :320] for p in catalog.backgrounds]


def test_every_blend_keeps_the_object_recognisable_for_many_draws(demo_inputs):
    """Demo objects on demo backgrounds, and the adversarial pairs of the issue: whatever method is drawn, the
    pasted object keeps at least min_contrast of the contrast a hard paste gives against what it covers."""
    objects, backgrounds = demo_inputs
    pairs = [(o[:, :, :3], o[:, :, 3], b) for o in objects[::2] for b in backgrounds[:2]]
    pairs += [(*square(90, PURPLE), surface(GREEN, 1)), (*disc(90, GREY), surface(ORANGE, 2))]
    rng = np.random.default_rng(0)
    asked_used = set()
    for n in range(160):
        obj, mask, background = pairs[n % len(pairs)]
        scale = float(rng.uniform(0.4, 0.8))
        obj = cv2.resize(obj, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        x, y = int(rng.integers(-20, 320 - mask.shape[1] + 20)), int(rng.integers(-20, 240 - mask.shape[0] + 20))
        params = compose.sample_blend(rng, {**BLENDING, "hard": 0.1, "feather": 0.3, "poisson": 0.4, "motion": 0.2},
                                      blend.METHODS)
        canvas = background.copy()
        used = blend.paste_recognisable(canvas, obj, mask, x, y, params, BLENDING)
        (rows, cols), (obj_rows, obj_cols) = blend.clip_region(x, y, mask.shape[1], mask.shape[0], 320, 240)
        before, after = background[rows, cols], canvas[rows, cols]
        shown, own = mask[obj_rows, obj_cols], obj[obj_rows, obj_cols]
        kept = contrast(before, after, shown) / max(contrast(before, own, shown), 1.0)
        assert kept >= BLENDING["min_contrast"] - 0.05, (n, used)  # 0.05: the soft outline of a hard paste
        assert used["asked"] == params["method"]
        assert (used["method"] == "hard") == (used["asked"] == "hard" or used["contrast"] < BLENDING["min_contrast"])
        asked_used.add((used["asked"], used["method"]))
    assert {("feather", "feather"), ("poisson", "poisson"), ("motion", "motion")} <= asked_used


@pytest.mark.parametrize("obj, mask, background", [(*square(60, PURPLE), surface(GREEN, 3)),
                                                   (*disc(60, GREY), surface(ORANGE, 4))],
                         ids=["purple-on-green", "grey-on-orange"])
def test_a_pure_poisson_clone_washes_the_object_out_and_falls_back_to_hard(obj, mask, background):
    blending = {**BLENDING, "poisson_keep": 0.0}
    clone = background.copy()
    blend.blend_object(clone, obj, mask, 100, 80, "poisson", {}, blending)
    assert blend.kept_contrast(background[80:140, 100:160], clone[80:140, 100:160], obj, mask) < 0.15
    canvas = background.copy()
    used = blend.paste_recognisable(canvas, obj, mask, 100, 80, {"method": "poisson"}, blending)
    assert used["asked"] == "poisson" and used["method"] == "hard" and used["contrast"] < 0.15
    hard = background.copy()
    blend.paste_hard(hard, obj, mask, 100, 80, antialias=True)
    assert np.array_equal(canvas, hard)  # the washed-out clone is gone entirely
    kept = background.copy()  # with the shipped share of the object mixed back, Poisson is kept
    assert blend.paste_recognisable(kept, obj, mask, 100, 80, {"method": "poisson"}, BLENDING)["method"] == "poisson"


def all_in(full: np.ndarray, steps) -> np.ndarray:
    """Pixels of the 1-px padded bool mask ``full`` whose neighbours at these steps are all in it (padding off)."""
    inside = full.copy()
    for dy, dx in steps:
        inside &= np.roll(np.roll(full, dy, 0), dx, 1)
    return inside[1:-1, 1:-1]


def test_hard_paste_softens_only_the_inside_outline():
    mask = np.zeros((41, 41), np.uint8)
    cv2.fillPoly(mask, [np.array([[2, 6], [38, 1], [33, 39], [5, 30]], np.int32)], 255)  # slanted: staircases
    before_mask = mask.copy()
    obj, bg = np.full((41, 41, 3), 250, np.uint8), 10
    for x, y in ((30, 20), (-12, -9), (100, 60)):  # inside, over the top-left corner, over the bottom-right
        canvas = np.full((120, 160, 3), bg, np.uint8)
        blend.paste_hard(canvas, obj, mask, x, y, antialias=True)
        (rows, cols), (obj_rows, obj_cols) = blend.clip_region(x, y, 41, 41, 160, 120)
        shown, pixels = mask[obj_rows, obj_cols] > 0, canvas[rows, cols, 0].astype(int)
        full = np.zeros((43, 43), bool)
        full[1:-1, 1:-1] = mask > 0
        eight = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        interior = all_in(full, eight)[obj_rows, obj_cols]
        assert np.all(pixels[interior] == 250)
        outline = shown & ~all_in(full, [(-1, 0), (1, 0), (0, -1), (0, 1)])[obj_rows, obj_cols]  # always softened
        assert outline.any() and np.all((pixels[outline] > bg) & (pixels[outline] < 250))
        assert np.all(pixels[shown] > bg)
        assert np.all(pixels[~shown] == bg)
        untouched = np.ones((120, 160), bool)
        untouched[rows, cols] = False
        assert np.all(canvas[untouched] == bg)
    assert np.array_equal(mask, before_mask)
    plain = np.full((120, 160, 3), bg, np.uint8)
    blend.paste_hard(plain, obj, mask, 30, 20)
    assert set(np.unique(plain)) == {bg, 250}  # without antialias: a binary copy


def test_antialiasing_changes_pixels_only_along_outlines_and_never_the_labels(layout, generate):
    run = ["compose.blending.hard=1", "compose.blending.feather=0", "compose.blending.poisson=0",
           "compose.blending.motion=0", "output.coco_segmentation=rle", "output.formats=[coco]",
           "samples.per_class=3", "output.previews=false"]
    soft = generate(layout, *run)
    binary = generate(layout, *run, "compose.blending.antialias=false")

    def records(out):
        return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]

    def visible_masks(out) -> dict:
        """COCO file_name -> its objects' visible masks, from the COCO files through pycocotools."""
        masks = {}
        for path in sorted((out / "annotations").rglob("*.json")):
            coco = COCO(str(path))
            for image_id in coco.getImgIds():
                anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
                masks[coco.loadImgs(image_id)[0]["file_name"]] = [coco.annToMask(a) for a in anns]
        return masks

    soft_masks, binary_masks = visible_masks(soft), visible_masks(binary)
    assert soft_masks.keys() == binary_masks.keys() and len(soft_masks) == 6
    differs = 0
    for a, b in zip(records(soft), records(binary), strict=True):
        assert [o["box"] for o in a["objects"]] == [o["box"] for o in b["objects"]]
        (name,) = [n for n in soft_masks if a["image"].endswith(n)]  # file_name: relative to the run or images/
        masks = soft_masks[name]
        assert len(masks) == len(a["objects"])
        for m, other in zip(masks, binary_masks[name], strict=True):
            assert np.array_equal(m, other) and set(np.unique(m)) <= {0, 1}  # labels: binary and unchanged
        image_a = cv2.imread(str(soft / a["image"])).astype(int)
        image_b = cv2.imread(str(binary / b["image"])).astype(int)
        near = np.zeros(image_a.shape[:2], np.uint8)
        for m in masks:
            near |= cv2.morphologyEx(m, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        near = cv2.dilate(near, np.ones((49, 49), np.uint8))  # JPEG: 16x16 blocks, chroma upsampling across them
        changed = np.any(image_a != image_b, axis=2)
        assert not np.any(changed & (near == 0))
        differs += int(changed.any())
    assert differs > 0


def test_the_manifest_records_the_method_asked_for_and_the_one_used(layout, generate):
    out = generate(layout, "compose.blending.hard=0", "compose.blending.feather=0", "compose.blending.poisson=1",
                   "compose.blending.motion=0", "compose.blending.poisson_keep=0", "samples.per_class=4",
                   "output.formats=[voc]", "output.previews=false")
    blends = [o["blend"] for line in (out / "manifest.jsonl").read_text().splitlines()
              for o in json.loads(line)["objects"]]
    assert {b["asked"] for b in blends} == {"poisson"}
    for b in blends:
        assert b["method"] == ("hard" if b["contrast"] < 0.5 else "poisson")
    assert {b["method"] for b in blends} == {"hard", "poisson"}  # make_layout's flat ellipses: both happen


@pytest.mark.parametrize("override, message", [
    ("compose.blending.poisson_clone=monochrome", r"compose.blending.poisson_clone: must be one of \['normal', "
                                                  r"'mixed'\], got 'monochrome'"),
    ("compose.blending.poisson_keep=1.5", r"compose.blending.poisson_keep: must be in \[0, 1\], got 1.5"),
    ("compose.blending.min_contrast=-0.1", r"compose.blending.min_contrast: must be in \[0, 1\], got -0.1"),
])
def test_bad_blending_settings_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        make_config([override])
