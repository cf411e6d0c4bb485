"""stats.json and report.html: counts that agree with the dataset files, a self-contained page, determinism."""
import base64
import json
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from pipeline import stats
from pipeline.report import sheet_settings
from pipeline.runner import run
from tests.conftest import SMALL, make_config


@pytest.fixture(scope="module")
def layout(module_layout):
    return module_layout


@pytest.fixture(scope="module")
def reported(layout, tmp_path_factory):
    """A run with its report: two splits, 1-3 objects per image."""
    out = tmp_path_factory.mktemp("reported") / "run"
    run(make_config([*SMALL, f"input.root={layout}", "samples.per_class=6", "output.report=true", "seed=4"]), out)
    return out


def manifest(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_stats_counts_equal_the_manifest_coco_and_yolo_files(reported):
    found, records = json.loads((reported / "stats.json").read_text()), manifest(reported)
    counts = found["counts"]
    assert counts["images"] == len(records) == 12 and counts["classes"] == ["cat", "dog"]
    assert counts["objects"] == sum(len(r["objects"]) for r in records)
    assert counts["objects_per_image"] == {str(n): sum(len(r["objects"]) == n for r in records) for n in range(4)}
    assert counts["dropped"] == sum(r["dropped"] for r in records) and counts["background_only"] == 0
    # instances per class and split, from the COCO files (found by globbing: their names are the formats' choice)
    coco = Counter()
    for path in (reported / "annotations").glob("*.json"):
        data = json.loads(path.read_text())
        split = next(s for s in counts["splits"] if path.stem.endswith(f"_{s}"))
        names = {c["id"]: c["name"] for c in data["categories"]}
        coco.update((names[a["category_id"]], split) for a in data["annotations"])
    assert {(c, s): counts["instances"][c][s] for c in counts["classes"] for s in counts["splits"]} == coco
    assert set(counts["splits"]) == {"train", "val"}
    # and from the YOLO labels
    names = yaml.safe_load((reported / "yolo" / "data.yaml").read_text())["names"]
    yolo = Counter((names[int(line.split()[0])], path.parent.name)
                   for path in (reported / "yolo" / "labels").rglob("*.txt") for line in path.read_text().splitlines())
    assert yolo == coco
    assert counts["instances"]["all"]["total"] == counts["objects"] == sum(coco.values())
    assert found["boxes"]["per_class"]["all"]["n"] == counts["objects"]
    assert sum(map(sum, found["boxes"]["centres"]["counts"]["all"])) == counts["objects"]
    assert found["blend"]["objects"] == dict(Counter(o["blend"]["method"] for r in records for o in r["objects"]))


def test_docs_name_every_key_of_stats_json_boxes(reported):
    boxes = json.loads((reported / "stats.json").read_text())["boxes"]
    docs = (Path(__file__).parents[1] / "docs" / "evaluate.md").read_text()
    (row,) = [line for line in docs.splitlines() if line.startswith("| `boxes` |")]
    per_class = boxes["per_class"]
    assert list(per_class) == ["cat", "dog", "all"] and "`per_class.<class>`" in row and "`per_class.all`" in row
    keys = [*boxes, *per_class["cat"], *per_class["cat"]["width_px"], *per_class["cat"]["coco_size"],
            *boxes["size_histogram"], *boxes["centres"]]
    assert [key for key in keys if f"`{key}`" not in row and f"`{key}." not in row] == []
    for name in ("size_histogram", "aspect_histogram"):
        assert len(boxes[name]["edges"]) == 25 and {len(c) for c in boxes[name]["counts"].values()} == {24}
    assert list(boxes["centres"]["counts"]) == ["cat", "dog", "all"] and boxes["centres"]["bins"] == [16, 9]
    assert {(len(c), len(c[0])) for c in boxes["centres"]["counts"].values()} == {(9, 16)}
    assert "25 log-spaced edges" in row and "(24 counts)" in row and "9 rows of 16 counts" in row


def test_stats_json_keeps_each_objects_drawn_values(reported):
    found, records = json.loads((reported / "stats.json").read_text()), manifest(reported)
    rotations = [o["augment"]["rotation"] for r in records for o in r["objects"]]
    drawn = found["augment"]["object.rotation"]
    assert drawn["n"] == len(rotations) and sum(drawn["counts"]) == len(rotations)
    assert drawn["min"] == pytest.approx(min(rotations)) and drawn["max"] == pytest.approx(max(rotations))
    assert found["augment"]["image.background_brightness"]["n"] == len(records)
    assert found["run"]["overrides"] == [] and found["run"]["samples"] == 12  # no .hydra/ when run() is called


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.sources, self.links = Counter(), [], []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] += 1
        attrs = dict(attrs)
        if "src" in attrs:
            self.sources.append((tag, attrs.get("class"), attrs["src"]))
        if "href" in attrs:
            self.links.append(attrs["href"])


def decode(uri: str) -> np.ndarray:
    header, data = uri.split(",", 1)
    assert header in ("data:image/png;base64", "data:image/jpeg;base64")
    return cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_UNCHANGED)


