"""output.split_by keeps the input files of each split apart; samples.background_fraction adds images with no
object, listed by every format, reproducible for any worker count and resumable."""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import render, splits
from pipeline.errors import ConfigError, InputError, SampleError
from pipeline.runner import run
from tests.conftest import SMALL, fail_at, make_config, make_layout, tree_digest

THREE = ["output.splits.train=0.6", "output.splits.val=0.2", "+output.splits.test=0.2"]
FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def splits_of(records: list[dict], files) -> dict[str, set[str]]:
    """Input file -> the splits of the images that use it; ``files(record)`` lists a record's files."""
    found: dict[str, set[str]] = {}
    for record in records:
        for name in files(record):
            found.setdefault(name, set()).add(record["split"])
    return found


def photos(record: dict) -> list[str]:
    return [o["photo"] for o in record["objects"]] + [d["photo"] for d in record["distractors"]]


def backgrounds(record: dict) -> list[str]:
    return [t["background"] for t in record["tiles"]]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Three classes of five photos, five backgrounds, three distractors (copies of the fox photos)."""
    root = make_layout(tmp_path_factory.mktemp("splits") / "input", classes=("cat", "dog", "fox"), photos=5,
                       backgrounds=5)
    (root / "clutter").mkdir()
    for n in range(3):
        shutil.copy(root / "photo" / "fox" / f"{n}.png", root / "clutter" / f"{n}.png")
    return root


# --- planning, as pure functions

def test_files_are_divided_by_the_fractions_with_at_least_one_per_split():
    assert splits.asset_sizes(10, FRACTIONS) == {"train": 6, "val": 2, "test": 2}
    assert splits.asset_sizes(3, {"train": 0.8, "val": 0.1, "test": 0.1}) == {"train": 1, "val": 1, "test": 1}
    assert splits.asset_sizes(4, {"train": 0.9, "val": 0.1, "off": 0.0}) == {"train": 3, "val": 1}
    groups = splits.divide(np.random.default_rng(1), 7, FRACTIONS)
    assert sorted(i for group in groups.values() for i in group) == list(range(7))
    assert [len(groups[name]) for name in FRACTIONS] == [4, 2, 1]
    assert groups == splits.divide(np.random.default_rng(1), 7, FRACTIONS)


def loop_plan(split_by: str, n_objects=3, n_backgrounds=5, repeats=2, per_class=None) -> dict:
    bank = {"classes": [{"name": "cat", "objects": [{"photo": f"photo/cat/{i}.png"} for i in range(n_objects)]}],
            "backgrounds": [{"source": f"back/{j}.jpg"} for j in range(n_backgrounds)], "distractors": []}
    plan = {"per_class": per_class, "repeats": repeats, "n_backgrounds": n_backgrounds}
    plan.update(splits.divide_inputs(7, bank, split_by, FRACTIONS, distractors_used=False))
    return plan


def test_sample_mode_plans_what_quiltgen_planned_before_split_by():
    plan = loop_plan("sample")
    names, sources = splits.plan_class(plan, 7, FRACTIONS, 0, 3)
    assert sources == [(s // 10, (s // 2) % 5) for s in range(30)]  # photo x background x repeats, in that order
    assert names == splits.assign_splits(7, 0, 30, FRACTIONS)
    names, sources = splits.plan_class({**plan, "per_class": 11}, 7, FRACTIONS, 0, 3)
    assert sources == [(s % 3, None) for s in range(11)] and names == splits.assign_splits(7, 0, 11, FRACTIONS)


def test_loop_mode_keeps_each_photo_and_background_in_one_split():
    plan = loop_plan("photo+background")
    photo_split = {i: name for name, groups in plan["photos"].items() for i in groups[0]}
    background_split = {j: name for name, group in plan["backgrounds"].items() for j in group}
    names, sources = splits.plan_class(plan, 7, FRACTIONS, 0, 3)
    assert all(photo_split[i] == background_split[j] == name for name, (i, j) in zip(names, sources, strict=True))
    # photo i meets every background of its split, `repeats` times
    assert Counter(sources) == {(i, j): 2 for i in range(3) for j in plan["backgrounds"][photo_split[i]]}
    # the same division with one kind only (each kind has its own generator); the loop is then every pair
    for split_by, split_of in (("photo", lambda i, j: photo_split[i]),
                               ("background", lambda i, j: background_split[j])):
        names, sources = splits.plan_class(loop_plan(split_by), 7, FRACTIONS, 0, 3)
        assert len(sources) == 30 and names == [split_of(*source) for source in sources]


def test_per_class_mode_keeps_exact_sizes_and_cycles_through_the_split_s_photos():
    plan = loop_plan("photo", n_objects=5, per_class=23)
    names, sources = splits.plan_class(plan, 7, FRACTIONS, 0, 5)
    assert Counter(names) == splits.split_sizes(23, FRACTIONS)
    for name, (group,) in plan["photos"].items():
        used = Counter(i for n, (i, _) in zip(names, sources, strict=True) if n == name)
        assert set(used) == set(group) and max(used.values()) - min(used.values()) <= 1  # in turn


def test_extra_objects_and_tiles_draw_only_the_allowed_files():
    bank = {"classes": [{"objects": [{}] * 9}, {"objects": [{}] * 4}]}
    rng = np.random.default_rng(3)
    picks = {render.pick_extra_source(rng, bank, [0.5, 0.5], [[2, 7], [1]]) for _ in range(200)}
    assert picks == {(0, 2), (0, 7), (1, 1)}
    from pipeline import quilt
    grid = quilt.tile_grid(320, 240, 3, 3)
    tiles = quilt.sample_tiles(rng, grid, [[(160, 120), (240, 180)]] * 6, None, [1, 4])
    assert {t["background"] for t in tiles} == {1, 4}
    tiles = quilt.sample_tiles(rng, grid, [[(160, 120), (240, 180)]] * 6, 4, [1, 4])  # the loop's pinned first tile
    assert tiles[0]["background"] == 4 and {t["background"] for t in tiles} == {1, 4}


# --- whole runs

@pytest.mark.parametrize("split_by, extra", [
    ("photo", ["samples.per_class=10"]),
    ("background", ["samples.per_class=10"]),
    ("photo+background", ["samples.repeats=1"]),  # the loop mode: photos x backgrounds of their split
])
def test_no_file_of_one_split_appears_in_another(tmp_path, inputs, split_by, extra):
    out = tmp_path / "run"
    run(make_config([*SMALL, f"input.root={inputs}", f"output.split_by={split_by}", *THREE, *extra,
                     "compose.objects.min=2", "compose.objects.max=3", "input.distractor_dir=clutter",
                     "compose.distractors.min=1", "compose.distractors.max=1", "seed=2"]), out)
    records = manifest(out)
    assert {r["split"] for r in records} == set(FRACTIONS)
    if "photo" in split_by:  # every object, first or extra, and every distractor
        used = splits_of(records, photos)
        assert len(used) == 3 * 5 + 3 and all(len(s) == 1 for s in used.values()), used
    if "background" in split_by:
        used = splits_of(records, backgrounds)
        assert len(used) == 5 and all(len(s) == 1 for s in used.values()), used
    if "per_class" in extra[0]:  # exact sizes per class, as with split_by=sample
        for name in ("cat", "dog", "fox"):
            assert Counter(r["split"] for r in records if r["class"] == name) == {"train": 6, "val": 2, "test": 2}
    else:
        for r in records:
            assert Path(r["objects"][0]["photo"]).parent.name == r["class"]  # the loop's photo, then its background
        pairs = Counter((r["objects"][0]["photo"], r["tiles"][0]["background"]) for r in records)
        assert all(count == 1 for count in pairs.values()) and len(records) == len(pairs)
    coco = json.loads((out / "annotations" / "instances_val.json").read_text())
    assert sorted(i["file_name"] for i in coco["images"]) == sorted(
        f"{r['name']}.jpg" for r in records if r["split"] == "val")


def test_too_few_files_for_the_splits_is_one_line(tmp_path):
    root = make_layout(tmp_path / "input", photos=2, backgrounds=2)
    args = [*SMALL, f"input.root={root}", *THREE, "samples.per_class=5"]
    with pytest.raises(InputError) as err:
        run(make_config([*args, "output.split_by=photo"]), tmp_path / "a")
    assert str(err.value) == (f"class 'cat' has too few usable photos: 2 for 3 splits (train, val, test) with "
                              f"output.split_by=photo, which gives each split files of its own: add some to "
                              f"{root}/photo/cat, give fewer splits a fraction (e.g. output.splits.val=0 "
                              f"output.splits.train=1) or use another output.split_by")
    with pytest.raises(InputError, match=rf"^too few backgrounds: 2 for 3 splits .* add some to {root}/back, "):
        run(make_config([*args, "output.split_by=background"]), tmp_path / "b")


def test_an_empty_split_is_reported(tmp_path, inputs, caplog):
    caplog.set_level("INFO", logger="pipeline.runner")
    run(make_config([*SMALL, f"input.root={inputs}", "samples.per_class=1", "output.split_by=photo",
                     "output.formats=[]", "output.previews=false"]), tmp_path / "run")
    assert ("output.splits.val=0.2: split val is empty, no image was assigned to it; make more images "
            "(samples.per_class, samples.repeats) or set output.splits.val=0") in caplog.text
    assert "split train    3 images; photos cat 4, dog 4, fox 4 (output.split_by=photo)" in caplog.text


@pytest.mark.parametrize(("extra", "listed"), [
    ([], {"train": "images/train", "val": "images/train"}),  # val gets none of 2 images: trains and validates on train
    (THREE, {"train": "images/train", "val": "images/val"}),  # test gets none of 2: not listed
], ids=["empty-val", "empty-test"])
def test_data_yaml_lists_only_splits_with_images(tmp_path, extra, listed):
    root = make_layout(tmp_path / "input")
    out = tmp_path / "run"
    run(make_config([*SMALL, f"input.root={root}", "samples.per_class=2", *extra,
                     "output.formats=[yolo,yolo_seg]", "output.previews=false"]), out)
    filled = {folder.split("/")[1] for folder in listed.values()}
    assert {r["split"] for r in manifest(out)} == filled
    for kind in ("yolo", "yolo_seg"):
        data = yaml.safe_load((out / kind / "data.yaml").read_text())
        assert data == {"path": str((out / kind).resolve()), **listed, "names": {0: "cat", 1: "dog"}}
        for key in listed:  # every folder a trainer is pointed at exists and holds images and their labels
            images = Path(data["path"]) / data[key]
            assert sorted(p.stem for p in images.iterdir()) == sorted(
                p.stem for p in (Path(data["path"]) / data[key].replace("images", "labels", 1)).iterdir())
            assert list(images.glob("*.jpg"))
        for folder in ("images", "labels"):  # no folder for the empty split
            assert {p.name for p in (out / kind / folder).iterdir()} == filled


def test_bad_values_are_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"^output.split_by: must be one of \['sample', 'photo', 'background', "
                                          r"'photo\+background'\], got 'photos'$"):
        make_config(["output.split_by=photos"])
    with pytest.raises(ConfigError, match=r"^samples.background_fraction: must be in \[0, 1\)"):
        make_config(["samples.background_fraction=1"])


# --- background-only images

BACKGROUND_ONLY = ["samples.per_class=3", "samples.background_fraction=0.25", "seed=4",
                   "output.formats=[voc,coco,yolo,yolo_seg]", "output.split_by=background"]


@pytest.fixture(scope="module")
def background_run(tmp_path_factory, inputs) -> Path:
    out = tmp_path_factory.mktemp("background") / "run"
    run(make_config([*SMALL, f"input.root={inputs}", *BACKGROUND_ONLY]), out)
    return out


def test_background_only_images_are_listed_in_every_format_without_objects(background_run):
    out = background_run
    records = manifest(out)
    empty = [r for r in records if not r["objects"]]
    assert [r["name"] for r in empty] == ["background_000000", "background_000001", "background_000002"]  # 9 / 0.75
    assert all(r["class"] == "background" and r["class_index"] == 3 for r in empty)
    assert all(r["objects"] for r in records if r["class"] != "background")
    names = yaml.safe_load((out / "yolo" / "data.yaml").read_text())["names"]
    assert list(names.values()) == ["cat", "dog", "fox"]
    assert "background" not in (out / "voc" / "labelmap.txt").read_text()
    for r in empty:
        split = r["split"]
        coco = json.loads((out / "annotations" / f"instances_{split}.json").read_text())
        (image,) = [i for i in coco["images"] if i["file_name"] == f"{r['name']}.jpg"]
        assert not [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        assert [c["name"] for c in coco["categories"]] == ["cat", "dog", "fox"]
        for kind in ("yolo", "yolo_seg"):
            assert (out / kind / "labels" / split / f"{r['name']}.txt").read_bytes() == b""
            assert (out / kind / "images" / split / f"{r['name']}.jpg").exists()
        voc = ET.parse(out / r["voc"]).getroot()
        assert voc.findtext("filename") == f"{r['name']}.jpg" and voc.findall("object") == []
        assert r["name"] in (out / "voc" / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        assert (out / r["image"]).exists() and r["image"] == f"images/{split}/{r['name']}.jpg"
    used = splits_of(records, backgrounds)  # background-only images keep to their split's backgrounds too
    assert all(len(s) == 1 for s in used.values())
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["samples"]["background_only"] == 3 and run_json["samples"]["total"] == 12


def test_background_only_images_are_the_same_bytes_for_any_worker_count_and_resume(tmp_path, inputs,
                                                                                   background_run, monkeypatch):
    args = [*SMALL, f"input.root={inputs}", *BACKGROUND_ONLY]
    two = tmp_path / "two"
    run(make_config([*args, "workers.n_jobs=2", "workers.chunk_size=1"]), two)
    reference = tree_digest(background_run)
    assert tree_digest(two) == reference
    out = tmp_path / "stopped"
    quick = [*args, "workers.backend=sequential", "workers.chunk_size=1"]
    undo = fail_at(monkeypatch, 3, 1)  # the second background-only image
    with pytest.raises(SampleError, match="background-only image 1: RuntimeError: injected"):
        run(make_config(quick), out)
    undo()
    journal = [json.loads(line) for line in (out / ".journal.jsonl").read_text().splitlines()]
    assert (3, 0) in {(r["class_index"], r["sample_index"]) for r in journal} and len(journal) == 10
    run(make_config([*quick, f"resume={out}"]), out)
    assert tree_digest(out) == reference


def test_a_class_named_background_clashes_with_background_only_images(tmp_path):
    root = make_layout(tmp_path / "input", classes=("background", "cat"))
    with pytest.raises(InputError, match=r"^class 'background': samples.background_fraction=0.1 adds images named "
                                         r"background_<index>, as this class's would be; rename"):
        run(make_config([*SMALL, f"input.root={root}", "samples.background_fraction=0.1"]), tmp_path / "run")
    run(make_config([*SMALL, f"input.root={root}", "samples.per_class=1", "output.formats=[]"]), tmp_path / "ok")
