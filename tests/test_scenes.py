"""Multi-object scenes and the three annotation formats, end to end: COCO read back with pycocotools,
every VOC file parsed, every YOLO line checked against COCO; splits, distractors, RGBA cut-outs."""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from pycocotools.coco import COCO

from pipeline.errors import ConfigError, InputError
from tests.conftest import make_layout, tree_digest

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

# Black background, hard paste, no colour change, no noise, near-lossless JPEG: pixels tell where objects are.
PLAIN = ["augment.background_brightness.min=0", "augment.background_brightness.max=0",
         "augment.object_brightness.enabled=false", "augment.blur.enabled=false", "augment.noise.enabled=false",
         "augment.hue.enabled=false", "augment.saturation.enabled=false", "compose.blending.feather=0",
         "compose.blending.poisson=0", "compose.blending.motion=0", "output.jpeg_quality=100"]
SCENES = ["compose.objects.min=2", "compose.objects.max=4", "compose.max_occlusion=0.6", "compose.max_iou=0.9",
          "compose.max_truncation=0.3", "augment.scale.min=0.8", "augment.scale.max=1.6"]


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def lit(image: np.ndarray) -> np.ndarray:
    return image.max(axis=2) > 30


@pytest.mark.parametrize("kind", ["rle", "auto"])
def test_coco_masks_and_boxes_match_the_drawn_objects(layout, generate, kind):
    out = generate(layout, *PLAIN, *SCENES, "samples.per_class=8", f"output.coco_segmentation={kind}")
    records = {r["image"]: r for r in manifest(out)}
    seen, kinds = 0, Counter()
    for split in ("train", "val"):
        coco = COCO(str(out / "annotations" / f"instances_{split}.json"))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["cat", "dog"]
        for image_id in coco.getImgIds():
            info = coco.loadImgs(image_id)[0]
            image = f"images/{split}/{info['file_name']}"  # file_name is relative to images/<split>/
            record = records[image]
            assert record["split"] == split and info["file_name"] == f"{record['name']}.jpg"
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
            assert len(anns) == len(record["objects"]) >= 2
            union = np.zeros((info["height"], info["width"]), bool)
            for ann, obj in zip(anns, record["objects"], strict=True):
                mask = coco.annToMask(ann).astype(bool)
                ys, xs = np.nonzero(mask)
                x0, y0, w, h = ann["bbox"]
                assert [x0, y0, x0 + w, y0 + h] == obj["box"]
                assert ann["category_id"] == obj["class_index"] + 1
                assert ann["visible_fraction"] == obj["visible"]
                kinds["polygon" if isinstance(ann["segmentation"], list) else "rle"] += 1
                # exact either way: the mask is the visible pixels, the box hugs them, no two masks share a pixel
                assert mask.sum() == ann["area"] == obj["pixels"]
                assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == tuple(obj["box"])
                assert not (union & mask).any()
                union |= mask
            drawn = lit(cv2.imread(str(out / image)))
            iou = (drawn & union).sum() / (drawn | union).sum()
            assert iou > 0.93, (image, iou)  # JPEG and interpolated edges blur the lit pixels
            seen += 1
    assert seen == len(records) == 16
    if kind == "auto":  # one-piece masks as polygons, the others (pieces, holes) as RLE, mixed in one file
        assert kinds["polygon"] > kinds["rle"] > 0, kinds
    else:
        assert set(kinds) == {"rle"}


def test_yolo_labels_match_coco_and_links_point_at_the_images(layout, generate):
    out = generate(layout, *SCENES, "samples.per_class=10")
    data = yaml.safe_load((out / "yolo" / "data.yaml").read_text())
    assert data["names"] == {0: "cat", 1: "dog"} and data["path"] == str((out / "yolo").resolve())
    assert (data["train"], data["val"]) == ("images/train", "images/val")
    coco_boxes = {}
    for split in ("train", "val"):
        coco = json.loads((out / "annotations" / f"instances_{split}.json").read_text())
        names = {image["id"]: image["file_name"] for image in coco["images"]}
        for ann in coco["annotations"]:
            coco_boxes.setdefault((split, names[ann["image_id"]]), []).append((ann["category_id"] - 1, ann["bbox"]))
    labels = 0
    for record in manifest(out):
        split = record["split"]
        label = out / record["yolo_label"]
        image_link = out / record["yolo_image"]
        assert label.parent == out / "yolo" / "labels" / split and image_link.parent == out / "yolo" / "images" / split
        assert image_link.stem == label.stem == record["name"]
        assert os.path.samefile(image_link, out / record["image"])  # a hard link: a file inside yolo/images/
        lines = label.read_text().splitlines()
        expected = coco_boxes[(split, f"{record['name']}.jpg")]
        assert len(lines) == len(expected) == len(record["objects"])
        for line, (category, (x, y, w, h)) in zip(lines, expected, strict=True):
            cls, *values = line.split()
            assert int(cls) == category
            cx, cy, bw, bh = (float(v) for v in values)
            assert all(0 <= v <= 1 for v in (cx, cy, bw, bh))
            assert np.allclose([cx * 320, cy * 240, bw * 320, bh * 240], [x + w / 2, y + h / 2, w, h], atol=1e-3)
        labels += 1
    assert labels == 20 == len(list((out / "yolo" / "labels").rglob("*.txt")))


