"""Annotation formats: COCO (read back through pycocotools), VOC, YOLO labels and data.yaml, and image links."""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest
import yaml
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from pipeline import writers

# pycocotools (2.0.11) trips numpy 2's __array__ copy-keyword deprecation inside its Cython decode.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

W, H = 200, 150


def ellipse() -> np.ndarray:
    m = np.zeros((30, 40), np.uint8)
    cv2.ellipse(m, (20, 15), (19, 12), 30, 0, 360, 255, -1)
    return m


def rotated_rect() -> np.ndarray:
    m = np.zeros((50, 50), np.uint8)
    corners = cv2.boxPoints(((25, 25), (40, 18), 25))
    cv2.fillPoly(m, [np.round(corners).astype(np.int32)], 255)
    return m


def disc() -> np.ndarray:
    m = np.zeros((40, 40), np.uint8)
    cv2.circle(m, (20, 20), 18, 255, -1)
    return m


# (class index, mask crop, top-left on the canvas): the last two hang off the bottom-right and top-left edges.
OBJECTS = [(0, ellipse(), (20, 30)), (1, rotated_rect(), (90, 40)), (2, disc(), (175, 125)), (0, disc(), (-10, -5))]
NAMES = ["ellipse", "rect", "disc"]


def place(mask: np.ndarray, x: int, y: int, width: int = W, height: int = H) -> np.ndarray:
    """The crop pasted into an empty image, clipped, as a 0/1 array."""
    out = np.zeros((height, width), np.uint8)
    h, w = mask.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x0 < x1 and y0 < y1:
        out[y0:y1, x0:x1] = mask[y0 - y:y1 - y, x0 - x:x1 - x] > 0
    return out


def box_of(full: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(full)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float((a & b).sum() / (a | b).sum())


def categories():
    return [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(NAMES)]


def write_coco(path, info=None):
    """Image 1 with RLE segmentations, image 2 with polygons; returns the expected full-image masks per annotation."""
    writer = writers.CocoWriter(path, categories(), info or {"description": "test", "seed": 3})
    expected, ann_id = {}, 0
    for image_id, kind in ((1, "rle"), (2, "polygon")):
        anns = []
        for cls, mask, (x, y) in OBJECTS:
            ann_id += 1
            full = place(mask, x, y)
            x0, y0, x1, y1 = box_of(full)
            seg = writers.mask_rle(mask, x, y, W, H) if kind == "rle" else writers.mask_polygons(mask, x, y, W, H)
            anns.append({"id": ann_id, "image_id": image_id, "category_id": cls + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "area": np.int64(full.sum()), "iscrowd": 0, "segmentation": seg, "visible_fraction": 0.75})
            expected[ann_id] = full
        writer.add({"id": image_id, "file_name": f"images/{image_id:06d}.jpg", "width": W, "height": H}, anns)
    writer.commit()
    return expected


def test_coco_file_reads_back_through_pycocotools(tmp_path, capsys):
    path = tmp_path / "annotations" / "coco_train.json"
    expected = write_coco(path)
    coco = COCO(str(path))
    assert coco.getCatIds() == [1, 2, 3]
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == NAMES
    assert coco.getImgIds() == [1, 2]
    assert coco.loadImgs(2)[0]["file_name"] == "images/000002.jpg"
    assert len(coco.getAnnIds(imgIds=[1])) == len(coco.getAnnIds(imgIds=[2])) == len(OBJECTS)
    assert len(coco.getAnnIds(catIds=[1])) == 4
    for ann in coco.loadAnns(coco.getAnnIds()):
        full = expected[ann["id"]]
        decoded = coco.annToMask(ann)
        assert decoded.shape == (H, W)
        if ann["image_id"] == 1:
            assert np.array_equal(decoded, full), ann["id"]
        else:
            assert iou(decoded, full) >= 0.9, ann["id"]
        x0, y0, x1, y1 = box_of(decoded)
        assert ann["bbox"] == [x0, y0, x1 - x0, y1 - y0]
        assert ann["area"] == int(full.sum()) and ann["visible_fraction"] == 0.75
    data = json.loads(path.read_text())
    assert list(data) == ["info", "licenses", "categories", "images", "annotations"]
    assert data["info"]["seed"] == 3 and data["licenses"] == []
    assert sorted(p.name for p in path.parent.iterdir()) == ["coco_train.json"]  # no fragments left


def test_coco_output_is_deterministic_and_empty_files_are_valid(tmp_path):
    write_coco(tmp_path / "a" / "coco.json")
    write_coco(tmp_path / "b" / "coco.json")
    assert (tmp_path / "a" / "coco.json").read_bytes() == (tmp_path / "b" / "coco.json").read_bytes()

    empty = tmp_path / "empty.json"
    writer = writers.CocoWriter(empty, categories(), {"description": "none"})
    writer.commit()
    data = json.loads(empty.read_text())
    assert data["images"] == [] and data["annotations"] == [] and len(data["categories"]) == 3
    assert COCO(str(empty)).getImgIds() == []

    no_anns = tmp_path / "no_anns.json"
    writer = writers.CocoWriter(no_anns, categories(), {})
    writer.add({"id": 7, "file_name": "x.jpg", "width": W, "height": H}, [])
    writer.commit()
    assert json.loads(no_anns.read_text())["images"][0]["id"] == 7


def test_coco_discard_leaves_no_files_and_mismatched_ids_are_refused(tmp_path):
    out = tmp_path / "coco"
    writer = writers.CocoWriter(out / "coco.json", categories(), {})
    writer.add({"id": 1, "file_name": "x.jpg", "width": W, "height": H},
               [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 0}])
    with pytest.raises(ValueError, match="image_id"):
        writer.add({"id": 2, "file_name": "y.jpg", "width": W, "height": H}, [{"id": 2, "image_id": 1}])
    writer.discard()
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("shape", ["ellipse", "rotated_rect", "disc", "line", "blob"])
def test_polygons_rasterise_back_to_the_mask(shape):
    if shape == "line":
        mask = np.zeros((30, 30), np.uint8)
        cv2.line(mask, (2, 3), (25, 20), 255, 1)  # 1 px wide, 8-connected
    elif shape == "blob":
        noise = cv2.GaussianBlur(np.random.default_rng(0).random((50, 50)).astype(np.float32), (0, 0), 3)
        mask = (noise > 0.5).astype(np.uint8) * 255
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(mask, contours, -1, 255, -1)  # fill holes: polygons describe outer contours only
    else:
        mask = globals()[shape]()
    polygons = writers.mask_polygons(mask, 7, 4)
    assert polygons and all(len(p) >= 6 and len(p) % 2 == 0 for p in polygons)
    assert all(type(v) is float and v == round(v, 2) for p in polygons for v in p)
    decoded = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, 60, 70)))
    # Tracing the 2x-upsampled mask keeps every vertex 0.25 px inside the pixel edges: the round trip is exact.
    assert np.array_equal(decoded, place(mask, 7, 4, 70, 60))


