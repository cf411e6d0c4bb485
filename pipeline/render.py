"""Worker side: render and write a chunk of samples. Plain dicts and paths in, small records out.

Nothing here imports Hydra. Each sample draws from its own generator, addressed by
(seed, class index, sample index), so chunking, worker count and backend never change the bytes.
A sample: background quilt -> distractors -> labelled objects (occlusion-checked), every draw made while laying
it out; then painted (shadows, colour match, blends) -> noise -> files, once, or once per compose.blending.every
method from the same layout.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipeline import augment, blend, color, compose, quilt, shadow, splits, worker, writers
from pipeline.errors import SampleError
from pipeline.seeding import sample_rng

# Read-only memmaps of the current bank, kept per worker process across tasks.
_BANK_CACHE: dict[str, object] = {"dir": None, "arrays": {}}


def bank_array(path: str) -> np.ndarray:
    """Open a bank file once per worker (read-only memmap); forget arrays of an earlier bank."""
    bank_dir = str(Path(path).parent)
    if _BANK_CACHE["dir"] != bank_dir:
        _BANK_CACHE["dir"], _BANK_CACHE["arrays"] = bank_dir, {}
    arrays = _BANK_CACHE["arrays"]
    if path not in arrays:
        arrays[path] = np.load(path, mmap_mode="r")
    return arrays[path]


def transform_object(rng: np.random.Generator, source: dict, settings: dict, augment_cfg: dict) -> tuple:
    """Draw and apply the object's augmentation (``augment_cfg``: its class's settings): (image, mask, params),
    or (None, None, reason) if rejected."""
    obj = bank_array(source["file"])
    quilt_cfg = settings["quilt"]
    params = augment.sample_object_params(rng, augment_cfg)
    params["scale"] = augment.size_scale(params, np.asarray(source["hull"]), obj.shape[:2],
                                         (quilt_cfg["width"], quilt_cfg["height"]), source["normalise"])
    result = augment.apply_object(np.ascontiguousarray(obj[:, :, :3]), np.ascontiguousarray(obj[:, :, 3]), params)
    if result is None:
        return None, None, f"object vanished at scale {params['scale']:.3f}"
    img, mask = result
    reason = compose.box_rejection(mask.shape[1], mask.shape[0], settings["compose"]["aspect"],
                                   settings["compose"]["min_box_size"])
    return (None, None, reason) if reason else (img, mask, params)


def draw_blend(rng: np.random.Generator, blending: dict) -> dict:
    """One method by weight with its parameters; with ``compose.blending.every``, every method's parameters (the
    image being written picks the method), so each image of a layout has the same draws."""
    if blending["every"]:
        return compose.sample_blend_params(rng, blending)
    return compose.sample_blend(rng, blending, blend.METHODS)


def add_object(rng: np.random.Generator, owner: np.ndarray, placed: list, source: dict, settings: dict,
               augment_cfg: dict) -> tuple[dict | None, dict | str]:
    """Draw and place (every compose rule checked on the ownership map) one labelled object; nothing is painted.

    Returns (its parameters, its paint) or (None, the last reason) after ``samples.max_attempts`` draws.
    """
    comp, (height, width) = settings["compose"], owner.shape
    reason = ""
    for attempt in range(1, settings["samples"]["max_attempts"] + 1):
        img, mask, params = transform_object(rng, source, settings, augment_cfg)
        if img is None:
            reason = params
            continue
        position = compose.sample_position(rng, mask.shape[1], mask.shape[0], width, height, comp["max_truncation"])
        if position is None:
            reason = f"object {mask.shape[1]}x{mask.shape[0]} does not fit the {width}x{height} canvas"
            continue
        reason = compose.place(owner, placed, mask, *position, comp)
        if reason is None:
            params["shadow"] = shadow.sample(rng, augment_cfg["shadow"])
            paint = new_paint(img, mask, position, params, draw_blend(rng, comp["blending"]), labelled=True)
            return {"augment": params, "blend": None, "attempts": attempt}, paint  # blend: filled in when painted
    return None, reason


def add_distractor(rng: np.random.Generator, shape: tuple[int, int], source: dict, settings: dict
                   ) -> tuple[dict, dict] | None:
    """Draw one unlabelled distractor anywhere it (partly) fits: (its record, its paint), or None if no draw was
    usable."""
    comp, (height, width) = settings["compose"], shape
    for _ in range(settings["samples"]["max_attempts"]):
        img, mask, params = transform_object(rng, source, settings, settings["augment"])
        position = None if img is None else compose.sample_position(rng, mask.shape[1], mask.shape[0], width,
                                                                     height, comp["max_truncation"])
        if position is not None:
            params["shadow"] = shadow.sample(rng, settings["augment"]["shadow"])
            paint = new_paint(img, mask, position, params, draw_blend(rng, comp["blending"]), labelled=False)
            return {"photo": source["photo"], "box": list(compose.mask_box(mask, *position)), "blend": None}, paint
    return None


def new_paint(img: np.ndarray, mask: np.ndarray, position: tuple[int, int], params: dict, drawn_blend: dict,
              labelled: bool) -> dict:
    """What pasting one placed object takes, all of it drawn already: ``paint_scene`` replays it on any canvas."""
    return {"img": img, "mask": mask, "x": position[0], "y": position[1], "shadow": params["shadow"],
            "color_match": params["color_match"], "blend": drawn_blend, "labelled": labelled}


def paint_scene(canvas: np.ndarray, paints: list[dict], blending: dict, method: str | None = None) -> list[dict]:
    """Shadow, colour-match and blend each paint into the canvas (in place), in the order they were placed; returns
    each paint's blend record (``blend.paste_recognisable``'s: method asked, method used, contrast kept).

    ``method``: paste everything with this method (``compose.blending.every``), else with the method each drew.
    Nothing is drawn here, so any canvas and method give the same labels. A labelled object's shadow falls only on
    canvas pixels no labelled object placed so far (itself included) owns, as the ownership map was at the time.
    """
    covered = None
    if any(p["labelled"] and p["shadow"] is not None for p in paints):
        covered = np.zeros(canvas.shape[:2], np.uint8)
    used = []
    for paint in paints:
        img, mask, x, y = paint["img"], paint["mask"], paint["x"], paint["y"]
        region = blend.clip_region(x, y, mask.shape[1], mask.shape[0], canvas.shape[1], canvas.shape[0])
        if covered is not None and paint["labelled"] and region is not None:
            (rows, cols), (obj_rows, obj_cols) = region
            np.maximum(covered[rows, cols], mask[obj_rows, obj_cols], out=covered[rows, cols])
        shadow.cast(canvas, covered if paint["labelled"] else None, mask, x, y, paint["shadow"])
        if paint["color_match"] > 0:
            img = color.match_color(img, mask, canvas[region[0]], paint["color_match"])
        params = paint["blend"] if method is None else compose.blend_for(paint["blend"], method)
        used.append(blend.paste_recognisable(canvas, img, mask, x, y, params, blending))
    return used


def pick_extra_source(rng: np.random.Generator, bank: dict, class_p: list[float], photos: list[list[int]] | None = None
                      ) -> tuple[int, int]:
    """(class index, object index) of an extra object: class by weight, then a photo of it uniformly, among
    ``photos[class]`` (the photos of the sample's split) when given."""
    class_idx = int(rng.choice(len(class_p), p=class_p))
    if photos is None:
        return class_idx, int(rng.integers(len(bank["classes"][class_idx]["objects"])))
    group = photos[class_idx]
    return class_idx, group[int(rng.integers(len(group)))]


def layout_scene(rng: np.random.Generator, shape: tuple[int, int], bank: dict, settings: dict, first: tuple[int, int],
                 photos: list[list[int]] | None = None) -> tuple[list[dict], list[dict], int]:
    """Draw and place the sample's labelled objects on a canvas of ``shape`` (height, width), extras among
    ``photos`` (per class) if given; returns their records (with visible masks; ``blend`` is filled in when
    painted), their paints and how many extras were dropped."""
    comp, plan = settings["compose"], settings["plan"]
    owner = compose.new_owner_map(shape[1], shape[0])
    placed: list[compose.Placed] = []
    wanted = int(rng.integers(comp["objects"]["min"], comp["objects"]["max"] + 1))
    records, paints, dropped = [], [], 0
    for n in range(wanted):
        class_idx, obj_idx = first if n == 0 else pick_extra_source(rng, bank, plan["class_p"], photos)
        source = bank["classes"][class_idx]["objects"][obj_idx]
        drawn, paint = add_object(rng, owner, placed, source, settings, settings["class_augment"][class_idx])
        if drawn is None:
            if n < comp["objects"]["min"]:
                raise SampleError(
                    f"could place only {n} of compose.objects.min={comp['objects']['min']} objects "
                    f"in samples.max_attempts={settings['samples']['max_attempts']} draws (last: {paint}); lower "
                    f"compose.objects.min, allow more overlap (compose.max_occlusion, compose.max_iou), shrink the "
                    f"objects (the augment.size range) or widen compose.aspect / lower compose.min_box_size")
            dropped += 1
            continue
        records.append({"class": bank["classes"][class_idx]["name"], "class_index": class_idx,
                        "photo": source["photo"], "mask": source["mask"], **drawn})
        paints.append(paint)
    for n, (record, obj) in enumerate(zip(records, placed, strict=True)):
        record.update(box=list(obj.box), pixels=obj.visible, **{k: round(v, 4) for k, v in obj.fractions().items()})
        if any(kind in settings["output"]["formats"] for kind in MASK_FORMATS):
            record["visible_mask"] = compose.visible_mask(owner, n, obj.box)
    return records, paints, dropped


def with_blends(records: list[dict], blends: list[dict]) -> list[dict]:
    """A copy of each record (object or distractor) with the blend it was painted with."""
    return [{**record, "blend": used} for record, used in zip(records, blends, strict=True)]


def render_background(rng: np.random.Generator, bank: dict, settings: dict, first_bg: int | None,
                      allowed_backgrounds: list[int] | None = None) -> tuple[np.ndarray, list[dict], dict]:
    quilt_cfg, backgrounds = settings["quilt"], bank["backgrounds"]
    width, height, rows, cols = quilt_cfg["width"], quilt_cfg["height"], quilt_cfg["rows"], quilt_cfg["cols"]
    fade = quilt.fade_width(quilt_cfg)
    rects = quilt.paint_rects(width, height, rows, cols, fade)
    tiles = quilt.sample_tiles(rng, rects, [[level["size"] for level in b["levels"]] for b in backgrounds], first_bg,
                               allowed_backgrounds)
    image_params = augment.sample_image_params(rng, settings["augment"], len(tiles))
    sources = [bank_array(backgrounds[t["background"]]["levels"][t["level"]]["file"]) for t in tiles]
    canvas = quilt.render(width, height, rows, cols, fade, tiles, sources, image_params["background_brightness"],
                          image_params["tile_gains"], image_params["background_contrast"],
                          image_params["background_gamma"])
    return canvas, tiles, image_params


def tile_record(tile: dict, background: dict) -> dict:
    """A tile for the manifest: its background file, zoom, the window in that file's pixels and the canvas
    area it paints, both [x0, y0, x1, y1] pixel edges (the window fractional when the bank scaled the image)."""
    level = background["levels"][tile["level"]]
    scale = [background["size"][i] / level["size"][i] for i in (0, 1)]
    src = [round(v * scale[i % 2], 2) for i, v in enumerate(tile["src"])]
    return {"background": background["source"], "zoom": level["zoom"], "src": src, "dst": tile["dst"],
            "flip": tile["flip"]}


# Formats that need each object's visible mask (a crop at its box corner) besides its box.
MASK_FORMATS = ("coco", "yolo_seg")


def write_files(canvas: np.ndarray, objects: list[dict], sample: dict, settings: dict, out_dir: Path) -> dict:
    """Image, preview, VOC file, YOLO labels and the links to the image, atomically; returns every path written
    (relative to out_dir). One name, ``<class>_<index>``, unique in the dataset, is used by every format."""
    out, width, height = settings["output"], canvas.shape[1], canvas.shape[0]
    name, split, formats = sample["name"], sample["split"], out["formats"]
    paths = {"image": f"images/{split}/{name}.jpg"}
    image = out_dir / paths["image"]
    writers.atomic_write(image, writers.encode_jpeg(canvas, sample["jpeg_quality"]))
    if "voc" in formats:
        paths["voc"] = f"voc/Annotations/{name}.xml"
        voc_objects = [{**o, "difficult": o["visible"] < out["difficult_below"]} for o in objects]
        writers.atomic_write(out_dir / paths["voc"],
                             writers.voc_xml(f"{name}.jpg", "JPEGImages", width, height, voc_objects))
        paths["voc_image"] = f"voc/JPEGImages/{name}.jpg"
        writers.link_file(image, out_dir / paths["voc_image"])
    if "yolo" in formats:
        paths["yolo_label"] = f"yolo/labels/{split}/{name}.txt"
        writers.atomic_write(out_dir / paths["yolo_label"], writers.yolo_labels(objects, width, height))
    if "yolo_seg" in formats:
        paths["yolo_seg_label"] = f"yolo_seg/labels/{split}/{name}.txt"
        polygons = [(o["class_index"], writers.yolo_polygon(o["visible_mask"], *o["box"][:2], width, height))
                    for o in objects]
        writers.atomic_write(out_dir / paths["yolo_seg_label"], writers.yolo_seg_labels(polygons, width, height))
    for kind in ("yolo", "yolo_seg"):
        if kind in formats:
            paths[f"{kind}_image"] = f"{kind}/images/{split}/{name}.jpg"
            writers.link_file(image, out_dir / paths[f"{kind}_image"])
    if out["previews"] and sample["index"] % out["preview_every"] == 0:
        paths["preview"] = f"previews/{split}/{name}.jpg"
        preview = writers.draw_preview(canvas, [o["box"] for o in objects],  # last use of canvas: drawn in place
                                       [o["class"] for o in objects], out["preview_scale"])
        writers.atomic_write(out_dir / paths["preview"], writers.encode_jpeg(preview, out["preview_quality"]))
    return paths


def image_name(class_name: str, sample_idx: int, method: str | None = None) -> str:
    """The image's file name (no extension) in every format: ``<class>_<index>``, or ``<class>_<index>_<method>`` for
    each image of a layout written once per ``compose.blending.every`` method. Unique in the dataset: a method holds no
    '_', and the index is all digits between the last two '_' (or after the last one), so no two (class, index,
    method) give the same name."""
    return f"{class_name}_{sample_idx:06d}" + (f"_{method}" if method else "")


def blend_versions(blending: dict, background_only: bool) -> list[str | None]:
    """The ``blending`` of each image written for one layout: the methods of ``compose.blending.every``, in order;
    [None] (one image, each object pasted with the method it drew) without it, and for a background-only layout,
    which has no labelled object to blend (its distractors, if any, paste with the first listed method)."""
    return list(blending["every"]) if blending["every"] and not background_only else [None]


def render_sample(bank: dict, settings: dict, class_idx: int, sample_idx: int, split: str, sources: tuple,
                  out_dir: Path) -> list[dict]:
    """One sample: its layout drawn once, then written as one image, or as one per ``compose.blending.every`` method
    (the same draws, labels and split, pasted differently); returns a record per image. ``sources``: (first object
    index, pinned first background or None), from the plan; the class after the real ones makes background-only
    images (no object, no first object)."""
    out, plan, blending = settings["output"], settings["plan"], settings["compose"]["blending"]
    background_only = class_idx == len(bank["classes"])
    class_name = splits.BACKGROUND if background_only else bank["classes"][class_idx]["name"]
    rng = sample_rng(settings["seed"], class_idx, sample_idx)
    obj_idx, first_bg = sources

    background, tiles, image_params = render_background(rng, bank, settings, first_bg,
                                                        splits.allowed(plan, "backgrounds", split))
    distractors, paints = [], []
    n_distractors, pool = settings["compose"]["distractors"], splits.allowed(plan, "distractors", split)
    for _ in range(int(rng.integers(n_distractors["min"], n_distractors["max"] + 1))):
        pick = int(rng.integers(len(bank["distractors"]) if pool is None else len(pool)))
        drawn = add_distractor(rng, background.shape[:2], bank["distractors"][pick if pool is None else pool[pick]],
                               settings)
        if drawn is not None:
            distractors.append(drawn[0])
            paints.append(drawn[1])
    objects, dropped = [], 0
    if not background_only:
        objects, object_paints, dropped = layout_scene(rng, background.shape[:2], bank, settings, (class_idx, obj_idx),
                                                       splits.allowed(plan, "photos", split))
        paints += object_paints
    height, width = background.shape[:2]
    for obj in objects:  # the parent moves each segmentation into the COCO file, not the manifest
        if "coco" in out["formats"]:
            obj["segmentation"] = writers.coco_segmentation(obj["visible_mask"], *obj["box"][:2], width, height,
                                                            out["coco_segmentation"])
    layout = {"class": class_name, "class_index": class_idx, "sample_index": sample_idx, "split": split,
              "jpeg_quality": image_params["jpeg_quality"] or out["jpeg_quality"], "dropped": dropped,
              "tiles": [tile_record(t, bank["backgrounds"][t["background"]]) for t in tiles], "augment": image_params}
    versions = blend_versions(blending, background_only)
    records = []
    for n, version in enumerate(versions):
        canvas = background if n == len(versions) - 1 else background.copy()
        used = paint_scene(canvas, paints, blending, version or (blending["every"] or [None])[0])
        if image_params["noise"] > 0:
            canvas = color.add_noise(canvas, image_params["noise"], image_params["noise_seed"])
        records.append(write_image(canvas, with_blends(objects, used[len(distractors):]),
                                   with_blends(distractors, used[:len(distractors)]), layout, version, settings,
                                   out_dir))
    return records


def write_image(canvas: np.ndarray, objects: list[dict], distractors: list[dict], layout: dict, version: str | None,
                settings: dict, out_dir: Path) -> dict:
    """Write one image of a layout and its per-image files; returns its record: the layout's keys, its files, its
    objects and distractors (with how each was pasted) and, with ``compose.blending.every``, its ``blending``."""
    name = image_name(layout["class"], layout["sample_index"], version)
    sample = {"class": layout["class"], "name": name, "index": layout["sample_index"], "split": layout["split"],
              "jpeg_quality": layout["jpeg_quality"]}
    paths = write_files(canvas, objects, sample, settings, Path(out_dir))
    for obj in objects:
        obj.pop("visible_mask", None)
    return {
        **layout,
        "id": f"{layout['class']}/{layout['sample_index']:06d}" + (f"/{version}" if version else ""),
        "name": name,
        **paths,
        "width": canvas.shape[1],
        "height": canvas.shape[0],
        "objects": objects,
        "distractors": distractors,
        **({"blending": version} if version else {}),
        # every file the image wrote and its size, so a resume can tell a finished sample from a torn one;
        # the parent keeps this in its journal, not in the manifest
        "_files": {path: os.lstat(os.path.join(out_dir, path)).st_size for path in paths.values()},
    }


def render_chunk(task: dict, bank: dict, settings: dict, out_dir: str) -> list[dict]:
    """Render the samples ``task['samples']`` (indices) of one class, with their ``splits`` and ``sources``;
    runs in a worker process."""
    class_idx = task["class_index"]
    records = []
    for sample_idx, split, sources in zip(task["samples"], task["splits"], task["sources"], strict=True):
        try:
            records += render_sample(bank, settings, class_idx, sample_idx, split, sources, Path(out_dir))
        except Exception as err:  # re-raised with the sample's identity; the message is the user's clue
            raise SampleError(_failure(err, bank, class_idx, sample_idx, sources[0], out_dir)) from None
    return records


def _failure(err: Exception, bank: dict, class_idx: int, sample_idx: int, obj_idx: int | None, out_dir: str) -> str:
    """A failed sample's message: a file it could not write, else its class, index and photo."""
    if isinstance(err, OSError) and err.filename and os.fspath(err.filename).startswith(out_dir):
        return writers.write_failure(err, out_dir)
    detail = str(err) if isinstance(err, SampleError) else f"{type(err).__name__}: {err}"
    if obj_idx is None:
        return f"background-only image {sample_idx}: {detail}"
    class_bank = bank["classes"][class_idx]
    photo = class_bank["objects"][obj_idx]["photo"]
    return f"class '{class_bank['name']}', sample {sample_idx} (photo {photo}): {detail}"


def render_task(task_idx: int, task: dict, bank: dict, settings: dict, out_dir: str) -> tuple[int, list[dict]]:
    """What the parent submits: the task's index and its records. Workers import only this module, never Hydra."""
    worker.start(settings["plan"]["parent_pid"])
    return task_idx, render_chunk(task, bank, settings, out_dir)
