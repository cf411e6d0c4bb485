"""Dataset-level files, assembled in the parent from the records the workers return: manifest and COCO files
(streamed, committed together at the end) and YOLO's data.yaml."""
from __future__ import annotations

from pathlib import Path

from pipeline import writers


class DatasetWriters:
    """Parent-side files: the manifest and one COCO file per split, streamed and committed together at the end."""

    def __init__(self, out_dir: Path, bank: dict, settings: dict):
        self.out_dir, self.formats = out_dir, settings["output"]["formats"]
        self.splits = [name for name, fraction in settings["output"]["splits"].items() if fraction > 0]
        self.names = [c["name"] for c in bank["classes"]]
        self.manifest = writers.ManifestWriter(out_dir / "manifest.jsonl")
        self.coco, self.image_id, self.annotation_id = {}, 0, 0
        if "coco" in self.formats:
            categories = [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(self.names)]
            info = {"description": "quiltgen synthetic dataset; file_name is relative to this run's folder",
                    "seed": settings["seed"]}
            self.coco = {split: writers.CocoWriter(out_dir / "annotations" / f"coco_{split}.json", categories, info)
                         for split in self.splits}
        if "yolo" in self.formats:
            for kind in ("images", "labels"):
                for split in self.splits:
                    (out_dir / "yolo" / kind / split).mkdir(parents=True, exist_ok=True)

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
            image = {"id": self.image_id, "file_name": record["image"], "width": record["width"],
                     "height": record["height"]}
            self.coco[record["split"]].add(image, annotations)
        self.manifest.write(record)

    def commit(self) -> None:
        if "yolo" in self.formats:
            data = writers.yolo_data_yaml(self.out_dir / "yolo", self.splits, self.names)
            writers.atomic_write(self.out_dir / "yolo" / "data.yaml", data)
        for coco in self.coco.values():
            coco.commit()
        self.manifest.commit()  # last: a manifest means the whole run finished

    def discard(self) -> None:
        for coco in self.coco.values():
            coco.discard()
        self.manifest.discard()
