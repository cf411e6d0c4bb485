"""Structured config schema: one dataclass per config group, registered in Hydra's ConfigStore.

OmegaConf rejects unknown keys and wrong types while composing. Ranges and bounds are checked in
``__post_init__``, which runs when the entry point calls ``OmegaConf.to_object``; every message
names the full key and the bad value.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, is_dataclass
from difflib import get_close_matches
from typing import Any, get_args, get_origin, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from pipeline.augment import SIZE_MODES
from pipeline.blend import METHODS as BLEND_METHODS
from pipeline.blend import POISSON_CLONES
from pipeline.errors import ConfigError
from pipeline.evaluate import check_placeholders
from pipeline.splits import SPLIT_BY
from pipeline.stats import DISTANCES
from pipeline.writers import RESERVED_YOLO_KEYS

log = logging.getLogger(__name__)


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _check_min_max(key: str, lo: float, hi: float, lower: float | None = None,
                   upper: float | None = None) -> None:
    _check(lo <= hi, key, f"min must be <= max, got min={lo}, max={hi}")
    if lower is not None:
        _check(lo >= lower, f"{key}.min", f"must be >= {lower}, got {lo}")
    if upper is not None:
        _check(hi <= upper, f"{key}.max", f"must be <= {upper}, got {hi}")


@dataclass
class Interval:
    """A closed interval [min, max]; a fixed value is min == max."""

    min: float = 0.0
    max: float = 0.0


@dataclass
class RangeConfig(Interval):
    """A transform switched by ``enabled`` whose factor is drawn uniformly from [min, max]."""

    enabled: bool = True


@dataclass
class Count:
    """An integer range [min, max]; one value is drawn uniformly per image."""

    min: int = 0
    max: int = 0


@dataclass
class InputConfig:
    root: str | None = None
    photo_dir: str = "photo"
    mask_dir: str = "photo_copy"
    background_dir: str = "back"
    distractor_dir: str | None = None
    mask_threshold: int = 8
    on_bad_file: str = "error"
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        _check(self.on_bad_file in ("error", "skip"), "input.on_bad_file",
               f"must be 'error' or 'skip', got {self.on_bad_file!r}")
        _check(0 <= self.mask_threshold < 255, "input.mask_threshold",
               f"must be in [0, 254], got {self.mask_threshold}")


@dataclass
class ZoomConfig(Interval):
    """Zoom factors [min, max] (1 = the widest window that fits), in ``levels`` geometric steps."""

    min: float = 1.1
    max: float = 1.5
    levels: int = 3


SEAMS = ("hard", "fade")


@dataclass
class QuiltConfig:
    width: int = 1920
    height: int = 1080
    rows: int = 2
    cols: int = 2
    zoom: ZoomConfig = field(default_factory=ZoomConfig)
    seams: str = "fade"
    seam_width: int = 8

    def __post_init__(self) -> None:
        for key in ("width", "height", "rows", "cols"):
            value = getattr(self, key)
            _check(value > 0, f"quilt.{key}", f"must be > 0, got {value}")
        _check(self.cols <= self.width and self.rows <= self.height, "quilt.rows/cols",
               f"a {self.rows}x{self.cols} grid does not fit a {self.width}x{self.height} canvas")
        _check_min_max("quilt.zoom", self.zoom.min, self.zoom.max, lower=1.0)
        _check(1 <= self.zoom.levels <= 16, "quilt.zoom.levels", f"must be in [1, 16], got {self.zoom.levels}")
        _check(self.seams in SEAMS, "quilt.seams", f"must be one of {list(SEAMS)}, got {self.seams!r}")
        narrowest = min(self.width // self.cols, self.height // self.rows)
        _check(1 <= self.seam_width <= narrowest, "quilt.seam_width",
               f"must be in [1, {narrowest}] (the narrowest cell of the {self.rows}x{self.cols} grid on "
               f"{self.width}x{self.height}), got {self.seam_width}")


@dataclass
class BlurConfig:
    enabled: bool = True
    kernel_sizes: list[int] = field(default_factory=lambda: [1, 3, 5])


@dataclass
class FlipConfig:
    """Probability of a horizontal / vertical mirror of the object."""

    enabled: bool = True
    horizontal: float = 0.5
    vertical: float = 0.0


@dataclass
class ShadowConfig:
    """A soft drop shadow under each pasted object: offsets and blur as fractions of the object's box."""

    enabled: bool = False
    offset_x: Interval = field(default_factory=lambda: Interval(-0.15, 0.15))
    offset_y: Interval = field(default_factory=lambda: Interval(0.0, 0.15))
    blur: Interval = field(default_factory=lambda: Interval(0.02, 0.08))
    opacity: Interval = field(default_factory=lambda: Interval(0.3, 0.6))


