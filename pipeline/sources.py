"""Find, decode and check the inputs once, up front, and store them as a bank of ``.npy`` files.

Layout under the input root (the original script's):
  photo/<class>/<file>        object photos
  photo_copy/<class>/<file>   optional masks, same file names: non-black pixels are the object
  back/<file>                 backgrounds of any size
Without photo_copy/, a 4-channel photo's alpha is its mask, else its own non-black pixels are.

The bank holds each object cropped to its mask (BGR + mask as a 4th channel) and each background
shrunk to just cover one quilt cell. Workers open the files read-only with ``mmap_mode="r"``.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import InputError
from pipeline.quilt import tile_grid

log = logging.getLogger(__name__)


@dataclass
class ObjectSource:
    photo: Path
    mask: Path | None  # None: alpha channel or the photo's own non-black pixels


@dataclass
class Catalog:
    root: Path
    classes: list[str]
    objects: dict[str, list[ObjectSource]]
    backgrounds: list[Path]
    skipped: list[str] = field(default_factory=list)


def _visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def scan(root: Path, photo_dir: str, mask_dir: str, background_dir: str) -> Catalog:
    """List classes, photos, masks and backgrounds; check the folder structure (no decoding yet)."""
    if not root.is_dir():
        raise InputError(f"input.root: {root} is not a folder; point input.root at a folder holding "
                         f"{photo_dir}/<class>/ and {background_dir}/, or leave it unset for the demo set")
    photos = root / photo_dir
    if not photos.is_dir():
        raise InputError(f"{photos}: photo folder not found; create {photo_dir}/<class>/ under input.root "
                         f"or set input.photo_dir")
    classes = sorted(p.name for p in photos.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise InputError(f"{photos}: no class folders; put each class's photos in {photo_dir}/<class>/")
    masks = root / mask_dir
    use_masks = masks.is_dir()
    objects = {}
    for name in classes:
        files = _visible_files(photos / name)
        if not files:
            raise InputError(f"{photos / name}: class '{name}' has no photos; add images or remove the folder")
        objects[name] = [ObjectSource(f, masks / name / f.name if use_masks else None) for f in files]
    backs = root / background_dir
    backgrounds = _visible_files(backs) if backs.is_dir() else []
    if not backgrounds:
        raise InputError(f"{backs}: no background images; add some or set input.background_dir")
    return Catalog(root, classes, objects, backgrounds)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return (img >> 8).astype(np.uint8) if img.dtype == np.uint16 else img.astype(np.uint8, copy=False)


def read_image(path: Path) -> np.ndarray:
    """Decode any OpenCV-readable image to uint8, keeping an alpha channel if there is one."""
    data = np.fromfile(str(path), np.uint8) if path.is_file() else None
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data is not None and data.size else None
    if img is None:
        raise InputError(f"{path}: missing, unreadable or not an image")
    img = _to_uint8(img)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return img


def load_object(source: ObjectSource, threshold: int) -> np.ndarray:
    """Photo and mask as one BGRA array cropped to the mask's bounding box (mask in {0, 255})."""
    photo = read_image(source.photo)
    if source.mask is not None:
        mask_img = read_image(source.mask)[:, :, :3]
        if mask_img.shape[:2] != photo.shape[:2]:
            raise InputError(f"{source.mask}: mask is {mask_img.shape[1]}x{mask_img.shape[0]} but its photo "
                             f"{source.photo.name} is {photo.shape[1]}x{photo.shape[0]}; they must match")
        mask = mask_img.max(axis=2) > threshold
    elif photo.shape[2] == 4:
        mask = photo[:, :, 3] > threshold
    else:
        mask = photo[:, :, :3].max(axis=2) > threshold
    if not mask.any():
        where = source.mask or source.photo
        raise InputError(f"{where}: mask is all black (no pixel above input.mask_threshold); "
                         f"the object must be non-black on a black background")
    mask_u8 = mask.astype(np.uint8) * 255
    x, y, w, h = cv2.boundingRect(mask_u8)
    obj = np.dstack([photo[y:y + h, x:x + w, :3], mask_u8[y:y + h, x:x + w]])
    return np.ascontiguousarray(obj)


