"""What the issue 13 looks cost: per object and per 1080p image, with the project's own functions.

    python bench/looks_cost.py          (from the repository root; about a minute)

Each case is timed in turn, round after round, and the median is printed (ms per call). Process CPU time, not
wall time, so other work on a shared machine disturbs it less; compare the rows of one run, not runs.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pipeline import augment, blend, demo, quilt, shadow, sources  # noqa: E402


def bench(cases: dict, number: int, rounds: int = 15) -> dict:
    times = {name: [] for name in cases}
    for _ in range(rounds):
        for name, call in cases.items():
            start = time.process_time()
            for _ in range(number):
                call()
            times[name].append((time.process_time() - start) / number * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def show(title: str, result: dict) -> None:
    print(f"{title}: " + ", ".join(f"{name} {ms:.3f}" for name, ms in result.items()))


def main() -> None:
    cv2.setNumThreads(1)  # as in the workers
    root = demo.ensure_demo(tempfile.mkdtemp(prefix="looks-cost-"))
    obj = sources.load_object(sources.ObjectSource(root / "photo/circle/0.png", root / "photo_copy/circle/0.png"), 8)
    img, mask = np.ascontiguousarray(obj[:, :, :3]), np.ascontiguousarray(obj[:, :, 3])
    params = {"brightness": 1.2, "blur_kernel": 1, "size": "scale", "shear": 0.1, "rotation": 10.0,
              "flip_horizontal": False, "flip_vertical": False, "hue": 4.0, "saturation": 1.1, "erode": 0,
              "color_match": 0.0, "contrast": 1.0, "gamma": 1.0, "perspective": None}
    tilt = augment.sample_perspective(np.random.default_rng(0), {"enabled": True, "min": 0.1, "max": 0.1})
    for scale in (1.0, 2.0):
        plain = {**params, "scale": scale}
        show(f"apply_object, {obj.shape[1]} px demo cut-out at scale {scale}", bench({
            "plain": lambda p=plain: augment.apply_object(img, mask, p),
            "+perspective": lambda p=plain: augment.apply_object(img, mask, {**p, "perspective": tilt}),
            "+contrast+gamma": lambda p=plain: augment.apply_object(img, mask, {**p, "contrast": 1.2, "gamma": 1.1}),
        }, 100))
    warped_img, warped = augment.apply_object(img, mask, {**params, "scale": 1.5})
    canvas = np.random.default_rng(1).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    owner = np.zeros((1080, 1920), np.uint8)
    at = (800, 400)
    show(f"per object, {warped.shape[1]}x{warped.shape[0]} px on 1080p", bench({
        **{f"shadow blur {b}": (lambda b=b: shadow.cast(canvas, owner, warped, *at, {
            "offset_x": 0.1, "offset_y": 0.1, "blur": b, "opacity": 0.5})) for b in (0.02, 0.05, 0.08)},
        "blend hard": lambda: blend.blend_object(canvas, warped_img, warped, *at, "hard", {}),
        "blend feather": lambda: blend.blend_object(canvas, warped_img, warped, *at, "feather",
                                                    {"feather_radius": 2.0}),
        "blend motion": lambda: blend.blend_object(canvas, warped_img, warped, *at, "motion",
                                                   {"motion_length": 9, "motion_angle": 30.0}),
    }, 50))
    show("per object", bench({"blend poisson": lambda: blend.blend_object(canvas, warped_img, warped, *at,
                                                                          "poisson", {})}, 3, 7))
    backgrounds = [np.random.default_rng(i).integers(0, 256, (540, 960, 3), dtype=np.uint8) for i in range(4)]
    tiles = quilt.sample_tiles(np.random.default_rng(0), quilt.tile_grid(1920, 1080, 2, 2), [(960, 540)] * 4,
                               (1, 1))
    gains = np.random.default_rng(0).uniform(0.9, 1.1, (4, 3)).tolist()
    show("quilt.render, 1080p 2x2", bench({
        "brightness (original)": lambda: quilt.render(1920, 1080, tiles, backgrounds, 1.2),
        "+tile gains (default)": lambda: quilt.render(1920, 1080, tiles, backgrounds, 1.2, gains),
        "+contrast": lambda: quilt.render(1920, 1080, tiles, backgrounds, 1.2, gains, 1.2),
        "+gamma": lambda: quilt.render(1920, 1080, tiles, backgrounds, 1.2, gains, 1.0, 1.1),
        "+contrast+gamma": lambda: quilt.render(1920, 1080, tiles, backgrounds, 1.2, gains, 1.2, 1.1),
    }, 20))


if __name__ == "__main__":
    main()