# (key, lower bound, upper bound) of every [min, max] range in AugmentConfig; None = unbounded.
AUGMENT_RANGES = (
    ("object_brightness", 0.0, None), ("background_brightness", 0.0, None), ("tile_jitter", 0.0, None),
    ("scale", None, None), ("normalised", None, None), ("area", None, 1.0), ("side_px", None, None),
    ("side_fraction", None, 1.0), ("shear", -1.0, 1.0), ("rotation", -180.0, 180.0), ("perspective", 0.0, 0.4),
    ("hue", -180.0, 180.0), ("saturation", 0.0, None), ("erode", 0.0, None), ("color_match", 0.0, 1.0),
    ("object_contrast", 0.0, None), ("object_gamma", None, None), ("background_contrast", 0.0, None),
    ("background_gamma", None, None), ("noise", 0.0, None), ("jpeg_quality", 1.0, 100.0),
    ("shadow.offset_x", -1.0, 1.0), ("shadow.offset_y", -1.0, 1.0), ("shadow.blur", 0.0, 0.5),
    ("shadow.opacity", 0.0, 1.0),
)
# Ranges whose min must be > 0: sizes and gammas.
POSITIVE_RANGES = (*SIZE_MODES, "object_gamma", "background_gamma")
# What augment.classes.<class> may override: the per-object settings (per-image ones stay per run).
CLASS_KEYS = ("size", *SIZE_MODES, "object_brightness", "object_contrast", "object_gamma", "hue", "saturation",
              "blur", "shear", "rotation", "flip", "erode", "perspective", "color_match", "shadow")


def _lookup(values: dict, dotted: str) -> dict:
    for part in dotted.split("."):
        values = values[part]
    return values


def check_augment(values: dict, prefix: str = "augment") -> None:
    """Range checks of one augment config given as a plain dict (the run's, or a class's merged one)."""
    _check(values["size"] in SIZE_MODES, f"{prefix}.size", f"must be one of {list(SIZE_MODES)}, got {values['size']!r}")
    for key, lower, upper in AUGMENT_RANGES:
        spec = _lookup(values, key)
        _check_min_max(f"{prefix}.{key}", spec["min"], spec["max"], lower=lower, upper=upper)
    for key in POSITIVE_RANGES:
        _check(values[key]["min"] > 0, f"{prefix}.{key}.min", f"must be > 0, got {values[key]['min']}")
    for key in ("horizontal", "vertical"):
        value = values["flip"][key]
        _check(0 <= value <= 1, f"{prefix}.flip.{key}", f"must be a probability in [0, 1], got {value}")
    sizes = list(values["blur"]["kernel_sizes"])
    _check(len(sizes) > 0, f"{prefix}.blur.kernel_sizes", "must list at least one kernel size")
    for k in sizes:
        _check(k > 0 and k % 2 == 1, f"{prefix}.blur.kernel_sizes",
               f"kernel sizes must be positive odd integers, got {k}")


