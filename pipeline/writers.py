"""Output files: JPEG images and previews, Pascal VOC XML, COCO JSON, YOLO labels and the manifest, all atomic.

Box convention inside quiltgen: (x0, y0, x1, y1) in pixel-edge coordinates, 0-based, x1/y1 exclusive,
so width = x1 - x0. VOC files use the devkit's 1-based inclusive pixels: (x0 + 1, y0 + 1, x1, y1).
COCO bboxes are [x0, y0, w, h] and COCO polygons use the same pixel-edge coordinates (pixel i spans [i, i + 1)).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from html import escape as _html_escape
from pathlib import Path

import cv2
import numpy as np
import yaml

from pipeline.blend import clip_region

BOX_COLOUR = (0, 255, 0)
TEXT_COLOUR = (0, 0, 0)


def atomic_write(path: Path | str, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename it into place (the folder is made on demand)."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    try:
        try:
            fh = open(tmp, "wb")
        except FileNotFoundError:  # first file in this folder: one mkdir per folder, not one per file
            os.makedirs(folder, exist_ok=True)
            fh = open(tmp, "wb")
        with fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if err.filename is None:  # a failed write() or close() (a full disk) names no file: name the one meant
            raise OSError(err.errno, err.strerror, path) from None
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_failure(err: OSError, out_dir: str | Path) -> str:
    """One line for a file that could not be written: which, why, and the free space left."""
    try:
        free = f"{shutil.disk_usage(out_dir).free / 2**20:.0f} MiB free"
    except OSError:
        free = "free space unknown"
    return (f"cannot write {err.filename}: {err.strerror} ({free} in {out_dir}); free some space or fix the "
            f"folder's permissions, then finish the run with: quiltgen resume={out_dir}")


def remove_temporaries(folder: Path) -> None:
    """Delete what writes cut short left behind (``atomic_write``'s and ``link_file``'s ``.<name>.<pid>.tmp``)."""
    for tmp in Path(folder).rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a JPEG")
    return buf.tobytes()


def draw_preview(img: np.ndarray, boxes: Sequence[tuple[int, int, int, int]], labels: Sequence[str],
                 scale: float) -> np.ndarray:
    """The image, optionally shrunk, with each box outlined and its label on a filled tag.

    At scale 1 this draws on ``img`` itself (no full-frame copy); pass a copy to keep the original.
    """
    if scale != 1.0:
        size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
        preview = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    else:
        preview = img
    font_scale = 0.5 * max(1.0, preview.shape[1] / 640)  # labels stay readable on large previews
    thickness = max(1, round(font_scale))
    for (x0, y0, x1, y1), label in zip(boxes, labels, strict=True):
        p0 = (int(x0 * scale), int(y0 * scale))
        p1 = (max(p0[0], round(x1 * scale) - 1), max(p0[1], round(y1 * scale) - 1))
        cv2.rectangle(preview, p0, p1, BOX_COLOUR, thickness + 1)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        ty = p0[1] - 4 if p0[1] - th - base - 4 >= 0 else p1[1] + th + 4
        cv2.rectangle(preview, (p0[0], ty - th - 2), (p0[0] + tw + 2, ty + base), BOX_COLOUR, -1)
        cv2.putText(preview, label, (p0[0] + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, font_scale, TEXT_COLOUR, thickness,
                    cv2.LINE_AA)
    return preview


def escape(text: str) -> str:
    """XML text escaping of &, < and > (html's version: it does not pull in urllib as xml.sax's does)."""
    return _html_escape(str(text), quote=False)


VOC_OBJECT = """  <object>
    <name>{name}</name>
    <pose>Unspecified</pose>
    <truncated>{truncated}</truncated>
    <occluded>{occluded}</occluded>
    <difficult>{difficult}</difficult>
    <bndbox>
      <xmin>{xmin}</xmin>
      <ymin>{ymin}</ymin>
      <xmax>{xmax}</xmax>
      <ymax>{ymax}</ymax>
    </bndbox>
  </object>
