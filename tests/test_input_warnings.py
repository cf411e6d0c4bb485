"""Mask sources chosen per class, and the warnings about doubtful cut-outs: each fires on a hand-made bad file,
names it, is logged once per file, and never fires on the demo set."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline import demo
from pipeline.errors import InputError
from pipeline.sources import ObjectSource, decode_object, scan
from tests.conftest import make_layout


def disc(size: int = 60) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (size // 2, size // 2), size // 2 - 6, 255, -1)
    return mask


def textured(size: int = 60, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(40, 250, (size, size, 3), dtype=np.uint8)


def write(path: Path, img: np.ndarray, *params: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img, list(params))
    return path


def warnings_for(photo: Path, mask: Path | None = None) -> list[str]:
    _, warnings = decode_object(ObjectSource(photo, mask), 8)
    return warnings


def test_each_doubtful_file_gets_one_warning_naming_it(tmp_path):
    photo = write(tmp_path / "photo.png", textured())
    png_mask = write(tmp_path / "ok.png", cv2.merge([disc()] * 3))
    assert warnings_for(photo, png_mask) == []

    # a mask saved as JPEG: one warning (its stray grey pixels are mentioned in it, not in a second one)
    jpeg_mask = write(tmp_path / "m.jpg", cv2.merge([disc()] * 3), cv2.IMWRITE_JPEG_QUALITY, 90)
    (warning,) = warnings_for(photo, jpeg_mask)
    assert warning.startswith(f"{jpeg_mask}: mask stored as JPEG")

    # the same JPEG-damaged pixels saved again as PNG: the grey specks give it away
    damaged = write(tmp_path / "damaged.png", cv2.imread(str(jpeg_mask)))
    (warning,) = warnings_for(photo, damaged)
    assert warning.startswith(f"{damaged}: ") and "grey pixels lie more than 4 px from the mask's outline" in warning
    levels = cv2.imread(str(damaged), cv2.IMREAD_GRAYSCALE)
    far = cv2.dilate(disc(), np.ones((9, 9), np.uint8)) == cv2.erode(disc(), np.ones((9, 9), np.uint8))
    assert f"; the {np.count_nonzero(far & (levels > 8) & (levels < 255))} above input.mask_threshold=8 " in warning

    # a mask showing the object in colour on black (the original script's photo_copy): its greys are the object's
    in_colour = write(tmp_path / "colour.png", textured() * (disc()[:, :, None] > 0))
    assert warnings_for(photo, in_colour) == []
    orange = np.clip(np.array([20, 120, 250]) + textured(seed=1) % 9, 0, 255).astype(np.uint8)  # bright: white by level
    assert warnings_for(photo, write(tmp_path / "orange.png", orange * (disc()[:, :, None] > 0))) == []

    # an all-white mask: not a cut-out
    full = write(tmp_path / "full.png", np.full((60, 60, 3), 255, np.uint8))
    (warning,) = warnings_for(photo, full)
    assert warning.startswith(f"{full}: the mask covers 100% of the photo")

    # an RGBA cut-out whose alpha is opaque everywhere: one warning, not a second one about coverage
    opaque = write(tmp_path / "opaque.png", np.dstack([textured(), np.full((60, 60), 255, np.uint8)]))
    (warning,) = warnings_for(opaque)
    assert warning.startswith(f"{opaque}: the alpha channel is opaque everywhere")

    # a plain photo without a mask: its non-black pixels cover the frame
    (warning,) = warnings_for(photo)
    assert warning.startswith(f"{photo}: the mask covers 100% of the photo")

    # a cut-out on black stored as JPEG
    on_black = textured()
    on_black[disc() == 0] = 0
    jpeg_cutout = write(tmp_path / "cutout.jpg", on_black, cv2.IMWRITE_JPEG_QUALITY, 95)
    (warning,) = warnings_for(jpeg_cutout)
    assert warning.startswith(f"{jpeg_cutout}: cut-out stored as JPEG")
    assert warnings_for(write(tmp_path / "cutout.png", on_black)) == []


@pytest.mark.parametrize("kind", ["anti-aliased", "feathered"])
def test_smooth_soft_edges_are_not_taken_for_jpeg_damage(tmp_path, kind):
    mask = np.zeros((200, 200), np.uint8)
    if kind == "anti-aliased":
        cv2.circle(mask, (100, 100), 80, 255, -1, lineType=cv2.LINE_AA)
    else:
        mask = cv2.GaussianBlur(disc(200), (0, 0), 1.5)
    photo = write(tmp_path / "p.png", textured(200))
    assert warnings_for(photo, write(tmp_path / "m.png", cv2.merge([mask] * 3))) == []


def test_the_demo_set_raises_no_warning(tmp_path):
    root = demo.ensure_demo(str(tmp_path / "cache"))
    catalog = scan(root, "photo", "photo_copy", "back")
    sources = [s for name in catalog.classes for s in catalog.objects[name]]
    assert len(sources) == len(demo.CLASSES) * demo.PHOTOS_PER_CLASS
    assert [w for s in sources for w in decode_object(s, 8)[1]] == []


@pytest.mark.parametrize("exact", [False, True], ids=["other-extensions", "exact-name-too"])
def test_every_candidate_mask_is_named_in_the_error(tmp_path, exact):
    """Several files with the photo's stem are an error even when one has its exact name: none wins silently."""
    root = make_layout(tmp_path / "in")
    masks = root / "photo_copy" / "cat"
    (masks / "1.bmp").write_bytes((masks / "1.png").read_bytes())
    (masks / "1.jpg").write_bytes((masks / "1.png").read_bytes())
    if not exact:
        (masks / "1.png").unlink()
    catalog = scan(root, "photo", "photo_copy", "back")
    (source,) = [s for s in catalog.objects["cat"] if s.photo.name == "1.png"]
    named = f"{masks / '1.bmp'}, {masks / '1.jpg'} and {masks / '1.png'}" if exact else \
        f"{masks / '1.bmp'} and {masks / '1.jpg'}"
    with pytest.raises(InputError) as excinfo:
        decode_object(source, 8)
    assert str(excinfo.value) == (f"{root / 'photo' / 'cat' / '1.png'}: several masks could be meant ({named}); "
                                  f"keep one and remove the others (a mask may have any image extension)")
    (other,) = [s for s in catalog.objects["cat"] if s.photo.name == "0.png"]
    assert other.mask == masks / "0.png" and other.mask_candidates == ()  # one file of its stem: its mask
    (masks / "0.xmp").write_text("<x:xmpmeta/>")  # an editor's sidecar beside a mask is no candidate
    (other,) = [s for s in scan(root, "photo", "photo_copy", "back").objects["cat"] if s.photo.name == "0.png"]
    assert other.mask == masks / "0.png" and other.mask_candidates == ()