def _coerce(default, value, key: str):
    """``value`` as the type of ``default`` (a class override of that setting), or a ConfigError."""
    if isinstance(default, bool):
        _check(isinstance(value, bool), key, f"must be true or false, got {value!r}")
    elif isinstance(default, int | float):
        _check(isinstance(value, int | float) and not isinstance(value, bool), key, f"must be a number, got {value!r}")
        return float(value) if isinstance(default, float) else value
    elif isinstance(default, str):
        _check(isinstance(value, str), key, f"must be a string, got {value!r}")
    elif isinstance(default, list):
        _check(isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value), key,
               f"must be a list of integers, got {value!r}")
    return value


def _merge(base: dict, override, prefix: str) -> dict:
    _check(isinstance(override, dict), prefix, f"must be a mapping of settings, got {override!r}")
    merged = dict(base)
    for key, value in override.items():
        path = f"{prefix}.{key}"
        _check(key in base, path, f"unknown key; the keys here are {list(base)}")
        merged[key] = _merge(base[key], value, path) if isinstance(base[key], dict) else _coerce(base[key], value, path)
    return merged


def class_augment(augment: dict, name: str) -> dict:
    """The augment settings of class ``name``: ``augment.classes.<name>`` merged over the run's (plain dicts)."""
    prefix = f"augment.classes.{name}"
    override = augment["classes"].get(name, {})
    _check(isinstance(override, dict), prefix, f"must be a mapping of settings, e.g. +{prefix}.scale.max=1.5")
    for key in override:
        _check(key in CLASS_KEYS, f"{prefix}.{key}",
               f"not a per-object setting, so it cannot be set per class; a class can set {list(CLASS_KEYS)}")
    merged = _merge({k: v for k, v in augment.items() if k != "classes"}, override, prefix)
    mode = merged["size"]
    for key in SIZE_MODES:
        _check(key not in override or key == mode, f"{prefix}.{key}",
               f"is set, but class {name!r} is sized by augment.size={mode}, so it would have no effect; "
               f"set +{prefix}.size={key} (or augment.size={key}) to size it this way")
    check_augment(merged, prefix)
    return merged


def augment_per_class(augment: dict, names: list[str]) -> list[dict]:
    """Each class's augment settings, in class order; a class in ``augment.classes`` that the input lacks is an
    error listing the classes (known only after the input scan)."""
    unknown = sorted(set(augment["classes"]) - set(names))
    if unknown:
        raise ConfigError(f"augment.classes.{unknown[0]}: no such class; the classes are {names}")
    return [class_augment(augment, name) for name in names]


@dataclass
class AugmentConfig:
    object_brightness: RangeConfig = field(default_factory=lambda: RangeConfig(0.5, 1.5))
    background_brightness: RangeConfig = field(default_factory=lambda: RangeConfig(0.5, 1.5))
    tile_jitter: RangeConfig = field(default_factory=lambda: RangeConfig(0.9, 1.1))
    blur: BlurConfig = field(default_factory=BlurConfig)
    size: str = "scale"
    scale: Interval = field(default_factory=lambda: Interval(0.5, 2.0))
    normalised: Interval = field(default_factory=lambda: Interval(0.5, 2.0))
    area: Interval = field(default_factory=lambda: Interval(0.005, 0.1))
    side_px: Interval = field(default_factory=lambda: Interval(32.0, 512.0))
    side_fraction: Interval = field(default_factory=lambda: Interval(0.05, 0.5))
    shear: RangeConfig = field(default_factory=lambda: RangeConfig(-0.3, 0.3))
    rotation: RangeConfig = field(default_factory=lambda: RangeConfig(-15.0, 15.0))
    perspective: RangeConfig = field(default_factory=lambda: RangeConfig(0.0, 0.1, enabled=False))
    flip: FlipConfig = field(default_factory=FlipConfig)
    hue: RangeConfig = field(default_factory=lambda: RangeConfig(-10.0, 10.0))
    saturation: RangeConfig = field(default_factory=lambda: RangeConfig(0.8, 1.2))
    object_contrast: RangeConfig = field(default_factory=lambda: RangeConfig(0.8, 1.2, enabled=False))
    object_gamma: RangeConfig = field(default_factory=lambda: RangeConfig(0.8, 1.25, enabled=False))
    erode: RangeConfig = field(default_factory=lambda: RangeConfig(0.0, 1.0))
    color_match: RangeConfig = field(default_factory=lambda: RangeConfig(0.0, 0.5, enabled=False))
    shadow: ShadowConfig = field(default_factory=ShadowConfig)
    background_contrast: RangeConfig = field(default_factory=lambda: RangeConfig(0.8, 1.2, enabled=False))
    background_gamma: RangeConfig = field(default_factory=lambda: RangeConfig(0.8, 1.25, enabled=False))
    noise: RangeConfig = field(default_factory=lambda: RangeConfig(0.0, 4.0, enabled=False))
    jpeg_quality: RangeConfig = field(default_factory=lambda: RangeConfig(75.0, 95.0, enabled=False))
    classes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = asdict(self)
        check_augment(values)
        for name in values["classes"]:
            class_augment(values, name)


