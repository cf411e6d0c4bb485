"""evaluate=reference (label statistics vs real labels) and evaluate=command (the user's own scorer)."""
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import evaluate, report, stats
from pipeline.errors import ConfigError
from pipeline.evaluate import EvaluationError
from pipeline.runner import run
from tests.conftest import SMALL, make_config

SCORER = Path(__file__).with_name("scorer.py")  # a small real "train and validate" script


@pytest.fixture(scope="module")
def layout(module_layout):
    return module_layout


@pytest.fixture(scope="module")
def real(layout, tmp_path_factory):
    """A run standing in for the user's real labels (its YOLO and COCO files)."""
    out = tmp_path_factory.mktemp("real") / "run"
    run(make_config([*SMALL, f"input.root={layout}", "samples.per_class=8", "compose.objects.max=3"]), out)
    return out


def merged_coco(run_dir: Path, path: Path) -> Path:
    """The run's per-split COCO files as one file, with ids made unique."""
    images, annotations, categories = [], [], None
    for n, part in enumerate(sorted((run_dir / "annotations").glob("*.json"))):
        data = json.loads(part.read_text())
        categories = data["categories"]
        images += [{**img, "id": img["id"] + 10_000 * n} for img in data["images"]]
        annotations += [{**a, "id": a["id"] + 10_000 * n, "image_id": a["image_id"] + 10_000 * n}
                        for a in data["annotations"]]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def test_a_run_scored_against_its_own_labels_is_a_perfect_match(layout, real, tmp_path):
    # the same config and seed again, now scored against the first run's YOLO data.yaml
    out = tmp_path / "again"
    summary = run(make_config([*SMALL, f"input.root={layout}", "samples.per_class=8", "compose.objects.max=3",
                               "evaluate=reference", f"evaluate.reference={real / 'yolo' / 'data.yaml'}"]), out)
    found = json.loads((out / "stats.json").read_text())["evaluation"]
    assert found["distances"] == {"size": 0.0, "aspect": 0.0, "centre": 0.0, "objects": 0.0, "classes": 0.0}
    assert found["score"] == summary["score"] == 1.0 and found["direction"] == "maximize"
    assert found["reference_images"] == 16 and found["reference_boxes"] == sum(
        len(json.loads(line)["objects"]) for line in (real / "manifest.jsonl").read_text().splitlines())
    # the same labels as COCO json and as a bare YOLO labels folder
    records = [json.loads(line) for line in (real / "manifest.jsonl").read_text().splitlines()]
    own = stats.records_labels(records)
    for reference in (merged_coco(real, tmp_path / "real.json"), real / "yolo" / "labels"):
        loaded = evaluate.load_reference(reference, ["cat", "dog"])
        assert stats.similarity(stats.distances(own, loaded), dict.fromkeys(stats.DISTANCES, 1.0)) == 1.0


def altered_yolo(real: Path, folder: Path, shrink: float, shift: float, drop_every: int) -> Path:
    """The run's YOLO labels with every box shrunk and moved right, and every n-th image's last box dropped."""
    for n, label in enumerate(sorted((real / "yolo" / "labels").rglob("*.txt"))):
        lines = []
        for line in label.read_text().splitlines():
            c, cx, cy, w, h = line.split()
            lines.append(f"{c} {min(1.0, float(cx) + shift):.6f} {cy} {float(w) * shrink:.6f} "
                         f"{float(h) * shrink:.6f}")
        if drop_every and n % drop_every == 0 and len(lines) > 1:
            lines.pop()
        target = folder / "labels" / label.parent.name / label.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(lines) + "\n")
    (folder / "images").symlink_to(real / "yolo" / "images")
    return folder / "labels"


def test_the_score_falls_as_the_reference_differs_more(real, tmp_path):
    records = [json.loads(line) for line in (real / "manifest.jsonl").read_text().splitlines()]
    own = stats.records_labels(records)
    weights = dict.fromkeys(stats.DISTANCES, 1.0)
    scores, sizes = [], []
    for step, (shrink, shift, drop_every) in enumerate([(1.0, 0.0, 0), (0.8, 0.05, 4), (0.6, 0.1, 3),
                                                         (0.4, 0.2, 2), (0.2, 0.3, 1)]):
        labels = altered_yolo(real, tmp_path / f"set{step}", shrink, shift, drop_every)
        found = stats.distances(own, evaluate.load_reference(labels, ["cat", "dog"]))
        scores.append(stats.similarity(found, weights))
        sizes.append(found["size"])
    assert scores[0] == pytest.approx(1.0, abs=1e-4)
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False)), scores
    assert sizes[1] == pytest.approx(1 - 0.8, abs=0.02)  # boxes 0.8x as large: 1 - exp(-|log 0.8|) = 0.2