def test_classes_with_and_without_masks_mix_in_one_input(tmp_path, generate, caplog):
    """cat: photos + photo_copy/cat/; dog: RGBA cut-outs; owl: objects on black. Only cat has a mask folder."""
    root = make_layout(tmp_path / "in", classes=("cat",), photos=2)
    owl = root / "photo" / "owl"
    for n in range(3):
        on_black = textured(40, seed=n)
        on_black[disc(40) == 0] = 0
        write(owl / f"{n}.png", on_black)
    write(root / "photo" / "dog" / "a.png", np.dstack([textured(50), disc(50)]))
    write(root / "photo" / ".trash" / "x.png", textured(40))  # a hidden folder: skipped, said once
    caplog.set_level("INFO")
    out = generate(root, "samples.per_class=4", "compose.objects.max=1")
    lines = caplog.text
    assert "class cat              found 2 photos, 2 masks in photo_copy/" in lines
    assert "class dog              found 1 cut-out (alpha = mask, else non-black pixels)" in lines
    assert "class owl              found 3 cut-outs (alpha = mask, else non-black pixels)" in lines
    assert lines.count(".trash: skipped: folders whose names start with a dot are hidden") == 1
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    masks = {name: {o["mask"] for r in records if r["class"] == name for o in r["objects"]}
             for name in ("cat", "dog", "owl")}
    assert masks == {"cat": {"photo_copy/cat/0.png", "photo_copy/cat/1.png"}, "dog": {None}, "owl": {None}}


def test_a_doubtful_file_is_warned_about_once_per_run(tmp_path, generate, caplog):
    root = make_layout(tmp_path / "in", photos=2)
    mask = root / "photo_copy" / "dog" / "1.png"
    write(mask.with_suffix(".jpg"), cv2.imread(str(mask)), cv2.IMWRITE_JPEG_QUALITY, 80)
    mask.unlink()
    caplog.set_level("INFO")
    generate(root, "samples.per_class=6")
    assert caplog.text.count(f"{mask.with_suffix('.jpg')}: mask stored as JPEG") == 1
    assert "class dog              found 2 photos, 2 masks in photo_copy/" in caplog.text
    assert caplog.text.count("WARNING") == 1