def fit_background(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Shrink (never enlarge) so the image still covers a width x height area."""
    img = img[:, :, :3]
    factor = max(width / img.shape[1], height / img.shape[0])
    if factor >= 1.0:
        return np.ascontiguousarray(img)
    size = (max(1, round(img.shape[1] * factor)), max(1, round(img.shape[0] * factor)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def sheared_extents(mask: np.ndarray, shears: np.ndarray) -> tuple[np.ndarray, int]:
    """Widths of the mask's tight box under each horizontal shear, and its (unchanged) height."""
    hull = cv2.convexHull(cv2.findNonZero(mask)).reshape(-1, 2).astype(np.float64)
    xs = hull[:, 0][None, :] + shears[:, None] * hull[:, 1][None, :]
    return xs.max(axis=1) - xs.min(axis=1) + 1, int(np.ptp(hull[:, 1])) + 1


def check_fits(obj: np.ndarray, source: ObjectSource, augment: dict, quilt: dict, compose: dict) -> None:
    """Fail early for an object that no allowed draw can place: too big, too small, or never the right aspect."""
    scale, shear, aspect = augment["scale"], augment["shear"], compose["aspect"]
    smallest, largest = (scale["min"], scale["max"]) if scale["enabled"] else (1.0, 1.0)
    shears = np.linspace(shear["min"], shear["max"], 41) if shear["enabled"] else np.zeros(1)
    widths, height = sheared_extents(obj[:, :, 3], shears)
    narrowest = float(widths.min())
    if narrowest * smallest > quilt["width"] or height * smallest > quilt["height"]:
        raise InputError(f"{source.photo}: object is at least {narrowest:.0f}x{height} px (sheared as allowed), "
                         f"which at the smallest scale ({smallest}) does not fit the "
                         f"{quilt['width']}x{quilt['height']} canvas; "
                         f"lower augment.scale.min or enlarge quilt.width/quilt.height")
    if max(widths.max(), height) * largest < compose["min_box_size"]:
        raise InputError(f"{source.photo}: object is {obj.shape[1]}x{obj.shape[0]} px, below "
                         f"compose.min_box_size={compose['min_box_size']} even at the largest scale ({largest}); "
                         f"raise augment.scale.max or lower the minimum")
    ratios = widths / height
    slack = 0.05  # interpolation moves edges by a pixel or so
    if not ((ratios >= aspect["min"] * (1 - slack)) & (ratios <= aspect["max"] * (1 + slack))).any():
        raise InputError(f"{source.photo}: box aspect (w/h) is {ratios.min():.2f}-{ratios.max():.2f} for every "
                         f"allowed shear, never inside compose.aspect [{aspect['min']}, {aspect['max']}]; "
                         f"widen compose.aspect or change augment.shear")


def _save(bank_dir: Path, name: str, array: np.ndarray) -> str:
    path = bank_dir / f"{name}.npy"
    np.save(path, array)
    return str(path)


def _load_or_skip(path_for_log: Path, on_bad_file: str, skipped: list[str], loader: Callable[..., np.ndarray],
                  *args) -> np.ndarray | None:
    try:
        return loader(*args)
    except InputError as err:
        if on_bad_file != "skip":
            raise InputError(f"{err} (set input.on_bad_file=skip to skip bad files)") from None
        log.warning("skipping %s: %s <input.on_bad_file=skip>", path_for_log, err)
        skipped.append(str(path_for_log))
        return None


def build_bank(catalog: Catalog, bank_dir: Path, settings: dict) -> dict:
    """Decode every input once, check it, and save it under ``bank_dir``; returns a plain-dict index."""
    inp, quilt = settings["input"], settings["quilt"]
    bank_dir.mkdir(parents=True, exist_ok=True)
    root = catalog.root
    classes = []
    for class_idx, name in enumerate(catalog.classes):
        objects = []
        for source in catalog.objects[name]:
            obj = _load_or_skip(source.photo, inp["on_bad_file"], catalog.skipped,
                                load_object, source, inp["mask_threshold"])
            if obj is None:
                continue
            check_fits(obj, source, settings["augment"], quilt, settings["compose"])
            objects.append({
                "file": _save(bank_dir, f"object_{class_idx:04d}_{len(objects):05d}", obj),
                "photo": source.photo.relative_to(root).as_posix(),
                "mask": source.mask.relative_to(root).as_posix() if source.mask else None,
            })
        if not objects:
            raise InputError(f"{root / inp['photo_dir'] / name}: class '{name}' has no usable photos left "
                             f"after skipping bad files")
        classes.append({"name": name, "objects": objects})
    # Backgrounds only ever fill one cell, zoomed in at most zoom.max: shrink them to that once, here,
    # so that a tile is usually a plain copy rather than a full-image resize per sample.
    cells = tile_grid(quilt["width"], quilt["height"], quilt["rows"], quilt["cols"])
    cover = [math.ceil(max(c[i + 2] - c[i] for c in cells) * quilt["zoom"]["max"]) for i in (0, 1)]
    backgrounds = []
    for path in catalog.backgrounds:
        img = _load_or_skip(path, inp["on_bad_file"], catalog.skipped, read_image, path)
        if img is None:
            continue
        img = fit_background(img, *cover)
        backgrounds.append({
            "file": _save(bank_dir, f"background_{len(backgrounds):05d}", img),
            "source": path.relative_to(root).as_posix(),
            "size": [int(img.shape[1]), int(img.shape[0])],
        })
    if not backgrounds:
        raise InputError(f"{root / inp['background_dir']}: no usable backgrounds left after skipping bad files")
    return {"root": str(root), "classes": classes, "backgrounds": backgrounds}
