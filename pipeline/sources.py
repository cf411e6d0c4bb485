"""Find, decode and check the inputs once, up front, and store them as a bank of ``.npy`` files.

Layout under the input root (the original script's):
  photo/<class>/<file>        object photos
  photo_copy/<class>/<file>   optional masks, same file names: non-black pixels are the object
  back/<file>                 backgrounds of any size
A class without photo_copy/<class>/ is cut-outs: a 4-channel photo's alpha is its mask, else its own
non-black pixels are. ``decode_object`` does the per-file work and returns its warnings instead of logging.

The bank holds each object cropped to its mask (BGR + mask as a 4th channel) and each background
shrunk to just cover one quilt cell. Workers open the files read-only with ``mmap_mode="r"``.
"""
from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.augment import hull_extents, linear_part, size_to_scale
from pipeline.errors import InputError, naming
from pipeline.quilt import fade_width, level_size, paint_rects, tile_grid, zoom_levels

log = logging.getLogger(__name__)


@dataclass
class ObjectSource:
    photo: Path
    mask: Path | None  # None: alpha channel or the photo's own non-black pixels
    # Several files with the photo's stem (its exact name among them or not): which one is meant is unclear.
    mask_candidates: tuple[Path, ...] = ()


@dataclass
class Catalog:
    root: Path
    classes: list[str]
    objects: dict[str, list[ObjectSource]]
    backgrounds: list[Path]
    distractors: list[ObjectSource] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def describe(self, name: str) -> str:
        """What was found for a class, e.g. '3 photos, 2 masks in photo_copy/' or '4 cut-outs (alpha or non-black)'."""
        sources = self.objects[name]
        if not sources or sources[0].mask is None:
            return f"{_count(len(sources), 'cut-out')} (alpha = mask, else non-black pixels)"
        found = sum(1 for s in sources if s.mask.is_file() or s.mask_candidates)
        return f"{_count(len(sources), 'photo')}, {_count(found, 'mask')} in {sources[0].mask.parent.parent.name}/"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# Files and folders that file managers and NAS boxes leave behind (dot-files are skipped as well).
OS_CLUTTER = {"thumbs.db", "desktop.ini", "@eadir", "__macosx"}


def _is_clutter(path: Path) -> bool:
    return path.name.startswith(".") or path.name.lower() in OS_CLUTTER


def _visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not _is_clutter(p))


# What OpenCV reads: only these count when several files share a photo's name in the mask folder.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".jp2", ".pbm", ".pgm",
                  ".ppm", ".pnm", ".pxm", ".sr", ".ras", ".exr", ".hdr", ".pic", ".avif"}


def _mask_finder(folder: Path) -> Callable[[Path], ObjectSource]:
    """A photo's source: its mask is the only file with its stem, whatever its extension (photo 0.jpg, mask
    0.png); several with its stem, even one with the photo's exact name among them, are kept as candidates, for an
    error naming them all."""
    by_stem: dict[str, list[Path]] = {}
    for path in _visible_files(folder):
        by_stem.setdefault(path.stem, []).append(path)

    def find(photo: Path) -> ObjectSource:
        same_stem = by_stem.get(photo.stem, [])
        if len(same_stem) > 1:  # a sidecar (0.xmp, 0.txt) beside the mask is not a candidate
            same_stem = [p for p in same_stem if p.suffix.lower() in IMAGE_SUFFIXES] or same_stem
        if len(same_stem) == 1:
            return ObjectSource(photo, same_stem[0])
        exact = folder / photo.name  # missing (an error naming it) or one of several candidates
        return ObjectSource(photo, exact, tuple(same_stem) if len(same_stem) > 1 else ())
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
    folders = sorted(p for p in photos.iterdir() if p.is_dir())
    for hidden in (p for p in folders if p.name.startswith(".")):
        log.warning("%s: skipped: folders whose names start with a dot are hidden; rename it to use it as a class",
                    hidden)
    classes = [p.name for p in folders if not _is_clutter(p)]
    if not classes:
        raise InputError(f"{photos}: no class folders; put each class's photos in {photo_dir}/<class>/")
    objects = {}
    for name in classes:
        files = _visible_files(photos / name)
        if not files:
            raise InputError(f"{photos / name}: class '{name}' has no photos; add images or remove the folder")
        # per class: masks from mask_dir/<class>/ when that folder exists, else the photos are cut-outs
        masks = root / mask_dir / name
        find = _mask_finder(masks) if masks.is_dir() else lambda photo: ObjectSource(photo, None)
        objects[name] = [find(f) for f in files]
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


