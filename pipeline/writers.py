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
from pipeline.errors import naming
from pipeline.runstate import resume_command

BOX_COLOUR = (0, 255, 0)
TEXT_COLOUR = (0, 0, 0)


def atomic_write(path: Path | str, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename it into place (the folder is made on demand)."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    try:
        with naming(path):  # a failed write() or close() (a full disk) names no file: name the one meant
            try:
                fh = open(tmp, "wb")
            except FileNotFoundError:  # first file in this folder: one mkdir per folder, not one per file
                os.makedirs(folder, exist_ok=True)
                fh = open(tmp, "wb")
            with fh:
                fh.write(data)
            os.replace(tmp, path)
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
    what = err.filename if err.filename is not None else f"into {out_dir}"
    return (f"cannot write {what}: {err.strerror or err} ({free} in {out_dir}); free some space or fix the "
            f"folder's permissions, then finish the run with: {resume_command(out_dir)}")


def close_quietly(fh) -> None:
    """Close a file whose contents are being thrown away: a failed flush (a full disk) does not matter then."""
    with contextlib.suppress(OSError):
        fh.close()


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


def coco_polygon(mask: np.ndarray, x: int, y: int, width: int, height: int) -> list[float] | None:
    """The COCO polygon [x1, y1, x2, y2, ...] of a binary mask crop whose top-left is at (x, y) in a width x height
    image (clipped to it), or None when no single polygon reproduces the mask exactly: several pieces or holes.

    Pixel-edge coordinates (pixel i spans [i, i + 1)). pycocotools' rasteriser keeps the pixels whose centre is
    inside a polygon, and cv2's contours run through the centres of the boundary pixels, so used as they are the
    polygon would cut every boundary pixel in half (IoU 0.76 on a 12x6 rectangle, 0 on a 1-px line). Traced on the
    mask upsampled 2x instead, each vertex lies 0.25 px inside the true pixel edges: every mask pixel's centre is
    inside and every other's outside, so ``annToMask`` gives the mask back exactly (tested on ellipses, rotated
    rectangles, 1-px lines, random blobs), for about 2.5x the vertices.
    """
    crop, x, y = _clip(mask, x, y, width, height)
    if crop.size == 0:
        return None
    up = np.repeat(np.repeat((crop > 0).astype(np.uint8), 2, axis=0), 2, axis=1)
    # RETR_CCOMP lists holes too: exactly one contour means one piece without holes
    contours, _ = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if len(contours) != 1:
        return None
    points = (contours[0].reshape(-1, 2) + 0.5) / 2 + (x, y)  # 2x pixel centre -> pixel-edge coordinates
    return points.ravel().tolist()  # multiples of 0.25: exact floats, nothing to round


def coco_segmentation(mask: np.ndarray, x: int, y: int, width: int, height: int, kind: str) -> list | dict:
    """An annotation's COCO segmentation of its visible mask crop at (x, y), always exact.

    ``auto``: one polygon where that reproduces the mask exactly, else uncompressed RLE (several pieces, holes);
    ``rle``: always RLE. COCO allows both kinds in one file; pycocotools and datumaro read both (tested).
    """
    if kind == "auto":
        polygon = coco_polygon(mask, x, y, width, height)
        if polygon is not None:
            return [polygon]
    return mask_rle(mask, x, y, width, height)


def _closest(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int]:
    """(squared distance, index in a, index in b) of the closest pair of points, in blocks to bound memory."""
    best = (np.iinfo(np.int64).max, 0, 0)
    for start in range(0, len(a), 256):
        d = ((a[start:start + 256, None, :] - b[None, :, :]) ** 2).sum(-1)
        k = int(d.argmin())
        i, j = divmod(k, len(b))
        if d[i, j] < best[0]:
            best = (int(d[i, j]), start + i, j)
    return best


def _join_contours(chains: list[np.ndarray]) -> np.ndarray:
    """One closed path through every contour: each contour (a separate piece or a hole) is attached to the
    contour nearest to it among those already joined (Prim's tree), by a zero-width bridge from the closest
    point pair, walked out and back. Ultralytics' ``merge_multi_segment`` joins COCO parts the same way, in list
    order; joining nearest-first keeps the bridges short."""
    root = max(range(len(chains)), key=lambda c: len(chains[c]))
    entry, attach, order = {root: 0}, {c: [] for c in range(len(chains))}, [root]
    link = {c: (*_closest(chains[root], chains[c]), root) for c in range(len(chains)) if c != root}
    while link:
        c = min(link, key=lambda k: link[k][0])
        _, at, entry[c], parent = link.pop(c)
        attach[parent].append((at, c))
        order.append(c)
        for other, (dist, *_) in link.items():
            candidate = _closest(chains[c], chains[other])
            if candidate[0] < dist:
                link[other] = (*candidate, c)
    paths = {}
    for c in reversed(order):  # children were attached after their parents: their paths are ready
        n = len(chains[c])
        rolled = np.roll(chains[c], -entry[c], axis=0)
        parts, start = [], 0
        for pos, child in sorted(((at - entry[c]) % n, child) for at, child in attach[c]):
            parts += [rolled[start:pos + 1], paths.pop(child)]
            start = pos  # back at the attach point after the child's loop
        parts += [rolled[start:], rolled[:1]]  # closed: a child's path ends where it started
        paths[c] = np.concatenate(parts)
    return paths[root][:-1]  # the root's closing point is implied


def yolo_polygon(mask: np.ndarray, x: int, y: int, width: int, height: int) -> np.ndarray:
    """One polygon (n x 2, pixel coordinates) for a binary mask crop at (x, y) in a width x height image, as
    Ultralytics' segmentation labels want: one line per object.

    Vertices are the centres of the boundary pixels (pixel i spans [i, i + 1), its centre is i + 0.5), so
    Ultralytics' ``polygon2mask`` (``cv2.fillPoly`` on truncated coordinates) redraws a piece, holes included,
    exactly; geometrically the outline lies within half a pixel of the true edge. Holes and separate pieces are
    joined by zero-width bridges (``_join_contours``): a hole stays open, and between pieces ``fillPoly`` draws
    the bridge as a 1-px line, the only pixels off the mask. Collinear vertices are dropped.
    """
    crop, x, y = _clip(mask, x, y, width, height)
    if crop.size == 0 or not crop.any():
        return np.zeros((0, 2))
    contours, _ = cv2.findContours((crop > 0).astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    chains = [c.reshape(-1, 2).astype(np.int64) for c in contours]
    path = chains[0] if len(chains) == 1 else _join_contours(chains)
    steps = np.diff(path, axis=0, append=path[:1])
    turns = np.any(steps != np.roll(steps, 1, axis=0), axis=1)  # the step in differs from the step out
    corners = path[turns]
    if len(corners) >= 3:
        path = corners
    elif len(path) < 3:  # one or two pixels: repeat a point so the line still reads as a polygon
        path = np.concatenate([path, path[:1], path[:1]])[:3]
    return path + (x + 0.5, y + 0.5)


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


def yolo_seg_labels(polygons: Iterable[tuple[int, np.ndarray]], width: int, height: int) -> bytes:
    """Ultralytics segmentation labels: ``<class_index> <x1> <y1> <x2> <y2> ...`` per object (one polygon each, see
    ``yolo_polygon``), normalised to the image size."""
    scale = np.array([width, height], np.float64)
    lines = []
    for class_index, polygon in polygons:
        values = (np.asarray(polygon, np.float64) / scale).ravel().tolist()
        lines.append(f"{int(class_index)} " + "%.6f " * len(values) % tuple(values))  # one % op: 2x a join
        lines[-1] = lines[-1][:-1] + "\n"
    return "".join(lines).encode("ascii")


def link_file(target: Path, link: Path) -> str:
    """Make ``link`` refer to the existing file ``target`` without copying bytes if possible; atomic, overwrites.

    Tries a hard link, then a relative symlink, then a copy; returns "hardlink", "symlink" or "copy". A hard link
    first: it is a plain file inside its folder, while loaders that keep images inside their images folder (datumaro's
    VOC and COCO importers, supervision) refuse a symlink that resolves outside it; it also survives moving the run.
    """
    if not os.path.isfile(target):
        raise FileNotFoundError(f"link target is not a file: {target}")
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    makers = {"hardlink": lambda: os.link(target, tmp),
              "symlink": lambda: os.symlink(os.path.relpath(os.path.realpath(target), os.path.realpath(link.parent)),
                                            tmp),
              "copy": lambda: shutil.copyfile(target, tmp)}
    for method, make in makers.items():
        try:
            try:
                make()
            except FileNotFoundError:  # first link in this folder: one mkdir per folder, not one per file
                link.parent.mkdir(parents=True, exist_ok=True)
                make()
            os.replace(tmp, link)
            return method
        except (OSError, NotImplementedError):
            tmp.unlink(missing_ok=True)
            if method == "copy":
                raise
    raise AssertionError("unreachable")


# Keys Ultralytics' data.yaml gives a meaning of its own (``check_det_dataset``, the dataset classes); a split named
# like one of them would overwrite it. train, val, test and minival are split keys: a split may use them.
RESERVED_YOLO_KEYS = ("path", "names", "nc", "download", "channels", "yaml_file", "validation", "kpt_shape",
                      "flip_idx", "kpt_names")


def yolo_data_yaml(yolo_dir: Path, splits: list[str], names: list[str]) -> bytes:
    """Ultralytics dataset YAML: absolute ``path``, ``train``/``val`` (falling back to the first split), ``test``
    if present, other splits under their own names, and ``names`` as {index: name}. ``splits``: those that have
    images (a listed folder that is missing or empty fails the trainers). The same file serves
    detection (``yolo/``) and segmentation (``yolo_seg/``): Ultralytics tells them apart by the label lines.

    ``path`` must be absolute: Ultralytics resolves a relative one, and a missing one given a relative YAML
    path, against its own datasets folder. So this one file names where the run was written.
    """
    if not splits:
        raise ValueError("yolo_data_yaml needs at least one split")
    clash = sorted(set(RESERVED_YOLO_KEYS).intersection(splits))
    if clash:
        raise ValueError(f"split names clash with YOLO dataset keys: {clash}")
    data = {"path": str(Path(yolo_dir).resolve())}
    data.update({key: f"images/{key if key in splits else splits[0]}" for key in ("train", "val")})
    if "test" in splits:
        data["test"] = "images/test"
    for split in splits:
        data.setdefault(split, f"images/{split}")
    data["names"] = dict(enumerate(names))
    header = "# Ultralytics YOLO dataset written by quiltgen; labels/<split> mirrors images/<split>\n"
    return (header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)).encode("utf-8")


def voc_labelmap(names: Sequence[str]) -> bytes:
    """The VOC devkit's ``labelmap.txt`` (``name:color:parts:actions``), which datumaro reads for the class list;
    without it datumaro assumes the 20 VOC classes. No colours: quiltgen writes no VOC segmentation masks."""
    return ("# label:color_rgb:parts:actions\n" + "".join(f"{name}:::\n" for name in names)).encode("utf-8")


def voc_image_set(names: Iterable[str]) -> bytes:
    """``ImageSets/Main/<split>.txt``: one image name (no extension) per line."""
    return "".join(f"{name}\n" for name in names).encode("utf-8")


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
        with naming(self.path):  # the fragment is a detail: name the file it becomes
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
        head = b'{"info":%s,"licenses":[],"categories":%s,' % (_json(self.info), _json(self.categories))
        try:
            with naming(self.path):
                for fh in self._fhs.values():
                    fh.close()
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
            close_quietly(fh)
        for part in (*self._parts.values(), self.tmp):
            part.unlink(missing_ok=True)


class ManifestWriter:
    """Appends one JSON line per sample to a temporary file; ``commit`` renames it into place."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(f".{path.name}.partial")
        self._fh = open(self.tmp, "w", encoding="utf-8")

    def write(self, record: dict) -> None:
        with naming(self.path):
            self._fh.write(json.dumps(record, sort_keys=True) + "\n")

    def commit(self) -> None:
        with naming(self.path):
            self._fh.close()
            os.replace(self.tmp, self.path)

    def discard(self) -> None:
        close_quietly(self._fh)
        self.tmp.unlink(missing_ok=True)