@dataclass
class BlendingConfig:
    """Relative weights of the blending methods (one is drawn per object) and their settings; ``every``: write
    each sample once per listed method instead (the weights are then unused)."""

    hard: float = 0.45
    feather: float = 0.4
    poisson: float = 0.05
    motion: float = 0.1
    feather_radius: Interval = field(default_factory=lambda: Interval(1.0, 3.0))
    motion_length: Interval = field(default_factory=lambda: Interval(3.0, 15.0))
    antialias: bool = True
    poisson_clone: str = "normal"
    poisson_keep: float = 0.6
    min_contrast: float = 0.5
    every: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for method in self.every:
            close = get_close_matches(str(method), BLEND_METHODS, n=1)
            _check(method in BLEND_METHODS, "compose.blending.every",
                   f"unknown method {method!r}; {f'did you mean {close[0]}? ' if close else ''}"
                   f"the methods are {list(BLEND_METHODS)}, e.g. compose.blending.every=[hard,feather]")
        repeated = sorted({method for method in self.every if self.every.count(method) > 1})
        _check(not repeated, "compose.blending.every", f"{repeated[0] if repeated else ''} is listed twice; list "
               f"each method once (its images would have the same names)")
        for name in BLEND_METHODS:
            value = getattr(self, name)
            _check(value >= 0, f"compose.blending.{name}", f"weight must be >= 0, got {value}")
        _check(sum(getattr(self, name) for name in BLEND_METHODS) > 0, "compose.blending",
               f"all weights are 0; give at least one of {list(BLEND_METHODS)} a positive weight")
        _check_min_max("compose.blending.feather_radius", self.feather_radius.min, self.feather_radius.max, lower=0)
        _check_min_max("compose.blending.motion_length", self.motion_length.min, self.motion_length.max, lower=1)
        _check(self.poisson_clone in POISSON_CLONES, "compose.blending.poisson_clone",
               f"must be one of {list(POISSON_CLONES)}, got {self.poisson_clone!r}")
        for key in ("poisson_keep", "min_contrast"):
            value = getattr(self, key)
            _check(0 <= value <= 1, f"compose.blending.{key}", f"must be in [0, 1], got {value}")


MAX_OBJECTS = 250  # object ids share a uint8 ownership map with the background (0)


