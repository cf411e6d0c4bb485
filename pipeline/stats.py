"""A run's numbers from its manifest records, and distances between two label sets. Pure: records in, dicts out.

Everything here is plain numpy on the records ``render_sample`` returns (and the manifest holds), so the same
numbers come from a finished run folder, whatever wrote it. ``Labels`` is the common ground of a run and a
set of real labels (YOLO or COCO): relative boxes, classes and objects per image, nothing format-specific.
"""
from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable
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


def records_labels(records: Iterable[dict]) -> Labels:
    """The labelled boxes of a run's records (distractors are not labels)."""
    return Accumulator(records).labels()


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


def _flat(items):
    for item in items:
        if isinstance(item, list | tuple):
            yield from _flat(item)
        else:
            yield item


NUMBER = bool | int | float


class Values:
    """The values drawn for one parameter: numbers in a compact array (lists flattened, bools as 0/1), anything
    else counted as text."""

    __slots__ = ("numbers", "others")

    def __init__(self):
        self.numbers, self.others = array("d"), Counter()

    def add(self, value) -> None:
        if isinstance(value, NUMBER):
            self.numbers.append(float(value))
            return
        flat = list(_flat(value)) if isinstance(value, list | tuple) else None
        if flat is not None and all(isinstance(v, NUMBER) for v in flat):
            self.numbers.extend(float(v) for v in flat)
        else:
            self.others[str(value)] += 1

    def result(self) -> dict | None:
        if self.others:  # not a number: how often each value was drawn
            counts = self.others + (Counter({"<number>": len(self.numbers)}) if self.numbers else Counter())
            return {"n": sum(counts.values()), "values": dict(counts.most_common())}
        values = np.frombuffer(self.numbers, np.float64)
        if not values.size:
            return None
        return {**summary(values), "constant": bool(values.min() == values.max()), **histogram(values)}


# The groups of drawn values, in the order they are reported.
VALUE_GROUPS = ("image", "object", "object.blend")


