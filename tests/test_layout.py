"""The run folder as other tools read it: one unique name per image in every format, a standard VOC tree, COCO
files whose file_name resolves under images/<split>/, YOLO detection and segmentation folders laid out as
Ultralytics' loader looks them up, and datumaro (dev extra) importing COCO, VOC and YOLO as written."""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from pycocotools.coco import COCO

from pipeline.runner import run
from tests.conftest import SMALL, make_config, make_layout, tree_digest
from tests.test_formats import check_yolo_seg

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

# Overlapping scenes (so some visible masks come in pieces or with holes) in three splits, every format.
ARGS = ["samples.per_class=6", "compose.objects.min=2", "compose.objects.max=4", "compose.max_occlusion=0.7",
        "compose.max_iou=0.9", "compose.max_truncation=0.3", "augment.scale.min=0.8", "augment.scale.max=1.8",
        "output.splits.train=0.5", "output.splits.val=0.3", "+output.splits.test=0.2",
        "output.formats=[voc,coco,yolo,yolo_seg]", "output.coco_segmentation=rle", "seed=5"]
SPLITS = ("train", "val", "test")
DATASET_FILES = {"manifest.jsonl", "run.json", "stats.json", "annotations/instances_train.json",
                 "annotations/instances_val.json", "annotations/instances_test.json", "voc/labelmap.txt",
                 "yolo/data.yaml", "yolo_seg/data.yaml",
                 *(f"voc/ImageSets/Main/{split}.txt" for split in SPLITS)}


