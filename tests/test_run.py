"""End-to-end runs of ``run(cfg, out_dir)`` on small inputs: counts, files, boxes, reproducibility."""
import builtins
import errno
import json
import os
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest

from pipeline import augment, runstate, writers
from pipeline.backends import parallel_backend
from pipeline.errors import ConfigError, SampleError
from pipeline.runner import in_order, plan_tasks, run
from tests.conftest import SMALL, make_config, tree_digest


def manifest(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_loop_mode_writes_photos_x_backgrounds_x_repeats_per_class(layout, generate):
    out = generate(layout, "samples.repeats=2")
    records = manifest(out)
    per_class = 2 * 2 * 2  # photos x backgrounds x repeats
    assert len(records) == 2 * per_class
    for name in ("cat", "dog"):
        assert len(list((out / "images").glob(f"*/{name}_*.jpg"))) == per_class
        assert len(list((out / "previews").glob(f"*/{name}_*.jpg"))) == per_class
        assert len(list((out / "voc" / "Annotations").glob(f"{name}_*.xml"))) == per_class
    # the original's loop: each photo meets each background (pinned as the first tile) `repeats` times
    cat = [r for r in records if r["class"] == "cat"]
    pairs = sorted((r["objects"][0]["photo"], r["tiles"][0]["background"]) for r in cat)
    assert pairs == sorted([(f"photo/cat/{p}.png", f"back/{b}.jpg") for p in range(2) for b in range(2)] * 2)
    assert [r["sample_index"] for r in records] == list(range(per_class)) * 2  # manifest in (class, index) order
    assert not list(out.rglob("*.tmp")) and not list(out.glob(".bank-*")) and not list(out.glob(".*partial"))


def test_per_class_gives_exactly_that_many(layout, generate):
    out = generate(layout, "samples.per_class=5", "output.previews=false", "output.formats=[]")
    assert len(manifest(out)) == 10
    assert sorted(p.name for p in (out / "images").rglob("dog_*")) == [f"dog_{i:06d}.jpg" for i in range(5)]
    # no empty folders either
    assert sorted(p.name for p in out.iterdir()) == ["images", "manifest.jsonl", "run.json", "stats.json"]


def test_a_folder_holding_a_dataset_is_refused_and_left_as_it_was(layout, generate, tmp_path):
    out = generate(layout, "samples.per_class=2")
    before = tree_digest(out)
    with pytest.raises(ConfigError, match=r"^hydra.run.dir: .* already holds a complete dataset; give each run a "
                                          r"new folder"):
        generate(layout, "samples.per_class=3", "seed=1", out=out)
    assert tree_digest(out) == before and not list(out.glob(".bank-*"))


def test_preview_every_writes_one_preview_per_n_images(layout, generate):
    out = generate(layout, "samples.per_class=7", "output.preview_every=3")
    for record in manifest(out):
        assert ("preview" in record) == (record["sample_index"] % 3 == 0)
    assert sorted(p.name for p in (out / "previews").rglob("cat_*")) == ["cat_000000.jpg", "cat_000003.jpg",
                                                                          "cat_000006.jpg"]


def test_voc_files_parse_and_agree_with_the_manifest(layout, generate):
    out = generate(layout, "samples.per_class=6", "compose.objects.max=4")
    counts = set()
    for record in manifest(out):
        root = ET.parse(out / record["voc"]).getroot()
        assert root.findtext("filename") == record["image"].split("/")[-1]
        assert (int(root.findtext("size/width")), int(root.findtext("size/height"))) == (320, 240)
        objects = root.findall("object")
        assert len(objects) == len(record["objects"]) >= 1
        assert record["objects"][0]["class"] == record["class"]  # the first object is the iterated class
        counts.add(len(objects))
        for node, obj in zip(objects, record["objects"], strict=True):
            assert node.findtext("name") == obj["class"]
            x0, y0, x1, y1 = obj["box"]
            voc = [int(node.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
            assert voc == [x0 + 1, y0 + 1, x1, y1]
            assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240
            assert node.findtext("truncated") == str(int(obj["truncated"] > 0))
            assert node.findtext("occluded") == str(int(obj["occluded"] > 0))
            assert node.findtext("difficult") == str(int(obj["visible"] < 0.25))
        assert cv2.imread(str(out / record["image"])).shape == (240, 320, 3)
    assert len(counts) > 1  # 1-4 objects per image


def test_box_matches_the_object_pixels_in_the_written_image(layout, generate):
    # Black background, untouched bright object, lossless-ish JPEG: the box must hug the bright pixels.
    out = generate(layout, "experiment=original", "samples.per_class=8", "augment.background_brightness.min=0",
                   "augment.background_brightness.max=0", "augment.object_brightness.enabled=false",
                   "augment.blur.enabled=false", "output.jpeg_quality=100")
    for record in manifest(out):
        image = cv2.imread(str(out / record["image"]))
        ys, xs = np.nonzero(image.max(axis=2) > 40)
        found = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        (obj,) = record["objects"]
        assert np.abs(np.subtract(found, obj["box"])).max() <= 1, (record["id"], found, obj["box"])
        assert obj["visible"] == 1 and obj["truncated"] == obj["occluded"] == 0


def test_same_seed_is_byte_identical_for_any_worker_count(layout, generate):
    args = ("samples.per_class=6", "seed=11")
    one = generate(layout, *args, "workers.n_jobs=1", "workers.backend=sequential")
    two = generate(layout, *args, "workers.n_jobs=2", "workers.chunk_size=1")
    three = generate(layout, *args, "workers.n_jobs=2", "workers.chunk_size=4")
    digest = tree_digest(one)
    # per sample: image, preview, VOC file + link, YOLO label + link; manifest, COCO x2, data.yaml, ImageSets x2,
    # labelmap
    assert len(digest) == 12 * 6 + 7
    assert digest == tree_digest(two) == tree_digest(three)
    other_seed = generate(layout, "samples.per_class=6", "seed=12")  # cat_000000 may land in another split
    first = (other_seed / manifest(other_seed)[0]["image"]).read_bytes()
    assert first != (one / manifest(one)[0]["image"]).read_bytes()


def test_rejected_draws_are_redrawn_and_never_written(layout, generate):
    # objects are 30-60 px: most draws at scale 0.1-2.0 come out under 40 px and are rejected
    out = generate(layout, "samples.per_class=10", "augment.scale.min=0.1", "compose.min_box_size=40")
    records = manifest(out)
    assert len(records) == 20 and len(list((out / "images").rglob("*.jpg"))) == 20
    assert any(r["objects"][0]["attempts"] > 1 for r in records)
    for obj in (obj for r in records for obj in r["objects"]):
        x0, y0, x1, y1 = obj["box"]
        assert min(x1 - x0, y1 - y0) >= 40


def test_impossible_constraints_fail_after_max_attempts_naming_class_and_photo(layout, tmp_path):
    # every object can reach 40 px, but most draws at scale 0.1-2.0 are smaller: one attempt is not enough
    cfg = make_config([*SMALL, f"input.root={layout}", "augment.scale.min=0.1", "compose.min_box_size=40",
                       "samples.max_attempts=1", "samples.per_class=10", "workers.backend=sequential"])
    out = tmp_path / "out"
    with pytest.raises(SampleError, match=r"class 'cat', sample \d+ \(photo photo/cat/\d.png\): could place only 0 "
                                          r"of compose.objects.min=1 objects in samples.max_attempts=1 draws "
                                          r"\(last: box \d+x\d+ smaller"):
        run(cfg, out)
    assert not (out / "manifest.jsonl").exists() and not list(out.glob(".bank-*"))
    assert not list(out.rglob("*.partial")) and not list(out.rglob("instances_*.json"))  # COCO files discarded too
    assert not (out / "yolo" / "data.yaml").exists()


def test_a_worker_failure_names_the_class_and_file(layout, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise MemoryError("simulated")

    monkeypatch.setattr(augment, "apply_object", broken)
    cfg = make_config([*SMALL, f"input.root={layout}", "workers.backend=sequential"])
    with pytest.raises(SampleError, match=r"class 'cat', sample 0 \(photo photo/cat/0.png\): MemoryError: simulated"):
        run(cfg, tmp_path / "out")


def test_a_failed_write_names_the_output_file_not_the_photo(layout, tmp_path, monkeypatch):
    def full_disk(path, data):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(writers, "atomic_write", full_disk)
    cfg = make_config([*SMALL, f"input.root={layout}", "workers.backend=sequential"])
    out = tmp_path / "out"
    with pytest.raises(SampleError, match=rf"^cannot write {out}/images/\w+/cat_000000.jpg: No space left on device "
                                          rf"\(\d+ MiB free in {out}\); free some space .* quiltgen resume={out}$"):
        run(cfg, out)
    assert not (out / "manifest.jsonl").exists()


# The parent's own files: name prefix of the file whose write() fails -> the file the message must name.
PARENT_FILES = {".manifest.jsonl.partial": "manifest.jsonl", ".journal.jsonl": ".journal.jsonl",
                ".instances_train.json.annotations.partial": "annotations/instances_train.json",
                ".instances_train.json.partial": "annotations/instances_train.json",
                ".train.txt.": "voc/ImageSets/Main/train.txt", ".data.yaml.": "yolo/data.yaml"}


@pytest.mark.parametrize("prefix", PARENT_FILES)
def test_a_full_disk_in_the_parent_names_the_file_and_the_free_space(layout, tmp_path, monkeypatch, prefix):
    """A write() that fails for want of space names no file; the one-line message must name the one meant."""
    real_open = builtins.open

    def full_disk(data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def opening(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        if os.path.basename(file).startswith(prefix) and ("w" in mode or "a" in mode):
            fh.write = full_disk
        return fh

    for module in (writers, runstate):
        monkeypatch.setattr(module, "open", opening, raising=False)
    out = tmp_path / "out"
    with pytest.raises(SampleError) as excinfo:
        run(make_config([*SMALL, f"input.root={layout}", "samples.per_class=2", "output.formats=[coco,voc,yolo]"]),
            out)
    message = str(excinfo.value)
    assert message.startswith(f"cannot write {out / PARENT_FILES[prefix]}: No space left on device (")
    assert f" MiB free in {out}); free some space" in message and "\n" not in message
    assert not (out / "manifest.jsonl").exists() and runstate.read_run(out)["status"] == "failed"


@pytest.mark.parametrize("inside", [False, True], ids=["input-root", "inside-it"])
def test_a_run_folder_in_the_input_folder_is_refused_before_anything_is_written(layout, monkeypatch, inside):
    monkeypatch.chdir(layout.parent)  # input.root given relative, as `input.root=.` from the input folder is
    before = sorted(layout.rglob("*"))
    out = layout / "runs" / "a" if inside else layout
    where = f"is inside input.root ({layout.resolve()})" if inside else "is input.root"
    with pytest.raises(ConfigError) as excinfo:
        run(make_config([*SMALL, f"input.root={layout.name}"]), out)
    assert str(excinfo.value) == (f"hydra.run.dir: {out.resolve()} {where}, so the dataset would be written among "
                                  f"its inputs; choose a folder outside input.root with hydra.run.dir=<folder>")
    assert sorted(layout.rglob("*")) == before  # no run.json, no run folder


def test_demo_set_is_created_and_used_when_no_input_is_given(tmp_path, generate):
    cfg = make_config([*SMALL, f"input.cache_dir={tmp_path / 'cache'}", "samples.per_class=2"])
    summary = run(cfg, tmp_path / "out")
    assert summary["samples"] == 6 and summary["classes"] == 3
    demo_root = tmp_path / "cache" / "demo-v2"
    assert sorted(p.name for p in (demo_root / "photo").iterdir()) == ["circle", "square", "triangle"]
    assert len(list((demo_root / "back").iterdir())) == 4


def test_plan_splits_classes_into_chunks_that_cover_every_sample_to_render():
    counts = [100, 3, 0, 17]
    splits = [[f"s{c}-{i}" for i in range(n)] for c, n in enumerate(counts)]
    todo = [list(range(n)) for n in counts]
    todo[3] = [0, 5, 16]  # a resume renders only what is missing
    tasks = plan_tasks(todo, n_workers=2, chunk_size=None, splits=splits)
    covered = {c: [] for c in range(4)}
    for t in tasks:
        covered[t["class_index"]] += t["samples"]
        assert t["splits"] == [f"s{t['class_index']}-{i}" for i in t["samples"]]
    assert covered == {0: list(range(100)), 1: [0, 1, 2], 2: [], 3: [0, 5, 16]}
    assert len(tasks) >= 8  # a big class is split so two workers both stay busy


def test_local_backends_report_the_configured_worker_count():
    for backend, n_jobs, expected in [("loky", 1, 1), ("loky", 2, 2), ("sequential", -1, 1)]:
        with parallel_backend({"backend": backend, "n_jobs": n_jobs}) as n_workers:
            assert n_workers == expected, (backend, n_jobs)


def test_in_order_merges_finished_and_arriving_records_in_sample_order():
    def record(c, s, blending=None):
        return {"class_index": c, "sample_index": s, **({"blending": blending} if blending else {})}

    keys = [(0, 0, None), (0, 1, None), (0, 2, None), (1, 0, None), (1, 1, None)]
    finished = {(0, 1, None): record(0, 1), (1, 0, None): record(1, 0)}  # from the journal of an interrupted run
    arrivals = iter([[record(1, 1)], [record(0, 2), record(0, 0)]])
    assert [runstate.sample_key(r) for r in in_order(keys, finished.get, arrivals)] == keys
    # compose.blending.every: each sample's images arrive together, in method order, and are kept apart by method
    keys = [(0, s, method) for s in range(3) for method in ("hard", "motion")]
    finished = {key: record(*key) for key in keys[2:4]}
    arrivals = iter([[record(0, 2, "hard"), record(0, 2, "motion")], [record(0, 0, "hard"), record(0, 0, "motion")]])
    assert [runstate.sample_key(r) for r in in_order(keys, finished.get, arrivals)] == keys
