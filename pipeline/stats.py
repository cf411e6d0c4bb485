"""A run's numbers from its manifest records, and distances between two label sets. Pure: records in, dicts out.

Everything here is plain numpy on the records ``render_sample`` returns (and the manifest holds), so the same
numbers come from a finished run folder, whatever wrote it. ``Labels`` is the common ground of a run and a
set of real labels (YOLO or COCO): relative boxes, classes and objects per image, nothing format-specific.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

# COCO's object size classes, by area in pixels (COCO evaluates them on the segmentation area).
COCO_SMALL, COCO_LARGE = 32**2, 96**2
# Bin edges shared by a run and its reference, so their histograms can be laid over each other.
SIZE_EDGES = np.geomspace(0.005, 1.0, 25)     # sqrt(box area / image area)
ASPECT_EDGES = np.geomspace(0.1, 10.0, 25)    # box width / height, pixels
FRACTION_EDGES = np.linspace(0.0, 1.0, 11)
CENTRE_BINS = (16, 9)                         # box-centre heatmap: columns x rows over the image
HISTOGRAM_BINS = 20
# The usual splits first, in this order; any others after them, as they come.
SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}
# Names of the reference distances, in the order they are reported and weighted.
DISTANCES = ("size", "aspect", "centre", "objects", "classes")


@dataclass
class Labels:
    """Boxes of a dataset in image-relative units: one entry per box, plus the object count of every image."""

    classes: np.ndarray     # class name of each box (str)
    cx: np.ndarray          # box centre / image width
    cy: np.ndarray          # box centre / image height
    w: np.ndarray           # box width / image width
    h: np.ndarray           # box height / image height
    aspect: np.ndarray      # box width / height in pixels (nan where unknown)
    per_image: np.ndarray   # objects of each image (int), images without any included

    @property
    def size(self) -> np.ndarray:
        """sqrt(box area / image area): a box's linear size relative to its image."""
        return np.sqrt(self.w * self.h)


def labels(classes, cx, cy, w, h, aspect, per_image) -> Labels:
    as_float = lambda values: np.asarray(values, np.float64).reshape(-1)  # noqa: E731
    return Labels(np.asarray(classes, dtype=str).reshape(-1), as_float(cx), as_float(cy), as_float(w), as_float(h),
                  as_float(aspect), np.asarray(per_image, np.int64).reshape(-1))


def records_labels(records: list[dict]) -> Labels:
    """The labelled boxes of a run's records (distractors are not labels)."""
    objects = [(o, r["width"], r["height"]) for r in records for o in r["objects"]]
    boxes = np.array([o["box"] for o, _, _ in objects], np.float64).reshape(-1, 4)
    size = np.array([(width, height) for _, width, height in objects], np.float64).reshape(-1, 2)
    w_px, h_px = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return labels([o["class"] for o, _, _ in objects], (boxes[:, 0] + boxes[:, 2]) / 2 / size[:, 0],
                  (boxes[:, 1] + boxes[:, 3]) / 2 / size[:, 1], w_px / size[:, 0], h_px / size[:, 1],
                  w_px / np.maximum(h_px, 1e-9), [len(r["objects"]) for r in records])


# ------------------------------------------------------------------------------------------------ summaries

def summary(values) -> dict:
    """min, 5th percentile, median, 95th percentile, max and mean; empty -> {"n": 0}."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"n": 0}
    low, p05, median, p95, high = np.quantile(values, [0, 0.05, 0.5, 0.95, 1])
    return {"n": int(values.size), "min": _round(low), "p05": _round(p05), "median": _round(median),
            "p95": _round(p95), "max": _round(high), "mean": _round(values.mean())}


def histogram(values, edges=None, bins: int = HISTOGRAM_BINS) -> dict:
    """Counts over ``edges`` (values outside are clipped into the end bins), or ``bins`` bins over the range."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if edges is None:
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        if high - low < 1e-12 * max(1.0, abs(low)):
            low, high = low - 0.5, high + 0.5
        edges = np.linspace(low, high, bins + 1)
    edges = np.asarray(edges, np.float64)
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), edges)
    return {"edges": [_round(e) for e in edges], "counts": counts.tolist()}