@pytest.fixture(scope="module")
def input_root(tmp_path_factory) -> Path:
    return make_layout(tmp_path_factory.mktemp("input"), classes=("cat", "dog", "hot dog"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, input_root) -> tuple[Path, list[dict]]:
    """One run shared by the tests below (three classes so that names of different classes meet in a split)."""
    out = tmp_path_factory.mktemp("run") / "out"
    run(make_config([*SMALL, f"input.root={input_root}", *ARGS]), out)
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    return out, records


def test_every_format_is_byte_identical_for_any_worker_count(dataset, input_root, tmp_path):
    out, _ = dataset
    two = tmp_path / "two"
    run(make_config([*SMALL, f"input.root={input_root}", *ARGS, "workers.n_jobs=2", "workers.chunk_size=2"]), two)
    assert tree_digest(two) == tree_digest(out)


def test_every_image_has_one_unique_name_used_by_every_format(dataset):
    out, records = dataset
    names = [r["name"] for r in records]
    assert len(set(names)) == len(names) == 18
    assert [p.name for p in sorted((out / "images").rglob("*.jpg"), key=lambda p: p.name)] == sorted(
        f"{name}.jpg" for name in names)  # unique across splits too, not only within one
    written = set()
    for r in records:
        assert r["name"] == f"{r['class']}_{r['sample_index']:06d}"
        assert r["image"] == f"images/{r['split']}/{r['name']}.jpg"
        assert r["preview"] == f"previews/{r['split']}/{r['name']}.jpg"
        paths = {key: r[key] for key in ("image", "preview", "voc", "voc_image", "yolo_label", "yolo_image",
                                         "yolo_seg_label", "yolo_seg_image")}
        assert {Path(p).stem for p in paths.values()} == {r["name"]}
        for key in ("voc_image", "yolo_image", "yolo_seg_image"):
            assert not (out / paths[key]).is_symlink() and os.path.samefile(out / paths[key], out / r["image"])
        written |= set(paths.values())
    # the records name every file of the run (the runner resumes from them), and nothing else is in the folder
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == written | DATASET_FILES


def test_voc_is_a_standard_tree_whose_image_sets_are_the_splits(dataset):
    out, records = dataset
    voc = out / "voc"
    assert sorted(p.name for p in voc.iterdir()) == ["Annotations", "ImageSets", "JPEGImages", "labelmap.txt"]
    for split in SPLITS:
        listed = (voc / "ImageSets" / "Main" / f"{split}.txt").read_text().splitlines()
        assert listed == [r["name"] for r in records if r["split"] == split] and listed
    assert (voc / "labelmap.txt").read_text().splitlines()[1:] == ["cat:::", "dog:::", "hot dog:::"]
    for r in records:
        root = ET.parse(voc / "Annotations" / f"{r['name']}.xml").getroot()
        assert root.findtext("filename") == f"{r['name']}.jpg" and root.findtext("folder") == "JPEGImages"
        assert (voc / "JPEGImages" / root.findtext("filename")).is_file()
        boxes = [[int(node.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
                 for node in root.findall("object")]
        assert boxes == [[x0 + 1, y0 + 1, x1, y1] for x0, y0, x1, y1 in (o["box"] for o in r["objects"])]


def test_coco_file_names_resolve_under_the_split_images_folder(dataset):
    out, records = dataset
    by_name = {f"{r['name']}.jpg": r for r in records}
    for split in SPLITS:
        coco = COCO(str(out / "annotations" / f"instances_{split}.json"))
        images = coco.loadImgs(coco.getImgIds())
        assert [by_name[i["file_name"]]["split"] for i in images] == [split] * len(images)
        # torchvision's CocoDetection(root=images/<split>) and datumaro join root and file_name as they are
        assert all((out / "images" / split / i["file_name"]).is_file() for i in images)


def test_ultralytics_finds_the_yolo_seg_labels_and_they_redraw_the_visible_masks(dataset):
    out, records = dataset
    data = yaml.safe_load((out / "yolo_seg" / "data.yaml").read_text())
    assert data["names"] == {0: "cat", 1: "dog", 2: "hot dog"}
    assert Path(data["path"]) == (out / "yolo_seg").resolve()
    coco = {split: COCO(str(out / "annotations" / f"instances_{split}.json")) for split in SPLITS}
    by_file = {(split, image["file_name"]): image["id"] for split, c in coco.items() for image in c.dataset["images"]}
    for split in SPLITS:
        # Ultralytics (check_det_dataset, img2label_paths): <path>/<split entry> lists the images, and each label is
        # the image path with its last /images/ replaced by /labels/ and its suffix by .txt
        images = sorted((Path(data["path"]) / data[split]).glob("*.jpg"))
        assert len(images) == sum(r["split"] == split for r in records)
        for image in images:
            label = Path("/labels/".join(str(image).rsplit("/images/", 1))).with_suffix(".txt")
            lines = label.read_text().splitlines()
            c = coco[split]
            anns = c.loadAnns(c.getAnnIds(imgIds=by_file[(split, image.name)]))
            assert len(lines) == len(anns) >= 2
            for line, ann in zip(lines, anns, strict=True):  # COCO here is exact RLE: the visible mask
                check_yolo_seg(line, c.annToMask(ann), ann["category_id"] - 1)  # pieces: see test_formats


datumaro = pytest.importorskip("datumaro")


def label_boxes(dataset, item) -> list[tuple[str, list[float]]]:
    names = dataset.categories()[datumaro.AnnotationType.label]
    # YOLO's 6 decimals bring back each pixel edge within 2e-4 px: rounded to 0.01 px, every format must match
    return [(names[a.label].name, [round(v, 2) for v in a.get_bbox()]) for a in item.annotations
            if a.type == datumaro.AnnotationType.bbox]


@pytest.mark.parametrize("kind, folder, options", [
    ("coco", "", {}), ("voc", "voc", {"coordinate_mode": "voc-one-based"}), ("yolo", "yolo", {})])
def test_datumaro_imports_each_format_as_written_with_the_manifest_boxes(dataset, kind, folder, options):
    out, records = dataset
    imported = datumaro.Dataset.import_from(str(out / folder), kind, **options)
    assert sorted(imported.subsets()) == sorted(SPLITS)
    assert [c.name for c in imported.categories()[datumaro.AnnotationType.label]] == ["cat", "dog", "hot dog"]
    assert len(imported) == len(records)
    for r in records:
        item = imported.get(r["name"], r["split"])
        assert item is not None and Path(item.media.path).name == f"{r['name']}.jpg"
        assert item.media.data.shape == (240, 320, 3)  # the image itself was found and decoded
        boxes = sorted(label_boxes(imported, item))  # datumaro's COCO reader groups annotations by kind
        expected = sorted((o["class"], [x0, y0, x1 - x0, y1 - y0]) for o in r["objects"]
                          for x0, y0, x1, y1 in [o["box"]])
        assert boxes == expected


def test_datumaro_converts_the_coco_output_to_yolo_and_voc_with_the_same_boxes(dataset, tmp_path):
    out, records = dataset
    source = datumaro.Dataset.import_from(str(out), "coco")
    for kind in ("yolo", "voc"):  # read back as datumaro writes them (its VOC export keeps 0-based pixels)
        target = tmp_path / kind
        source.export(str(target), kind, save_media=True, **({"label_map": "source"} if kind == "voc" else {}))
        converted = datumaro.Dataset.import_from(str(target), kind)
        assert len(converted) == len(records)
        for r in records:
            item = converted.get(r["name"], r["split"])
            expected = sorted((o["class"], [x0, y0, x1 - x0, y1 - y0]) for o in r["objects"]
                              for x0, y0, x1, y1 in [o["box"]])
            assert sorted(label_boxes(converted, item)) == expected, (kind, r["name"])
