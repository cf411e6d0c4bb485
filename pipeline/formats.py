"""Dataset-level files, assembled in the parent from the records the workers return: the manifest, one COCO file
per split, VOC's image sets and label map, YOLO's data.yaml files. Nothing is written outside ``commit``
except the streamed manifest and COCO fragments, so ``discard`` leaves no trace.

Layout of a run folder (every image has one name, ``<class>_<index:06d>``, unique in the dataset, in every format):
  images/<split>/<name>.jpg                  the images
  previews/<split>/<name>.jpg                the images with boxes drawn
  annotations/instances_<split>.json         COCO; file_name is "<name>.jpg", relative to images/<split>/
  voc/Annotations/<name>.xml, voc/JPEGImages/<name>.jpg (a link), voc/ImageSets/Main/<split>.txt, voc/labelmap.txt
  yolo/data.yaml, yolo/images/<split>/<name>.jpg (a link), yolo/labels/<split>/<name>.txt
  yolo_seg/  the same, with segmentation labels
  manifest.jsonl                             last: its presence marks a complete dataset
"""
from __future__ import annotations

from pathlib import Path

from pipeline import writers
from pipeline.errors import InputError


class DatasetWriters:
    """Parent-side files. ``add`` takes every record once, in (class, sample) order; ``commit`` writes the rest and
    the manifest last; ``discard`` removes what was streamed."""

    def __init__(self, out_dir: Path, bank: dict, settings: dict):
        self.out_dir, self.formats = out_dir, settings["output"]["formats"]
        self.splits = [name for name, fraction in settings["output"]["splits"].items() if fraction > 0]
        self.names = [c["name"] for c in bank["classes"]]
        for name in self.names:
            if "voc" in self.formats and ":" in name:
                raise InputError(f"class '{name}': VOC's labelmap.txt separates fields with ':', so a VOC class name "
                                 f"cannot hold one; rename that class folder or leave voc out of output.formats")
        self.image_sets = {split: [] for split in self.splits}
        self.manifest = writers.ManifestWriter(out_dir / "manifest.jsonl")
        self.coco, self.image_id, self.annotation_id = {}, 0, 0
        if "coco" in self.formats:
            categories = [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(self.names)]
            info = {"description": "quiltgen synthetic dataset; file_name is relative to images/<split>/ of this "
                                   "run's folder", "seed": settings["seed"]}
            self.coco = {split: writers.CocoWriter(out_dir / "annotations" / f"instances_{split}.json", categories,
                                                   info)
                         for split in self.splits}

    def add(self, record: dict) -> None:
        self.image_id += 1
        annotations = []
        for obj in record["objects"]:
            segmentation = obj.pop("segmentation", None)
            if "coco" not in self.formats:
                continue
            self.annotation_id += 1
            x0, y0, x1, y1 = obj["box"]
            annotations.append({
                "id": self.annotation_id, "image_id": self.image_id, "category_id": obj["class_index"] + 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": obj["pixels"], "iscrowd": 0,
                "segmentation": segmentation, "visible_fraction": obj["visible"],
                "truncated_fraction": obj["truncated"], "occluded_fraction": obj["occluded"],
            })
        if "coco" in self.formats:
            image = {"id": self.image_id, "file_name": f"{record['name']}.jpg", "width": record["width"],
                     "height": record["height"]}
            self.coco[record["split"]].add(image, annotations)
        self.image_sets[record["split"]].append(record["name"])
        self.manifest.write(record)

    def commit(self) -> None:
        if "voc" in self.formats:
            voc = self.out_dir / "voc"
            for split, names in self.image_sets.items():
                writers.atomic_write(voc / "ImageSets" / "Main" / f"{split}.txt", writers.voc_image_set(names))
            writers.atomic_write(voc / "labelmap.txt", writers.voc_labelmap(self.names))
        # A split that got no image is left out of data.yaml as an absent one is (its val falls back to a split
        # with images): trainers fail on a listed folder that is missing or empty.
        filled = [split for split in self.splits if self.image_sets[split]]
        for kind in ("yolo", "yolo_seg"):
            if kind in self.formats:
                for folder in ("images", "labels"):
                    for split in filled:
                        (self.out_dir / kind / folder / split).mkdir(parents=True, exist_ok=True)
                data = writers.yolo_data_yaml(self.out_dir / kind, filled, self.names)
                writers.atomic_write(self.out_dir / kind / "data.yaml", data)
        for coco in self.coco.values():
            coco.commit()
        self.manifest.commit()  # last: a manifest means the whole run finished

    def discard(self) -> None:
        for coco in self.coco.values():
            coco.discard()
        self.manifest.discard()
