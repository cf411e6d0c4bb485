"""CPU cost of the image features of issue 12, each against its off switch, in one run (not a test).

  quilt        sample + render of a 1920x1080 2x2 quilt from 6 backgrounds like the benchmark's
               (shared/bench/make_seed_layout.py): whole backgrounds and hard seams (the behaviour before,
               and experiment=original) vs the default zoom levels, with fade or hard seams; alone and
               followed by the q95 JPEG encode of the canvas (the levels change what the encoder sees)
  bank         scaling one 1080p background to its zoom levels, once per run
  antialias    a hard paste with and without the soft outline, per object size
  contrast     what paste_recognisable adds to a blend it keeps (region copy + kept_contrast), per object size

Times are process CPU time, best of interleaved rounds, so other load on the machine inflates them less.
    python bench/images_cost.py [--rounds 8]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pipeline import blend, quilt  # noqa: E402
from pipeline.sources import background_levels  # noqa: E402

WIDTH, HEIGHT = 1920, 1080
BLENDING = {"antialias": True, "poisson_clone": "normal", "poisson_keep": 0.6, "min_contrast": 0.5}


def cpu_us(fn, number: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(number):
            fn()
        best = min(best, (time.process_time() - start) / number)
    return best * 1e6


def bench_backgrounds(rng: np.random.Generator) -> list[np.ndarray]:
    """As shared/bench/make_seed_layout.py: smooth colour fields plus per-pixel noise, 1920x1080."""
    out = []
    for _ in range(6):
        img = cv2.resize(rng.integers(0, 255, (9, 16, 3), dtype=np.uint8), (WIDTH, HEIGHT),
                         interpolation=cv2.INTER_CUBIC)
        out.append(cv2.add(img, rng.integers(0, 40, img.shape, dtype=np.uint8)))
    return out


def quilt_case(backgrounds: list[np.ndarray], zoom: dict, fade: int):
    rects = quilt.paint_rects(WIDTH, HEIGHT, 2, 2, fade)
    rect_w, rect_h = (max(r[i + 2] - r[i] for r in rects) for i in (0, 1))
    zooms = quilt.zoom_levels(zoom)
    levels = [background_levels(b, rect_w, rect_h, zooms) for b in backgrounds]
    sizes = [[(lv.shape[1], lv.shape[0]) for lv in bg] for bg in levels]
    rng = np.random.default_rng(0)

    def image() -> np.ndarray:
        tiles = quilt.sample_tiles(rng, rects, sizes)
        gains = rng.uniform(0.9, 1.1, (4, 3))
        return quilt.render(WIDTH, HEIGHT, 2, 2, fade, tiles, [levels[t["background"]][t["level"]] for t in tiles],
                            float(rng.uniform(0.5, 1.5)), gains)
    return image


def object_mask(size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    corners = np.array([[3, size // 5], [size - 4, 2], [size - 10, size - 3], [size // 4, size - 8]], np.int32)
    cv2.fillPoly(mask, [corners], 255)
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    rounds = parser.parse_args().rounds
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    backgrounds = bench_backgrounds(rng)
    default_zoom = {"min": 1.1, "max": 1.5, "levels": 3}
    cases = {
        "whole backgrounds, hard seams (before; original)": quilt_case(backgrounds, {"min": 1.0, "max": 1.0,
                                                                                     "levels": 1}, 0),
        "zoom 1.1-1.5 x3 levels, hard seams": quilt_case(backgrounds, default_zoom, 0),
        "zoom 1.1-1.5 x3 levels, fade 8 px (default)": quilt_case(backgrounds, default_zoom, 8),
    }
    params = [cv2.IMWRITE_JPEG_QUALITY, 95]
    best: dict = {}
    for _ in range(rounds):  # interleaved, so a busy spell hits every case
        for name, image in cases.items():
            best[name, 0] = min(best.get((name, 0), 1e18), cpu_us(image, 10, 1))
            best[name, 1] = min(best.get((name, 1), 1e18), cpu_us(lambda im=image: cv2.imencode(".jpg", im(), params),
                                                                   5, 1))
    print(f"quilt, 1920x1080 2x2, per image (CPU, best of {rounds} rounds)     quilt   quilt + JPEG q95")
    for name in cases:
        print(f"  {name:58s} {best[name, 0] / 1e3:5.2f} ms   {best[name, 1] / 1e3:5.2f} ms")
    for zoom, fade in (({"min": 1.0, "max": 1.0, "levels": 1}, 0), (default_zoom, 8)):
        rects = quilt.paint_rects(WIDTH, HEIGHT, 2, 2, fade)
        rect = [max(r[i + 2] - r[i] for r in rects) for i in (0, 1)]
        us = cpu_us(lambda z=zoom, r=rect: background_levels(backgrounds[0], *r, quilt.zoom_levels(z)), 3, rounds)
        print(f"bank: zoom levels {quilt.zoom_levels(zoom)} of one 1920x1080 background for {rect[0]}x{rect[1]} "
              f"tiles: {us / 1e3:.1f} ms")

    canvas = rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    print("per object (CPU)")
    for size in (125, 250, 500):
        mask, obj = object_mask(size), rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        plain = cpu_us(lambda m=mask, o=obj: blend.paste_hard(canvas, o, m, 300, 200), 100, rounds)
        soft = cpu_us(lambda m=mask, o=obj: blend.paste_hard(canvas, o, m, 300, 200, True), 100, rounds)
        window = canvas[200:200 + size, 300:300 + size]
        # what paste_recognisable adds to a blend it keeps: a copy of the region, then the contrast measure
        check = cpu_us(lambda m=mask, o=obj, w=window: blend.kept_contrast(w.copy(), w, o, m), 100, rounds)
        feather = cpu_us(lambda m=mask, o=obj: blend.blend_object(canvas, o, m, 300, 200, "feather",
                                                                  {"feather_radius": 2.0}, BLENDING), 20, rounds)
        print(f"  {size}x{size}: hard paste {plain:4.0f} us, antialias +{soft - plain:4.0f} us; "
              f"contrast check {check:4.0f} us (a feathered paste: {feather:5.0f} us)")

if __name__ == "__main__":
    main()