def test_distances_of_known_label_sets():
    def labels(classes, sizes, per_image, cx=0.5):
        sizes = np.asarray(sizes, float)
        return stats.labels(classes, [cx] * len(sizes), [0.5] * len(sizes), sizes, sizes, [1.0] * len(sizes),
                            per_image)

    run = labels(["a", "a", "b", "b"], [0.1, 0.1, 0.2, 0.2], [2, 2])
    found = stats.distances(run, labels(["a", "a", "a", "a"], [0.2, 0.2, 0.4, 0.4], [1, 1, 1, 1], cx=0.7))
    assert found["size"] == pytest.approx(0.5)  # every box twice as large: 1 - exp(-log 2)
    assert found["aspect"] == 0.0 and found["centre"] == pytest.approx(0.1)  # x off by 0.2, y the same
    assert found["objects"] == 1.0 and found["classes"] == 0.5
    assert stats.similarity(found, {"size": 1, "aspect": 1, "centre": 1, "objects": 1, "classes": 1}) \
        == pytest.approx(1 - (0.5 + 0.1 + 1 + 0.5) / 5)
    assert stats.similarity(found, {"size": 0, "aspect": 1, "centre": 0, "objects": 0, "classes": 0}) == 1.0
    # a reference without any aspect ratio (YOLO labels without their images): aspect is left out, weight and all
    real = labels(["a", "a", "a", "a"], [0.2, 0.2, 0.4, 0.4], [1, 1, 1, 1], cx=0.7)
    real.aspect[:] = np.nan
    found = stats.distances(run, real)
    assert found["aspect"] is None and found["size"] == pytest.approx(0.5)
    assert stats.similarity(found, dict.fromkeys(stats.DISTANCES, 1.0)) == pytest.approx(1 - (0.5 + 0.1 + 1 + 0.5) / 4)


def bare_labels(real: Path, folder: Path, images_every: int = 0) -> Path:
    """A copy of the run's YOLO labels folder with the images of every n-th label file beside it (0: none)."""
    for n, label in enumerate(sorted((real / "yolo" / "labels").rglob("*.txt"))):
        relative = label.relative_to(real / "yolo" / "labels")
        (folder / "labels" / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / "labels" / relative).write_bytes(label.read_bytes())
        if images_every and n % images_every == 0:
            image = next((real / "yolo" / "images" / relative.parent).glob(f"{label.stem}.*"))
            (folder / "images" / relative.parent).mkdir(parents=True, exist_ok=True)
            (folder / "images" / relative.parent / image.name).symlink_to(image)
    return folder / "labels"


def test_labels_without_images_leave_the_aspect_distance_out_of_the_score(layout, real, tmp_path, caplog):
    caplog.set_level("INFO")
    out = tmp_path / "again"
    reference = bare_labels(real, tmp_path / "bare")
    summary = run(make_config([*SMALL, f"input.root={layout}", "samples.per_class=8", "compose.objects.max=3",
                               "evaluate=reference", f"evaluate.reference={reference}"]), out)
    found = json.loads((out / "stats.json").read_text())["evaluation"]
    assert found["distances"] == {"size": 0.0, "aspect": None, "centre": 0.0, "objects": 0.0, "classes": 0.0}
    assert found["score"] == summary["score"] == 1.0  # as with the images: the other four match exactly
    warnings = [r.getMessage() for r in caplog.records if "no image found" in r.getMessage()]  # once, not twice
    assert warnings == [f"evaluate.reference: no image found for any of the 16 label files in {reference}; the "
                        f"aspect distance is left out of the score (YOLO labels are relative: a box's aspect ratio "
                        f"needs its image's size)"]
    assert "score 1.0 (reference, higher is better; aspect left out)" in caplog.text
    html = "".join(report._evaluation(found, {}))
    assert "The aspect distance is left out" in html and "<td>left out</td>" in html
    # with only aspect weighted there is nothing left to score: said before anything is rendered
    zero = [f"evaluate.weights.{k}=0" for k in stats.DISTANCES if k != "aspect"]
    with pytest.raises(ConfigError, match=rf"^evaluate.weights: only aspect has a weight, and {reference} has no "
                                          rf"aspect ratios \(no images beside its labels\); give another distance"):
        run(make_config([*SMALL, f"input.root={layout}", "evaluate=reference", f"evaluate.reference={reference}",
                         *zero]), tmp_path / "nothing")
    assert sorted(p.name for p in (tmp_path / "nothing").iterdir()) == ["run.json"]


def test_labels_with_some_images_missing_lose_only_those_boxes_aspect(real, tmp_path):
    full = evaluate.load_reference(bare_labels(real, tmp_path / "all", images_every=1), ["cat", "dog"])
    part = evaluate.load_reference(bare_labels(real, tmp_path / "some", images_every=2), ["cat", "dog"])
    labels = sorted((tmp_path / "some" / "labels").rglob("*.txt"))
    without = sum(len(label.read_text().splitlines()) for n, label in enumerate(labels) if n % 2)
    assert 0 < without < part.aspect.size and np.isnan(part.aspect).sum() == without
    known = np.isfinite(part.aspect)
    np.testing.assert_array_equal(part.aspect[known], full.aspect[known])  # the rest keep their image's ratio
    assert np.isfinite(full.aspect).all()
    own = stats.records_labels(json.loads(line) for line in (real / "manifest.jsonl").read_text().splitlines())
    aspect = stats.distances(own, part)["aspect"]
    assert aspect is not None and 0 <= aspect < 0.5  # half the boxes, same kind: near 0, not the 1 of "no data"


