"""Worker side: render and write a chunk of samples. Plain dicts and paths in, small records out.

Nothing here imports Hydra. Each sample draws from its own generator, addressed by
(seed, class index, sample index), so chunking, worker count and backend never change the bytes.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline import augment, compose, quilt, writers
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


def sample_sources(plan: dict, n_objects: int, sample_idx: int) -> tuple:
    """(object index, pinned first background or None) for a sample.

    ``per_class`` unset: the original's loop, every photo x every background x repeats.
    ``per_class`` set: photos in turn, all tiles drawn at random.
    """
    if plan["per_class"] is None:
        n_bg, repeats = plan["n_backgrounds"], plan["repeats"]
        return sample_idx // (n_bg * repeats), (sample_idx // repeats) % n_bg
    return sample_idx % n_objects, None


def draw_object(rng: np.random.Generator, obj: np.ndarray, settings: dict):
    """Augment and place the object, re-drawing rejected draws; returns (image, mask, x, y, params, attempts)."""
    img, mask = np.ascontiguousarray(obj[:, :, :3]), np.ascontiguousarray(obj[:, :, 3])
    width, height = settings["quilt"]["width"], settings["quilt"]["height"]
    max_attempts = settings["samples"]["max_attempts"]
    reason = None
    for attempt in range(1, max_attempts + 1):
        params = augment.sample_object_params(rng, settings["augment"])
        result = augment.apply_object(img, mask, params)
        if result is None:
            reason = f"object vanished at scale {params['scale']:.3f}"
            continue
        obj_img, obj_mask = result
        h, w = obj_mask.shape
        reason = compose.box_rejection(w, h, settings["compose"]["aspect"], settings["compose"]["min_box_size"])
        if reason:
            continue
        position = compose.sample_position(rng, w, h, width, height)
        if position is None:
            reason = f"object {w}x{h} does not fit the {width}x{height} canvas"
            continue
        return obj_img, obj_mask, position[0], position[1], params, attempt
    raise SampleError(f"no valid draw in samples.max_attempts={max_attempts} attempts (last: {reason}); "
                      f"widen compose.aspect, lower compose.min_box_size or adjust augment.scale/shear")


def render_sample(class_bank: dict, bank: dict, settings: dict, class_idx: int, sample_idx: int,
                  out_dir: Path) -> dict:
    plan, out = settings["plan"], settings["output"]
    width, height = settings["quilt"]["width"], settings["quilt"]["height"]
    rng = sample_rng(settings["seed"], class_idx, sample_idx)
    obj_idx, first_bg = sample_sources(plan, len(class_bank["objects"]), sample_idx)
    source = class_bank["objects"][obj_idx]
    obj_img, obj_mask, x, y, params, attempts = draw_object(rng, bank_array(source["file"]), settings)

    backgrounds = bank["backgrounds"]
    grid = quilt.tile_grid(width, height, settings["quilt"]["rows"], settings["quilt"]["cols"])
    zoom = (settings["quilt"]["zoom"]["min"], settings["quilt"]["zoom"]["max"])
    tiles = quilt.sample_tiles(rng, grid, [b["size"] for b in backgrounds], zoom, first_bg)
    background_params = augment.sample_background_params(rng, settings["augment"])
    images = {t["background"]: bank_array(backgrounds[t["background"]]["file"]) for t in tiles}
    canvas = quilt.render(width, height, tiles, images, augment.brightness_lut(background_params["brightness"]))
    compose.paste(canvas, obj_img, obj_mask, x, y)
    box = compose.mask_box(obj_mask, x, y)

    name = class_bank["name"]
    stem = f"{sample_idx:06d}"
    paths = {"image": f"images/{name}/{stem}.jpg"}
    writers.atomic_write(out_dir / paths["image"], writers.encode_jpeg(canvas, out["jpeg_quality"]))
    if out["previews"]:
        paths["preview"] = f"previews/{name}/{stem}.jpg"
        preview = writers.draw_preview(canvas, [box], [name], out["preview_scale"])  # last use of canvas
        writers.atomic_write(out_dir / paths["preview"], writers.encode_jpeg(preview, out["preview_quality"]))
    if "voc" in out["formats"]:
        paths["voc"] = f"annotations/voc/{name}/{stem}.xml"
        xml = writers.voc_xml(f"{stem}.jpg", name, width, height, [(name, box)])
        writers.atomic_write(out_dir / paths["voc"], xml)

    return {
        "id": f"{name}/{stem}",
        "class": name,
        "class_index": class_idx,
        "sample_index": sample_idx,
        **paths,
        "width": width,
        "height": height,
        "box": list(box),
        "photo": source["photo"],
        "mask": source["mask"],
        "tiles": [{"background": backgrounds[t["background"]]["source"], "src": t["src"], "dst": t["dst"]}
                  for t in tiles],
        "attempts": attempts,
        "augment": {**params, "background_brightness": background_params["brightness"]},
    }


def render_chunk(task: dict, bank: dict, settings: dict, out_dir: str) -> list[dict]:
    """Render samples ``task['start']:task['stop']`` of one class; runs in a worker process."""
    cv2.setNumThreads(1)  # one OpenCV thread per worker: the pool already fills the cores
    class_idx = task["class_index"]
    class_bank = bank["classes"][class_idx]
    records = []
    for sample_idx in range(task["start"], task["stop"]):
        try:
            records.append(render_sample(class_bank, bank, settings, class_idx, sample_idx, Path(out_dir)))
        except Exception as err:  # re-raised with the sample's identity; the message is the user's clue
            obj_idx, _ = sample_sources(settings["plan"], len(class_bank["objects"]), sample_idx)
            photo = class_bank["objects"][obj_idx]["photo"]
            detail = str(err) if isinstance(err, SampleError) else f"{type(err).__name__}: {err}"
            raise SampleError(f"class '{class_bank['name']}', sample {sample_idx} (photo {photo}): {detail}"
                              ) from None
    return records