def test_polygons_are_clipped_to_the_image_when_its_size_is_given():
    polygons = writers.mask_polygons(disc(), 175, 125, W, H)
    points = np.array([v for p in polygons for v in p]).reshape(-1, 2)
    assert points[:, 0].max() <= W and points[:, 1].max() <= H and points.min() >= 0
    assert writers.mask_polygons(disc(), W + 5, 0, W, H) == []
    assert writers.mask_polygons(np.zeros((5, 5), np.uint8), 0, 0) == []


def test_rle_round_trips_exactly_for_random_masks_and_offsets():
    rng = np.random.default_rng(1)
    for _ in range(40):
        h, w = int(rng.integers(1, 30)), int(rng.integers(1, 30))
        mask = (rng.random((h, w)) < rng.uniform(0.05, 0.95)).astype(np.uint8) * 255
        x, y = int(rng.integers(-w, 45)), int(rng.integers(-h, 35))
        rle = writers.mask_rle(mask, x, y, 40, 30)
        assert rle["size"] == [30, 40] and sum(rle["counts"]) == 40 * 30
        assert all(type(c) is int and c >= 0 for c in rle["counts"])
        assert all(c > 0 for c in rle["counts"][1:])  # only the leading-zeros run may be empty
        decoded = mask_utils.decode(mask_utils.frPyObjects(rle, 30, 40))
        assert np.array_equal(decoded, place(mask, x, y, 40, 30))


def test_rle_counts_are_column_major_and_start_with_zeros():
    full = np.full((2, 3), 255, np.uint8)
    assert writers.mask_rle(full, 0, 0, 3, 2)["counts"] == [0, 6]
    one = np.full((1, 1), 255, np.uint8)
    assert writers.mask_rle(one, 1, 0, 3, 2)["counts"] == [2, 1, 3]  # column 0 (2 px), then (0, 1)
    assert writers.mask_rle(one, 5, 5, 3, 2)["counts"] == [6]


