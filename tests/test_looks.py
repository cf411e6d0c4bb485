"""Object size units and per-class ranges, perspective, contrast/gamma, shadows and single-background scenes."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from pipeline import augment, color, quilt, render, runner, shadow, sources
from pipeline.backends import parallel_backend
from pipeline.errors import ConfigError, InputError
from pipeline.schema import augment_per_class
from tests.conftest import SMALL, make_config, make_layout
from tests.test_geometry import random_object

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def box_size(box: list[int]) -> tuple[int, int]:
    return box[2] - box[0], box[3] - box[1]


def ellipse_cutout(size: int) -> np.ndarray:
    """A BGRA cut-out of one textured ellipse at ``size`` px wide (the same object at any resolution)."""
    h = round(size * 0.6)
    mask = np.zeros((h, size), np.uint8)
    cv2.ellipse(mask, (size // 2, h // 2), (size // 2 - 1, h // 2 - 1), 0, 0, 360, 255, -1)
    yy, xx = np.mgrid[0:h, 0:size]
    photo = np.dstack([80 + 100 * xx / size, 60 + 120 * yy / h, np.full((h, size), 150.0)]).astype(np.uint8)
    photo[mask == 0] = 0
    return np.dstack([photo, mask])


# ---------------------------------------------------------------------------------------------- size units

def test_normalised_size_does_not_depend_on_the_photo_resolution():
    small, large = ellipse_cutout(40), ellipse_cutout(160)  # one object photographed at two resolutions
    factors = sources.normalise_factors([sources.object_size(small), sources.object_size(large)])
    assert factors[0] == pytest.approx(4 * factors[1], rel=0.05)
    # (erosion works in the cut-out's own pixels, so it stays off here: see docs/size.md)
    settings = dataclasses.asdict(make_config(["augment.size=normalised", "augment.normalised.min=0.5",
                                               "augment.normalised.max=2", "augment.perspective.enabled=true",
                                               "augment.erode.enabled=false"]))
    for mode in ("normalised", "scale"):
        cfg = {**settings["augment"], "size": mode}
        sizes, scales = [], []
        for obj, factor in zip((small, large), factors, strict=True):
            hull = sources.mask_hull(obj[:, :, 3])
            boxes = []
            for n in range(60):  # the same draws for both photos
                params = augment.sample_object_params(np.random.default_rng(n), cfg)
                params["scale"] = augment.size_scale(params, hull, obj.shape[:2], (640, 480), factor)
                _, mask = augment.apply_object(obj[:, :, :3], obj[:, :, 3], params)
                boxes.append(mask.shape[::-1])
                scales.append(params["scale"])
            sizes.append(np.array(boxes, float))
        if mode == "normalised":  # the same sizes draw for draw, up to one pixel of the small photo (edge rounding)
            small_pixel = np.array(scales[:60])[:, None]
            assert np.all(np.abs(sizes[1] - sizes[0]) <= 1 + small_pixel)
            assert sizes[0].max() / sizes[0].min() > 3  # and the range is really used
        else:  # the photo's resolution decides
            assert np.median(sizes[1] / sizes[0]) == pytest.approx(4, rel=0.1)


def test_normalised_mode_end_to_end(tmp_path, generate):
    root = make_layout(tmp_path / "in", classes=("coin",), photos=0, with_copies=False)
    for n, size in enumerate((40, 120)):
        cv2.imwrite(str(root / "photo" / "coin" / f"{n}.png"), ellipse_cutout(size))
    out = generate(root, "augment.size=normalised", "augment.normalised.min=1", "augment.normalised.max=1",
                   "augment.rotation.enabled=false", "augment.shear.enabled=false", "augment.erode.enabled=false",
                   "augment.flip.enabled=false", "compose.objects.max=1", "compose.max_truncation=0",
                   "samples.per_class=4")
    sizes = {r["objects"][0]["photo"]: box_size(r["objects"][0]["box"]) for r in manifest(out)}
    (w0, h0), (w1, h1) = sizes["photo/coin/0.png"], sizes["photo/coin/1.png"]
    assert abs(w0 - w1) <= 2 and abs(h0 - h1) <= 2 and 76 < w0 < 84  # both at the class's median size, 80 px wide


def test_per_class_size_range_is_honoured(layout, generate):
    ranges = {"cat": (20, 26), "dog": (50, 60)}
    out = generate(layout, "augment.size=side_px", "augment.side_px.min=50", "augment.side_px.max=60",
                   "+augment.classes.cat.side_px.min=20", "+augment.classes.cat.side_px.max=26",
                   "augment.erode.enabled=false", "compose.max_occlusion=0", "compose.max_truncation=0",
                   "compose.max_iou=0.99", "samples.per_class=5")
    seen = set()
    for record in manifest(out):
        for obj in record["objects"]:
            low, high = ranges[obj["class"]]
            assert low - 1 <= max(box_size(obj["box"])) <= high + 1, obj
            assert low <= obj["augment"]["side_px"] <= high
            seen.add(obj["class"])
    assert seen == {"cat", "dog"}


def test_a_misspelt_class_is_rejected_with_the_class_list(layout, generate, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match=r"^augment.classes.caat: no such class; the classes are \['cat', 'dog'\]$"):
        generate(layout, "+augment.classes.caat.scale.max=1", out=out)
    assert [p.name for p in out.iterdir()] == ["run.json"]  # checked before anything else is written


@pytest.mark.parametrize("overrides, message", [
    (["+augment.classes.cat.scale.min=20", "+augment.classes.cat.scale.max=30"],
     r"photo/cat/0.png: object is at least \d+x\d+ px at its smallest allowed size \(augment.classes.cat.scale\)"),
    (["augment.size=side_px", "augment.side_px.min=400", "augment.side_px.max=500"],
     r"at its smallest allowed size \(augment.side_px\), which does not fit the 320x240 canvas"),
    (["augment.size=side_fraction", "augment.side_fraction.min=0.01", "augment.side_fraction.max=0.02"],
     r"at its largest allowed size \(augment.side_fraction.max\), below compose.min_box_size=8"),
    (["augment.size=area", "augment.area.min=0.05", "augment.area.max=0.1", "compose.objects.min=30",
      "compose.objects.max=30", "compose.max_occlusion=0", "compose.max_truncation=0"],
     r"compose.objects.min=30: even 30 copies of the smallest object at its smallest size need 11520\d visible px"),
])
def test_fit_checks_use_each_class_and_size_unit(layout, generate, overrides, message):
    with pytest.raises(InputError, match=message):
        generate(layout, *overrides)


@pytest.mark.parametrize("override, message", [
    ("+augment.classes.cat.noise.max=1", r"augment.classes.cat.noise: not a per-object setting"),
    ("+augment.classes.cat.scale.mx=1", r"augment.classes.cat.scale.mx: unknown key; the keys here are \['min'"),
    ("+augment.classes.cat.scale.max=big", r"augment.classes.cat.scale.max: must be a number, got 'big'"),
    ("+augment.classes.cat.scale.min=3", r"augment.classes.cat.scale: min must be <= max, got min=3.0, max=2.0"),
    ("+augment.classes.cat.rotation.enabled=1", r"augment.classes.cat.rotation.enabled: must be true or false"),
    ("+augment.classes.cat.area.max=0.02", r"augment.classes.cat.area: is set, but class 'cat' is sized by "
                                           r"augment.size=scale.*\+augment.classes.cat.size=area"),
    ("+augment.classes.cat.size=weight", r"augment.classes.cat.size: must be one of \['scale'"),
])
def test_class_overrides_are_validated_like_every_key(override, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        make_config([override])


def test_class_overrides_merge_over_the_run_settings():
    cfg = make_config(["augment.size=area", "+augment.classes.coin.area.max=0.02",
                       "+augment.classes.coin.rotation.enabled=false"])
    coin, cup = augment_per_class(dataclasses.asdict(cfg)["augment"], ["coin", "cup"])
    assert coin["area"] == {"min": 0.005, "max": 0.02} and not coin["rotation"]["enabled"]
    assert cup["area"] == {"min": 0.005, "max": 0.1} and cup["rotation"]["enabled"]
    assert "classes" not in coin and coin["shear"] == cup["shear"]


# ---------------------------------------------------------------------------------------------- perspective

def test_perspective_box_is_the_warped_mask_extent():
    rng = np.random.default_rng(3)
    for _ in range(150):
        obj = random_object(rng)
        h, w = obj.shape[:2]
        params = {"scale": float(rng.uniform(0.5, 2)), "shear": float(rng.uniform(-0.3, 0.3)),
                  "rotation": float(rng.uniform(-180, 180)), "flip_horizontal": bool(rng.random() < 0.5),
                  "flip_vertical": False, "perspective": augment.sample_perspective(rng, {"enabled": True,
                                                                                          "min": 0.0, "max": 0.4})}
        transform = augment.object_transform(params, w, h)
        img, mask = augment.warp_object(obj[:, :, :3], obj[:, :, 3], transform)
        # nothing is cut off: the mask's pixel squares, mapped by the same warp, lie inside the output array
        matrix, size = augment.projective_warp_matrix(w, h, transform)
        ys, xs = np.nonzero(obj[:, :, 3])
        corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (-0.5, 0.5) for dy in (-0.5, 0.5)])
        mapped = cv2.perspectiveTransform(corners[None].astype(np.float64), matrix)[0]
        assert mask.shape[::-1] == size and mapped.min() > -0.5 - 1e-6
        assert np.all(mapped.max(axis=0) < np.array(size) - 0.5 + 1e-6)
        # the mask is the source mask sampled at every output pixel centre (mapped back; a few ties may differ),
        # so the box, taken from it, is the warped mask's extent
        v, u = np.mgrid[0:size[1], 0:size[0]]
        back = cv2.perspectiveTransform(np.stack([u, v], -1).reshape(1, -1, 2).astype(np.float64),
                                        np.linalg.inv(matrix))[0]
        col, row = np.rint(back[:, 0]).astype(int), np.rint(back[:, 1]).astype(int)
        inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        reference = np.zeros(len(back), np.uint8)
        reference[inside] = obj[:, :, 3][row[inside], col[inside]]
        reference = reference.reshape(mask.shape)
        assert np.count_nonzero(reference != mask) <= 0.01 * np.count_nonzero(reference) + 2
        x, y, bw, bh = cv2.boundingRect(mask)
        assert bw > 0 and np.abs(np.subtract(cv2.boundingRect(reference), (x, y, bw, bh))).max() <= 1
        # and the size modes' prediction of that box, from the mask's hull alone (thin slivers a strong tilt
        # shrinks below a pixel drop out of the sampled mask: a few pixels)
        predicted = augment.unit_extents(sources.mask_hull(obj[:, :, 3]), params, w, h) * params["scale"]
        assert np.abs(predicted - (bw, bh)).max() <= 1.5 + 0.1 * max(bw, bh)
        # photo and mask moved together: the photo (never black inside the mask) shows where the mask is
        inside = mask > 0
        assert np.count_nonzero(img[inside].max(axis=1) == 0) <= 0.02 * inside.sum() + 2
        _, cropped = augment.crop_to_mask(img, mask)
        assert cropped.shape == (bh, bw)


# ---------------------------------------------------------------------------------------------- contrast and gamma

def test_object_contrast_and_gamma():
    rng = np.random.default_rng(1)
    img = rng.integers(60, 200, (40, 50, 3), dtype=np.uint8)
    mask = np.zeros((40, 50), np.uint8)
    mask[5:35, 5:45] = 255
    assert np.array_equal(color.adjust_tone(img, mask, 1.3, 1.0, 1.0), color.adjust_brightness(img, 1.3))
    inside = mask > 0
    flat = color.adjust_tone(img, mask, 1.0, 0.5, 1.0).astype(float)[inside]
    assert flat.mean() == pytest.approx(img[inside].mean(), abs=1)  # about the object's own mean
    assert flat.std() == pytest.approx(img[inside].std() * 0.5, rel=0.05)
    dark = color.adjust_tone(img, mask, 1.0, 1.0, 2.0).astype(float)
    assert np.all(dark <= img) and dark.mean() < img.mean() - 20
    expected = 255 * (img / 255.0) ** 2.0
    assert np.abs(dark - expected).max() <= 0.5


def test_background_contrast_and_gamma_while_painting():
    rng = np.random.default_rng(5)
    sizes = [(300, 200), (200, 120)]
    backgrounds = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for w, h in sizes]
    tiles = quilt.sample_tiles(rng, quilt.tile_grid(320, 180, 2, 2), [[size] for size in sizes])
    sources = [backgrounds[t["background"]] for t in tiles]  # one zoom level per background
    plain = quilt.render(320, 180, 2, 2, 0, tiles, sources).astype(np.float64)
    gains = rng.uniform(0.8, 1.2, (len(tiles), 3))
    for contrast, gamma in ((1.0, 1.0), (1.4, 1.0), (0.6, 1.0), (1.0, 1.5), (1.3, 0.7)):
        painted = quilt.render(320, 180, 2, 2, 0, tiles, sources, 0.9, gains, contrast, gamma).astype(np.float64)
        for tile, gain in zip(tiles, gains, strict=True):
            x0, y0, x1, y1 = tile["dst"]
            linear = plain[y0:y1, x0:x1] * (0.9 * gain)
            pivot = linear.reshape(-1, 3).mean(axis=0).mean()
            affine = np.clip(pivot + contrast * (linear - pivot), 0, 255)  # rounded to a level, then gamma:
            low, high = (255 * (np.clip(f(affine), 0, 255) / 255) ** gamma for f in (np.floor, np.ceil))
            assert np.all(painted[y0:y1, x0:x1] >= np.floor(low + 0.5))
            assert np.all(painted[y0:y1, x0:x1] <= np.floor(high + 0.5))


# ---------------------------------------------------------------------------------------------- shadows

def test_shadow_only_darkens_unowned_pixels():
    rng = np.random.default_rng(2)
    canvas = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    owner = np.zeros((120, 160), np.uint8)
    owner[30:70, 50:90] = 1  # an earlier object
    mask = np.zeros((40, 30), np.uint8)
    cv2.ellipse(mask, (15, 20), (13, 18), 0, 0, 360, 255, -1)
    owner[60:100, 60:90][mask > 0] = 2  # the new object, already placed
    assert shadow.sample(rng, {"enabled": False}) is None
    spec = {"enabled": True, "offset_x": {"min": 0.2, "max": 0.4}, "offset_y": {"min": 0.1, "max": 0.3},
            "blur": {"min": 0.05, "max": 0.1}, "opacity": {"min": 0.5, "max": 0.8}}
    before = rng.bit_generator.state
    params = shadow.sample(rng, spec)
    assert rng.bit_generator.state == before  # a spawned child draws: the sample's own draws do not move
    shaded = canvas.copy()
    shadow.cast(shaded, owner, mask, 60, 60, params)
    changed = np.any(shaded != canvas, axis=2)
    assert changed.sum() > 200
    assert np.all(shaded <= canvas) and not np.any(changed & (owner > 0))
    untouched = canvas.copy()
    shadow.cast(untouched, owner, mask, 60, 60, None)
    assert np.array_equal(untouched, canvas)


SHADOW_RUN = ["compose.objects.min=2", "compose.objects.max=3", "samples.per_class=4", "compose.max_occlusion=0.6",
              "compose.max_iou=0.9", "augment.perspective.enabled=true"]


def scene_settings(root: Path, bank: str, *overrides: str) -> tuple[dict, dict]:
    """Settings and bank as the runner builds them (without writing images)."""
    cfg = make_config([*SMALL, f"input.root={root}", *overrides])
    settings = dataclasses.asdict(cfg)
    catalog = runner.scan_inputs(settings)  # also the plan and each class's settings, as a run makes them
    settings["plan"].update(per_class=4, n_backgrounds=2)
    with parallel_backend({"backend": "sequential", "n_jobs": 1}) as n_workers:
        built, _ = runner.build_bank(catalog, root.parent / bank, settings, n_workers)
    return settings, built


def test_shadows_darken_only_the_background_in_a_scene(layout):
    hard = ["compose.blending.feather=0", "compose.blending.poisson=0", "compose.blending.motion=0",
            "compose.blending.antialias=false", *SHADOW_RUN]  # hard pastes copy the object exactly
    plain, bank = scene_settings(layout, "plain", *hard)
    shaded, shaded_bank = scene_settings(layout, "shaded", *hard, "augment.shadow.enabled=true",
                                         "augment.shadow.opacity.min=0.6", "augment.shadow.opacity.max=0.6")
    darker = 0
    for n in range(6):
        canvases, records = [], []
        for settings, b in ((plain, bank), (shaded, shaded_bank)):
            rng = np.random.default_rng(n)
            canvas, _, _ = render.render_background(rng, b, settings, None)
            objects, paints, _ = render.layout_scene(rng, canvas.shape[:2], b, settings, (n % 2, 0))
            render.paint_scene(canvas, paints, settings["compose"]["blending"])
            canvases.append(canvas.astype(np.int16))
            records.append(objects)
        assert [o["box"] for o in records[0]] == [o["box"] for o in records[1]]
        covered = np.zeros(canvases[0].shape[:2], bool)
        for a, b in zip(*records, strict=True):
            assert np.array_equal(a["visible_mask"], b["visible_mask"])
            x0, y0, x1, y1 = a["box"]
            covered[y0:y1, x0:x1] |= a["visible_mask"] > 0
        difference = canvases[1] - canvases[0]
        assert difference.max() <= 0  # only darker
        assert not np.any(difference[covered])  # never on an object (hard paste: object pixels are exact)
        darker += np.count_nonzero(difference.min(axis=2) < 0)
    assert darker > 1000


def test_shadows_never_change_a_label(layout, generate):
    plain = generate(layout, *SHADOW_RUN)
    shaded = generate(layout, *SHADOW_RUN, "augment.shadow.enabled=true")
    for a, b in zip(manifest(plain), manifest(shaded), strict=True):
        assert [o["box"] for o in a["objects"]] == [o["box"] for o in b["objects"]]
        assert all(o["augment"]["shadow"] is None for o in a["objects"])
        assert all(o["augment"]["shadow"]["opacity"] >= 0.3 for o in b["objects"])
    for split in ("train", "val"):
        coco_a, coco_b = (COCO(str(out / "annotations" / f"instances_{split}.json")) for out in (plain, shaded))
        anns_a, anns_b = coco_a.loadAnns(coco_a.getAnnIds()), coco_b.loadAnns(coco_b.getAnnIds())
        assert len(anns_a) == len(anns_b) > 0
        for a, b in zip(anns_a, anns_b, strict=True):
            assert a["bbox"] == b["bbox"] and np.array_equal(coco_a.annToMask(a), coco_b.annToMask(b))
    image = manifest(plain)[0]["image"]
    assert (plain / image).read_bytes() != (shaded / image).read_bytes()


# ---------------------------------------------------------------------------------------------- one background

def test_single_background_preset_gives_varied_views(layout, generate):
    out = generate(layout, "quilt=single", "samples.per_class=6")
    records = manifest(out)
    assert all(len(r["tiles"]) == 1 and r["tiles"][0]["dst"] == [0, 0, 320, 240] for r in records)
    assert len({tuple(r["tiles"][0]["src"]) for r in records}) > 6  # crops differ in place and zoom
