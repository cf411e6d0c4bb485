"""Structured config schema: one dataclass per config group, registered in Hydra's ConfigStore.

OmegaConf rejects unknown keys and wrong types while composing. Ranges and bounds are checked in
``__post_init__``, which runs when the entry point calls ``OmegaConf.to_object``; every message
names the full key and the bad value.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from pipeline.errors import ConfigError


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
class InputConfig:
    root: str | None = None
    photo_dir: str = "photo"
    mask_dir: str = "photo_copy"
    background_dir: str = "back"
    mask_threshold: int = 8
    on_bad_file: str = "error"
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        _check(self.on_bad_file in ("error", "skip"), "input.on_bad_file",
               f"must be 'error' or 'skip', got {self.on_bad_file!r}")
        _check(0 <= self.mask_threshold < 255, "input.mask_threshold",
               f"must be in [0, 254], got {self.mask_threshold}")


@dataclass
class QuiltConfig:
    width: int = 1920
    height: int = 1080
    rows: int = 2
    cols: int = 2
    zoom: Interval = field(default_factory=lambda: Interval(1.0, 1.0))

    def __post_init__(self) -> None:
        for key in ("width", "height", "rows", "cols"):
            value = getattr(self, key)
            _check(value > 0, f"quilt.{key}", f"must be > 0, got {value}")
        _check(self.cols <= self.width and self.rows <= self.height, "quilt.rows/cols",
               f"a {self.rows}x{self.cols} grid does not fit a {self.width}x{self.height} canvas")
        _check_min_max("quilt.zoom", self.zoom.min, self.zoom.max, lower=1.0)


@dataclass
class BlurConfig:
    enabled: bool = True
    kernel_sizes: list[int] = field(default_factory=lambda: [1, 3, 5])


@dataclass
class AugmentConfig:
    object_brightness: RangeConfig = field(default_factory=lambda: RangeConfig(0.5, 1.5))
    background_brightness: RangeConfig = field(default_factory=lambda: RangeConfig(0.5, 1.5))
    blur: BlurConfig = field(default_factory=BlurConfig)
    scale: RangeConfig = field(default_factory=lambda: RangeConfig(0.5, 2.0))
    shear: RangeConfig = field(default_factory=lambda: RangeConfig(-0.3, 0.3))

    def __post_init__(self) -> None:
        _check_min_max("augment.object_brightness", self.object_brightness.min, self.object_brightness.max, lower=0.0)
        _check_min_max("augment.background_brightness", self.background_brightness.min,
                       self.background_brightness.max, lower=0.0)
        _check_min_max("augment.scale", self.scale.min, self.scale.max)
        _check(self.scale.min > 0, "augment.scale.min", f"must be > 0, got {self.scale.min}")
        _check_min_max("augment.shear", self.shear.min, self.shear.max, lower=-1.0, upper=1.0)
        sizes = list(self.blur.kernel_sizes)
        _check(len(sizes) > 0, "augment.blur.kernel_sizes", "must list at least one kernel size")
        for k in sizes:
            _check(k > 0 and k % 2 == 1, "augment.blur.kernel_sizes",
                   f"kernel sizes must be positive odd integers, got {k}")


@dataclass
class ComposeConfig:
    aspect: Interval = field(default_factory=lambda: Interval(0.2, 2.0))
    min_box_size: int = 8

    def __post_init__(self) -> None:
        _check_min_max("compose.aspect", self.aspect.min, self.aspect.max)
        _check(self.aspect.min > 0, "compose.aspect.min", f"must be > 0, got {self.aspect.min}")
        _check(self.min_box_size >= 1, "compose.min_box_size", f"must be >= 1, got {self.min_box_size}")


@dataclass
class OutputConfig:
    formats: list[str] = field(default_factory=lambda: ["voc"])
    jpeg_quality: int = 95
    previews: bool = True
    preview_scale: float = 0.5
    preview_quality: int = 80

    def __post_init__(self) -> None:
        known = ("voc",)
        for name in self.formats:
            _check(name in known, "output.formats", f"unknown format {name!r}; known: {list(known)}")
        for key in ("jpeg_quality", "preview_quality"):
            value = getattr(self, key)
            _check(1 <= value <= 100, f"output.{key}", f"must be in [1, 100], got {value}")
        _check(0 < self.preview_scale <= 1, "output.preview_scale",
               f"must be in (0, 1], got {self.preview_scale}")


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

    def __post_init__(self) -> None:
        _check(self.repeats >= 1, "samples.repeats", f"must be >= 1, got {self.repeats}")
        _check(self.per_class is None or self.per_class >= 1, "samples.per_class",
               f"must be >= 1 or null, got {self.per_class}")
        _check(self.max_attempts >= 1, "samples.max_attempts", f"must be >= 1, got {self.max_attempts}")


@dataclass
class QuiltgenConfig:
    input: InputConfig = field(default_factory=InputConfig)
    quilt: QuiltConfig = field(default_factory=QuiltConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    compose: ComposeConfig = field(default_factory=ComposeConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    seed: int = 0


GROUP_SCHEMAS = {
    "input": InputConfig,
    "quilt": QuiltConfig,
    "augment": AugmentConfig,
    "compose": ComposeConfig,
    "output": OutputConfig,
    "workers": WorkersConfig,
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


def validate(cfg: DictConfig) -> QuiltgenConfig:
    """The composed config as schema objects, with every range checked.

    ``to_object`` silently drops keys added with ``+key=value``; they are rejected here instead.
    """
    config = OmegaConf.to_object(cfg)
    unknown = _unknown_keys(OmegaConf.to_container(cfg, resolve=True), asdict(config))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key; see `quiltgen --cfg job` for the valid keys")
    return config