def _is_jpeg(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\xff\xd8"


# A mask or cut-out covering at least this share of its photo is taken for a plain photo, not a cut-out.
FULL_FRAME = 0.99
# A mask is called JPEG-damaged when its grey pixels farther than 4 px from the outline number more than this
# share of the outline: smooth soft edges (anti-aliased, feathered) have none, JPEG-compressed masks 3-30%.
STRAY_GREY = 0.02


# A mask whose object pixels are mostly below this level shows the object in colour (or grey) on black, as the
# original script's photo_copy masks may: its greys are the object's, not compression's.
WHITE = 224
# Channels further apart than this make a pixel coloured; JPEG's chroma noise on a black-and-white mask stays below.
COLOURED = 32


def is_colour_mask(mask_img: np.ndarray, levels: np.ndarray, threshold: int) -> bool:
    """Whether a mask shows the object in colour (or grey) on black rather than white on black: most of its
    object pixels are not white, or a good share are coloured (a bright orange is white by its levels)."""
    on = levels > threshold
    pixels = mask_img[on].astype(np.int16)
    coloured = np.count_nonzero(pixels.max(axis=1) - pixels.min(axis=1) > COLOURED)
    return np.count_nonzero(levels[on] >= WHITE) < len(pixels) / 2 or coloured > len(pixels) / 4


def stray_grey_pixels(levels: np.ndarray) -> tuple[np.ndarray, int]:
    """(the levels of the grey pixels more than 4 px from the mask outline, the number of pixels on the outline)
    of a mask's 0-255 levels.

    The outline is that of the mask thresholded at 128; grey means neither 0 nor 255.
    """
    solid = (levels >= 128).view(np.uint8)
    outline = cv2.morphologyEx(solid, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    square = np.ones((9, 9), np.uint8)
    near = cv2.dilate(solid, square, borderType=cv2.BORDER_REPLICATE) != cv2.erode(solid, square,
                                                                                 borderType=cv2.BORDER_REPLICATE)
    grey = (levels > 0) & (levels < 255) & ~near
    return levels[grey], int(cv2.countNonZero(outline))


def decode_object(source: ObjectSource, threshold: int) -> tuple[np.ndarray, list[str]]:
    """Photo and mask as one BGRA array cropped to the mask's bounding box (mask in {0, 255}), and the warnings
    its files deserve (each naming its file). Pure: reads the files and logs nothing, so it can run anywhere."""
    if source.mask_candidates:
        *others, last = (str(p) for p in source.mask_candidates)
        raise InputError(f"{source.photo}: several masks could be meant ({', '.join(others)} and {last}); keep one "
                         f"and remove the others (a mask may have any image extension)")
    photo = read_image(source.photo)
    warnings, where, opaque = [], source.mask or source.photo, False
    if source.mask is not None:
        if not source.mask.is_file():
            raise InputError(f"{source.mask}: no mask for {source.photo.name}; a mask has the photo's file name "
                             f"(any image extension) in {source.mask.parent.parent.name}/<class>/. Add it, or "
                             f"remove {source.mask.parent.parent.name}/{source.mask.parent.name}/ to use the "
                             f"photos of this class as cut-outs")
        mask_img = read_image(source.mask)[:, :, :3]
        if mask_img.shape[:2] != photo.shape[:2]:
            raise InputError(f"{source.mask}: mask is {mask_img.shape[1]}x{mask_img.shape[0]} but its photo "
                             f"{source.photo.name} is {photo.shape[1]}x{photo.shape[0]}; they must match")
        levels = mask_img.max(axis=2)
        if _is_jpeg(source.mask):
            warnings.append(f"{source.mask}: mask stored as JPEG; compression blurs its edges and leaves faint "
                            f"specks that can grow the box; save masks as PNG")
        elif not is_colour_mask(mask_img, levels, threshold):
            stray, outline = stray_grey_pixels(levels)
            specks = int(np.count_nonzero(stray > threshold))  # below the threshold they do no harm
            if stray.size > STRAY_GREY * max(outline, 1) and specks:
                warnings.append(f"{source.mask}: {stray.size} grey pixels lie more than 4 px from the mask's "
                                f"outline, as JPEG compression leaves; the {specks} above "
                                f"input.mask_threshold={threshold} become specks of the object; save the mask from "
                                f"its source as a black-and-white PNG")
        mask = levels > threshold
    elif photo.shape[2] == 4:
        alpha = photo[:, :, 3]
        mask = alpha > threshold
        if not mask.any():
            raise InputError(f"{source.photo}: RGBA cut-out with an empty alpha channel (fully transparent); "
                             f"export the cut-out with its alpha, or remove the file")
        opaque = alpha.min() == 255
        if opaque:
            warnings.append(f"{source.photo}: the alpha channel is opaque everywhere, so the whole frame is the "
                            f"object; export the cut-out with a transparent background, or give a mask in "
                            f"photo_copy/<class>/")
    else:
        mask = photo[:, :, :3].max(axis=2) > threshold
        if _is_jpeg(source.photo):
            warnings.append(f"{source.photo}: cut-out stored as JPEG; compression leaves faint non-black pixels "
                            f"around the object that become part of its mask; save cut-outs as PNG (with alpha) "
                            f"or give masks in photo_copy/<class>/")
    if not mask.any():
        raise InputError(f"{where}: mask is all black (no pixel above input.mask_threshold); "
                         f"the object must be non-black on a black background")
    mask_u8 = mask.view(np.uint8) * np.uint8(255)
    covered = cv2.countNonZero(mask_u8) / mask.size
    if covered >= FULL_FRAME and not opaque:  # an opaque alpha has said so already
        warnings.append(f"{where}: the mask covers {covered:.0%} of the photo, so this is not a cut-out: the whole "
                        f"frame becomes the object; give a mask (object white on black) in photo_copy/<class>/ or "
                        f"a cut-out on a transparent or black background")
    x, y, w, h = cv2.boundingRect(mask_u8)
    obj = np.dstack([photo[y:y + h, x:x + w, :3], mask_u8[y:y + h, x:x + w]])
    return np.ascontiguousarray(obj), warnings


def scale_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``size`` (w, h), anti-aliased: a shrink by 2x or more averages (INTER_AREA); a smaller one
    interpolates (INTER_LINEAR), after a Gaussian blur that removes what the new pixel grid cannot hold when that
    blur is noticeable (sigma >= 0.5 px, a shrink by 1.4x or more). 2-5x faster than INTER_AREA at fractional
    ratios, and as smooth."""
    if size == (img.shape[1], img.shape[0]):
        return img
    shrink = min(img.shape[1] / size[0], img.shape[0] / size[1])
    if shrink >= 2:
        return cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    sigma = 0.5 * math.sqrt(max(shrink ** 2 - 1, 0))
    if sigma >= 0.5:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    return cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)


def decode_background(path: Path, rect_w: int, rect_h: int, zooms: list[float]) -> tuple[list[int], list[np.ndarray]]:
    """A background's own size [w, h] and its zoom levels (``background_levels``). Pure: reads the file, logs
    nothing, so it can run anywhere."""
    img = read_image(path)
    return [int(img.shape[1]), int(img.shape[0])], background_levels(img, rect_w, rect_h, zooms)


def background_levels(img: np.ndarray, rect_w: int, rect_h: int, zooms: list[float]) -> list[np.ndarray]:
    """The background scaled for each zoom in ``zooms`` (ascending), as ``quilt.level_size`` says: a
    rect_w x rect_h window of level z shows 1/z of the widest window of that aspect. The largest level is
    scaled from the image (it is the image when of its size), each smaller one from the next larger."""
    levels, larger = [], np.ascontiguousarray(img[:, :, :3])
    height, width = larger.shape[:2]
    for zoom in reversed(zooms):
        larger = scale_image(larger, level_size(width, height, rect_w, rect_h, zoom))
        levels.append(larger)
    return levels[::-1]


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
    """Convex hull of the mask's pixels, from its outer contours (the same hull, 10-50x faster on large masks)."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return cv2.convexHull(np.concatenate(contours)).reshape(-1, 2)


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


def _class_key(augment: dict, name: str) -> str:
    """How messages name a class's size settings: its own override, else the run's."""
    return f"augment.classes.{name}" if {"size", augment["size"]} & set(augment.get("classes", {}).get(name, {})) \
        else "augment"


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()


def file_record(path: Path, root: Path) -> dict:
    """An input file's identity for run.json: path (relative to the input root), size and sha256."""
    data = path.read_bytes()
    return {"path": _relative(path, root), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _hashed(files: list[tuple[Path | None, str]], root: Path) -> list[dict]:
    """``file_record`` of each (path, kind) that exists; a missing or unreadable one is reported by the decode."""
    records = []
    for path, kind in files:
        try:
            if path is not None:
                records.append({**file_record(path, root), "kind": kind})
        except OSError:
            pass
    return records


def object_task(kind: str, source: ObjectSource, root: Path, bank_file: str, settings: dict) -> dict:
    """Decode and bank one object photo (kind 'object') or distractor, with its hull and size; runs in a worker.

    Returns the bank entry (``entry``), the input files read (``inputs``), the file's ``warnings`` and, for a bad
    file, ``error``. Whether the object can fit is checked in the parent (``fit_group``): with
    ``augment.size=normalised`` that needs the sizes of its whole class.
    """
    inputs = _hashed([(source.photo, "photo" if kind == "object" else kind), (source.mask, "mask")], root)
    try:
        obj, warnings = decode_object(source, settings["input"]["mask_threshold"])
    except InputError as err:
        return {"inputs": inputs, "error": str(err), "file": _relative(source.photo, root)}
    with naming(bank_file):  # numpy's short write on a full disk names no file
        np.save(bank_file, obj)
    entry = {"file": bank_file, "photo": _relative(source.photo, root),
             "mask": _relative(source.mask, root) if source.mask else None, "hull": mask_hull(obj[:, :, 3]).tolist()}
    return {"inputs": inputs, "entry": entry, "size": object_size(obj), "warnings": warnings}


def background_task(path: Path, root: Path, bank_file: str, settings: dict) -> dict:
    """Decode one background and bank each of its zoom levels: a tile is then a plain copy of a window of one
    of them (``quilt.render``)."""
    inputs = _hashed([(path, "background")], root)
    quilt = settings["quilt"]
    rects = paint_rects(quilt["width"], quilt["height"], quilt["rows"], quilt["cols"], fade_width(quilt))
    rect = [max(r[i + 2] - r[i] for r in rects) for i in (0, 1)]  # the largest area a tile paints
    zooms = zoom_levels(quilt["zoom"])
    try:
        size, levels = decode_background(path, *rect, zooms)
    except InputError as err:
        return {"inputs": inputs, "error": str(err), "file": _relative(path, root)}
    cell = largest_cell(quilt)
    small = f"{size[0]}x{size[1]}" if size[0] < cell[0] or size[1] < cell[1] else None
    stem = bank_file.removesuffix(".npy")
    entry = {"source": _relative(path, root), "size": size, "levels": []}
    for n, (zoom, level) in enumerate(zip(zooms, levels, strict=True)):
        with naming(f"{stem}_{n}.npy"):
            np.save(f"{stem}_{n}.npy", level)
        entry["levels"].append({"zoom": zoom, "file": f"{stem}_{n}.npy",
                                "size": [int(level.shape[1]), int(level.shape[0])]})
    return {"inputs": inputs, "entry": entry, "small": small}


def largest_cell(quilt: dict) -> list[int]:
    cells = tile_grid(quilt["width"], quilt["height"], quilt["rows"], quilt["cols"])
    return [max(c[i + 2] - c[i] for c in cells) for i in (0, 1)]


def decode_jobs(catalog: Catalog, bank_dir: Path, settings: dict) -> list[tuple[str, str, object, tuple]]:
    """Every per-file decode as (kind, name, function, args): the caller runs them on its workers."""
    root, jobs = catalog.root, []
    for class_idx, name in enumerate(catalog.classes):
        for obj_idx, source in enumerate(catalog.objects[name]):
            bank_file = str(bank_dir / f"object_{class_idx:04d}_{obj_idx:05d}.npy")
            jobs.append(("object", name, object_task, ("object", source, root, bank_file, settings)))
    for n, source in enumerate(catalog.distractors):
        bank_file = str(bank_dir / f"distractor_{n:05d}.npy")
        jobs.append(("distractor", "", object_task, ("distractor", source, root, bank_file, settings)))
    for n, path in enumerate(catalog.backgrounds):
        bank_file = str(bank_dir / f"background_{n:05d}.npy")
        jobs.append(("background", "", background_task, (path, root, bank_file, settings)))
    return jobs


MAX_LISTED_ERRORS = 20


def bad_files_report(errors: list[str]) -> str:
    """Every bad input at once (up to a limit), so one rerun fixes them all."""
    shown = errors[:MAX_LISTED_ERRORS]
    more = f"\n  ... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
    files, them = ("file", "it") if len(errors) == 1 else ("files", "them")
    return (f"{len(errors)} bad input {files} (fix or remove {them}, or set input.on_bad_file=skip to skip "
            f"{them}):\n  " + "\n  ".join(shown) + more)


def fit_group(decoded: list[tuple[ObjectSource, dict]], augment: dict, key: str, settings: dict,
              grid: np.ndarray) -> tuple[list[dict], list[float], list[str]]:
    """Check that each decoded object of one class (or the distractors) can fit; returns the bank entries that
    can (with their ``normalise`` factor), their smallest box areas, and an error per object that cannot."""
    factors = normalise_factors([result["size"] for _, result in decoded]) if decoded else []
    entries, areas, errors = [], [], []
    for (source, result), factor in zip(decoded, factors, strict=True):
        extents = hull_extents(np.asarray(result["entry"]["hull"]), grid)
        try:
            check_fits(extents, source, augment, settings["quilt"], settings["compose"], factor, key)
        except InputError as err:
            errors.append(str(err))
            continue
        entries.append({**result["entry"], "normalise": factor})
        areas.append(smallest_box_area(extents, augment, settings["quilt"], factor))
    return entries, areas, errors


def assemble_bank(catalog: Catalog, jobs: list, results: list[dict], settings: dict) -> tuple[dict, list[dict]]:
    """The bank index from the decode results (in job order), and every input file read.

    Each class's objects are checked against its own settings (``augment.classes``). Bad files stop the run all
    together (input.on_bad_file=error) or are skipped with a warning.
    """
    inp, root = settings["input"], catalog.root
    errors, inputs, small, backgrounds = [], [], [], []
    decoded: dict[str, list[tuple[ObjectSource, dict]]] = {name: [] for name in [*catalog.classes, ""]}
    sources_of = {name: iter(catalog.objects[name]) for name in catalog.classes} | {"": iter(catalog.distractors)}
    for (kind, name, _, _), result in zip(jobs, results, strict=True):
        inputs += result["inputs"]
        for warning in result.get("warnings", ()):
            log.warning(warning)
        source = next(sources_of[name]) if kind != "background" else None
        if "error" in result:
            errors.append(result["error"])
            catalog.skipped.append(result["file"])
        elif kind == "background":
            backgrounds.append(result["entry"])
            if result["small"]:
                small.append(f"{result['entry']['source']} ({result['small']})")
        else:
            decoded[name].append((source, result))
    grids: dict[str, np.ndarray] = {}  # one transform grid per distinct shear/rotation/flip setting

    def grid_for(augment: dict) -> np.ndarray:
        spec = repr([augment[k] for k in ("shear", "rotation", "flip")])
        return grids[spec] if spec in grids else grids.setdefault(spec, transform_grid(augment))

    objects, smallest_areas, unfit_objects = {}, [], []
    for class_idx, name in enumerate(catalog.classes):
        augment = settings["class_augment"][class_idx]
        objects[name], areas, unfit = fit_group(decoded[name], augment, _class_key(settings["augment"], name),
                                                settings, grid_for(augment))
        unfit_objects += unfit
        smallest_areas += areas
    if unfit_objects and not any(objects.values()):  # the settings are at fault, not the files
        raise InputError(f"no photo can fit with these settings ({len(unfit_objects)} tried); the first: "
                         f"{unfit_objects[0]}")
    errors += unfit_objects
    catalog.skipped += unfit_objects
    distractors, _, unfit = fit_group(decoded[""], settings["augment"], "augment", settings,
                                      grid_for(settings["augment"]))
    errors += unfit
    catalog.skipped += unfit
    if errors and inp["on_bad_file"] != "skip":
        raise InputError(bad_files_report(errors))
    for error in errors:
        log.warning("skipping %s <input.on_bad_file=skip>", error)
    for name in catalog.classes:
        if not objects[name]:
            raise InputError(f"{root / inp['photo_dir'] / name}: class '{name}' has no usable photos left "
                             f"after skipping bad files")
    if catalog.distractors and not distractors:
        raise InputError(f"{catalog.distractors[0].photo.parent}: no usable distractors left after skipping "
                         f"bad files")
    if not backgrounds:
        raise InputError(f"{root / inp['background_dir']}: no usable backgrounds left after skipping bad files")
    check_room(smallest_areas, settings)
    if small:
        cell = largest_cell(settings["quilt"])
        log.warning("%d background%s smaller than a %dx%d quilt cell and will be enlarged (blurry tiles): %s%s",
                    len(small), " is" if len(small) == 1 else "s are", *cell, ", ".join(small[:3]),
                    ", ..." if len(small) > 3 else "")
    bank = {"root": str(root), "classes": [{"name": name, "objects": objects[name]} for name in catalog.classes],
            "backgrounds": backgrounds, "distractors": distractors}
    return bank, inputs