class Accumulator:
    """A run's numbers, gathered record by record in compact arrays: memory stays small for any number of
    records (a few hundred bytes per object), so a 100k-image manifest is read as a stream."""

    def __init__(self, records: Iterable[dict] = ()):
        self.images, self.dropped, self.distractors = 0, 0, 0
        self.names: dict[int, str] = {}  # class index -> name
        self.splits: dict[str, int] = {}  # split -> its number, in order of appearance
        self.split_images, self.images_per_class = Counter(), Counter()
        self.per_image: array = array("i")
        self.blends, self.distractor_blends = Counter(), Counter()
        self.values: dict[str, Values] = {}
        self.object_columns = {key: array("d") for key in OBJECT_COLUMNS}
        self.object_class, self.object_split = array("i"), array("i")
        for record in records:
            self.add(record)

    def add(self, record: dict) -> None:
        objects = record["objects"]
        self.images += 1
        split = self.splits.setdefault(record["split"], len(self.splits))
        self.split_images[record["split"]] += 1
        if objects and record.get("class") is not None and "class_index" in record:
            self.names.setdefault(record["class_index"], record["class"])  # not a background-only pseudo class
            self.images_per_class[record["class"]] += 1
        self.per_image.append(len(objects))
        self.dropped += int(record.get("dropped", 0))
        distractors = record.get("distractors") or []
        self.distractors += len(distractors)
        self.distractor_blends.update(d["blend"]["method"] for d in distractors if d.get("blend"))
        self.add_values(record)
        columns, width, height = self.object_columns, float(record["width"]), float(record["height"])
        for obj in objects:
            self.names.setdefault(obj["class_index"], obj["class"])
            self.object_class.append(obj["class_index"])
            self.object_split.append(split)
            x0, y0, x1, y1 = obj["box"]
            for key, value in zip(OBJECT_COLUMNS, (x0, y0, x1, y1, width, height, obj.get("pixels", 0) or 0,
                                                   obj["visible"], obj["truncated"], obj["occluded"]), strict=True):
                columns[key].append(float(value))
            if obj.get("blend"):
                self.blends[obj["blend"]["method"]] += 1

    def add_values(self, record: dict) -> None:
        """The values drawn for the record: its image's and each object's augmentation and blending."""
        self._collect("image", record.get("augment") or {})
        for obj in record["objects"]:
            self._collect("object", obj.get("augment") or {})
            self._collect("object.blend", obj.get("blend") or {})

    def _collect(self, prefix: str, params: dict) -> None:
        """``prefix.key`` for every parameter, nested dicts under their own prefix; None is left out. Any new
        parameter shows up without changes here."""
        for key, value in params.items():
            if value is None:
                continue
            if type(value) is dict:
                self._collect(f"{prefix}.{key}", value)
            else:
                found = self.values.get(f"{prefix}.{key}")
                if found is None:
                    found = self.values[f"{prefix}.{key}"] = Values()
                found.add(value)

    # --- results

    def class_names(self) -> list[str]:
        return [self.names[i] for i in sorted(self.names)]

    def columns(self) -> dict[str, np.ndarray]:
        return {key: np.frombuffer(values, np.float64) for key, values in self.object_columns.items()}

    def object_names(self) -> np.ndarray:
        names = np.array([self.names.get(i, "") for i in range(max(self.names, default=-1) + 1)], dtype=str)
        return names[np.frombuffer(self.object_class, np.int32)] if len(self.object_class) else np.array([], str)

    def labels(self) -> Labels:
        c = self.columns()
        w_px, h_px = c["x1"] - c["x0"], c["y1"] - c["y0"]
        return labels(self.object_names(), (c["x0"] + c["x1"]) / 2 / c["width"], (c["y0"] + c["y1"]) / 2 / c["height"],
                      w_px / c["width"], h_px / c["height"], w_px / np.maximum(h_px, 1e-9),
                      np.frombuffer(self.per_image, np.int32))

    def drawn_values(self) -> dict[str, dict]:
        def group(key: str) -> int:  # image, object, object.blend (the longest that fits); first seen first
            return max(i for i, name in enumerate(VALUE_GROUPS) if key.startswith(f"{name}."))

        keys = sorted(self.values, key=group)
        return {key: found for key in keys if (found := self.values[key].result()) is not None}

    def result(self) -> dict:
        """Counts, boxes, fractions, blending and drawn values of the run."""
        classes = self.class_names()
        splits = sorted(self.splits, key=lambda s: SPLIT_ORDER.get(s, len(SPLIT_ORDER)))
        split_names = list(self.splits)
        object_names = self.object_names()
        object_splits = np.frombuffer(self.object_split, np.int32)
        instances = {name: {split: 0 for split in splits} for name in classes}
        for (name, split), n in Counter(zip(object_names.tolist(), object_splits.tolist(), strict=True)).items():
            instances[name][split_names[split]] += n
        for name in classes:
            instances[name]["total"] = sum(instances[name].values())
        instances["all"] = {split: sum(instances[n][split] for n in classes) for split in [*splits, "total"]}
        per_image = Counter(np.frombuffer(self.per_image, np.int32).tolist())
        counts = {
            "images": self.images,
            "objects": len(self.object_class),
            "classes": classes,
            "splits": splits,
            "images_per_split": dict(self.split_images),
            "images_per_class": {name: self.images_per_class[name] for name in classes},
            "instances": instances,
            "objects_per_image": {str(n): per_image[n] for n in range(max(per_image, default=0) + 1)},
            "dropped": self.dropped,
            "distractors": self.distractors,
            "background_only": int(per_image[0]),
        }
        columns = self.columns()
        return {"counts": counts, "boxes": box_stats(columns, object_names, classes),
                "fractions": fraction_stats(columns),
                "blend": {"objects": dict(self.blends.most_common()),
                          "distractors": dict(self.distractor_blends.most_common())},
                "augment": self.drawn_values()}



OBJECT_COLUMNS = ("x0", "y0", "x1", "y1", "width", "height", "pixels", "visible", "truncated", "occluded")