def test_reference_errors_name_the_key_and_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^evaluate.reference: .*/nope.json does not exist"):
        evaluate.load_reference(tmp_path / "nope.json", ["a"])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"^evaluate.reference: cannot read .*bad.json: KeyError"):
        evaluate.load_reference(tmp_path / "bad.json", ["a"])
    with pytest.raises(ConfigError, match=r"^evaluate.reference: evaluate=reference needs the real labels"):
        make_config(["evaluate=reference"])


def test_a_dataset_root_or_a_voc_folder_as_reference_says_what_to_give(real):
    with pytest.raises(ConfigError, match=rf"^evaluate.reference: {real} is a dataset folder; give its "
                                          rf"{real / 'yolo' / 'data.yaml'} \(the class names are there\)$"):
        evaluate.load_reference(real, ["cat", "dog"])
    with pytest.raises(ConfigError, match=r"^evaluate.reference: .*/voc looks like Pascal VOC, which is not read"):
        evaluate.load_reference(real / "voc", ["cat", "dog"])


def command(*args: str) -> str:
    """evaluate.command=... as an override (quoted: the placeholders' braces would read as a dict)."""
    return "evaluate.command='" + " ".join([sys.executable, str(SCORER), *args]) + "'"


def test_a_command_score_from_its_json_file_lands_in_stats_json(layout, tmp_path):
    out = tmp_path / "run"
    summary = run(make_config([*SMALL, f"input.root={layout}", "samples.per_class=3", "evaluate=command",
                               f"{command('{data_yaml}', '{run_dir}/eval/metrics.json')}",
                               "evaluate.score_file=eval/metrics.json", "evaluate.score_key=metrics.map50"]), out)
    found = json.loads((out / "stats.json").read_text())
    objects = found["counts"]["objects"]
    assert found["evaluation"]["score"] == summary["score"] == objects / 100  # what scorer.py computes
    assert f"trained on {objects} boxes" in (out / "evaluate.log").read_text()


def test_without_a_score_file_the_last_printed_number_is_the_score(layout, tmp_path):
    out = tmp_path / "run"
    summary = run(make_config([*SMALL, f"input.root={layout}", "samples.per_class=2", "evaluate=command",
                               f"{command('{data_yaml}', '-')}"]), out)
    assert summary["score"] == json.loads((out / "stats.json").read_text())["counts"]["objects"] / 100


def test_a_failing_command_gives_its_status_and_log_after_writing_the_stats(layout, tmp_path):
    out = tmp_path / "run"
    cfg = make_config([*SMALL, f"input.root={layout}", "samples.per_class=2", "evaluate=command",
                       f"{command('{data_yaml}', '-', '--fail', '3')}"])
    with pytest.raises(EvaluationError, match=rf"^evaluate.command exited with status 3; its output is in "
                                              rf"{out / 'evaluate.log'}$"):
        run(cfg, out)
    assert "scorer: giving up" in (out / "evaluate.log").read_text()
    assert (out / "stats.json").is_file() and (out / "manifest.jsonl").is_file()


def test_command_placeholders_and_score_keys_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"^evaluate.command: unknown placeholder \{data\} in"):
        make_config(["evaluate=command", "evaluate.command='train {data}'"])
    with pytest.raises(ConfigError, match=r"^evaluate.score_key: evaluate.score_file=m.json is set"):
        make_config(["evaluate=command", "evaluate.command=train", "evaluate.score_file=m.json"])
    (tmp_path / "m.json").write_text('{"metrics": {"map50": 0.5, "list": [1, 2.5]}}')
    assert evaluate.score_from_json(tmp_path / "m.json", "metrics.list.1") == 2.5
    with pytest.raises(EvaluationError, match=r"^evaluate.score_key: .*m.json has no 'metrics.map' \(no 'map'"):
        evaluate.score_from_json(tmp_path / "m.json", "metrics.map")
    assert evaluate.last_number(["epoch 3/3 loss 0.2\n", "mAP50 0.61 (best)\n", "done\n"], tmp_path) == 0.61
    with pytest.raises(EvaluationError, match="printed no number"):
        evaluate.last_number(["done\n"], tmp_path)
    assert os.path.basename(evaluate.label_path(Path("/d/images/train/a.jpg"))) == "a.txt"
    assert evaluate.label_path(Path("/d/images/train/a.jpg")) == Path("/d/labels/train/a.txt")


def test_a_missing_reference_is_found_before_anything_is_rendered(layout, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"^evaluate.reference: .*/nope.yaml does not exist"):
        run(make_config([*SMALL, f"input.root={layout}", "evaluate=reference",
                         f"evaluate.reference={tmp_path / 'nope.yaml'}"]), out)
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]  # no image was made first
