"""Score a finished run: against real labels (``evaluate=reference``) or with the user's own command
(``evaluate=command``). Runs in the parent after the dataset is written; no deep-learning dependency.

reference: the run's label statistics against a YOLO or COCO label set (``stats.distances``); the score is
           ``stats.similarity``, in [0, 1], higher is better, 1 = the same statistics.
command:   a shell command with placeholders; its score is read from a JSON file it writes (``score_file`` +
           ``score_key``) or from the last number it prints. Its output goes to ``<run>/evaluate.log`` and the log.
"""
from __future__ import annotations

import json
import logging
import math
import re
import shlex
import string
import subprocess
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import yaml

from pipeline import stats
from pipeline.errors import ConfigError, QuiltgenError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
# Placeholders of evaluate.command / evaluate.score_file; {coco_<split>} names each split's COCO file too.
PLACEHOLDERS = ("run_dir", "data_yaml", "manifest")
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


class EvaluationError(QuiltgenError, RuntimeError):
    """The evaluation could not give a score."""


# ------------------------------------------------------------------------------------------------ reference labels

def load_reference(path: str | Path, run_classes: list[str], warn: bool = True) -> stats.Labels:
    """Real labels as ``stats.Labels``: a COCO json, a YOLO data.yaml, or a folder of YOLO label files.

    A YOLO folder without data.yaml has class indices only: they are matched to ``run_classes`` in order.
    ``warn``: log the label files without an image (the run's checks do; the report loads it again quietly).
    """
    path = Path(path).expanduser()
    key = "evaluate.reference"
    if not path.exists():
        raise ConfigError(f"{key}: {path} does not exist; give a COCO json, a YOLO data.yaml or a YOLO labels folder")
    if path.is_dir():
        check_reference_folder(path)
    try:
        if path.is_dir():
            found = _yolo_folder(path, {i: name for i, name in enumerate(run_classes)}, warn)
        elif path.suffix.lower() == ".json":
            found = _coco(path)
        elif path.suffix.lower() in (".yaml", ".yml"):
            found = _yolo_data_yaml(path)
        else:
            raise ConfigError(f"{key}: {path} is neither a .json (COCO), a .yaml (YOLO data.yaml) nor a folder")
    except (OSError, ValueError, KeyError, TypeError, IndexError, yaml.YAMLError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{key}: cannot read {path}: {type(err).__name__}: {err}") from None
    if found.classes.size == 0:
        raise ConfigError(f"{key}: {path} holds no boxes; point it at the labels of your real images")
    return found


def check_reference_folder(folder: Path) -> None:
    """A folder given as the reference must hold YOLO labels: say what to give instead for a dataset's root
    (its data.yaml) or a Pascal VOC folder, which is not read."""
    key = "evaluate.reference"
    for data_yaml in (folder / "data.yaml", folder / "yolo" / "data.yaml"):
        if data_yaml.is_file():
            raise ConfigError(f"{key}: {folder} is a dataset folder; give its {data_yaml} (the class names are there)")
    if (folder / "Annotations").is_dir() or (folder / "ImageSets").is_dir() or \
            (next(folder.rglob("*.xml"), None) and not next(folder.rglob("*.txt"), None)):
        raise ConfigError(f"{key}: {folder} looks like Pascal VOC, which is not read as a reference; give a COCO "
                          f"json, a YOLO data.yaml or a YOLO labels folder (e.g. convert it with datumaro)")


def _coco(path: Path) -> stats.Labels:
    data = json.loads(path.read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    images = {img["id"]: (float(img["width"]), float(img["height"])) for img in data["images"]}
    per_image = dict.fromkeys(images, 0)
    rows = []
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        width, height = images[ann["image_id"]]
        x, y, w, h = (float(v) for v in ann["bbox"])
        rows.append((names[ann["category_id"]], (x + w / 2) / width, (y + h / 2) / height, w / width, h / height,
                     w / h if h > 0 else math.nan))
        per_image[ann["image_id"]] += 1
    return _labels(rows, list(per_image.values()))


def _labels(rows: list[tuple], per_image: list[int]) -> stats.Labels:
    columns = list(zip(*rows, strict=True)) if rows else [[]] * 6
    return stats.labels(*columns, per_image)


def _yolo_data_yaml(path: Path) -> stats.Labels:
    data = yaml.safe_load(path.read_text()) or {}
    names = data["names"]
    names = dict(enumerate(names)) if isinstance(names, list) else {int(k): str(v) for k, v in names.items()}
    base = Path(data.get("path") or path.parent).expanduser()
    if not base.is_absolute():
        base = path.parent / base
    images: dict[Path, None] = {}
    for split in ("train", "val", "test"):
        entries = data.get(split) or []
        for entry in [entries] if isinstance(entries, str) else entries:
            images.update(dict.fromkeys(_image_files(base / entry)))
    if not images:
        raise ValueError(f"no images found under its train/val/test entries (path: {base})")
    return _yolo_images(list(images), names)


def _image_files(where: Path) -> list[Path]:
    """Images of a YOLO split entry: a folder (searched recursively), a .txt list of images, or one image."""
    if where.is_dir():
        return sorted(p for p in where.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if where.suffix == ".txt":
        lines = [line.strip() for line in where.read_text().splitlines() if line.strip()]
        return [Path(line) if Path(line).is_absolute() else where.parent / line for line in lines]
    if where.is_file():
        return [where]
    raise ValueError(f"split entry {where} does not exist")


def label_path(image: Path) -> Path:
    """YOLO's convention: the last /images/ of the path becomes /labels/, the suffix .txt."""
    parts = list(image.parts)
    if "images" in parts:
        parts[len(parts) - 1 - parts[::-1].index("images")] = "labels"
    return Path(*parts).with_suffix(".txt")


def _yolo_images(images: list[Path], names: dict[int, str]) -> stats.Labels:
    rows, per_image = [], []
    for image in images:
        label = label_path(image)
        boxes = _yolo_boxes(label) if label.is_file() else []
        ratio = _image_ratio(image)
        per_image.append(len(boxes))
        rows += [(names.get(c, str(c)), cx, cy, w, h, w / h * ratio if h > 0 else math.nan)
                 for c, cx, cy, w, h in boxes]
    return _labels(rows, per_image)


def _yolo_folder(folder: Path, names: dict[int, str], warn: bool = True) -> stats.Labels:
    """A folder of YOLO label files; images (for their aspect ratio) looked up beside it as YOLO would."""
    labels_found = sorted(folder.rglob("*.txt"))
    rows, per_image, ratios_missing = [], [], 0
    for label in labels_found:
        image = next((p for p in _image_candidates(label) if p.is_file()), None)
        ratio = _image_ratio(image) if image else math.nan
        ratios_missing += image is None
        boxes = _yolo_boxes(label)
        per_image.append(len(boxes))
        rows += [(names.get(c, str(c)), cx, cy, w, h, w / h * ratio if h > 0 else math.nan)
                 for c, cx, cy, w, h in boxes]
    if warn and ratios_missing == len(labels_found):
        log.warning("evaluate.reference: no image found for any of the %d label files in %s; the aspect distance "
                    "is left out of the score (YOLO labels are relative: a box's aspect ratio needs its image's "
                    "size)", len(labels_found), folder)
    elif warn and ratios_missing:
        log.warning("evaluate.reference: no image found for %d of %d label files in %s; their boxes are left out "
                    "of the aspect distance (YOLO labels are relative: a box's aspect ratio needs its image's size)",
                    ratios_missing, len(labels_found), folder)
    return _labels(rows, per_image)


def _image_candidates(label: Path) -> list[Path]:
    parts = list(label.parts)
    if "labels" in parts:
        parts[len(parts) - 1 - parts[::-1].index("labels")] = "images"
    stem = Path(*parts).with_suffix("")
    return [stem.with_suffix(s) for s in (".jpg", ".png", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")]


def _yolo_boxes(label: Path) -> list[tuple[int, float, float, float, float]]:
    """(class, cx, cy, w, h) per line; a segmentation line (class x1 y1 x2 y2 ...) gives its polygon's box."""
    boxes = []
    for line in label.read_text().splitlines():
        values = line.split()
        if not values:
            continue
        numbers = [float(v) for v in values[1:]]
        if len(numbers) == 4:
            boxes.append((int(values[0]), *numbers))
        elif len(numbers) >= 6 and len(numbers) % 2 == 0:
            xs, ys = numbers[0::2], numbers[1::2]
            boxes.append((int(values[0]), (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2,
                          max(xs) - min(xs), max(ys) - min(ys)))
        else:
            raise ValueError(f"{label}: line {line!r} is neither 'class cx cy w h' nor a polygon")
    return boxes


def _image_ratio(image: Path) -> float:
    """Width / height of an image, read from its header only."""
    from PIL import Image  # Pillow comes with matplotlib; only the header is read

    with Image.open(image) as img:
        return img.width / img.height


def check_reference(evaluate: dict, run_classes: list[str]) -> None:
    """The run's early check of ``evaluate=reference``: the labels can be read and give something to score."""
    check_weights(load_reference(evaluate["reference"], run_classes), evaluate)


def check_weights(real: stats.Labels, evaluate: dict) -> None:
    """Without aspect ratios in the reference, another distance must have a weight."""
    weights = evaluate["weights"]
    if not stats.aspect_known(real) and not any(weights.get(k, 0.0) > 0 for k in stats.DISTANCES if k != "aspect"):
        raise ConfigError(f"evaluate.weights: only aspect has a weight, and {evaluate['reference']} has no aspect "
                          f"ratios (no images beside its labels); give another distance a weight, e.g. "
                          f"evaluate.weights.size=1")


def reference_evaluation(records: Iterable[dict] | stats.Accumulator, settings: dict) -> tuple[dict, dict]:
    """(evaluation, overlay): distances, weights and score for stats.json, and both sides' histograms.
    ``records``: the run's records, or the ``stats.Accumulator`` that has read them."""
    evaluate = settings["evaluate"]
    gathered = records if isinstance(records, stats.Accumulator) else stats.Accumulator(records)
    run, classes = gathered.labels(), gathered.class_names()
    real = load_reference(evaluate["reference"], classes, warn=False)  # the run's checks warned already
    check_weights(real, evaluate)
    unmatched = sorted(set(real.classes.tolist()) - set(run.classes.tolist()))
    if unmatched:
        log.warning("evaluate.reference: classes %s of %s are not among the run's classes %s (classes are matched "
                    "by name)", unmatched[:5], evaluate["reference"], classes)
    found = stats.distances(run, real)
    evaluation = {"kind": "reference", "reference": str(evaluate["reference"]), "direction": "maximize",
                  "score": stats.similarity(found, evaluate["weights"]), "distances": found,
                  "weights": dict(evaluate["weights"]), "reference_images": int(real.per_image.size),
                  "reference_boxes": int(real.classes.size)}
    return evaluation, stats.overlay(run, real)


# ------------------------------------------------------------------------------------------------ user command

def placeholder_names(text: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]


def check_placeholders(key: str, text: str) -> None:
    """Unknown or positional placeholders are config errors (checked when the config is validated)."""
    try:
        names = placeholder_names(text)
    except ValueError as err:
        raise ConfigError(f"{key}: {err} in {text!r}; write a literal brace as {{{{ or }}}}") from None
    for name in names:
        if name not in PLACEHOLDERS and not re.fullmatch(r"coco_\w+", name):
            raise ConfigError(f"{key}: unknown placeholder {{{name}}} in {text!r}; known: "
                              f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}, {{coco_<split>}}")


def placeholders(out_dir: Path, splits: list[str]) -> dict[str, str]:
    """Absolute paths of the run's files by placeholder name; COCO files found by globbing annotations/."""
    values = {"run_dir": out_dir, "data_yaml": out_dir / "yolo" / "data.yaml", "manifest": out_dir / "manifest.jsonl"}
    for path in sorted((out_dir / "annotations").glob("*.json")):
        split = next((s for s in splits if path.stem.endswith(f"_{s}")), None)
        if split:
            values[f"coco_{split}"] = path
    return {name: str(Path(value).resolve()) for name, value in values.items()}


def fill(key: str, text: str, values: dict[str, str], quote: bool) -> str:
    missing = [name for name in placeholder_names(text) if name not in values]
    if missing:
        raise EvaluationError(f"{key}: this run has no file for {{{missing[0]}}}; it has "
                              f"{', '.join('{' + n + '}' for n in values)}")
    return text.format_map({k: shlex.quote(v) if quote else v for k, v in values.items()})


def run_command(out_dir: Path, settings: dict, splits: list[str]) -> dict:
    """Run evaluate.command, stream its output to <run>/evaluate.log and the log, and read its score."""
    evaluate = settings["evaluate"]
    values = placeholders(out_dir, splits)
    command = fill("evaluate.command", evaluate["command"], values, quote=True)
    log_path = out_dir / "evaluate.log"
    log.info("evaluate.command: %s", command)
    lines = []
    with open(log_path, "w") as log_file, subprocess.Popen(
            command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
            bufsize=1) as proc:
        for line in proc.stdout:
            log_file.write(line)
            log_file.flush()
            log.info("[evaluate] %s", line.rstrip("\n"))
            lines.append(line)
            del lines[:-200]  # the score is near the end
    if proc.returncode != 0:
        raise EvaluationError(f"evaluate.command exited with status {proc.returncode}; its output is in {log_path}")
    if evaluate["score_file"]:
        score_path = Path(fill("evaluate.score_file", evaluate["score_file"], values, quote=False))
        score_path = score_path if score_path.is_absolute() else out_dir / score_path
        score = score_from_json(score_path, evaluate["score_key"])
    else:
        score = last_number(lines, log_path)
    return {"kind": "command", "command": command, "direction": evaluate["direction"], "score": score,
            "log": log_path.name}


def score_from_json(path: Path, key: str | None) -> float:
    """The number at a dotted key path (``metrics.map50``; list items by index) of a JSON file."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise EvaluationError(f"evaluate.score_file: cannot read {path} ({err}); make evaluate.command write "
                              f"a JSON file there") from None
    for part in (key or "").split(".") if key else []:
        try:
            value = value[int(part)] if isinstance(value, list) else value[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise EvaluationError(f"evaluate.score_key: {path} has no {key!r} (no {part!r} there)") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise EvaluationError(f"evaluate.score_key: {key!r} in {path} is {value!r}, not a finite number")
    return float(value)


def last_number(lines: list[str], log_path: Path) -> float:
    for line in reversed(lines):
        numbers = [float(n) for n in NUMBER.findall(line)]
        finite = [n for n in numbers if np.isfinite(n)]
        if finite:
            return finite[-1]
    raise EvaluationError(f"evaluate.command printed no number (its output is in {log_path}); print the score "
                          f"last, or set evaluate.score_file and evaluate.score_key")