@dataclass
class ComposeConfig:
    objects: Count = field(default_factory=lambda: Count(1, 3))
    class_weights: dict[str, float] = field(default_factory=dict)
    max_occlusion: float = 0.5
    max_iou: float = 0.5
    max_truncation: float = 0.25
    aspect: Interval = field(default_factory=lambda: Interval(0.2, 2.0))
    min_box_size: int = 8
    blending: BlendingConfig = field(default_factory=BlendingConfig)
    distractors: Count = field(default_factory=lambda: Count(0, 0))

    def __post_init__(self) -> None:
        _check_min_max("compose.objects", self.objects.min, self.objects.max, lower=1, upper=MAX_OBJECTS)
        _check_min_max("compose.distractors", self.distractors.min, self.distractors.max, lower=0, upper=MAX_OBJECTS)
        for name, weight in self.class_weights.items():
            _check(weight >= 0, f"compose.class_weights.{name}", f"must be >= 0, got {weight}")
        for key in ("max_occlusion", "max_truncation"):
            value = getattr(self, key)
            _check(0 <= value < 1, f"compose.{key}", f"must be in [0, 1), got {value}")
        _check(0 < self.max_iou <= 1, "compose.max_iou", f"must be in (0, 1], got {self.max_iou}")
        _check_min_max("compose.aspect", self.aspect.min, self.aspect.max)
        _check(self.aspect.min > 0, "compose.aspect.min", f"must be > 0, got {self.aspect.min}")
        _check(self.min_box_size >= 1, "compose.min_box_size", f"must be >= 1, got {self.min_box_size}")


FORMATS = ("voc", "coco", "yolo", "yolo_seg")
DEFAULT_FORMATS = ("voc", "coco", "yolo")
COCO_SEGMENTATIONS = ("auto", "rle")


@dataclass
class OutputConfig:
    formats: list[str] = field(default_factory=lambda: list(DEFAULT_FORMATS))
    splits: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "val": 0.2})
    split_by: str = "sample"
    coco_segmentation: str = "auto"
    difficult_below: float = 0.25
    jpeg_quality: int = 95
    previews: bool = True
    preview_every: int = 1
    preview_scale: float = 0.5
    preview_quality: int = 80
    report: bool = True

    def __post_init__(self) -> None:
        for name in self.formats:
            _check(name in FORMATS, "output.formats", f"unknown format {name!r}; known: {list(FORMATS)}")
        _check(len(set(self.formats)) == len(self.formats), "output.formats", f"lists a format twice: {self.formats}")
        if not self.formats:
            log.warning("output.formats is empty: only the images, previews and manifest.jsonl are written, no "
                        "annotation files; list formats to get them, e.g. output.formats=[coco,yolo]")
        for name, fraction in self.splits.items():
            # '_' is out: VOC tools and datumaro read ImageSets/Main/<a>_<b>.txt as class a's list for split b
            _check(name.isidentifier() and "_" not in name, f"output.splits.{name}",
                   "split names must be plain words of letters and digits like train, val, test, holdout")
            _check(name not in RESERVED_YOLO_KEYS, f"output.splits.{name}",
                   f"'{name}' is a key of YOLO's data.yaml with a meaning of its own, so it cannot name a split; "
                   f"use another name, e.g. +output.splits.holdout={fraction}")
            _check(fraction >= 0, f"output.splits.{name}", f"must be >= 0, got {fraction}")
        total = sum(self.splits.values())
        _check(abs(total - 1) < 1e-6, "output.splits",
               f"fractions must sum to 1, got {total:g} ({dict(self.splits)}); Hydra merges a dict override into "
               f"the default, so drop a split by setting it to 0, e.g. output.splits.val=0 output.splits.train=1")
        _check(self.split_by in SPLIT_BY, "output.split_by",
               f"must be one of {list(SPLIT_BY)}, got {self.split_by!r}")
        _check(self.coco_segmentation in COCO_SEGMENTATIONS, "output.coco_segmentation",
               f"must be 'auto' (a polygon where it is exact, else RLE) or 'rle', got {self.coco_segmentation!r}"
               + ("; polygons that drop holes are gone, 'auto' writes polygons wherever they are exact"
                  if self.coco_segmentation == "polygon" else ""))
        _check(0 <= self.difficult_below <= 1, "output.difficult_below",
               f"must be in [0, 1], got {self.difficult_below}")
        _check(self.preview_every >= 1, "output.preview_every", f"must be >= 1, got {self.preview_every}")
        for key in ("jpeg_quality", "preview_quality"):
            value = getattr(self, key)
            _check(1 <= value <= 100, f"output.{key}", f"must be in [1, 100], got {value}")
        _check(0 < self.preview_scale <= 1, "output.preview_scale",
               f"must be in (0, 1], got {self.preview_scale}")