def test_voc_objects_carry_flags_and_one_based_boxes():
    objects = [
        {"class": "ellipse", "box": [20, 30, 60, 60], "truncated": 0.0, "occluded": 0.25, "difficult": False},
        {"class": "disc", "box": [175, 125, 200, 150], "truncated": 0.4, "occluded": 0.0, "difficult": True,
         "class_index": 2},  # extra keys are ignored
        {"class": "rect", "box": [0, 0, 5, 7], "truncated": 0.0, "occluded": 0.0, "difficult": False},
    ]
    root = ET.fromstring(writers.voc_xml("000001.jpg", "shapes", W, H, objects))
    assert root.findtext("folder") == "shapes" and root.findtext("size/depth") == "3"
    nodes = root.findall("object")
    assert len(nodes) == len(objects)
    for node, obj in zip(nodes, objects, strict=True):
        assert node.findtext("name") == obj["class"]
        assert int(node.findtext("truncated")) == (obj["truncated"] > 0)
        assert int(node.findtext("occluded")) == (obj["occluded"] > 0)
        assert int(node.findtext("difficult")) == obj["difficult"]
        box = [int(node.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
        x0, y0, x1, y1 = obj["box"]
        assert box == [x0 + 1, y0 + 1, x1, y1]


def test_yolo_labels_normalise_and_invert():
    objects = [{"class_index": cls, "box": box_of(place(mask, x, y))} for cls, mask, (x, y) in OBJECTS]
    text = writers.yolo_labels(objects, W, H).decode()
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == len(objects)
    for line, obj in zip(lines, objects, strict=True):
        fields = line.split()
        assert len(fields) == 5 and fields[0] == str(obj["class_index"])
        cx, cy, w, h = map(float, fields[1:])
        assert all(0 <= v <= 1 for v in (cx, cy, w, h))
        assert all(len(f.split(".")[1]) == 6 for f in fields[1:])
        back = [(cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H]
        assert np.allclose(back, obj["box"], rtol=0, atol=1e-5 * max(W, H))
    assert writers.yolo_labels([], W, H) == b""


def test_link_file_makes_relative_symlinks_and_replaces_them(tmp_path):
    run = tmp_path / "run"
    first, second = run / "images" / "a" / "1.jpg", run / "images" / "b" / "2.jpg"
    for path, data in ((first, b"first"), (second, b"second")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    link = run / "yolo" / "images" / "train" / "a_1.jpg"
    assert writers.link_file(first, link) == "symlink"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.read_bytes() == b"first"
    moved = run.rename(tmp_path / "moved")  # relative links survive moving the whole output folder
    link = moved / "yolo" / "images" / "train" / "a_1.jpg"
    assert link.read_bytes() == b"first"
    assert writers.link_file(moved / "images" / "b" / "2.jpg", link) == "symlink"
    assert link.read_bytes() == b"second"
    assert sorted(p.name for p in link.parent.iterdir()) == ["a_1.jpg"]  # no temporary left behind


def test_link_file_falls_back_to_hard_links_then_copies(tmp_path, monkeypatch):
    target = tmp_path / "img.jpg"
    target.write_bytes(b"pixels")

    def refuse(*args, **kwargs):
        raise OSError("not allowed")

    monkeypatch.setattr(os, "symlink", refuse)
    link = tmp_path / "out" / "hard.jpg"
    assert writers.link_file(target, link) == "hardlink"
    assert not link.is_symlink() and os.path.samefile(link, target)
    monkeypatch.setattr(os, "link", refuse)
    link = tmp_path / "out" / "copy.jpg"
    assert writers.link_file(target, link) == "copy"
    assert link.read_bytes() == b"pixels" and not os.path.samefile(link, target)
    with pytest.raises(FileNotFoundError):
        writers.link_file(tmp_path / "missing.jpg", link)


def test_yolo_data_yaml_lists_splits_and_names(tmp_path):
    text = writers.yolo_data_yaml(tmp_path / "yolo", ["train", "val", "test", "extra"], NAMES).decode()
    assert text.startswith("#")
    data = yaml.safe_load(text)
    assert list(data) == ["path", "train", "val", "test", "extra", "names"]
    assert data["path"] == str((tmp_path / "yolo").resolve()) and os.path.isabs(data["path"])
    assert (data["train"], data["val"], data["test"], data["extra"]) == (
        "images/train", "images/val", "images/test", "images/extra")
    assert data["names"] == {0: "ellipse", 1: "rect", 2: "disc"}

    data = yaml.safe_load(writers.yolo_data_yaml(tmp_path, ["train", "holdout"], ["a b", "yes"]))
    assert data["val"] == "images/train" and data["holdout"] == "images/holdout" and "test" not in data
    assert data["names"] == {0: "a b", 1: "yes"}  # quoted where YAML would otherwise turn it into a bool
    data = yaml.safe_load(writers.yolo_data_yaml(tmp_path, ["val"], NAMES))
    assert data["train"] == data["val"] == "images/val"
    with pytest.raises(ValueError):
        writers.yolo_data_yaml(tmp_path, ["train", "names"], NAMES)