def heatmap(x, y, bins: tuple[int, int] = CENTRE_BINS) -> list[list[int]]:
    """Counts of points (image-relative x, y in [0, 1]) on a columns x rows grid; rows top to bottom."""
    counts, _, _ = np.histogram2d(np.clip(np.asarray(y, np.float64), 0, 1), np.clip(np.asarray(x, np.float64), 0, 1),
                                  bins=(bins[1], bins[0]), range=((0, 1), (0, 1)))
    return counts.astype(int).tolist()


def _round(value: float, digits: int = 6) -> float:
    return round(float(value), digits)


def _shares(counter: Counter, keys) -> dict:
    total = sum(counter.values())
    return {key: _round(counter[key] / total if total else 0.0, 4) for key in keys}


def collect_values(dicts: list[dict], prefix: str, into: dict[str, list]) -> None:
    """``into[prefix.key]``: the values of ``key`` over parameter dicts, nested dicts under their own prefix;
    None is left out. Any new parameter shows up without changes here."""
    for key in dict.fromkeys(k for d in dicts for k in d):
        items = [v for v in (d.get(key) for d in dicts) if v is not None]
        if items and all(type(v) is dict for v in items):
            collect_values(items, f"{prefix}.{key}", into)
        elif items:
            into[f"{prefix}.{key}"] = items


def as_numbers(items: list) -> np.ndarray | None:
    """The values as one flat float array (bools as 0/1, lists flattened), or None if any is not a number."""
    try:
        return np.asarray(items, np.float64).reshape(-1)
    except (TypeError, ValueError):  # strings, or lists of different lengths
        flat = list(_flat(items))
        if all(isinstance(v, int | float) for v in flat):
            return np.asarray(flat, np.float64)
        return None


def _flat(items):
    for item in items:
        if isinstance(item, list | tuple):
            yield from _flat(item)
        else:
            yield item


def drawn_values(records: list[dict]) -> dict[str, dict]:
    """Every augmentation and blending value actually drawn: a histogram per numeric key, counts per other key.

    Keys: ``object.<param>`` (each labelled object's ``augment``), ``object.blend.<param>`` (its ``blend``),
    ``image.<param>`` (each record's ``augment``).
    """
    objects = [o for r in records for o in r["objects"]]
    collected: dict[str, list] = {}
    collect_values([r.get("augment") or {} for r in records], "image", collected)
    collect_values([o.get("augment") or {} for o in objects], "object", collected)
    collect_values([o.get("blend") or {} for o in objects], "object.blend", collected)
    result = {}
    for key, items in collected.items():
        values = as_numbers(items)
        if values is None:
            result[key] = {"n": len(items), "values": dict(Counter(map(str, items)).most_common())}
        elif values.size:
            result[key] = {**summary(values), "constant": bool(values.min() == values.max()), **histogram(values)}
    return result


# ------------------------------------------------------------------------------------------------ a run's stats

def compute(records: list[dict]) -> dict:
    """Counts, boxes, fractions, blending and drawn values of a run, from its records (manifest order)."""
    classes = class_names(records)
    splits = sorted(dict.fromkeys(r["split"] for r in records), key=lambda s: SPLIT_ORDER.get(s, len(SPLIT_ORDER)))
    objects = [(o, r) for r in records for o in r["objects"]]
    per_image = Counter(len(r["objects"]) for r in records)
    instances = {name: {split: 0 for split in splits} for name in classes}
    for obj, record in objects:
        instances[obj["class"]][record["split"]] += 1
    for name in classes:
        instances[name]["total"] = sum(instances[name].values())
    instances["all"] = {split: sum(instances[n][split] for n in classes) for split in [*splits, "total"]}
    counts = {
        "images": len(records),
        "objects": len(objects),
        "classes": classes,
        "splits": splits,
        "images_per_split": dict(Counter(r["split"] for r in records)),
        "images_per_class": {name: sum(r.get("class") == name for r in records) for name in classes},
        "instances": instances,
        "objects_per_image": {str(n): per_image[n] for n in range(max(per_image, default=0) + 1)},
        "dropped": int(sum(r.get("dropped", 0) for r in records)),
        "distractors": int(sum(len(r.get("distractors") or []) for r in records)),
        "background_only": int(per_image[0]),
    }
    return {"counts": counts, "boxes": box_stats(objects, classes), "fractions": fraction_stats(objects),
            "blend": blend_stats(records), "augment": drawn_values(records)}