@dataclass
class EvaluateConfig:
    """How a finished run is scored: ``reference`` (label statistics vs real labels) or ``command`` (the user's)."""

    kind: str = "reference"
    reference: str | None = None
    weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(DISTANCES, 1.0))
    command: str | None = None
    score_file: str | None = None
    score_key: str | None = None
    direction: str = "maximize"

    def __post_init__(self) -> None:
        _check(self.kind in ("reference", "command"), "evaluate.kind",
               f"must be 'reference' or 'command', got {self.kind!r}; pick one with evaluate=reference or "
               f"evaluate=command")
        _check(self.direction in ("maximize", "minimize"), "evaluate.direction",
               f"must be 'maximize' or 'minimize', got {self.direction!r}")
        if self.kind == "reference":
            _check(bool(self.reference), "evaluate.reference",
                   "evaluate=reference needs the real labels: evaluate.reference=/data/real/data.yaml "
                   "(a YOLO data.yaml or labels folder, or a COCO json)")
            _check(self.direction == "maximize", "evaluate.direction",
                   "the reference score is a similarity (1 = same label statistics): it is always maximized")
            for name, weight in self.weights.items():
                _check(name in DISTANCES, f"evaluate.weights.{name}", f"unknown distance; known: {list(DISTANCES)}")
                _check(weight >= 0, f"evaluate.weights.{name}", f"must be >= 0, got {weight}")
            _check(sum(self.weights.values()) > 0, "evaluate.weights", "all weights are 0; give one a positive weight")
        else:
            _check(bool(self.command), "evaluate.command",
                   "evaluate=command needs a command, e.g. 'evaluate.command=\"python train.py --data {data_yaml}\"' "
                   "(quoted: Hydra reads bare braces as a dict)")
            check_placeholders("evaluate.command", self.command)
            if self.score_file:
                check_placeholders("evaluate.score_file", self.score_file)
            _check(self.score_file is None or bool(self.score_key), "evaluate.score_key",
                   f"evaluate.score_file={self.score_file} is set: name the number in it, e.g. "
                   f"evaluate.score_key=metrics.map50")


@dataclass
class WorkersConfig:
    backend: str = "loky"
    n_jobs: int = -1
    chunk_size: int | None = None
    scheduler_address: str | None = None

    def __post_init__(self) -> None:
        backends = ("loky", "sequential", "dask", "ray")
        _check(self.backend in backends, "workers.backend", f"must be one of {list(backends)}, got {self.backend!r}")
        _check(self.n_jobs != 0, "workers.n_jobs", "must be a positive count or negative (-1 = all cores), got 0")
        _check(self.chunk_size is None or self.chunk_size >= 1, "workers.chunk_size",
               f"must be >= 1 or null (auto), got {self.chunk_size}")


@dataclass
class SamplesConfig:
    repeats: int = 1
    per_class: int | None = None
    max_attempts: int = 100
    background_fraction: float = 0.0

    def __post_init__(self) -> None:
        _check(self.repeats >= 1, "samples.repeats", f"must be >= 1, got {self.repeats}")
        _check(self.per_class is None or self.per_class >= 1, "samples.per_class",
               f"must be >= 1 or null, got {self.per_class}")
        _check(self.max_attempts >= 1, "samples.max_attempts", f"must be >= 1, got {self.max_attempts}")
        _check(0 <= self.background_fraction < 1, "samples.background_fraction",
               f"must be in [0, 1) (the share of images with no object, e.g. 0.05), got {self.background_fraction}")


