"""Annotation formats: COCO (read back through pycocotools), YOLO-seg polygons (drawn as Ultralytics draws them), VOC,
YOLO labels and data.yaml, and image links."""
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

from pipeline import compose, writers

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


def hidden_scene():
    """An owner map as compose keeps it: a disc (object 0) with a square (object 1) pasted fully inside it, a bar
    (object 2) that object 3 cuts in two, a sliver in a corner. Returns the map and each object's (class index,
    visible box), in paste order."""
    owner = np.zeros((H, W), np.uint8)
    cv2.circle(owner, (60, 60), 45, 1, -1)  # object 0: a disc
    owner[45:75, 45:75] = 2  # object 1: hidden inside the disc, which is left with a hole
    owner[110:130, 100:190] = 3  # object 2: a bar ...
    owner[100:140, 140:150] = 4  # ... that object 3 cuts into two pieces
    owner[0:3, 196:200] = 5  # object 4: a 4x3 sliver in the corner
    classes = [0, 1, 2, 1, 0]
    return owner, [(cls, compose.mask_box((owner == n + 1).view(np.uint8))) for n, cls in enumerate(classes)]


def write_coco(path, kind="auto", info=None):
    """The hidden scene as image 1 and the clipped OBJECTS as image 2, through compose.visible_mask and
    writers.coco_segmentation as render does; returns the expected full-image visible masks per annotation id."""
    writer = writers.CocoWriter(path, categories(), info or {"description": "test", "seed": 3})
    owner, objects = hidden_scene()
    scenes = [(1, [(cls, compose.visible_mask(owner, n, box), box[:2]) for n, (cls, box) in enumerate(objects)]),
              (2, [(cls, mask, xy) for cls, mask, xy in OBJECTS])]
    expected, ann_id = {}, 0
    for image_id, scene in scenes:
        anns = []
        for cls, mask, (x, y) in scene:
            ann_id += 1
            full = place(mask, x, y)
            x0, y0, x1, y1 = box_of(full)
            anns.append({"id": ann_id, "image_id": image_id, "category_id": cls + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "area": np.int64(full.sum()), "iscrowd": 0, "visible_fraction": 0.75,
                         "segmentation": writers.coco_segmentation(mask, x, y, W, H, kind)})
            expected[ann_id] = full
        writer.add({"id": image_id, "file_name": f"{image_id:06d}.jpg", "width": W, "height": H}, anns)
    writer.commit()
    return expected


@pytest.mark.parametrize("kind", ["auto", "rle"])
def test_coco_masks_read_back_pixel_for_pixel_with_polygons_and_rle_mixed(tmp_path, kind):
    path = tmp_path / "annotations" / "instances_train.json"
    expected = write_coco(path, kind)
    coco = COCO(str(path))
    assert coco.getCatIds() == [1, 2, 3]
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == NAMES
    assert coco.getImgIds() == [1, 2]
    assert coco.loadImgs(2)[0]["file_name"] == "000002.jpg"
    assert len(coco.getAnnIds(imgIds=[1])) == 5 and len(coco.getAnnIds(imgIds=[2])) == len(OBJECTS)
    kinds = []
    for ann in coco.loadAnns(coco.getAnnIds()):
        full = expected[ann["id"]]
        decoded = coco.annToMask(ann)
        assert decoded.shape == (H, W)
        assert np.array_equal(decoded, full), ann["id"]  # exact: the hidden square's hole and both bar pieces
        x0, y0, x1, y1 = box_of(decoded)
        assert ann["bbox"] == [x0, y0, x1 - x0, y1 - y0]
        assert ann["area"] == int(full.sum()) and ann["visible_fraction"] == 0.75
        kinds.append("polygon" if isinstance(ann["segmentation"], list) else "rle")
        if kinds[-1] == "polygon":  # one polygon per annotation: no part a loader could take for an instance
            assert len(ann["segmentation"]) == 1
    # the disc with a hole and the bar in two pieces are RLE, every one-piece mask a polygon
    assert kinds == (["rle", "polygon", "rle", "polygon", "polygon"] + ["polygon"] * 4 if kind == "auto"
                     else ["rle"] * 9)
    data = json.loads(path.read_text())
    assert list(data) == ["info", "licenses", "categories", "images", "annotations"]
    assert data["info"]["seed"] == 3 and data["licenses"] == []
    assert sorted(p.name for p in path.parent.iterdir()) == ["instances_train.json"]  # no fragments left


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


