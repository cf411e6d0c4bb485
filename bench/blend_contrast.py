"""How much of an object's contrast each blend keeps (blend.kept_contrast), and how visible its outline stays:
the measurement behind compose.blending.poisson_clone / poisson_keep / min_contrast (not a test).

Cases: the demo set's 9 objects on its 4 backgrounds, a flat purple square on the grass background, a flat grey
disc on an orange surface. Each draw scales the object by 0.6-1.4 and places it at random, fully inside.
Columns: kept contrast (mean, 5th percentile, share of draws under 0.5) and the outline step (mean difference
between the object's outline pixels and the background pixels next to them), relative to a hard paste.
    python bench/blend_contrast.py [--draws 120]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pipeline import blend, demo  # noqa: E402
from pipeline.sources import decode_object, scan  # noqa: E402

VARIANTS = (["poisson normal", "poisson mixed"] + [f"poisson normal, keep {k}" for k in (0.25, 0.5, 0.55, 0.6, 0.75)]
            + ["feather 1-3 px", "motion 3-15 px"])


def outline_step(img: np.ndarray, mask: np.ndarray) -> float:
    """Mean |outline pixel - mean of its outside neighbours|: how visible the cut is."""
    square = np.ones((3, 3), np.uint8)
    inner = cv2.subtract(mask, cv2.erode(mask, square)) > 0
    outer = (cv2.subtract(cv2.dilate(mask, square), mask) > 0).astype(np.float32)
    around = cv2.blur(img.astype(np.float32) * outer[:, :, None], (3, 3))
    count = cv2.blur(outer, (3, 3))
    use = inner & (count > 0)
    return float(np.abs(img.astype(np.float32)[use] - around[use] / count[use][:, None]).mean())


def paste(variant: str, canvas, obj, mask, x, y, rng) -> None:
    if variant.startswith("poisson"):
        keep = float(variant.split("keep ")[1]) if "keep" in variant else 0.0
        blend.paste_poisson(canvas, obj, mask, x, y, variant.split()[1].rstrip(","), keep)
    elif variant.startswith("feather"):
        blend.paste_alpha(canvas, obj, blend.feather_alpha(mask, float(rng.uniform(1, 3))), x, y)
    else:
        colour, alpha, pad = blend.motion_blur(obj, mask, int(rng.integers(3, 16)), float(rng.uniform(0, 180)))
        blend.paste_alpha(canvas, colour, alpha, x - pad, y - pad)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=120)
    draws = parser.parse_args().draws
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as cache:
        catalog = scan(demo.ensure_demo(cache), "photo", "photo_copy", "back")
        objects = [decode_object(s, 8)[0] for name in catalog.classes for s in catalog.objects[name]]
        backgrounds = [cv2.imread(str(p)) for p in catalog.backgrounds]
    square = np.zeros((120, 120, 4), np.uint8)
    square[4:-4, 4:-4] = (160, 40, 160, 255)
    disc = np.zeros((120, 120, 4), np.uint8)
    cv2.circle(disc, (60, 60), 56, (128, 128, 128, 255), -1)
    orange = cv2.add(np.full((540, 960, 3), (40, 140, 230), np.uint8), rng.integers(0, 12, (540, 960, 3), np.uint8))
    cases = {"demo objects on demo backgrounds": [(o, b) for o in objects for b in backgrounds],
             "purple square on grass": [(square, backgrounds[0])], "grey disc on orange": [(disc, orange)]}
    print(f"{'case':34s} {'blend':26s} {'kept: mean':>10s} {'p5':>5s} {'<0.5':>5s} {'outline step':>12s}")
    for name, pairs in cases.items():
        for variant in VARIANTS:
            kept, steps = [], []
            for n in range(draws):
                cut_out, background = pairs[n % len(pairs)]
                scale = float(rng.uniform(0.6, 1.4))
                obj = cv2.resize(cut_out[:, :, :3], None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
                mask = cv2.resize(cut_out[:, :, 3], None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
                h, w = mask.shape
                x = int(rng.integers(2, background.shape[1] - w - 2))
                y = int(rng.integers(2, background.shape[0] - h - 2))
                canvas, hard = background.copy(), background.copy()
                paste(variant, canvas, obj, mask, x, y, rng)
                blend.paste_hard(hard, obj, mask, x, y)
                kept.append(blend.kept_contrast(background[y:y + h, x:x + w], canvas[y:y + h, x:x + w], obj, mask))
                around = np.zeros((h + 4, w + 4), np.uint8)
                around[2:-2, 2:-2] = mask
                steps.append(outline_step(canvas[y - 2:y + h + 2, x - 2:x + w + 2], around)
                             / max(outline_step(hard[y - 2:y + h + 2, x - 2:x + w + 2], around), 1e-6))
            kept = np.array(kept)
            print(f"{name:34s} {variant:26s} {kept.mean():10.2f} {np.percentile(kept, 5):5.2f} "
                  f"{np.mean(kept < 0.5):5.0%} {np.mean(steps):12.2f}")


if __name__ == "__main__":
    main()