@dataclass
class QuiltgenConfig:
    input: InputConfig = field(default_factory=InputConfig)
    quilt: QuiltConfig = field(default_factory=QuiltConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    compose: ComposeConfig = field(default_factory=ComposeConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    evaluate: EvaluateConfig | None = None
    seed: int = 0
    resume: str | None = None
    dry_run: bool = False

    def __post_init__(self) -> None:
        _check(self.seed >= 0, "seed", f"must be >= 0 (numpy seeds are non-negative), got {self.seed}")
        _check(self.compose.distractors.max == 0 or self.input.distractor_dir is not None, "compose.distractors",
               f"max={self.compose.distractors.max} but input.distractor_dir is unset; "
               f"point input.distractor_dir at a folder of distractor cut-outs or set compose.distractors.max=0")


GROUP_SCHEMAS = {
    "input": InputConfig,
    "quilt": QuiltConfig,
    "augment": AugmentConfig,
    "compose": ComposeConfig,
    "output": OutputConfig,
    "workers": WorkersConfig,
    "evaluate": EvaluateConfig,
}


def register_configs() -> None:
    """Store the schemas so YAML files can name them first in their defaults list."""
    cs = ConfigStore.instance()
    cs.store(name="quiltgen_schema", node=QuiltgenConfig)
    for group, node in GROUP_SCHEMAS.items():
        cs.store(group=group, name=f"{group}_schema", node=node)


def _unknown_keys(given: dict, known: dict, prefix: str = "") -> list[str]:
    found = []
    for key, value in given.items():
        path = f"{prefix}{key}"
        if key not in known:
            found.append(path)
        elif isinstance(value, dict) and isinstance(known[key], dict):
            found += _unknown_keys(value, known[key], f"{path}.")
    return found


def schema_keys(node: type = None, prefix: str = "") -> dict[str, bool]:
    """Every dotted key of the schema -> whether any sub-key is allowed below it (a free-form dict)."""
    node = node or QuiltgenConfig
    keys = {}
    for name, hint in get_type_hints(node).items():
        path = f"{prefix}{name}"
        origin = get_origin(hint)
        keys[path] = origin is dict
        nested = [arg for arg in (hint, *get_args(hint)) if is_dataclass(arg)]  # also inside X | None
        if nested:
            keys.update(schema_keys(nested[0], f"{path}."))
    return keys


def leaf_types(node: type = None, prefix: str = "") -> dict[str, tuple[type, bool]]:
    """Every scalar key of the schema -> (its type: int, float, bool or str; whether null is allowed)."""
    node = node or QuiltgenConfig
    found = {}
    for name, hint in get_type_hints(node).items():
        args = [arg for arg in get_args(hint) if arg is not type(None)] or [hint]
        if is_dataclass(args[0]):
            found.update(leaf_types(args[0], f"{prefix}{name}."))
        elif args[0] in (int, float, bool, str):
            found[f"{prefix}{name}"] = (args[0], type(None) in get_args(hint))
    return found


def container_keys(node: type = None, prefix: str = "") -> dict[str, tuple[str, bool]]:
    """Every key of the schema that holds several values -> (its kind: "list", "mapping" (free-form names),
    "group" (fixed sub-keys) or "switch" (a group with an ``enabled`` key); whether null is allowed)."""
    node = node or QuiltgenConfig
    kinds = {}
    for name, hint in get_type_hints(node).items():
        path, candidates, nullable = f"{prefix}{name}", [hint, *get_args(hint)], type(None) in get_args(hint)
        nested = [arg for arg in candidates if is_dataclass(arg)]
        if nested:
            kinds[path] = ("switch" if "enabled" in get_type_hints(nested[0]) else "group", nullable)
            kinds.update(container_keys(nested[0], f"{path}."))
        elif any(get_origin(arg) is list for arg in candidates):
            kinds[path] = ("list", nullable)
        elif any(get_origin(arg) is dict for arg in candidates):
            kinds[path] = ("mapping", nullable)
    return kinds


def _container_message(path: str, value: str) -> str | None:
    """One line when a plain value is given to a key that holds several (a list, a mapping, a group)."""
    kind, nullable = container_keys().get(path, (None, True))
    examples = {"list": f"{path}=[{value if value != 'null' else ''}]",
                "mapping": f"{path}={MAPPING_EXAMPLES.get(path, '{name: value}')}",
                "switch": f"{path}.enabled={value if value in ('true', 'false') else 'false'}"}
    example = f"e.g. {examples[kind]}" if kind in examples else "`quiltgen --cfg job` lists its keys"
    if kind and value == "null" and not nullable:
        return f"{path}: cannot be null; {example}"
    if kind == "mapping" and value.startswith("["):
        return f"{path}: maps names to values, not a list; {example}"
    if kind and kind != "mapping" and not any(c in value for c in ",()[]{}$'\" ") and value != "null":
        what = "a list" if kind == "list" else "a group of settings"
        return f"{path}: {what}, not one value; {example}"
    return None


NAMES = {int: "an integer", float: "a number", bool: "true or false"}
MAPPING_EXAMPLES = {"output.splits": "{train: 0.8, val: 0.2}", "compose.class_weights": "{<class>: 2}",
                    "augment.classes": "{<class>: {size: side_px, side_px: {min: 40, max: 80}}}",
                    "evaluate.weights": "{classes: 0}"}


def bad_value_message(path: str, value: str) -> str | None:
    """One line when a plain ``key=value`` override cannot be the key's type (instead of Hydra's several lines);
    None when it can, or when the value is more than a literal (a sweep list, an interpolation, quotes)."""
    if path in container_keys():
        return _container_message(path, value)
    kind, nullable = leaf_types().get(path, (str, True))
    if kind is str or any(c in value for c in ",()[]{}$'\" ") or (nullable and value == "null"):
        return None
    try:
        if kind is bool:
            ok = value.lower() in ("true", "false")
        else:
            ok = float(value) == int(float(value)) if kind is int else bool(float(value) == float(value))
    except ValueError:
        ok = False
    if ok:
        return None
    return f"{path}: {value!r} is not {NAMES[kind]}{' (or null)' if nullable else ''}; e.g. {path}=" + \
        {int: "10", float: "0.5", bool: "true"}[kind]


def unknown_key_message(path: str) -> str | None:
    """None if ``path`` names a config key, else one line saying so, with the closest key if there is one."""
    parts = path.split(".")
    if parts[-1] == "enabled" and len(parts) >= 3 and parts[0] == "augment" and parts[-2] in SIZE_MODES:
        return (f"{path}: unknown key; the size ranges have no switch: augment.size={parts[-2]} picks the unit "
                f"(e.g. augment.size=area replaces augment.scale.enabled=false augment.area.enabled=true)")
    keys = schema_keys()
    parts = path.split(".")
    for n in range(len(parts), 0, -1):
        head = ".".join(parts[:n])
        if head in keys:
            if n == len(parts) or keys[head]:
                return None
            break
    close = get_close_matches(path, list(keys), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"{path}: unknown key; {hint}(`quiltgen --cfg job` prints every key)"


def validate(cfg: DictConfig) -> QuiltgenConfig:
    """The composed config as schema objects, with every range checked.

    A config composed without the schema (a run's frozen config replayed with -cp) is merged onto it first.
    ``to_object`` silently drops keys added with ``+key=value``; they are rejected here instead.
    """
    if OmegaConf.get_type(cfg) is not QuiltgenConfig:
        try:
            cfg = OmegaConf.merge(OmegaConf.structured(QuiltgenConfig), cfg)
        except ConfigKeyError as err:
            raise ConfigError(unknown_key_message(err.full_key) or f"{err.full_key}: {err.msg}") from None
        except ValidationError as err:
            raise ConfigError(f"{err.full_key}: {err.msg}") from None
    config = OmegaConf.to_object(cfg)
    unknown = _unknown_keys(OmegaConf.to_container(cfg, resolve=True), asdict(config))
    if unknown:
        raise ConfigError(unknown_key_message(unknown[0]) or f"{unknown[0]}: unknown key")
    return config