def test_report_is_self_contained_and_embeds_every_plot(reported):
    text = (reported / "report.html").read_text()
    page = Page()
    page.feed(text)
    assert page.links == [] and page.tags["script"] == page.tags["link"] == page.tags["iframe"] == 0
    outside_data = re.sub(r"data:image/(png|jpeg);base64,[A-Za-z0-9+/=]+", "", text)
    assert not re.search(r"(https?:)?//|url\(", outside_data)  # no network address and no CSS url() anywhere
    plots = [src for tag, cls, src in page.sources if cls == "plot"]
    assert len(plots) == 3  # objects and boxes, box centres, drawn augmentation values
    images = [decode(src) for _, _, src in page.sources]  # every picture decodes from its data URI
    assert all(img is not None and img.size for img in images)
    assert sum(src.startswith("data:image/jpeg") for _, _, src in page.sources) == 12  # the contact sheet
    # the augmentation sheet: each class untouched, then one cut-out per end of each range that changes it
    cells = re.findall(r"<figure class='cell'><div>(?:<img[^>]*>|vanished)</div>([^<]+)</figure>", text)
    assert cells.count("as cut out") == 2 and len(cells) % 2 == 0
    assert {"rotation -15", "rotation 15", "scale 0.5", "scale 2", "blur 1", "blur 5"} <= set(cells)
    assert "background_brightness" not in cells and "<code>background_brightness</code>" in text  # listed, not shown


def test_sheet_pins_each_enabled_range_at_both_ends_with_everything_else_off():
    config = {"rotation": {"enabled": True, "min": -15.0, "max": 15.0}, "hue": {"enabled": False, "min": -1, "max": 1},
              "blur": {"enabled": True, "kernel_sizes": [3, 1, 5]}, "flip": {"enabled": True, "horizontal": 0.5},
              "size": "area", "area": {"min": 0.01, "max": 0.1}, "scale": {"min": 0.5, "max": 2.0}}
    found = dict(sheet_settings(config))
    assert list(found) == ["rotation", "blur", "area"]  # flip has no range; hue is off; scale is not the size unit
    assert [(label, c["size"], c["area"]) for label, c in found["area"]] == [
        ("0.01", "area", {"min": 0.01, "max": 0.01}), ("0.1", "area", {"min": 0.1, "max": 0.1})]
    assert found["rotation"][0][1]["size"] == "scale" and found["rotation"][0][1]["scale"] == {"min": 1, "max": 1}
    (low_label, low), (high_label, high) = found["rotation"]
    assert (low_label, low["rotation"]["min"], low["rotation"]["max"]) == ("-15", -15.0, -15.0)
    assert (high_label, high["rotation"]["min"], high["rotation"]["max"]) == ("15", 15.0, 15.0)
    assert not high["blur"]["enabled"] and not high["flip"]["enabled"] and not high["hue"]["enabled"]
    assert [(label, c["blur"]["kernel_sizes"]) for label, c in found["blur"]] == [("1", [1]), ("5", [5])]


def test_stats_and_report_are_the_same_for_any_worker_count_but_the_times(layout, reported, tmp_path):
    other = tmp_path / "two"
    run(make_config([*SMALL, f"input.root={layout}", "samples.per_class=6", "output.report=true", "seed=4",
                     "workers.n_jobs=2", "workers.chunk_size=1"]), other)
    one, two = (json.loads((out / "stats.json").read_text()) for out in (reported, other))
    for found in (one, two):
        for key in ("seconds", "samples_per_second", "finished", "report_seconds"):
            found["run"].pop(key)
    assert one == two
    # the times, and the config printed at the end (its workers differ), are all that differs
    times = re.compile(r"<td>[\d.]+ s</td><td>[\d.]+ samples/s</td><td>[^<]+</td>|<pre>.*</pre>", re.S)
    first, second = (times.sub("", (out / "report.html").read_text()) for out in (reported, other))
    assert first == second and first.count("data:image/png") > 4  # plots and sheet cells, byte for byte


def test_drawn_values_of_any_new_parameter_get_a_histogram():
    records = [{"augment": {"noise": 0.0, "new_image_knob": i / 10}, "objects": [
        {"augment": {"rotation": float(i), "perspective": [i, i + 1], "flip": i % 2 == 0, "mode": "a" if i else "b",
                     "unused": None}, "blend": {"method": "hard", "radius": 2}}]} for i in range(5)]
    drawn = stats.drawn_values(records)
    assert drawn["image.new_image_knob"]["max"] == 0.4 and sum(drawn["image.new_image_knob"]["counts"]) == 5
    assert drawn["object.perspective"]["n"] == 10 and drawn["object.perspective"]["max"] == 5
    assert drawn["object.flip"]["mean"] == 0.6 and drawn["image.noise"]["constant"]
    assert drawn["object.mode"]["values"] == {"a": 4, "b": 1}
    assert drawn["object.blend.method"]["values"] == {"hard": 5} and "object.unused" not in drawn


def test_instance_table_lines_for_the_log():
    found = {"counts": {"classes": ["cat", "dog"], "splits": ["train", "val"],
                        "instances": {"cat": {"train": 12, "val": 3, "total": 15}, "dog": {"train": 1, "val": 0,
                                                                                           "total": 1},
                                      "all": {"train": 13, "val": 3, "total": 16}}}}
    assert stats.instance_table(found) == ["instances  train  val  total",
                                           "cat           12    3     15",
                                           "dog            1    0      1",
                                           "all           13    3     16"]
