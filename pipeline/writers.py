"""Output files: JPEG images and previews, Pascal VOC XML, and the manifest, all written atomically.

Box convention inside quiltgen: (x0, y0, x1, y1) in pixel-edge coordinates, 0-based, x1/y1 exclusive,
so width = x1 - x0. VOC files use the devkit's 1-based inclusive pixels: (x0 + 1, y0 + 1, x1, y1).
"""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

BOX_COLOUR = (0, 255, 0)
TEXT_COLOUR = (0, 0, 0)


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


def _sub(parent: ET.Element, tag: str, text) -> ET.Element:
    node = ET.SubElement(parent, tag)
    node.text = str(text)
    return node


def voc_xml(filename: str, folder: str, width: int, height: int,
            objects: Iterable[tuple[str, tuple[int, int, int, int]]]) -> bytes:
    """Pascal VOC annotation; ``objects`` are (class name, box in quiltgen's convention)."""
    root = ET.Element("annotation")
    _sub(root, "folder", folder)
    _sub(root, "filename", filename)
    source = ET.SubElement(root, "source")
    _sub(source, "database", "quiltgen")
    size = ET.SubElement(root, "size")
    _sub(size, "width", width)
    _sub(size, "height", height)
    _sub(size, "depth", 3)
    _sub(root, "segmented", 0)
    for name, (x0, y0, x1, y1) in objects:
        obj = ET.SubElement(root, "object")
        _sub(obj, "name", name)
        _sub(obj, "pose", "Unspecified")
        _sub(obj, "truncated", 0)
        _sub(obj, "difficult", 0)
        box = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), (x0 + 1, y0 + 1, x1, y1), strict=True):
            _sub(box, tag, value)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


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
