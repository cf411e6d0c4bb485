"""Blending (pipeline.blend) and colour (pipeline.color) on small synthetic images."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline import blend, color

W, H = 160, 120
BG = 100


def flat_canvas(value: int = BG) -> np.ndarray:
    return np.full((H, W, 3), value, np.uint8)


def disc(size: int = 40, radius: int | None = None) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (size // 2, size // 2), radius or size // 2 - 3, 255, -1)
    return mask


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Random 60/180 pixels: any misplacement of the object by one pixel shows in the Laplacian."""
    return (np.random.default_rng(seed).integers(0, 2, (h, w, 1)) * 120 + 60).astype(np.uint8).repeat(3, 2)


def placed_mask(mask: np.ndarray, x: int, y: int) -> np.ndarray:
    """The mask's pixels on the canvas, as a canvas-sized bool array."""
    out = np.zeros((H, W), bool)
    region = blend.clip_region(x, y, mask.shape[1], mask.shape[0], W, H)
    if region is not None:
        (rows, cols), (obj_rows, obj_cols) = region
        out[rows, cols] = mask[obj_rows, obj_cols] > 0
    return out


# Positions of a 40x40 object: inside, over each edge and corner, fully outside on each side.
INSIDE = [(60, 40)]
OVER = [(-15, 40), (140, 40), (60, -15), (60, 100), (-15, -15), (140, -15), (-15, 100), (140, 100), (0, 0), (120, 80)]
OUTSIDE = [(-40, 40), (W, 40), (60, -40), (60, H), (-100, -100), (W + 5, H + 5)]


@pytest.mark.parametrize(("x", "y"), INSIDE + OVER + OUTSIDE)
def test_clip_region_matches_overlap(x, y):
    region = blend.clip_region(x, y, 40, 40, W, H)
    if (x, y) in OUTSIDE:
        assert region is None
        return
    (rows, cols), (obj_rows, obj_cols) = region
    grid = np.zeros((H, W), np.int32)  # object pixel ids painted by brute force
    ids = np.arange(1, 1601).reshape(40, 40)
    for r in range(40):
        for c in range(40):
            if 0 <= y + r < H and 0 <= x + c < W:
                grid[y + r, x + c] = ids[r, c]
    assert np.array_equal(grid[rows, cols], ids[obj_rows, obj_cols])
    assert np.count_nonzero(grid) == (rows.stop - rows.start) * (cols.stop - cols.start)


def test_clip_region_edge_touching_is_none():
    assert blend.clip_region(-40, 0, 40, 40, W, H) is None  # ends exactly at the left edge
    assert blend.clip_region(W, 0, 40, 40, W, H) is None
    assert blend.clip_region(-39, -39, 40, 40, W, H) == ((slice(0, 1), slice(0, 1)), (slice(39, 40), slice(39, 40)))


@pytest.mark.parametrize(("x", "y"), INSIDE + OVER + OUTSIDE)
def test_paste_hard_changes_exactly_mask_pixels(x, y):
    canvas, obj, mask = flat_canvas(), np.full((40, 40, 3), (10, 200, 30), np.uint8), disc()
    blend.paste_hard(canvas, obj, mask, x, y)
    where = placed_mask(mask, x, y)
    assert np.all(canvas[where] == (10, 200, 30))
    assert np.all(canvas[~where] == BG)


def test_feather_alpha_zero_outside_one_inside():
    mask = disc(60, 25)
    alpha = feather_alpha = blend.feather_alpha(mask, 2.0)
    assert alpha.dtype == np.float32 and alpha.shape == mask.shape
    assert np.all(alpha[mask == 0] == 0)
    assert alpha[30, 30] == pytest.approx(1.0)
    edge = mask.astype(bool) & ~cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(bool)
    assert 0.3 < feather_alpha[edge].mean() < 0.8  # softened on the outline
    assert np.all((alpha >= 0) & (alpha <= 1))
    assert np.array_equal(blend.feather_alpha(mask, 0), mask / np.float32(255))
    full = np.full((20, 20), 255, np.uint8)  # the array edge counts as outside
    assert blend.feather_alpha(full, 2.0)[0, 10] < 0.8


@pytest.mark.parametrize("obj_dtype", [np.uint8, np.float32])
@pytest.mark.parametrize(("x", "y"), [(60, 40), (-15, -15), (140, 100), (-40, 0)])
def test_paste_alpha_extremes_and_mix(obj_dtype, x, y):
    obj = np.full((40, 40, 3), 200, obj_dtype)
    alpha = np.zeros((40, 40), np.float32)
    alpha[:, :20] = 1.0
    alpha[:, 20:30] = 0.5
    canvas = flat_canvas()
    blend.paste_alpha(canvas, obj, alpha, x, y)
    for value, cols in ((200, slice(0, 20)), (150, slice(20, 30)), (BG, slice(30, 40))):
        part = np.zeros((40, 40), np.uint8)
        part[:, cols] = 1
        assert np.all(canvas[placed_mask(part, x, y)] == value)
    assert np.all(canvas[~placed_mask(np.ones((40, 40), np.uint8), x, y)] == BG)