"""
VOC_IMAGE = """<?xml version='1.0' encoding='utf-8'?>
<annotation>
  <folder>{folder}</folder>
  <filename>{filename}</filename>
  <source>
    <database>quiltgen</database>
  </source>
  <size>
    <width>{width}</width>
    <height>{height}</height>
    <depth>3</depth>
  </size>
  <segmented>0</segmented>
{objects}</annotation>
"""


def voc_xml(filename: str, folder: str, width: int, height: int, objects: Iterable[dict]) -> bytes:
    """Pascal VOC annotation (a template: a tenth of ElementTree's cost, the same document).

    Each object is a dict with ``class`` (name), ``box`` (quiltgen's convention), ``truncated`` and ``occluded``
    (fractions, written as 1 when > 0) and ``difficult`` (bool); other keys are ignored.
    """
    parts = [VOC_OBJECT.format(name=escape(o["class"]), truncated=int(o["truncated"] > 0),
                               occluded=int(o["occluded"] > 0), difficult=int(bool(o["difficult"])),
                               xmin=int(o["box"][0]) + 1, ymin=int(o["box"][1]) + 1, xmax=int(o["box"][2]),
                               ymax=int(o["box"][3]))
             for o in objects]
    return VOC_IMAGE.format(folder=escape(folder), filename=escape(filename), width=int(width), height=int(height),
                            objects="".join(parts)).encode("utf-8")


def _clip(mask: np.ndarray, x: int, y: int, width: int, height: int) -> tuple[np.ndarray, int, int]:
    """The part of a mask crop at canvas (x, y) that lies inside a width x height image, and its new top-left."""
    region = clip_region(x, y, mask.shape[1], mask.shape[0], width, height)
    if region is None:
        return mask[:0, :0], max(x, 0), max(y, 0)
    (rows, cols), (obj_rows, obj_cols) = region
    return mask[obj_rows, obj_cols], cols.start, rows.start


def mask_polygons(mask: np.ndarray, x: int, y: int, width: int | None = None,
                  height: int | None = None) -> list[list[float]]:
    """COCO polygons [x1, y1, x2, y2, ...] of the outer contours of a binary mask crop whose top-left is at (x, y).

    Given ``width`` and ``height``, the crop is first clipped to that image. Holes are not represented.
    """
    if width is not None and height is not None:
        mask, x, y = _clip(mask, x, y, width, height)
    if mask.size == 0:
        return []
    # cv2 contours run through the centres of the boundary pixels, so used as is (or shifted by 0.5 to COCO's
    # pixel-edge coordinates) the polygon cuts every boundary pixel in half and pycocotools' rasteriser, which keeps
    # pixels whose centre is inside, drops them: IoU 0.945 on a 40x40 ellipse, 0.76 on a 12x6 rectangle, 0 on a
    # 1-px line. Tracing the mask upsampled 2x instead puts each vertex 0.25 px inside the true pixel edges: every
    # mask pixel's centre is inside, every other's outside, so annToMask reproduces the mask exactly (IoU 1.0 on
    # ellipses, rotated rectangles, 1-px lines and random blobs), for about 2.5x the vertices.
    up = np.repeat(np.repeat((mask > 0).astype(np.uint8), 2, axis=0), 2, axis=1)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        if len(contour) < 3:
            continue
        points = (contour.reshape(-1, 2) + 0.5) / 2 + (x, y)  # 2x pixel centre -> pixel-edge coordinates
        polygons.append(points.ravel().tolist())  # multiples of 0.25: exact floats, nothing to round
    return polygons


def mask_rle(mask: np.ndarray, x: int, y: int, width: int, height: int) -> dict:
    """Uncompressed COCO RLE of a binary mask crop placed at (x, y) in a width x height image (clipped to it).

    Counts run down the columns (Fortran order) and start with the number of leading zeros. Only the image
    columns the crop spans are materialised; the columns either side are added to the first and last runs.
    """
    crop, x0, y0 = _clip(mask, x, y, width, height)
    if crop.size == 0:
        return {"size": [height, width], "counts": [width * height] if width * height else []}
    strip = np.zeros((height, crop.shape[1]), dtype=bool, order="F")
    strip[y0:y0 + crop.shape[0]] = crop > 0
    flat = strip.ravel(order="F")  # a view: the strip is already column-major
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], edges, [flat.size])))
    if flat[0]:
        runs = np.concatenate(([0], runs))
    counts = runs.tolist()
    counts[0] += x0 * height
    after = (width - x0 - crop.shape[1]) * height
    if len(counts) % 2:  # the last run is zeros
        counts[-1] += after
    elif after:
        counts.append(after)
    return {"size": [height, width], "counts": counts}


def yolo_labels(objects: Iterable[dict], width: int, height: int) -> bytes:
    """YOLO label file: ``<class_index> <cx> <cy> <w> <h>`` per object, normalised, boxes clipped to the image."""
    lines = []
    for o in objects:
        x0, y0, x1, y1 = o["box"]
        x0, x1 = min(max(x0, 0), width), min(max(x1, 0), width)
        y0, y1 = min(max(y0, 0), height), min(max(y1, 0), height)
        cx, cy, w, h = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height
        lines.append(f"{int(o['class_index'])} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return "".join(lines).encode("ascii")


def link_file(target: Path, link: Path) -> str:
    """Make ``link`` refer to the existing file ``target`` without copying bytes if possible; atomic, overwrites.

    Tries a relative symlink, then a hard link, then a copy; returns "symlink", "hardlink" or "copy".
    """
    if not target.is_file():
        raise FileNotFoundError(f"link target is not a file: {target}")
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    relative = os.path.relpath(os.path.realpath(target), os.path.realpath(link.parent))
    makers = {"symlink": lambda: os.symlink(relative, tmp), "hardlink": lambda: os.link(target, tmp),
              "copy": lambda: shutil.copyfile(target, tmp)}
    for method, make in makers.items():
        try:
            tmp.unlink(missing_ok=True)
            make()
            os.replace(tmp, link)
            return method
        except (OSError, NotImplementedError):
            tmp.unlink(missing_ok=True)
            if method == "copy":
                raise
    raise AssertionError("unreachable")


RESERVED_YOLO_KEYS = {"path", "names", "nc", "download"}


def yolo_data_yaml(yolo_dir: Path, splits: list[str], names: list[str]) -> bytes:
    """Ultralytics dataset YAML: absolute ``path``, ``train``/``val`` (falling back to the first split), ``test``
    if present, other splits under their own names, and ``names`` as {index: name}.

    ``path`` must be absolute: Ultralytics resolves a relative one, and a missing one given a relative YAML
    path, against its own datasets folder. So this one file names where the run was written.
    """
    if not splits:
        raise ValueError("yolo_data_yaml needs at least one split")
    clash = RESERVED_YOLO_KEYS.intersection(splits)
    if clash:
        raise ValueError(f"split names clash with YOLO dataset keys: {sorted(clash)}")
    data = {"path": str(Path(yolo_dir).resolve())}
    data.update({key: f"images/{key if key in splits else splits[0]}" for key in ("train", "val")})
    if "test" in splits:
        data["test"] = "images/test"
    for split in splits:
        data.setdefault(split, f"images/{split}")
    data["names"] = dict(enumerate(names))
    header = "# Ultralytics YOLO dataset written by quiltgen; labels/<split> mirrors images/<split>\n"
    return (header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)).encode("utf-8")


def _plain(obj):
    """JSON fallback: numpy scalars and arrays as plain numbers and lists."""
    if isinstance(obj, np.generic | np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _json(obj) -> bytes:
    """Compact, key-sorted JSON."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_plain).encode()


class CocoWriter:
    """Streams one COCO JSON file with flat memory.

    Images and annotations go to two fragment files as they are added; ``commit`` stream-copies them into the
    final file and renames it into place; ``discard`` removes every temporary file. Output is byte-deterministic.
    """

    def __init__(self, path: Path, categories: list[dict], info: dict):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.categories, self.info = path, categories, info
        self.tmp = path.with_name(f".{path.name}.partial")
        self._parts = {kind: path.with_name(f".{path.name}.{kind}.partial") for kind in ("images", "annotations")}
        self._fhs = {kind: open(part, "wb") for kind, part in self._parts.items()}
        self._counts = dict.fromkeys(self._parts, 0)

    def _append(self, kind: str, obj: dict) -> None:
        self._fhs[kind].write((b"," if self._counts[kind] else b"") + _json(obj))
        self._counts[kind] += 1

    def add(self, image: dict, annotations: list[dict]) -> None:
        """Append one image entry and its annotations (ids are the caller's)."""
        for ann in annotations:
            if ann["image_id"] != image["id"]:
                raise ValueError(f"annotation {ann.get('id')} has image_id {ann['image_id']}, not {image['id']}")
        self._append("images", image)
        for ann in annotations:
            self._append("annotations", ann)

    def commit(self) -> None:
        for fh in self._fhs.values():
            fh.close()
        head = b'{"info":%s,"licenses":[],"categories":%s,' % (_json(self.info), _json(self.categories))
        try:
            with open(self.tmp, "wb") as out:
                out.write(head)
                for i, (kind, part) in enumerate(self._parts.items()):
                    out.write(b'%s"%s":[' % (b"," if i else b"", kind.encode()))
                    with open(part, "rb") as fh:
                        shutil.copyfileobj(fh, out)
                    out.write(b"]")
                out.write(b"}\n")
            os.replace(self.tmp, self.path)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        finally:
            for part in self._parts.values():
                part.unlink(missing_ok=True)

    def discard(self) -> None:
        for fh in self._fhs.values():
            fh.close()
        for part in (*self._parts.values(), self.tmp):
            part.unlink(missing_ok=True)


class ManifestWriter:
    """Appends one JSON line per sample to a temporary file; ``commit`` renames it into place."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(f".{path.name}.partial")
        self._fh = open(self.tmp, "w", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._fh.write(json.dumps(record, sort_keys=True) + "\n")

    def commit(self) -> None:
        self._fh.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self._fh.close()
        self.tmp.unlink(missing_ok=True)