def test_splits_are_exact_per_class_and_reproducible(layout, generate):
    args = ("samples.per_class=10", "output.splits.train=0.7", "output.splits.val=0.2", "+output.splits.test=0.1")
    out = generate(layout, *args)
    records = manifest(out)
    assert Counter((r["class"], r["split"]) for r in records) == {
        (c, s): n for c in ("cat", "dog") for s, n in (("train", 7), ("val", 2), ("test", 1))}
    for split, n in (("train", 14), ("val", 4), ("test", 2)):
        assert len(json.loads((out / "annotations" / f"instances_{split}.json").read_text())["images"]) == n
        assert len(list((out / "yolo" / "images" / split).iterdir())) == n
    assert yaml.safe_load((out / "yolo" / "data.yaml").read_text())["test"] == "images/test"
    again = generate(layout, *args, "workers.n_jobs=2", "workers.chunk_size=3")
    assert tree_digest(out) == tree_digest(again)
    other = manifest(generate(layout, *args, "seed=5"))
    assert [r["split"] for r in other] != [r["split"] for r in records]


def test_a_split_set_to_zero_is_left_out(layout, generate):
    out = generate(layout, "samples.per_class=3", "output.splits.train=1", "output.splits.val=0")
    assert {r["split"] for r in manifest(out)} == {"train"}
    assert not (out / "annotations" / "instances_val.json").exists()
    data = yaml.safe_load((out / "yolo" / "data.yaml").read_text())
    assert data["val"] == "images/train"  # YOLO trainers need a val entry: the train split stands in


def test_formats_can_be_chosen(layout, generate):
    out = generate(layout, "samples.per_class=2", "output.formats=[coco]")
    assert not (out / "yolo").exists() and not (out / "voc").exists()
    assert all("voc" not in r and "yolo_label" not in r for r in manifest(out))
    assert (out / "annotations" / "instances_train.json").is_file()


def test_occlusion_and_truncation_limits_hold_and_are_recorded(layout, generate):
    out = generate(layout, *SCENES, "samples.per_class=12", "compose.max_occlusion=0.3", "compose.max_truncation=0.2",
                   "compose.max_iou=0.4")
    objects = [o for r in manifest(out) for o in r["objects"]]
    assert any(o["occluded"] > 0 for o in objects) and any(o["truncated"] > 0 for o in objects)
    for o in objects:
        assert o["occluded"] <= 0.3 + 1e-4 and o["truncated"] <= 0.2 + 1e-4
        assert o["visible"] + o["occluded"] + o["truncated"] == pytest.approx(1, abs=2e-4)
    for r in manifest(out):
        boxes = [o["box"] for o in r["objects"]]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
                ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
                area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
                assert iw * ih / (area(a) + area(b) - iw * ih) < 0.4


def test_class_weights_steer_the_extra_objects(layout, generate):
    out = generate(layout, "samples.per_class=10", "compose.objects.min=3", "compose.objects.max=3",
                   "compose.max_iou=1", "compose.max_occlusion=0.9", "+compose.class_weights.dog=0")
    for r in manifest(out):
        assert [o["class"] for o in r["objects"][1:]] == ["cat"] * (len(r["objects"]) - 1)
    with pytest.raises(ConfigError, match=r"compose.class_weights.cow: no such class; the classes are \['cat', 'dog'"):
        generate(layout, "+compose.class_weights.cow=2")