def drawn_values(records: Iterable[dict]) -> dict[str, dict]:
    """Every augmentation and blending value actually drawn: a histogram per numeric key, counts per other key.

    Keys: ``object.<param>`` (each labelled object's ``augment``), ``object.blend.<param>`` (its ``blend``),
    ``image.<param>`` (each record's ``augment``).
    """
    gathered = Accumulator()
    for record in records:
        gathered.add_values(record)
    return gathered.drawn_values()


# ------------------------------------------------------------------------------------------------ a run's stats

def compute(records: Iterable[dict]) -> dict:
    """Counts, boxes, fractions, blending and drawn values of a run, from its records (manifest order)."""
    return Accumulator(records).result()


def class_names(records: Iterable[dict]) -> list[str]:
    """The run's classes in class-index order, from the records and their objects (a background-only image
    names a pseudo class, not a class of the dataset)."""
    return Accumulator(records).class_names()


def box_stats(c: dict[str, np.ndarray], names: np.ndarray, classes: list[str]) -> dict:
    """Box sizes in pixels and relative to the image, aspect ratios, COCO size shares and centre heatmaps."""
    w_px, h_px = c["x1"] - c["x0"], c["y1"] - c["y0"]
    area = np.where(c["pixels"] > 0, c["pixels"], w_px * h_px)  # COCO's size classes use the mask area
    rel_w, rel_h = w_px / c["width"], h_px / c["height"]
    cx, cy = (c["x0"] + c["x1"]) / 2 / c["width"], (c["y0"] + c["y1"]) / 2 / c["height"]
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


def fraction_stats(c: dict[str, np.ndarray]) -> dict:
    """Histograms of the visible, truncated and occluded fraction of every labelled object."""
    return {key: {**histogram(c[key], FRACTION_EDGES), "mean": _round(c[key].mean() if c[key].size else 0.0, 4)}
            for key in ("visible", "truncated", "occluded")}


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


def aspect_known(real: Labels) -> bool:
    """Whether any box of a label set has an aspect ratio (YOLO labels without their images have none)."""
    return bool(np.isfinite(real.aspect).any())


def distances(run: Labels, real: Labels) -> dict[str, float | None]:
    """Each in [0, 1], 0 when the two label sets have the same distribution of that quantity:

    size     1 - exp(-W), W the earth mover's distance between the log box sizes (boxes twice as large: 0.5)
    aspect   1 - exp(-W) for the log aspect ratios (width / height in pixels), over the boxes whose ratio is
             known; None (left out of the score) when no reference box has one
    centre   mean of the earth mover's distances of the box centres' x and y (image-relative)
    objects  total variation distance between the objects-per-image distributions
    classes  total variation distance between the class mixes (classes matched by name)

    Rounded to 4 decimals: label files store 6, so a run scored against its own YOLO labels gets exactly 0.
    """
    to_unit = lambda w: 1.0 - math.exp(-w)  # noqa: E731
    found = {
        "size": to_unit(wasserstein(_log(run.size), _log(real.size))),
        "aspect": to_unit(wasserstein(_log(run.aspect), _log(real.aspect))) if aspect_known(real) else None,
        "centre": min(1.0, (wasserstein(run.cx, real.cx) + wasserstein(run.cy, real.cy)) / 2),
        "objects": total_variation(Counter(run.per_image.tolist()), Counter(real.per_image.tolist())),
        "classes": total_variation(Counter(run.classes.tolist()), Counter(real.classes.tolist())),
    }
    return {key: None if value is None else _round(value, 4) for key, value in found.items()}


def _log(values: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(values, 1e-9))  # a zero-width box of a hand-made label set: tiny, not -inf


def similarity(found: dict[str, float | None], weights: dict[str, float]) -> float:
    """The reference score: 1 - the weighted mean of the distances, in [0, 1] (4 decimals); 1 = the same label
    statistics, higher is better. A distance left out (None) is left out of the mean, weight and all."""
    used = [k for k in DISTANCES if found[k] is not None]
    total = sum(weights.get(k, 0.0) for k in used)
    return _round(1.0 - sum(weights.get(k, 0.0) * found[k] for k in used) / total, 4)


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
