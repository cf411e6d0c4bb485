"""Bad inputs: each one stops the run with an InputError naming the file, folder or key at fault, and
leaves no partial output behind. Plus the mask sources (photo_copy/, alpha, non-black pixels) checked on
real pixels, ``input.on_bad_file=skip``, and how config errors surface."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import OmegaConfBaseException

from pipeline import demo
from pipeline.errors import ConfigError, InputError, QuiltgenError
from pipeline.runner import run
from tests.conftest import make_config, make_layout

# Every augmentation that changes the object's geometry or colour, switched off.
NO_AUGMENT = ["experiment=original", "augment.scale.min=1", "augment.scale.max=1", "augment.shear.enabled=false",
              "augment.blur.enabled=false", "augment.object_brightness.enabled=false",
              "augment.background_brightness.enabled=false"]
OUTPUT_ENTRIES = ("images", "previews", "annotations", "voc", "yolo", "manifest.jsonl", ".manifest.jsonl.partial")


@pytest.fixture
def out(tmp_path) -> Path:
    """The output folder, created up front as Hydra does, so the leftover checks look at a real folder."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def rel(*parts: str) -> str:
    """A regex for a path tail such as photo/cat/x.png, matched inside the absolute path of the message."""
    return re.escape(str(Path(*parts)))


def assert_no_output(out: Path) -> None:
    """Nothing but run.json, which records the failure."""
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed" and record["error"], record
    (out / "run.json").unlink()
    names = sorted(p.name for p in out.iterdir())
    for entry in OUTPUT_ENTRIES:
        assert entry not in names, f"{entry} left in {out}: {names}"
    assert not [n for n in names if n.startswith(".bank-")], f"bank folder left in {out}: {names}"
    assert not list(out.rglob("*")), f"files left in {out}: {sorted(map(str, out.rglob('*')))}"


def fails(generate, root: Path, out: Path, match: str, *overrides: str) -> InputError:
    """Run, expect an InputError whose message matches, check nothing was left behind."""
    with pytest.raises(InputError, match=match) as excinfo:
        generate(root, *overrides, out=out)
    assert isinstance(excinfo.value, QuiltgenError)
    assert_no_output(out)
    return excinfo.value


def read_manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]