def test_motion_blur_pads_and_keeps_alpha_mass():
    obj, mask = np.full((40, 40, 3), 200, np.uint8), disc()
    for length, angle in ((2, 0.0), (7, 30.0), (15, 90.0), (20, 135.0)):
        colour, alpha, pad = blend.motion_blur(obj, mask, length, angle)
        assert pad == length // 2 + 1
        assert alpha.shape == (40 + 2 * pad, 40 + 2 * pad) and colour.shape == alpha.shape + (3,)
        assert alpha[0].max() == alpha[-1].max() == alpha[:, 0].max() == alpha[:, -1].max() == 0  # margin left
        assert alpha.sum() == pytest.approx(mask.sum() / 255, rel=0.01)
        assert np.allclose(colour[alpha > 0.01], 200, atol=0.5)  # un-premultiplied: flat stays flat
    colour, alpha, pad = blend.motion_blur(obj, mask, 1, 45.0)
    assert pad == 0 and colour is obj and np.array_equal(alpha, mask / np.float32(255))


def test_motion_kernel_is_a_centred_line():
    for length in (3, 8, 11, 12, 15, 24):
        for angle in (0.0, 37.0, 90.0, 160.0):
            kernel = blend.motion_kernel(length, angle)
            size = kernel.shape[0]
            assert size % 2 == 1 and kernel.sum() == pytest.approx(1.0)
            ys, xs = np.mgrid[:size, :size]
            assert (kernel * xs).sum() == pytest.approx(size // 2, abs=1e-3)
            assert (kernel * ys).sum() == pytest.approx(size // 2, abs=1e-3)
    assert np.count_nonzero(blend.motion_kernel(9, 0.0)[4]) == 9 == np.count_nonzero(blend.motion_kernel(9, 0.0))


@pytest.mark.parametrize("length", [12, 15, 24])
def test_blocked_filter_equals_filter2d(length):
    img = np.random.default_rng(1).random((50, 45, 4), dtype=np.float32)
    kernel = blend.motion_kernel(length, 37.0)
    expected = cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    assert np.allclose(blend._filter_constant(img, kernel), expected, atol=1e-5)


def laplacian_error(canvas: np.ndarray, obj: np.ndarray, mask: np.ndarray, x: int, y: int) -> float:
    """Mean |Laplacian(canvas) - Laplacian(object where pasted)| well inside the mask: ~0 only if aligned."""
    placed = np.zeros((H, W), np.float32)
    region = blend.clip_region(x, y, mask.shape[1], mask.shape[0], W, H)
    (rows, cols), (obj_rows, obj_cols) = region
    placed[rows, cols] = obj[obj_rows, obj_cols, 0]
    inner = placed_mask(cv2.erode(mask, np.ones((7, 7), np.uint8)), x, y)
    inner[:3], inner[-3:], inner[:, :3], inner[:, -3:] = False, False, False, False
    diff = cv2.Laplacian(canvas[:, :, 0].astype(np.float32), -1) - cv2.Laplacian(placed, -1)
    return float(np.abs(diff[inner]).mean())


@pytest.mark.parametrize(("w", "h"), [(50, 40), (51, 41), (50, 41)])
@pytest.mark.parametrize(("x", "y"), [(30, 20), (-10, -7), (W - 44, H - 37), (0, 0), (W - 50, H - 40), (-20, 60)])
def test_poisson_lands_inside_mask_and_aligned(w, h, x, y):
    obj = textured(h, w)
    mask = np.zeros((h, w), np.uint8)
    mask[5:h - 5, 8:w - 5] = 255
    mask[20, 20:30] = 0  # a slit: non-mask pixels inside the box stay untouched too
    canvas, before = flat_canvas(), mask.copy()
    blend.paste_poisson(canvas, obj, mask, x, y)
    assert np.array_equal(mask, before)  # seamlessClone writes into its mask argument; ours is left alone
    changed = np.any(canvas != BG, axis=2)
    where = placed_mask(mask, x, y)
    assert changed.any()
    assert not np.any(changed & ~where)
    error = laplacian_error(canvas, obj, mask, x, y)
    assert error < 40  # a one-pixel shift gives ~340
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        assert laplacian_error(canvas, obj, mask, x + dx, y + dy) > 5 * error + 100


def test_poisson_never_raises_on_tiny_or_edge_objects():
    rng = np.random.default_rng(7)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 12, 2))
        obj = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = (rng.random((h, w)) < 0.8).astype(np.uint8) * 255
        x, y = int(rng.integers(-w - 2, W + 2)), int(rng.integers(-h - 2, H + 2))
        canvas = flat_canvas()
        blend.paste_poisson(canvas, obj, mask, x, y)
        assert not np.any(np.any(canvas != BG, axis=2) & ~placed_mask(mask, x, y))
    tiny = flat_canvas()
    blend.paste_poisson(tiny, np.full((2, 2, 3), 7, np.uint8), np.full((2, 2), 255, np.uint8), 0, 0)
    assert np.all(tiny[:2, :2] == 7)  # too small for Poisson: pasted hard