def class_names(records: list[dict]) -> list[str]:
    """The run's classes in class-index order, from the records and their objects."""
    # a background-only image (no object) names a pseudo class, not a class of the dataset
    found = {r["class_index"]: r["class"] for r in records
             if r.get("class") is not None and "class_index" in r and r["objects"]}
    found.update({o["class_index"]: o["class"] for r in records for o in r["objects"]})
    return [found[i] for i in sorted(found)]


def box_stats(objects: list[tuple[dict, dict]], classes: list[str]) -> dict:
    """Box sizes in pixels and relative to the image, aspect ratios, COCO size shares and centre heatmaps."""
    boxes = np.array([o["box"] for o, _ in objects], np.float64).reshape(-1, 4)
    image = np.array([(r["width"], r["height"]) for _, r in objects], np.float64).reshape(-1, 2)
    names = np.array([o["class"] for o, _ in objects], dtype=str)
    w_px, h_px = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    area = np.array([o.get("pixels", 0) or 0 for o, _ in objects], np.float64)
    area = np.where(area > 0, area, w_px * h_px)  # COCO's size classes use the mask area, as its "area" field
    rel_w, rel_h = w_px / image[:, 0], h_px / image[:, 1]
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2 / image[:, 0], (boxes[:, 1] + boxes[:, 3]) / 2 / image[:, 1]
    aspect = w_px / np.maximum(h_px, 1e-9)
    size = np.sqrt(rel_w * rel_h)
    result = {"per_class": {}, "size_histogram": {"edges": SIZE_EDGES.round(6).tolist(), "counts": {}},
              "aspect_histogram": {"edges": ASPECT_EDGES.round(6).tolist(), "counts": {}},
              "centres": {"bins": list(CENTRE_BINS), "counts": {}}}
    for name in [*classes, "all"]:
        pick = np.ones(len(names), bool) if name == "all" else names == name
        sizes = Counter(np.where(area[pick] < COCO_SMALL, "small",
                                 np.where(area[pick] < COCO_LARGE, "medium", "large")).tolist())
        result["per_class"][name] = {
            "n": int(pick.sum()), "width_px": summary(w_px[pick]), "height_px": summary(h_px[pick]),
            "width_rel": summary(rel_w[pick]), "height_rel": summary(rel_h[pick]), "size_rel": summary(size[pick]),
            "aspect": summary(aspect[pick]), "coco_size": _shares(sizes, ("small", "medium", "large"))}
        result["size_histogram"]["counts"][name] = histogram(size[pick], SIZE_EDGES)["counts"]
        result["aspect_histogram"]["counts"][name] = histogram(aspect[pick], ASPECT_EDGES)["counts"]
        result["centres"]["counts"][name] = heatmap(cx[pick], cy[pick])
    return result


def fraction_stats(objects: list[tuple[dict, dict]]) -> dict:
    """Histograms of the visible, truncated and occluded fraction of every labelled object."""
    return {key: {**histogram([o[key] for o, _ in objects], FRACTION_EDGES),
                  "mean": _round(np.mean([o[key] for o, _ in objects]) if objects else 0.0, 4)}
            for key in ("visible", "truncated", "occluded")}


def blend_stats(records: list[dict]) -> dict:
    """How often each blending method was used, for labelled objects and for distractors."""
    labelled = Counter(o["blend"]["method"] for r in records for o in r["objects"] if o.get("blend"))
    distractors = Counter(d["blend"]["method"] for r in records for d in r.get("distractors") or [] if d.get("blend"))
    return {"objects": dict(labelled.most_common()), "distractors": dict(distractors.most_common())}