def random_masks(seed, n):
    """Smooth random blobs of every kind: one piece, several pieces, holes, 1-px necks."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(6, 50, 2))
        noise = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), float(rng.uniform(0.8, 4)))
        yield (noise > np.quantile(noise, rng.uniform(0.2, 0.85))).astype(np.uint8) * 255


def pieces_and_holes(full):
    contours, hierarchy = cv2.findContours(full.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    return [c.reshape(-1, 2) for c in contours], hierarchy


@pytest.mark.parametrize("shape", ["ellipse", "rotated_rect", "disc", "line", "blob"])
def test_one_piece_polygons_rasterise_back_to_the_mask(shape):
    if shape == "line":
        mask = np.zeros((30, 30), np.uint8)
        cv2.line(mask, (2, 3), (25, 20), 255, 1)  # 1 px wide, 8-connected
    elif shape == "blob":
        noise = cv2.GaussianBlur(np.random.default_rng(0).random((50, 50)).astype(np.float32), (0, 0), 3)
        n, labels, stats, _ = cv2.connectedComponentsWithStats((noise > 0.5).astype(np.uint8), connectivity=8)
        mask = (labels == 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())).astype(np.uint8) * 255  # largest piece
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(mask, contours, -1, 255, -1)  # holes filled
    else:
        mask = globals()[shape]()
    polygon = writers.coco_polygon(mask, 7, 4, 70, 60)
    assert len(polygon) >= 6 and len(polygon) % 2 == 0
    assert all(type(v) is float and v == round(v, 2) for v in polygon)
    decoded = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([polygon], 60, 70)))
    # Tracing the 2x-upsampled mask keeps every vertex 0.25 px inside the pixel edges: the round trip is exact.
    assert np.array_equal(decoded, place(mask, 7, 4, 70, 60))


def test_auto_segmentation_is_exact_and_a_polygon_only_for_one_piece_without_holes():
    W2, H2 = 60, 50
    polygons = 0
    for n, mask in enumerate(random_masks(1, 150)):
        x, y = n % 17 - 6, n % 13 - 5  # some hang off the top-left or bottom-right edge
        full = place(mask, x, y, W2, H2)
        segmentation = writers.coco_segmentation(mask, x, y, W2, H2, "auto")
        if isinstance(segmentation, list):
            polygons += 1
            assert len(pieces_and_holes(full)[0]) == 1
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, H2, W2))
        else:
            assert len(pieces_and_holes(full)[0]) > 1
            rle = mask_utils.frPyObjects(segmentation, H2, W2)
        assert np.array_equal(mask_utils.decode(rle), full), n
    assert 20 < polygons < 130  # both kinds were exercised


def test_polygons_are_clipped_to_the_image():
    polygon = writers.coco_polygon(disc(), 175, 125, W, H)
    points = np.array(polygon).reshape(-1, 2)
    assert points[:, 0].max() <= W and points[:, 1].max() <= H and points.min() >= 0
    assert writers.coco_polygon(disc(), W + 5, 0, W, H) is None
    assert writers.coco_polygon(np.zeros((5, 5), np.uint8), 0, 0, W, H) is None


def ultralytics_mask(line: str, width: int, height: int) -> tuple[int, np.ndarray]:
    """A yolo_seg label line read and drawn as Ultralytics does: float32 values (verify_image_label), scaled to
    pixels, truncated to int32 and filled with cv2.fillPoly (polygon2mask at mask_ratio 1)."""
    values = line.split()
    points = np.array(values[1:], np.float32).reshape(-1, 2) * np.array([width, height], np.float32)
    drawn = np.zeros((height, width), np.uint8)
    cv2.fillPoly(drawn, [points.astype(np.int32)], 1)
    return int(values[0]), drawn


def bridges(full: np.ndarray) -> np.ndarray:
    """Where joining pieces may add pixels: 1 px around every shortest segment between two contours."""
    chains = pieces_and_holes(full)[0]
    allowed = np.zeros(full.shape, np.uint8)
    for i, a in enumerate(chains):
        for b in chains[i + 1:]:
            d = ((a[:, None] - b[None]) ** 2).sum(-1)
            for j, k in zip(*np.nonzero(d == d.min()), strict=True):
                cv2.line(allowed, (int(a[j][0]), int(a[j][1])), (int(b[k][0]), int(b[k][1])), 1, 3)
    return allowed.astype(bool)


def check_yolo_seg(line: str, full: np.ndarray, class_index: int) -> bool:
    """The line redraws the mask: exactly for one piece (holes included); for several pieces no pixel is lost and
    the only extra pixels lie on the zero-width bridges joining them. Returns whether the mask had several pieces."""
    height, width = full.shape
    cls, drawn = ultralytics_mask(line, width, height)
    assert cls == class_index and len(line.split()) > 6  # > 6 fields: Ultralytics reads a polygon, not a box
    n_pieces = cv2.connectedComponents(full.astype(np.uint8), connectivity=8)[0] - 1
    extra = drawn.astype(bool) & ~full.astype(bool)
    assert not (full.astype(bool) & ~drawn.astype(bool)).any()
    if n_pieces == 1:
        assert not extra.any()
    else:
        assert not (extra & ~bridges(full)).any()
    return n_pieces > 1


def test_yolo_seg_polygons_redraw_the_visible_masks_as_ultralytics_draws_them():
    owner, objects = hidden_scene()
    polygons = [(cls, writers.yolo_polygon(compose.visible_mask(owner, n, box), *box[:2], W, H))
                for n, (cls, box) in enumerate(objects)]
    text = writers.yolo_seg_labels(polygons, W, H).decode()
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == len(objects)
    several = [check_yolo_seg(line, owner == n + 1, cls)
               for n, (line, (cls, _)) in enumerate(zip(lines, objects, strict=True))]
    assert several == [False, False, True, False, False]  # the disc's hole is open, the bar's pieces are bridged
    assert all(0 <= float(v) <= 1 and len(v.split(".")[1]) == 6 for line in lines for v in line.split()[1:])
    several = 0
    for n, mask in enumerate(random_masks(2, 120)):
        x, y = n % 11 - 4, n % 7 - 3
        full = place(mask, x, y, 60, 50)
        several += check_yolo_seg(writers.yolo_seg_labels([(2, writers.yolo_polygon(mask, x, y, 60, 50))], 60, 50)
                                  .decode(), full, 2)
    assert 10 < several < 110
    for mask in (np.full((1, 1), 255, np.uint8), np.full((1, 2), 255, np.uint8), np.full((1, 9), 255, np.uint8)):
        check_yolo_seg(writers.yolo_seg_labels([(0, writers.yolo_polygon(mask, 3, 4, 20, 10))], 20, 10).decode(),
                       place(mask, 3, 4, 20, 10), 0)  # a pixel or a line still gives three points or more


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


def test_link_file_makes_hard_links_and_replaces_them(tmp_path):
    run = tmp_path / "run"
    first, second = run / "images" / "a" / "1.jpg", run / "images" / "b" / "2.jpg"
    for path, data in ((first, b"first"), (second, b"second")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    link = run / "yolo" / "images" / "train" / "a_1.jpg"
    assert writers.link_file(first, link) == "hardlink"
    assert not link.is_symlink() and os.path.samefile(link, first)  # a plain file in its folder, no second copy
    assert os.path.realpath(link) == str(link)  # so loaders that keep images inside their folder accept it
    moved = run.rename(tmp_path / "moved")  # hard links survive moving the whole output folder
    link = moved / "yolo" / "images" / "train" / "a_1.jpg"
    assert link.read_bytes() == b"first"
    assert writers.link_file(moved / "images" / "b" / "2.jpg", link) == "hardlink"
    assert link.read_bytes() == b"second"
    assert sorted(p.name for p in link.parent.iterdir()) == ["a_1.jpg"]  # no temporary left behind


def test_link_file_falls_back_to_relative_symlinks_then_copies(tmp_path, monkeypatch):
    target = tmp_path / "run" / "images" / "img.jpg"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"pixels")

    def refuse(*args, **kwargs):
        raise OSError("not allowed")

    monkeypatch.setattr(os, "link", refuse)
    link = tmp_path / "run" / "out" / "soft.jpg"
    assert writers.link_file(target, link) == "symlink"
    assert link.is_symlink() and os.readlink(link) == "../images/img.jpg" and link.read_bytes() == b"pixels"
    monkeypatch.setattr(os, "symlink", refuse)
    link = tmp_path / "run" / "out" / "copy.jpg"
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
    for reserved in ("names", "path", "nc", "download", "channels"):
        with pytest.raises(ValueError, match=reserved):
            writers.yolo_data_yaml(tmp_path, ["train", reserved], NAMES)


def test_voc_labelmap_and_image_sets_read_back_as_datumaro_reads_them():
    labelmap = writers.voc_labelmap(["cat", "hot dog"]).decode()
    entries = [line.split(":") for line in labelmap.splitlines() if not line.startswith("#")]
    assert entries == [["cat", "", "", ""], ["hot dog", "", "", ""]]  # name:color:parts:actions, in class order
    assert writers.voc_image_set(["cat_000000", "dog_000003"]) == b"cat_000000\ndog_000003\n"
    assert writers.voc_image_set([]) == b""