def test_every_blending_method_and_augmentation_runs_and_stays_reproducible(layout, generate):
    every = ["compose.blending.hard=1", "compose.blending.feather=1", "compose.blending.poisson=1",
             "compose.blending.motion=1", "augment.color_match.enabled=true", "augment.jpeg_quality.enabled=true",
             "augment.flip.vertical=0.5", "augment.erode.max=2", "augment.rotation.min=-180",
             "augment.rotation.max=180", "augment.noise.enabled=true", "samples.per_class=12",
             "augment.size=normalised", "+augment.classes.dog.normalised.max=1.2", "augment.perspective.enabled=true",
             "augment.object_contrast.enabled=true", "augment.object_gamma.enabled=true",
             "augment.background_contrast.enabled=true", "augment.background_gamma.enabled=true",
             "augment.shadow.enabled=true"]
    out = generate(layout, *every)
    records = manifest(out)
    assert {o["blend"]["method"] for r in records for o in r["objects"]} == {"hard", "feather", "poisson", "motion"}
    assert len({r["jpeg_quality"] for r in records}) > 1
    assert all(o["augment"]["perspective"] and o["augment"]["shadow"] for r in records for o in r["objects"])
    assert tree_digest(out) == tree_digest(generate(layout, *every, "workers.n_jobs=2"))


def test_canvas_relative_size(layout, generate):
    out = generate(layout, "augment.size=area", "augment.area.min=0.05",
                   "augment.area.max=0.05", "augment.rotation.enabled=false", "augment.shear.enabled=false",
                   "augment.erode.enabled=false",
                   "compose.max_truncation=0", "compose.objects.max=1", "samples.per_class=6")
    for r in manifest(out):
        x0, y0, x1, y1 = r["objects"][0]["box"]
        assert (x1 - x0) * (y1 - y0) == pytest.approx(0.05 * 320 * 240, rel=0.12)


def write_cutout(path: Path, size: int, alpha_value: int = 255) -> None:
    img = np.zeros((size, size, 4), np.uint8)
    cv2.circle(img, (size // 2, size // 2), size // 2 - 2, (40, 200, 90, alpha_value), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def test_rgba_cutout_layout_is_reported_and_used(tmp_path, generate, caplog):
    root = make_layout(tmp_path / "in", with_copies=False)
    for name in ("cat", "dog"):
        for f in (root / "photo" / name).iterdir():
            f.unlink()
        write_cutout(root / "photo" / name / "a.png", 40)
    caplog.set_level("INFO")
    out = generate(root, "samples.per_class=2")
    assert "class cat              found 1 cut-out (alpha = mask, else non-black pixels)" in caplog.text
    assert all(o["mask"] is None for r in manifest(out) for o in r["objects"])


def test_masks_found_are_reported_per_class(layout, generate, caplog):
    caplog.set_level("INFO")
    generate(layout, "samples.per_class=1")
    assert "class dog              found 2 photos, 2 masks in photo_copy/" in caplog.text


def test_rgba_cutout_with_an_empty_alpha_is_named(tmp_path, generate):
    root = make_layout(tmp_path / "in", with_copies=False)
    write_cutout(root / "photo" / "cat" / "ghost.png", 40, alpha_value=0)
    with pytest.raises(InputError, match=r"ghost.png: RGBA cut-out with an empty alpha channel"):
        generate(root)


def test_distractors_are_pasted_without_labels(layout, generate):
    write_cutout(layout / "clutter" / "blob.png", 30)
    out = generate(layout, "input.distractor_dir=clutter", "compose.distractors.min=2", "compose.distractors.max=2",
                   "samples.per_class=3")
    for r in manifest(out):
        assert len(r["distractors"]) == 2 and r["distractors"][0]["photo"] == "clutter/blob.png"
        root = ET.parse(out / r["voc"]).getroot()
        assert {n.findtext("name") for n in root.findall("object")} <= {"cat", "dog"}


def test_distractor_errors(layout, generate):
    with pytest.raises(InputError, match=r"input.distractor_dir: .*nowhere is not a folder"):
        generate(layout, "input.distractor_dir=nowhere", "compose.distractors.max=1")
    with pytest.raises(ConfigError, match=r"compose.distractors: max=2 but input.distractor_dir is unset"):
        generate(layout, "compose.distractors.max=2")


def test_more_objects_than_fit_fail_up_front(layout, generate, tmp_path):
    out = tmp_path / "crowd"
    with pytest.raises(InputError, match=r"compose.objects.min=60: even 60 copies of the smallest object"):
        generate(layout, "compose.objects.min=60", "compose.objects.max=60", "augment.scale.min=1.5",
                 "compose.max_occlusion=0", "compose.max_truncation=0", out=out)
    assert not (out / "manifest.jsonl").exists()