def instance_table(stats: dict) -> list[str]:
    """Instances per class and split as aligned text lines (the log's closing summary)."""
    counts = stats["counts"]
    columns = [*counts["splits"], "total"]
    rows = [[name, *(str(counts["instances"][name][c]) for c in columns)] for name in [*counts["classes"], "all"]]
    header = ["instances", *columns]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    fmt = lambda row: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                for i, (c, w) in enumerate(zip(row, widths, strict=True)))
    return [fmt(header), *(fmt(row) for row in rows)]


# ------------------------------------------------------------------------------------------------ distances

def wasserstein(a, b, points: int = 256) -> float:
    """1-D earth mover's distance between two samples, as the mean gap between their quantile functions."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return 0.0 if a.size == b.size else math.inf
    q = (np.arange(points) + 0.5) / points
    return float(np.mean(np.abs(np.quantile(a, q) - np.quantile(b, q))))


def total_variation(p: Counter, q: Counter) -> float:
    """Half the L1 distance between two count distributions (0 = the same shares, 1 = disjoint)."""
    p_total, q_total = sum(p.values()), sum(q.values())
    if not p_total or not q_total:
        return 0.0 if p_total == q_total else 1.0
    return 0.5 * sum(abs(p[k] / p_total - q[k] / q_total) for k in set(p) | set(q))


def distances(run: Labels, real: Labels) -> dict[str, float]:
    """Each in [0, 1], 0 when the two label sets have the same distribution of that quantity:

    size     1 - exp(-W), W the earth mover's distance between the log box sizes (boxes twice as large: 0.5)
    aspect   1 - exp(-W) for the log aspect ratios (width / height in pixels)
    centre   mean of the earth mover's distances of the box centres' x and y (image-relative)
    objects  total variation distance between the objects-per-image distributions
    classes  total variation distance between the class mixes (classes matched by name)

    Rounded to 4 decimals: label files store 6, so a run scored against its own YOLO labels gets exactly 0.
    """
    to_unit = lambda w: 1.0 - math.exp(-w)  # noqa: E731
    found = {
        "size": to_unit(wasserstein(_log(run.size), _log(real.size))),
        "aspect": to_unit(wasserstein(_log(run.aspect), _log(real.aspect))),
        "centre": min(1.0, (wasserstein(run.cx, real.cx) + wasserstein(run.cy, real.cy)) / 2),
        "objects": total_variation(Counter(run.per_image.tolist()), Counter(real.per_image.tolist())),
        "classes": total_variation(Counter(run.classes.tolist()), Counter(real.classes.tolist())),
    }
    return {key: _round(value, 4) for key, value in found.items()}


def _log(values: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(values, 1e-9))  # a zero-width box of a hand-made label set: tiny, not -inf


def similarity(found: dict[str, float], weights: dict[str, float]) -> float:
    """The reference score: 1 - the weighted mean of the distances, in [0, 1] (4 decimals); 1 = the same label
    statistics, higher is better."""
    total = sum(weights.get(k, 0.0) for k in DISTANCES)
    return _round(1.0 - sum(weights.get(k, 0.0) * found[k] for k in DISTANCES) / total, 4)


def overlay(run: Labels, real: Labels) -> dict:
    """Histograms of both label sets on shared bins, for the report's real-vs-synthetic plots."""
    most = int(max(run.per_image.max(initial=0), real.per_image.max(initial=0)))
    names = sorted(set(run.classes.tolist()) | set(real.classes.tolist()))

    def side(labels: Labels) -> dict:
        per_image, classes = Counter(labels.per_image.tolist()), Counter(labels.classes.tolist())
        return {"images": int(labels.per_image.size), "boxes": int(labels.classes.size),
                "size": histogram(labels.size, SIZE_EDGES)["counts"],
                "aspect": histogram(labels.aspect, ASPECT_EDGES)["counts"],
                "objects_per_image": [per_image[n] for n in range(most + 1)],
                "classes": [classes[n] for n in names], "centres": heatmap(labels.cx, labels.cy)}

    return {"size_edges": SIZE_EDGES.round(6).tolist(), "aspect_edges": ASPECT_EDGES.round(6).tolist(),
            "class_names": names, "run": side(run), "reference": side(real)}
