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

from pipeline.augment import hull_extents, linear_part, size_to_scale
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
    distractors: list[ObjectSource] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def describe(self, name: str) -> str:
        """What was found for a class, e.g. '3 photos, 3 masks in photo_copy/' or '4 cut-outs (alpha or non-black)'."""
        sources = self.objects[name]
        if sources and sources[0].mask is not None:
            return f"{len(sources)} photos, {len(sources)} masks in {sources[0].mask.parent.parent.name}/"
        return f"{len(sources)} cut-outs (alpha = mask, else non-black pixels)"


# Files and folders that file managers and NAS boxes leave behind (dot-files are skipped as well).
OS_CLUTTER = {"thumbs.db", "desktop.ini", "@eadir", "__macosx"}


def _is_clutter(path: Path) -> bool:
    return path.name.startswith(".") or path.name.lower() in OS_CLUTTER


def _visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not _is_clutter(p))


def _mask_finder(folder: Path) -> Callable[[Path], Path]:
    """A photo's mask: the file with its name, else the only one with its stem (photo 0.jpg, mask 0.png)."""
    by_stem: dict[str, list[Path]] = {}
    for path in _visible_files(folder) if folder.is_dir() else []:
        by_stem.setdefault(path.stem, []).append(path)

    def find(photo: Path) -> Path:
        exact, same_stem = folder / photo.name, by_stem.get(photo.stem, [])
        return same_stem[0] if not exact.exists() and len(same_stem) == 1 else exact
    return find


def scan(root: Path, photo_dir: str, mask_dir: str, background_dir: str, distractor_dir: str | None = None
         ) -> Catalog:
    """List classes, photos, masks, backgrounds and distractors; check the folder structure (no decoding yet)."""
    if not root.is_dir():
        raise InputError(f"input.root: {root} is not a folder; point input.root at a folder holding "
                         f"{photo_dir}/<class>/ and {background_dir}/, or leave it unset for the demo set")
    photos = root / photo_dir
    if not photos.is_dir():
        raise InputError(f"{photos}: photo folder not found; create {photo_dir}/<class>/ under input.root "
                         f"or set input.photo_dir")
    classes = sorted(p.name for p in photos.iterdir() if p.is_dir() and not _is_clutter(p))
    if not classes:
        raise InputError(f"{photos}: no class folders; put each class's photos in {photo_dir}/<class>/")
    masks = root / mask_dir
    use_masks = masks.is_dir()
    objects = {}
    for name in classes:
        files = _visible_files(photos / name)
        if not files:
            raise InputError(f"{photos / name}: class '{name}' has no photos; add images or remove the folder")
        find_mask = _mask_finder(masks / name) if use_masks else lambda photo: None
        objects[name] = [ObjectSource(f, find_mask(f)) for f in files]
    backs = root / background_dir
    backgrounds = _visible_files(backs) if backs.is_dir() else []
    if not backgrounds:
        raise InputError(f"{backs}: no background images; add some or set input.background_dir")
    distractors = []
    if distractor_dir is not None:
        folder = root / distractor_dir  # an absolute distractor_dir stays as it is
        if not folder.is_dir():
            raise InputError(f"input.distractor_dir: {folder} is not a folder; create it with distractor cut-outs "
                             f"(RGBA PNGs or objects on black) or set input.distractor_dir=null")
        distractors = [ObjectSource(f, None) for f in _visible_files(folder)]
        if not distractors:
            raise InputError(f"{folder}: no distractor images in input.distractor_dir; add some or unset it")
    return Catalog(root, classes, objects, backgrounds, distractors)


# Any depth and colour layout, with the EXIF orientation applied (IMREAD_UNCHANGED skips it, but keeps alpha).
ORIENTED = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH


def _to_uint8(img: np.ndarray, path: Path) -> np.ndarray:
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    if img.dtype.kind == "f":  # OpenCV's convention for float images: 0-1
        if not np.isfinite(img).all() or img.min() < 0 or img.max() > 1:
            raise InputError(f"{path}: floating-point image with values outside 0-1 "
                             f"({np.nanmin(img):g} to {np.nanmax(img):g}); save it as an 8- or 16-bit image")
        return np.rint(img * 255).astype(np.uint8)
    return img.astype(np.uint8, copy=False)


