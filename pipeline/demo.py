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

DEMO_VERSION = "demo-v1"
CLASSES = ("circle", "square", "triangle")
PHOTOS_PER_CLASS = 3
BACKGROUNDS = 4
BACKGROUND_SIZE = (960, 540)


def default_cache_dir() -> Path:
    env = os.environ.get("QUILTGEN_CACHE")
    if env:
        return Path(env)
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


def _texture(rng: np.random.Generator, width: int, height: int, cells: int) -> np.ndarray:
    """Smooth colour noise plus fine grain: looks like a blurry photo, compresses like one."""
    small = rng.integers(0, 256, (cells, max(2, cells * width // height), 3), dtype=np.uint8)
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.add(img, rng.integers(0, 24, img.shape, dtype=np.uint8))


def _write_demo(root: Path) -> None:
    rng = np.random.default_rng(2024)
    for name in CLASSES:
        (root / "photo" / name).mkdir(parents=True)
        (root / "photo_copy" / name).mkdir(parents=True)
        for n in range(PHOTOS_PER_CLASS):
            size = int(rng.integers(90, 180))
            mask = _shape_mask(rng, name, size)
            base = np.full((size, size, 3), rng.integers(40, 230, 3), np.uint8)
            photo = cv2.addWeighted(base, 0.8, _texture(rng, size, size, 4), 0.2, 0)
            photo[mask == 0] = 0
            cv2.imwrite(str(root / "photo" / name / f"{n}.png"), photo)
            cv2.imwrite(str(root / "photo_copy" / name / f"{n}.png"), cv2.merge([mask] * 3))
    (root / "back").mkdir()
    for n in range(BACKGROUNDS):
        cv2.imwrite(str(root / "back" / f"{n}.jpg"), _texture(rng, *BACKGROUND_SIZE, cells=int(rng.integers(3, 9))))


def ensure_demo(cache_dir: str | None = None) -> Path:
    """Path of the demo input set, creating it on first use."""
    target = Path(cache_dir) if cache_dir else default_cache_dir()
    root = target / DEMO_VERSION
    if root.is_dir():
        return root
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
    return root