def write_text(path: Path, text: str = "this is not an image\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# --- the input folder and its structure -------------------------------------------------------------

def test_missing_input_root(generate, tmp_path, out):
    missing = tmp_path.resolve() / "no-such-folder"
    fails(generate, missing, out, rf"input\.root: {re.escape(str(missing))} is not a folder")
    assert not missing.exists()


def test_class_folder_without_photos(generate, layout, out):
    (layout / "photo" / "bird").mkdir()
    (layout / "photo_copy" / "bird").mkdir()
    fails(generate, layout, out, rf"{rel('photo', 'bird')}: class 'bird' has no photos")


def test_class_folder_with_only_hidden_files(generate, layout, out):
    write_text(layout / "photo" / "bird" / ".DS_Store")
    fails(generate, layout, out, rf"{rel('photo', 'bird')}: class 'bird' has no photos")


def test_empty_background_folder(generate, layout, out):
    for path in (layout / "back").iterdir():
        path.unlink()
    fails(generate, layout, out, rf"{rel(layout.name, 'back')}: no background images")


def test_missing_background_folder(generate, layout, out):
    for path in (layout / "back").iterdir():
        path.unlink()
    (layout / "back").rmdir()
    fails(generate, layout, out, rf"{rel(layout.name, 'back')}: no background images")


# --- files that cannot be used ----------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"this is not an image\n", b""], ids=["text", "empty"])
def test_unreadable_photo(generate, layout, out, content):
    (layout / "photo" / "cat" / "x.png").write_bytes(content)
    (layout / "photo_copy" / "cat" / "x.png").write_bytes((layout / "photo_copy" / "cat" / "0.png").read_bytes())
    err = fails(generate, layout, out, rf"{rel('photo', 'cat', 'x.png')}: missing, unreadable or not an image")
    assert "input.on_bad_file=skip" in str(err)


def test_truncated_photo(generate, layout, out):
    photo = layout / "photo" / "dog" / "1.png"
    data = photo.read_bytes()
    photo.write_bytes(data[: len(data) // 2])
    fails(generate, layout, out, rf"{rel('photo', 'dog', '1.png')}: missing, unreadable or not an image")


def test_unreadable_background(generate, layout, out):
    write_text(layout / "back" / "x.jpg")
    fails(generate, layout, out, rf"{rel('back', 'x.jpg')}: missing, unreadable or not an image")


def test_mask_size_differs_from_photo(generate, layout, out):
    mask_path = layout / "photo_copy" / "cat" / "1.png"
    mask = cv2.imread(str(mask_path))
    cv2.imwrite(str(mask_path), cv2.resize(mask, (mask.shape[1] + 7, mask.shape[0])))
    fails(generate, layout, out, rf"{rel('photo_copy', 'cat', '1.png')}: mask is \d+x\d+ but its photo 1\.png "
                                 rf"is \d+x\d+; they must match")


def test_all_black_mask_in_photo_copy(generate, layout, out):
    mask_path = layout / "photo_copy" / "dog" / "0.png"
    cv2.imwrite(str(mask_path), np.zeros_like(cv2.imread(str(mask_path))))
    fails(generate, layout, out, rf"{rel('photo_copy', 'dog', '0.png')}: mask is all black")


def test_all_black_photo_without_photo_copy(generate, tmp_path, out):
    root = make_layout(tmp_path / "input", with_copies=False)
    cv2.imwrite(str(root / "photo" / "cat" / "1.png"), np.full((40, 40, 3), 8, np.uint8))  # not above 8
    fails(generate, root, out, rf"{rel('photo', 'cat', '1.png')}: mask is all black")


def test_fully_transparent_png_without_photo_copy(generate, tmp_path, out):
    root = make_layout(tmp_path / "input", with_copies=False)
    photo = np.full((40, 40, 4), 200, np.uint8)
    photo[:, :, 3] = 0
    cv2.imwrite(str(root / "photo" / "cat" / "1.png"), photo)
    fails(generate, root, out, rf"{rel('photo', 'cat', '1.png')}: RGBA cut-out with an empty alpha channel")


def test_missing_mask_file(generate, layout, out):
    (layout / "photo_copy" / "cat" / "1.png").unlink()
    fails(generate, layout, out, rf"{rel('photo_copy', 'cat', '1.png')}: no mask for 1.png; a mask has the photo's "
                                 r"file name \(any image extension\) in photo_copy/<class>/. Add it, or remove "
                                 r"photo_copy/cat/ to use the photos of this class as cut-outs")


def test_a_second_mask_beside_the_exact_name_is_an_error_naming_both(generate, layout, out):
    """photo/cat/0.png with photo_copy/cat/0.png and 0.jpg: the exact name does not win silently."""
    masks = layout / "photo_copy" / "cat"
    (masks / "0.jpg").write_bytes((masks / "0.png").read_bytes())
    err = fails(generate, layout, out, rf"{rel('photo', 'cat', '0.png')}: several masks could be meant "
                                       rf"\({re.escape(str(masks / '0.jpg'))} and {re.escape(str(masks / '0.png'))}\); "
                                       r"keep one and remove the others")
    assert "input.on_bad_file=skip" in str(err)


def test_a_mask_may_use_another_image_format_than_its_photo(generate, layout, tmp_path):
    reference = generate(layout, "samples.per_class=2", "seed=3")
    mask = layout / "photo_copy" / "cat" / "1.png"
    photo = layout / "photo" / "cat" / "1.png"
    photo.with_suffix(".bmp").write_bytes(cv2.imencode(".bmp", cv2.imread(str(photo)))[1].tobytes())  # lossless
    photo.unlink()
    mask.rename(mask.with_suffix(".tiff"))  # photo 1.bmp, mask 1.tiff: matched by stem
    out = generate(layout, "samples.per_class=2", "seed=3")
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {o["mask"] for r in records for o in r["objects"]} >= {"photo_copy/cat/1.tiff"}
    image = records[1]["image"]  # cat, sample 1: photo 1
    assert records[1]["objects"][0]["photo"] == "photo/cat/1.bmp"
    assert (out / image).read_bytes() == (reference / image).read_bytes()


def test_backgrounds_smaller_than_a_cell_are_used_with_a_warning(generate, layout, caplog):
    cv2.imwrite(str(layout / "back" / "tiny.jpg"), np.full((6, 8, 3), 90, np.uint8))
    out = generate(layout, "samples.per_class=2")
    assert (out / "manifest.jsonl").exists()
    assert "1 background is smaller than a 160x120 quilt cell and will be enlarged (blurry tiles): " \
           "back/tiny.jpg (8x6)" in caplog.text


def test_object_larger_than_canvas_at_smallest_scale(generate, layout, out):
    cv2.imwrite(str(layout / "photo" / "cat" / "big.png"), np.full((300, 400, 3), 180, np.uint8))
    cv2.imwrite(str(layout / "photo_copy" / "cat" / "big.png"), np.full((300, 400, 3), 255, np.uint8))
    fails(generate, layout, out, rf"{rel('photo', 'cat', 'big.png')}: object is at least 400x300 px .*does not fit "
                                 rf"the 320x240 canvas", "augment.scale.min=1.0", "compose.max_truncation=0",
          "augment.rotation.enabled=false")


def test_object_that_never_fits_once_sheared(generate, layout, out):
    # 300x200 fits the 320x240 canvas unsheared, but every shear in [0.2, 0.3] makes it >= 340 px wide.
    cv2.imwrite(str(layout / "photo" / "cat" / "wide.png"), np.full((200, 300, 3), 180, np.uint8))
    cv2.imwrite(str(layout / "photo_copy" / "cat" / "wide.png"), np.full((200, 300, 3), 255, np.uint8))
    fails(generate, layout, out, rf"{rel('photo', 'cat', 'wide.png')}: object is at least 340x200 px",
          "augment.scale.min=1.0", "augment.scale.max=1.0", "augment.shear.min=0.2", "augment.shear.max=0.3",
          "augment.rotation.enabled=false", "compose.max_truncation=0")


def test_object_too_small_for_min_box_size_reports_its_largest_box(generate, layout, out):
    # 200x12 at scale <= 1.5 is at most 18 px tall; the layout's 30-60 px ellipses all pass min_box_size=20.
    cv2.imwrite(str(layout / "photo" / "cat" / "flat.png"), np.full((12, 200, 3), 180, np.uint8))
    cv2.imwrite(str(layout / "photo_copy" / "cat" / "flat.png"), np.full((12, 200, 3), 255, np.uint8))
    fails(generate, layout, out, rf"{rel('photo', 'cat', 'flat.png')}: the object's box is at most 18 px on its "
                                 r"shorter side at its largest allowed size \(augment.scale.max\), below "
                                 r"compose.min_box_size=20", "compose.min_box_size=20", "augment.scale.min=0.5",
          "augment.scale.max=1.5", "augment.rotation.enabled=false", "augment.shear.enabled=false")


def test_object_whose_aspect_is_never_kept(generate, layout, out):
    # 60x10 is aspect 6 at any scale (shear only widens it); compose.aspect allows at most 2.
    cv2.imwrite(str(layout / "photo" / "dog" / "thin.png"), np.full((10, 60, 3), 180, np.uint8))
    cv2.imwrite(str(layout / "photo_copy" / "dog" / "thin.png"), np.full((10, 60, 3), 255, np.uint8))
    fails(generate, layout, out, rf"{rel('photo', 'dog', 'thin.png')}: box aspect \(w/h\) is 6.00-6.\d+ .*never inside "
                                 r"compose.aspect", "augment.rotation.enabled=false")


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an EXIF block holding only the Orientation tag (0x0112), as cameras and phones write it."""
    tiff = b"II*\x00" + (8).to_bytes(4, "little") + (1).to_bytes(2, "little")
    tiff += (0x0112).to_bytes(2, "little") + (3).to_bytes(2, "little") + (1).to_bytes(4, "little")
    tiff += orientation.to_bytes(2, "little") + b"\x00\x00" + (0).to_bytes(4, "little")
    app1 = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + jpeg[2:]


def test_exif_orientation_is_applied_to_photos_and_backgrounds(tmp_path):
    from pipeline.sources import read_image

    stored = np.zeros((40, 60, 3), np.uint8)  # as the sensor stored it: 60 wide, 40 high, bright left edge
    stored[:, :10] = 255
    path = tmp_path / "phone.jpg"
    path.write_bytes(with_exif_orientation(cv2.imencode(".jpg", stored)[1].tobytes(), 6))  # 6: rotate 90 cw
    upright = read_image(path)
    assert upright.shape == (60, 40, 3)  # as every viewer shows it
    assert upright[:10].mean() > 200 and upright[20:].mean() < 30  # the bright edge is now at the top
    png = tmp_path / "rgba.png"
    cv2.imwrite(str(png), np.dstack([stored, np.full((40, 60), 255, np.uint8)]))
    assert read_image(png).shape == (40, 60, 4)  # alpha kept


def test_float_images_are_read_as_0_to_1_and_others_refused(tmp_path):
    from pipeline.sources import read_image

    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (8, 1))
    cv2.imwrite(str(tmp_path / "ok.tiff"), cv2.merge([ramp] * 3))
    img = read_image(tmp_path / "ok.tiff")
    assert img.dtype == np.uint8 and img[0, 0, 0] == 0 and img[0, -1, 0] == 255
    assert np.array_equal(img[0, :, 0], np.rint(ramp[0] * 255).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "bad.tiff"), cv2.merge([ramp * 255] * 3))
    with pytest.raises(InputError, match=r"bad.tiff: floating-point image with values outside 0-1 \(0 to 255\)"):
        read_image(tmp_path / "bad.tiff")


def test_file_manager_clutter_is_not_taken_for_input(generate, layout):
    for folder in (layout / "photo" / "cat", layout / "back"):
        (folder / "Thumbs.db").write_bytes(b"\x00" * 64)
        (folder / "desktop.ini").write_text("[.ShellClassInfo]\n")
    (layout / "photo" / "@eaDir").mkdir()
    out = generate(layout, "samples.per_class=2")
    records = read_manifest(out)
    assert {r["class"] for r in records} == {"cat", "dog"} and len(records) == 4


# --- input.on_bad_file=skip -------------------------------------------------------------------------

def _spoil_not_an_image(root: Path, name: str) -> None:
    write_text(root / "photo" / "cat" / name)
    (root / "photo_copy" / "cat" / name).write_bytes((root / "photo_copy" / "cat" / "0.png").read_bytes())


def _spoil_missing_mask(root: Path, name: str) -> None:
    (root / "photo" / "cat" / name).write_bytes((root / "photo" / "cat" / "0.png").read_bytes())


def _spoil_black_mask(root: Path, name: str) -> None:
    _spoil_missing_mask(root, name)
    photo = cv2.imread(str(root / "photo" / "cat" / name))
    cv2.imwrite(str(root / "photo_copy" / "cat" / name), np.zeros_like(photo))


def _spoil_two_masks(root: Path, name: str) -> None:
    _spoil_missing_mask(root, name)
    for mask in (name, Path(name).with_suffix(".jpg").name):
        (root / "photo_copy" / "cat" / mask).write_bytes((root / "photo_copy" / "cat" / "0.png").read_bytes())


@pytest.mark.parametrize("spoil", [_spoil_not_an_image, _spoil_missing_mask, _spoil_black_mask, _spoil_two_masks],
                         ids=["not-an-image", "missing-mask", "black-mask", "two-masks"])
def test_skip_leaves_out_one_bad_photo(generate, tmp_path, out, spoil):
    root = make_layout(tmp_path / "input", photos=3, backgrounds=2)
    spoil(root, "bad.png")
    # The same input fails without skip ...
    with pytest.raises(InputError, match=rel("cat", "bad.png")):
        generate(root, out=tmp_path / "strict")
    # ... and with skip, runs on the good photos only.
    generate(root, "input.on_bad_file=skip", "samples.repeats=2", out=out)
    records = read_manifest(out)
    photos = {c: Counter(r["objects"][0]["photo"] for r in records if r["class"] == c) for c in ("cat", "dog")}
    n_backgrounds, repeats = 2, 2
    for cls in ("cat", "dog"):
        assert photos[cls] == {f"photo/{cls}/{n}.png": n_backgrounds * repeats for n in range(3)}
        assert sorted(r["sample_index"] for r in records if r["class"] == cls) == list(range(3 * 2 * 2))
    assert len(records) == 2 * 3 * n_backgrounds * repeats
    assert not [r for r in records if "bad.png" in json.dumps(r)]
    for r in records:
        assert (out / r["image"]).is_file() and (out / r["voc"]).is_file() and (out / r["preview"]).is_file()
    assert len(list((out / "images").rglob("cat_*.jpg"))) == 3 * n_backgrounds * repeats
    assert not (out / ".manifest.jsonl.partial").exists() and not list(out.glob(".bank-*"))


def test_skip_leaves_out_a_bad_background(generate, tmp_path, out):
    root = make_layout(tmp_path / "input", photos=2, backgrounds=3)
    write_text(root / "back" / "1.jpg")
    generate(root, "input.on_bad_file=skip", out=out)
    records = read_manifest(out)
    assert len(records) == 2 * 2 * 2  # classes x photos x backgrounds left
    used = {t["background"] for r in records for t in r["tiles"]}
    assert "back/1.jpg" not in used and used <= {"back/0.jpg", "back/2.jpg"}
    assert {r["tiles"][0]["background"] for r in records} == {"back/0.jpg", "back/2.jpg"}


def test_skip_still_fails_when_a_class_has_no_good_photo(generate, layout, out):
    for n in range(2):
        write_text(layout / "photo" / "dog" / f"{n}.png")
    fails(generate, layout, out, rf"{rel('photo', 'dog')}: class 'dog' has no usable photos",
          "input.on_bad_file=skip")


def test_skip_still_fails_when_no_background_is_good(generate, layout, out):
    for n in range(2):
        write_text(layout / "back" / f"{n}.jpg")
    fails(generate, layout, out, rf"{rel(layout.name, 'back')}: no usable backgrounds",
          "input.on_bad_file=skip")


# --- mask sources, checked on the written pixels ----------------------------------------------------

COLOUR = (60, 160, 220)  # BGR, far from black


def _shape_root(tmp_path: Path) -> Path:
    """Backgrounds only; the test adds photo/shape/ itself (and photo_copy/ when it wants one)."""
    root = make_layout(tmp_path / "input", classes=(), backgrounds=2, with_copies=False)
    (root / "photo" / "shape").mkdir(parents=True)
    return root


def _check_boxes(out: Path, size: tuple[int, int], n: int) -> None:
    """Every record's box is ``size`` (w, h) and the image holds the object's colour inside it."""
    records = read_manifest(out)
    assert len(records) == n
    for r in records:
        (obj,) = r["objects"]
        x0, y0, x1, y1 = obj["box"]
        assert (x1 - x0, y1 - y0) == size
        assert obj["mask"] is None or obj["mask"].startswith("photo_copy/")
        image = cv2.imread(str(out / r["image"]))
        inside = image[y0 + 1:y1 - 1, x0 + 1:x1 - 1].reshape(-1, 3).astype(int)
        assert np.abs(inside.mean(axis=0) - COLOUR).max() < 6, inside.mean(axis=0)


def test_alpha_is_the_mask_without_photo_copy(generate, tmp_path, out):
    root = _shape_root(tmp_path)
    photo = np.zeros((40, 50, 4), np.uint8)
    photo[:, :, :3] = COLOUR  # colour everywhere: only the alpha can give the 30x22 box
    photo[9:31, 6:36, 3] = 255
    photo[0:3, :, 3] = 8  # not above input.mask_threshold=8
    cv2.imwrite(str(root / "photo" / "shape" / "a.png"), photo)
    generate(root, *NO_AUGMENT, out=out)
    _check_boxes(out, (30, 22), n=2)
    assert {r["objects"][0]["mask"] for r in read_manifest(out)} == {None}


def test_non_black_pixels_are_the_mask_without_photo_copy_or_alpha(generate, tmp_path, out):
    root = _shape_root(tmp_path)
    photo = np.full((40, 50, 3), 8, np.uint8)  # near-black, not above the threshold
    photo[5:37, 12:30] = COLOUR
    cv2.imwrite(str(root / "photo" / "shape" / "b.png"), photo)
    generate(root, *NO_AUGMENT, out=out)
    _check_boxes(out, (18, 32), n=2)
    assert {r["objects"][0]["mask"] for r in read_manifest(out)} == {None}


def test_photo_copy_mask_wins_over_alpha(generate, tmp_path, out):
    root = _shape_root(tmp_path)
    photo = np.zeros((40, 50, 4), np.uint8)
    photo[:, :, :3] = COLOUR
    photo[:, :, 3] = 255  # opaque everywhere: the alpha alone would give 50x40
    cv2.imwrite(str(root / "photo" / "shape" / "c.png"), photo)
    mask = np.zeros((40, 50, 3), np.uint8)
    mask[10:30, 20:44] = 255
    (root / "photo_copy" / "shape").mkdir(parents=True)
    cv2.imwrite(str(root / "photo_copy" / "shape" / "c.png"), mask)
    generate(root, *NO_AUGMENT, out=out)
    _check_boxes(out, (24, 20), n=2)
    assert {r["objects"][0]["mask"] for r in read_manifest(out)} == {"photo_copy/shape/c.png"}


# --- config-level errors ----------------------------------------------------------------------------

def test_unknown_input_key_fails_at_composition():
    with pytest.raises(ConfigCompositionException, match=r"Could not override 'input\.nope'"):
        make_config(["input.nope=1"])


def test_bad_on_bad_file_value_is_a_plain_config_error():
    # InputConfig.__post_init__ raises during OmegaConf.to_object; OmegaConf only wraps TypeError there,
    # so the ConfigError propagates as itself, not as an OmegaConf ValidationError.
    with pytest.raises(ConfigError, match=r"^input\.on_bad_file: must be 'error' or 'skip', got 'maybe'$") as exc:
        make_config(["input.on_bad_file=maybe"])
    assert exc.type is ConfigError
    assert not isinstance(exc.value, OmegaConfBaseException)
    assert exc.value.__cause__ is None


def cache_error(target: Path, reason: str) -> str:
    return (rf"^input\.cache_dir: cannot write the demo set into {re.escape(str(target))} \({reason}\); "
            rf"set input\.cache_dir \(or QUILTGEN_CACHE\) to a writable folder$")


def test_an_unwritable_demo_cache_is_one_config_error(tmp_path, out, monkeypatch):
    # a folder under a regular file cannot be made, even by root (whom a chmod'ed folder does not stop)
    (tmp_path / "afile").write_text("")
    target = tmp_path / "afile" / "c2"
    with pytest.raises(ConfigError, match=cache_error(target, "Not a directory")):
        run(make_config([f"input.cache_dir={target}"]), out)
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    monkeypatch.setenv("QUILTGEN_CACHE", str(target))  # input.cache_dir unset: the environment's folder
    with pytest.raises(ConfigError, match=cache_error(target, "Not a directory")):
        demo.ensure_demo(None)


def test_a_demo_set_that_cannot_be_written_whole_is_not_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(cv2, "imwrite", lambda *args: False)  # what cv2 says on a full disk
    cache = tmp_path / "cache"
    with pytest.raises(ConfigError, match=cache_error(cache, r"could not write 0\.png")):
        demo.ensure_demo(str(cache))
    assert list(cache.iterdir()) == []  # neither a partial demo-v2 to reuse next time nor the staging folder


def test_mask_hull_from_contours_is_the_hull_of_every_pixel():
    from pipeline.sources import mask_hull

    rng = np.random.default_rng(1)
    for _ in range(100):
        mask = np.zeros((60, 80), np.uint8)
        for _ in range(3):
            centre = (int(rng.integers(5, 75)), int(rng.integers(5, 55)))
            axes = tuple(int(a) for a in rng.integers(1, 20, 2))
            cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        mask[rng.random(mask.shape) < 0.02] = 255  # stray pixels and separate pieces
        every_pixel = cv2.convexHull(cv2.findNonZero(mask)).reshape(-1, 2)
        assert sorted(map(tuple, mask_hull(mask).tolist())) == sorted(map(tuple, every_pixel.tolist()))
