"""compose.blending.every: each sample (layout) written once per listed blending method, with identical labels,
in one split, under names of its own; reproducible for any worker count and resumable."""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from pipeline import stats
from pipeline.errors import ConfigError, SampleError
from pipeline.runner import run
from tests.conftest import SMALL, fail_at, make_config, make_layout, tree_digest

# pycocotools' RLE decoder predates numpy 2's copy keyword (as in test_scenes.py)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

METHODS = ["hard", "feather", "poisson", "motion"]
EVERY = ["samples.per_class=3", f"compose.blending.every=[{','.join(METHODS)}]", "samples.background_fraction=0.2",
         "output.formats=[voc,coco,yolo,yolo_seg]", "augment.shadow.enabled=true", "compose.distractors.max=1",
         "input.distractor_dir=clutter", "compose.objects.max=4", "seed=3"]
MOTION_REACH = 15 // 2 + 1  # the widest motion blur of the default motion_length reaches this far past a mask


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def labels(record: dict) -> list[dict]:
    """What a record says about its objects, apart from how they were pasted."""
    return [{k: v for k, v in o.items() if k != "blend"} for o in record["objects"]]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = make_layout(tmp_path_factory.mktemp("variants") / "input", photos=3, backgrounds=3)
    (root / "clutter").mkdir()
    for n in range(2):
        shutil.copy(root / "photo" / "dog" / f"{n}.png", root / "clutter" / f"{n}.png")
    return root


@pytest.fixture(scope="module")
def every_run(tmp_path_factory, inputs) -> Path:
    out = tmp_path_factory.mktemp("every") / "run"
    run(make_config([*SMALL, f"input.root={inputs}", *EVERY]), out)
    return out


def layouts(records: list[dict]) -> dict[tuple[int, int], list[dict]]:
    found = defaultdict(list)
    for r in records:
        found[r["class_index"], r["sample_index"]].append(r)
    return found


def test_each_layout_is_written_once_per_method_with_the_same_labels_in_one_split(every_run):
    out, records = every_run, manifest(every_run)
    groups = layouts(records)
    objects = [g for (c, _), g in groups.items() if c < 2]
    assert len(objects) == 6 and len({r["name"] for r in records}) == len(records)
    for group in objects:
        first = group[0]
        assert [r["blending"] for r in group] == METHODS
        assert [r["name"] for r in group] == [f"{first['class']}_{first['sample_index']:06d}_{m}" for m in METHODS]
        assert len({r["split"] for r in group}) == 1
        for r in group:
            assert labels(r) == labels(first) and r["tiles"] == first["tiles"] and r["augment"] == first["augment"]
            assert [d["box"] for d in r["distractors"]] == [d["box"] for d in first["distractors"]]
            assert all(o["blend"]["asked"] == r["blending"] for o in r["objects"])
            assert all(d["blend"]["asked"] == r["blending"] for d in r["distractors"])
            for kind in ("yolo", "yolo_seg"):  # the label files are the same bytes
                assert (out / r[f"{kind}_label"]).read_bytes() == (out / first[f"{kind}_label"]).read_bytes()
            voc = ET.parse(out / r["voc"]).getroot()
            assert voc.findtext("filename") == f"{r['name']}.jpg"
            assert [ET.tostring(o) for o in voc.findall("object")] == \
                [ET.tostring(o) for o in ET.parse(out / first["voc"]).getroot().findall("object")]
    # samples.per_class counts layouts; background-only images (written once) are 0.2 of all images
    background_only = [g for (c, _), g in groups.items() if c == 2]
    assert all(len(g) == 1 and "blending" not in g[0] for g in background_only)
    assert len(background_only) == 6 and len(records) == 30
    run_json = json.loads((out / "run.json").read_text())["samples"]
    assert run_json["total"] == 12 and run_json["images"]["total"] == 30
    assert sum(run_json["images"]["per_split"].values()) == 30
    # the report counts images and every version's objects
    counts = stats.compute(records)["counts"]
    assert counts["images"] == 30 and counts["instances"]["all"]["total"] == sum(len(r["objects"]) for r in records)
    assert counts["instances"]["all"]["total"] == 4 * sum(len(g[0]["objects"]) for g in objects)


