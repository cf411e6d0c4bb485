"""The built-in demo input set: a few classes of generated shapes with masks, and textured backgrounds.

It is written once into a cache folder (atomically: built aside, then renamed into place) and reused,
so ``quiltgen`` with no arguments always has something to work on.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import ConfigError

DEMO_VERSION = "demo-v2"  # v2: backgrounds at 1920x1080, so zoomed tiles are never enlarged
CLASSES = ("circle", "square", "triangle")
PHOTOS_PER_CLASS = 3
BACKGROUNDS = 4
BACKGROUND_SIZE = (1920, 1080)


def default_cache_dir() -> Path:
    env = os.environ.get("QUILTGEN_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "quiltgen"


def _shape_mask(rng: np.random.Generator, shape: str, size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    c, r = size // 2, size // 2 - 4
    if shape == "circle":
        cv2.circle(mask, (c, c), r, 255, -1)
    elif shape == "square":
        side = int(r * rng.uniform(0.7, 0.95))
        cv2.rectangle(mask, (c - side, c - side), (c + side, c + side), 255, -1)
    else:
        pts = np.array([[c, c - r], [c - r, c + r * 0.8], [c + r, c + r * 0.8]], np.int32)
        cv2.fillPoly(mask, [pts], 255)
    return mask


# BGR tints of everyday surfaces: grass, sand, sky, concrete, soil, water.
PALETTE = ((60, 140, 70), (120, 180, 210), (220, 170, 110), (150, 150, 145), (60, 90, 130), (150, 120, 60))


def _texture(rng: np.random.Generator, width: int, height: int, tint) -> np.ndarray:
    """Tinted multi-scale noise with fine grain: reads like a surface photo, compresses like one."""
    lum = np.zeros((height, width), np.float32)
    for cells, weight in ((3, 0.45), (14, 0.35), (70, 0.2)):
        small = rng.random((cells, max(2, cells * width // height)), dtype=np.float32)
        lum += weight * cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    img = (0.45 + 0.9 * lum)[:, :, None] * np.asarray(tint, np.float32)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_demo(root: Path) -> None:
    rng = np.random.default_rng(2024)
    for name in CLASSES:
        (root / "photo" / name).mkdir(parents=True)
        (root / "photo_copy" / name).mkdir(parents=True)
        for n in range(PHOTOS_PER_CLASS):
            size = int(rng.integers(140, 260))
            mask = _shape_mask(rng, name, size)
            photo = _texture(rng, size, size, rng.integers(60, 256, 3))
            edge = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((5, 5), np.uint8))
            photo[edge > 0] = photo[edge > 0] // 3
            photo[mask == 0] = 0
            _imwrite(root / "photo" / name / f"{n}.png", photo)
            _imwrite(root / "photo_copy" / name / f"{n}.png", cv2.merge([mask] * 3))
    (root / "back").mkdir()
    for n in range(BACKGROUNDS):
        img = _texture(rng, *BACKGROUND_SIZE, PALETTE[n % len(PALETTE)])
        _imwrite(root / "back" / f"{n}.jpg", img)


def ensure_demo(cache_dir: str | None = None) -> Path:
    """Path of the demo input set, creating it on first use."""
    target = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    root = target / DEMO_VERSION
    try:
        if not root.is_dir():
            _make_demo(target, root)
    except OSError as err:  # a read-only or full disk, a file in the way, no permission
        raise ConfigError(f"input.cache_dir: cannot write the demo set into {target} ({err.strerror or err}); "
                          f"set input.cache_dir (or QUILTGEN_CACHE) to a writable folder") from None
    return root


def _make_demo(target: Path, root: Path) -> None:
    """Build the set aside in ``target``, then rename it to ``root``."""
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-", dir=target))
    try:
        _write_demo(staging)
        os.rename(staging, root)
    except OSError:
        if not root.is_dir():  # not a lost race with another process making the same set
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _imwrite(path: Path, img: np.ndarray) -> None:
    if not cv2.imwrite(str(path), img):  # cv2 says only False: a partial set would be renamed into place
        raise OSError(f"could not write {path.name}")