def test_blend_object_dispatch_is_deterministic():
    obj, mask = textured(40, 40, 3), disc()
    params = {"feather_radius": 2.0, "motion_length": 13, "motion_angle": 20.0}
    for method in blend.METHODS:
        a, b = flat_canvas(), flat_canvas()
        blend.blend_object(a, obj, mask, -10, 90, method, params)
        blend.blend_object(b, obj, mask, -10, 90, method, params)
        assert np.array_equal(a, b) and np.any(a != BG), method
    with pytest.raises(ValueError, match="'smudge'"):
        blend.blend_object(flat_canvas(), obj, mask, 0, 0, "smudge", params)


def test_hue_saturation():
    red = np.zeros((4, 4, 3), np.uint8)
    red[:] = (0, 0, 255)
    assert color.hue_saturation(red, 0, 1.0) is red
    b, g, r = (int(v) for v in color.hue_saturation(red, 180, 1.0)[0, 0])
    assert r < 20 and g > 230 and b > 230  # cyan
    grey = color.hue_saturation(np.array([[[30, 120, 200]]], np.uint8), 0, 0.0)[0, 0]
    assert grey.max() - grey.min() <= 1
    assert np.array_equal(color.hue_saturation(red, 360, 1.0), red)  # a full turn, through HSV and back


def test_channel_matrix_multiplies_per_channel():
    assert color.channel_matrix(1.0, None) is None
    assert color.channel_matrix(1.0, (1.0, 1.0, 1.0)) is None
    matrix = color.channel_matrix(0.5, (1.0, 2.0, 4.0))
    assert matrix.shape == (3, 3) and matrix.dtype == np.float32
    img = np.array([[[100, 100, 100], [10, 20, 255]]], np.uint8)
    assert cv2.transform(img, matrix).tolist() == [[[50, 100, 200], [5, 20, 255]]]
    canvas = np.zeros((6, 8, 3), np.uint8)  # in place into a canvas window, as quilt.render does
    cv2.transform(np.full((2, 3, 3), 100, np.uint8), matrix, dst=canvas[2:4, 4:7])
    assert np.all(canvas[2:4, 4:7] == (50, 100, 200)) and canvas.sum() == 6 * 350


def test_add_noise_statistics_and_determinism():
    img = np.full((200, 300, 3), 128, np.uint8)
    assert color.add_noise(img, 0, 1) is img
    a, b, c = (color.add_noise(img, 8.0, seed) for seed in (5, 5, 2**63 - 1))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    noise = a.astype(np.float64) - 128
    assert abs(noise.mean()) < 0.1 and noise.std() == pytest.approx(8.0, rel=0.03)
    assert all(abs(noise[..., ch].std() - 8.0) < 0.3 for ch in range(3))
    assert abs(np.corrcoef(noise[:, 1:, 0].ravel(), noise[:, :-1, 0].ravel())[0, 1]) < 0.02  # per pixel
    assert np.array_equal(color.add_noise(np.full((2, 2, 3), 255, np.uint8), 50.0, 3).max(), 255)  # clipped


def test_match_color_moves_mean_toward_reference():
    obj = np.zeros((30, 30, 3), np.uint8)
    obj[:] = (40, 40, 200)
    obj[::2] = (60, 50, 220)
    mask = disc(30, 12)
    obj[mask == 0] = 0  # black outside the cut-out must not count
    reference = np.full((30, 30, 3), (200, 120, 40), np.uint8)
    assert color.match_color(obj, mask, reference, 0.0) is obj
    before = cv2.cvtColor(obj, cv2.COLOR_BGR2LAB)[mask > 0].mean(0)
    target = cv2.cvtColor(reference, cv2.COLOR_BGR2LAB).reshape(-1, 3).mean(0)
    half = cv2.cvtColor(color.match_color(obj, mask, reference, 0.5), cv2.COLOR_BGR2LAB)[mask > 0].mean(0)
    full = cv2.cvtColor(color.match_color(obj, mask, reference, 1.0), cv2.COLOR_BGR2LAB)[mask > 0].mean(0)
    assert np.all(np.abs(full - target) < 4)
    assert np.all(np.abs(half - (before + target) / 2) < 4)


def test_erode_mask_shrinks_but_never_empties():
    mask = disc(40, 15)
    assert color.erode_mask(mask, 0) is mask
    eroded = color.erode_mask(mask, 3)
    assert 0 < np.count_nonzero(eroded) < np.count_nonzero(mask)
    assert not np.any(eroded & ~mask)
    assert np.count_nonzero(color.erode_mask(mask, 1)) > np.count_nonzero(eroded)
    thin = np.zeros((20, 20), np.uint8)
    thin[10, 2:18] = 255
    assert color.erode_mask(thin, 2) is thin
    full = np.full((20, 20), 255, np.uint8)  # the array edge counts as background
    assert np.count_nonzero(color.erode_mask(full, 2)) == 16 * 16