def read_image(path: Path) -> np.ndarray:
    """Decode any OpenCV-readable image to uint8 and upright (EXIF orientation), keeping an alpha channel."""
    data = np.fromfile(str(path), np.uint8) if path.is_file() else None
    img = None
    if data is not None and data.size:
        if data[:2].tobytes() == b"\xff\xd8":  # JPEG: never an alpha channel, one oriented decode
            img = cv2.imdecode(data, ORIENTED)
        else:
            img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
            if img is not None and (img.ndim == 2 or img.shape[2] < 4):
                img = cv2.imdecode(data, ORIENTED)  # no alpha to keep: decode again to apply the orientation
    if img is None:
        raise InputError(f"{path}: missing, unreadable or not an image")
    img = _to_uint8(img, path)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return img


def load_object(source: ObjectSource, threshold: int) -> np.ndarray:
    """Photo and mask as one BGRA array cropped to the mask's bounding box (mask in {0, 255})."""
    photo = read_image(source.photo)
    if source.mask is not None:
        if not source.mask.exists():
            raise InputError(f"{source.mask}: no mask for {source.photo.name}; a mask has the photo's file name "
                             f"(any image extension) in {source.mask.parent.parent.name}/<class>/. Add it, or "
                             f"remove {source.mask.parent.parent.name}/ to use the photos as cut-outs")
        mask_img = read_image(source.mask)[:, :, :3]
        if mask_img.shape[:2] != photo.shape[:2]:
            raise InputError(f"{source.mask}: mask is {mask_img.shape[1]}x{mask_img.shape[0]} but its photo "
                             f"{source.photo.name} is {photo.shape[1]}x{photo.shape[0]}; they must match")
        mask = mask_img.max(axis=2) > threshold
    elif photo.shape[2] == 4:
        mask = photo[:, :, 3] > threshold
        if not mask.any():
            raise InputError(f"{source.photo}: RGBA cut-out with an empty alpha channel (fully transparent); "
                             f"export the cut-out with its alpha, or remove the file")
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


def transform_grid(augment: dict) -> np.ndarray:
    """Unit-scale 2x2 maps spanning every allowed shear, rotation and mirror: what a draw can do to a shape."""
    def spread(key: str, neutral: float, steps: int) -> np.ndarray:
        spec = augment[key]
        return np.linspace(spec["min"], spec["max"], steps) if spec["enabled"] else np.array([neutral])

    flip = augment["flip"]
    mirrors_h = [False, True] if flip["enabled"] and flip["horizontal"] > 0 else [False]
    mirrors_v = [False, True] if flip["enabled"] and flip["vertical"] > 0 else [False]
    return np.array([linear_part({"scale": 1.0, "shear": shear, "rotation": rotation, "flip_horizontal": fh,
                                  "flip_vertical": fv})
                     for shear in spread("shear", 0.0, 21) for rotation in spread("rotation", 0.0, 13)
                     for fh in mirrors_h for fv in mirrors_v])


def mask_hull(mask: np.ndarray) -> np.ndarray:
    return cv2.convexHull(cv2.findNonZero(mask)).reshape(-1, 2)


def object_size(obj: np.ndarray) -> float:
    """A cut-out's size in pixels: the square root of its mask area (the same for any rotation of the photo)."""
    return math.sqrt(cv2.countNonZero(obj[:, :, 3]))


def normalise_factors(sizes: list[float]) -> list[float]:
    """Per cut-out, the factor that resizes it to the median size of its group (``augment.size=normalised``)."""
    median = float(np.median(sizes))
    return [median / size for size in sizes]