def test_coco_masks_are_the_same_for_every_version(every_run):
    records = manifest(every_run)
    for split in {r["split"] for r in records}:
        coco = COCO(str(every_run / "annotations" / f"instances_{split}.json"))
        by_name = {image["file_name"][:-4]: image["id"] for image in coco.dataset["images"]}
        assert set(by_name) == {r["name"] for r in records if r["split"] == split}
        for group in layouts([r for r in records if r["split"] == split]).values():
            found = []
            for r in group:
                anns = coco.loadAnns(coco.getAnnIds(imgIds=[by_name[r["name"]]]))
                found.append([(a["bbox"], a["category_id"], coco.annToMask(a)) for a in anns])
            for anns in found[1:]:
                assert len(anns) == len(found[0])
                for (bbox, category, mask), (bbox0, category0, mask0) in zip(anns, found[0], strict=True):
                    assert bbox == bbox0 and category == category0 and np.array_equal(mask, mask0)


def test_versions_differ_only_where_objects_are(every_run):
    far = 0
    for group in layouts(manifest(every_run)).values():
        if len(group) == 1:
            continue
        images = [cv2.imread(str(every_run / r["image"])).astype(np.int16) for r in group]
        near = np.zeros(images[0].shape[:2], bool)
        for box in [o["box"] for o in group[0]["objects"]] + [d["box"] for d in group[0]["distractors"]]:
            # the blend's reach past the mask, then the JPEG blocks it touches (16x16 with 4:2:0 chroma), then the
            # decoder's chroma interpolation across a block edge (1 px; 2 allowed)
            x0, y0 = [max(0, (v - MOTION_REACH) // 16 * 16 - 2) for v in box[:2]]
            x1, y1 = [-(-(v + MOTION_REACH) // 16) * 16 + 2 for v in box[2:]]
            near[y0:y1, x0:x1] = True
        far += np.count_nonzero(~near)
        for image in images[1:]:
            differs = np.any(image != images[0], axis=2)
            assert differs.any() and not differs[~near].any()
    assert far > 0.2 * 6 * 320 * 240  # the check has room to fail


def test_every_blending_gives_the_same_bytes_for_any_worker_count(tmp_path, inputs, every_run, caplog):
    two = tmp_path / "two"
    caplog.set_level("INFO", logger="pipeline.runner")
    run(make_config([*SMALL, f"input.root={inputs}", *EVERY, "workers.n_jobs=2", "workers.chunk_size=1"]), two)
    assert tree_digest(two) == tree_digest(every_run)
    records = manifest(two)  # the log counts images, not layouts, wherever it counts what is written
    assert f"{len(records)} images in " in caplog.text and f"wrote {len(records)} images of 2 classes" in caplog.text


def test_a_resume_renders_a_torn_layout_again_and_gives_the_uninterrupted_tree(tmp_path, inputs, every_run,
                                                                               monkeypatch, caplog):
    args = [*SMALL, f"input.root={inputs}", *EVERY, "workers.backend=sequential", "workers.chunk_size=1"]
    out = tmp_path / "stopped"
    undo = fail_at(monkeypatch, 1, 1)  # the second dog
    with pytest.raises(SampleError, match="class 'dog', sample 1 .*RuntimeError: injected"):
        run(make_config(args), out)
    undo()
    journal = out / ".journal.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    assert len(lines) == 16  # cat 0-2 and dog 0, four images each
    journal.write_text("".join(lines[:-2]))  # dog 0 lost its last two images: a torn layout
    (out / "images" / json.loads(lines[5])["split"] / "cat_000001_feather.jpg").unlink()  # and cat 1 a file
    caplog.set_level("INFO", logger="pipeline.runner")
    run(make_config([*args, f"resume={out}"]), out)
    assert "resume: 8 images of 30 already done; rendering the other 22" in caplog.text  # cat 0 and cat 2
    assert tree_digest(out) == tree_digest(every_run)


def test_an_unknown_or_repeated_method_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"^compose.blending.every: unknown method 'fether'; did you mean feather\? "
                                          r"the methods are \['hard', 'feather', 'poisson', 'motion'\]"):
        make_config(["compose.blending.every=[hard,fether]"])
    with pytest.raises(ConfigError, match=r"^compose.blending.every: hard is listed twice"):
        make_config(["compose.blending.every=[hard,motion,hard]"])
    assert make_config(["compose.blending.every=[poisson]"]).compose.blending.every == ["poisson"]