def check_fits(extents: np.ndarray, source: ObjectSource, augment: dict, quilt: dict, compose: dict,
               normalise: float = 1.0, key: str = "augment") -> None:
    """Fail early for an object that no allowed draw can place: too big, too small, or never the right aspect.

    ``extents``: the object's (n, 2) box sizes at scale 1 under the ``transform_grid`` maps; ``augment``: its
    class's settings (``key`` names them in messages); ``normalise``: its factor to its class's median size.
    """
    width, height = quilt["width"], quilt["height"]
    smallest, largest = scale_bounds(extents, augment, quilt, normalise)
    size_keys = f"{key}.{augment['size']}"
    shown = 1 - compose["max_truncation"]  # the part that must lie on the canvas
    fits = (extents[:, 0] * smallest * shown <= width) & (extents[:, 1] * smallest * shown <= height)
    if not fits.any():
        closest = np.argmin(np.maximum(extents[:, 0] * smallest / width, extents[:, 1] * smallest / height))
        w, h = extents[closest] * smallest[closest]
        raise InputError(f"{source.photo}: object is at least {w:.0f}x{h:.0f} px at its smallest allowed size "
                         f"({size_keys}), which does not fit the {width}x{height} canvas even with "
                         f"compose.max_truncation={compose['max_truncation']}; lower {size_keys}.min "
                         f"or enlarge quilt.width/quilt.height")
    if not ((shortest := extents.min(axis=1) * largest) >= compose["min_box_size"]).any():
        raise InputError(f"{source.photo}: the object's box is at most {shortest.max():.0f} px on its shorter side "
                         f"at its largest allowed size ({size_keys}.max), below compose.min_box_size="
                         f"{compose['min_box_size']}; raise {size_keys}.max or lower the minimum")
    ratios = extents[:, 0] / extents[:, 1]
    aspect, slack = compose["aspect"], 0.05  # interpolation moves edges by a pixel or so
    if not ((ratios >= aspect["min"] * (1 - slack)) & (ratios <= aspect["max"] * (1 + slack))).any():
        raise InputError(f"{source.photo}: box aspect (w/h) is {ratios.min():.2f}-{ratios.max():.2f} for every "
                         f"allowed shear/rotation, never inside compose.aspect [{aspect['min']}, {aspect['max']}]; "
                         f"widen compose.aspect or change augment.shear/augment.rotation")


def scale_bounds(extents: np.ndarray, augment: dict, quilt: dict, normalise: float = 1.0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest scale factor per ``transform_grid`` map: the ends of the size mode's range.

    The perspective tilt is left out: it moves the box by a fraction of its size either way, and an untilted
    draw is always allowed (every corner offset range contains 0).
    """
    mode, canvas = augment["size"], (quilt["width"], quilt["height"])
    spec = augment[mode]
    return (size_to_scale(mode, spec["min"], extents, canvas, normalise),
            size_to_scale(mode, spec["max"], extents, canvas, normalise))


def smallest_box_area(extents: np.ndarray, augment: dict, quilt: dict, normalise: float = 1.0) -> float:
    """Pixel area of the object's smallest possible box under the allowed transforms and sizes."""
    smallest, _ = scale_bounds(extents, augment, quilt, normalise)
    return float((extents[:, 0] * extents[:, 1] * smallest ** 2).min())


def check_room(smallest_areas: list[float], settings: dict) -> None:
    """Fail early when compose.objects.min objects cannot share the canvas even at their smallest."""
    comp, quilt = settings["compose"], settings["quilt"]
    need = comp["objects"]["min"]
    if need <= 1:
        return
    # Every object keeps >= (1 - max_occlusion - max_truncation) of itself visible and on the canvas,
    # and any of them may be the smallest object at its smallest size.
    shown = max(0.0, 1 - comp["max_occlusion"] - comp["max_truncation"])
    required = need * min(smallest_areas) * shown
    canvas = quilt["width"] * quilt["height"]
    if required > canvas:
        raise InputError(f"compose.objects.min={need}: even {need} copies of the smallest object at its smallest size "
                         f"need {required:.0f} visible px, more than the {quilt['width']}x{quilt['height']} canvas "
                         f"holds ({canvas} px); lower compose.objects.min, shrink the objects "
                         f"(the range of augment.size's mode, e.g. augment.scale.min) or allow more overlap "
                         f"(compose.max_occlusion)")


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


def _bank_object(obj: np.ndarray, hull: np.ndarray, normalise: float, bank_dir: Path, name: str,
                 source: ObjectSource, root: Path) -> dict:
    return {
        "file": _save(bank_dir, name, obj),
        "photo": _relative(source.photo, root),
        "mask": _relative(source.mask, root) if source.mask else None,
        "hull": hull.tolist(),
        "normalise": normalise,
    }


def _measure(obj: np.ndarray, source: ObjectSource, grid: np.ndarray, augment: dict, normalise: float,
             settings: dict, key: str) -> tuple[np.ndarray, np.ndarray]:
    """The object's mask hull and its box sizes under every allowed transform, after checking that it can fit."""
    hull = mask_hull(obj[:, :, 3])
    extents = hull_extents(hull, grid)
    check_fits(extents, source, augment, settings["quilt"], settings["compose"], normalise, key)
    return hull, extents


def _class_key(augment: dict, name: str) -> str:
    """How messages name a class's size settings: its own override, else the run's."""
    return f"augment.classes.{name}" if {"size", augment["size"]} & set(augment.get("classes", {}).get(name, {})) \
        else "augment"


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()


def build_bank(catalog: Catalog, bank_dir: Path, settings: dict) -> dict:
    """Decode every input once, check it, and save it under ``bank_dir``; returns a plain-dict index."""
    inp, quilt = settings["input"], settings["quilt"]
    bank_dir.mkdir(parents=True, exist_ok=True)
    root = catalog.root
    grids = {}  # one transform grid per distinct shear/rotation/flip setting (one for the run unless classes differ)

    def grid_for(augment: dict) -> np.ndarray:
        spec = repr([augment[k] for k in ("shear", "rotation", "flip")])
        if spec not in grids:
            grids[spec] = transform_grid(augment)
        return grids[spec]

    def load_all(sources: list[ObjectSource]) -> list[tuple[ObjectSource, np.ndarray]]:
        loaded = ((source, _load_or_skip(source.photo, inp["on_bad_file"], catalog.skipped, load_object, source,
                                         inp["mask_threshold"])) for source in sources)
        return [(source, obj) for source, obj in loaded if obj is not None]

    classes, smallest_areas = [], []
    for class_idx, name in enumerate(catalog.classes):
        augment, key = settings["class_augment"][class_idx], _class_key(settings["augment"], name)
        loaded = load_all(catalog.objects[name])
        if not loaded:
            raise InputError(f"{root / inp['photo_dir'] / name}: class '{name}' has no usable photos left "
                             f"after skipping bad files")
        factors = normalise_factors([object_size(obj) for _, obj in loaded])  # needs the whole class first
        objects = []
        for (source, obj), factor in zip(loaded, factors, strict=True):
            hull, extents = _measure(obj, source, grid_for(augment), augment, factor, settings, key)
            smallest_areas.append(smallest_box_area(extents, augment, quilt, factor))
            objects.append(_bank_object(obj, hull, factor, bank_dir, f"object_{class_idx:04d}_{len(objects):05d}",
                                        source, root))
        classes.append({"name": name, "objects": objects})
    check_room(smallest_areas, settings)
    loaded = load_all(catalog.distractors)
    factors = normalise_factors([object_size(obj) for _, obj in loaded]) if loaded else []
    distractors = []
    for (source, obj), factor in zip(loaded, factors, strict=True):
        hull, _ = _measure(obj, source, grid_for(settings["augment"]), settings["augment"], factor, settings,
                           "augment")
        distractors.append(_bank_object(obj, hull, factor, bank_dir, f"distractor_{len(distractors):05d}", source,
                                        root))
    if catalog.distractors and not distractors:
        raise InputError(f"{catalog.distractors[0].photo.parent}: no usable distractors left after skipping bad files")
    # Backgrounds only ever fill one cell, zoomed in at most zoom.max: shrink them to that once, here,
    # so that a tile is usually a plain copy rather than a full-image resize per sample.
    cells = tile_grid(quilt["width"], quilt["height"], quilt["rows"], quilt["cols"])
    cell = [max(c[i + 2] - c[i] for c in cells) for i in (0, 1)]  # the largest cell's width and height
    cover = [math.ceil(extent * quilt["zoom"]["max"]) for extent in cell]
    backgrounds, enlarged = [], []
    for path in catalog.backgrounds:
        img = _load_or_skip(path, inp["on_bad_file"], catalog.skipped, read_image, path)
        if img is None:
            continue
        if img.shape[1] < cell[0] or img.shape[0] < cell[1]:
            enlarged.append(f"{_relative(path, root)} ({img.shape[1]}x{img.shape[0]})")
        img = fit_background(img, *cover)
        backgrounds.append({
            "file": _save(bank_dir, f"background_{len(backgrounds):05d}", img),
            "source": _relative(path, root),
            "size": [int(img.shape[1]), int(img.shape[0])],
        })
    if not backgrounds:
        raise InputError(f"{root / inp['background_dir']}: no usable backgrounds left after skipping bad files")
    if enlarged:
        log.warning("%d backgrounds are smaller than a %dx%d quilt cell and will be enlarged (blurry tiles): %s%s",
                    len(enlarged), *cell, ", ".join(enlarged[:3]), ", ..." if len(enlarged) > 3 else "")
    return {"root": str(root), "classes": classes, "backgrounds": backgrounds, "distractors": distractors}
