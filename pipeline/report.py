"""After the dataset: stats.json, report.html, the evaluation and the log's closing summary (the report stage).

``report_run`` reads the run back from its folder (the manifest records), so everything here describes what
was written. Plots are matplotlib figures on the Agg canvas (no pyplot state), imported only when a report
is made; images are embedded as data URIs, so report.html is one file that opens from disk with no network.
"""
from __future__ import annotations

import base64
import copy
import html
import io
import json
import logging
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import yaml

from pipeline import augment, evaluate, runstate, sources, stats, writers
from pipeline.errors import QuiltgenError

log = logging.getLogger(__name__)

DPI = 72                # figures are small and simple: a modest resolution keeps rendering fast
CONTACT_IMAGES = 12     # previews on the contact sheet, spread evenly over the run
CONTACT_WIDTH = 320     # their width in pixels
SHEET_SOURCE = 160      # augmentation sheet: cut-outs are shrunk to this longest side before augmenting
SHEET_CELL = 96         # and each class's results are drawn to fit this many pixels
SHEET_CLASSES = 12      # classes on the sheet (one photo of each is decoded again)
# Class colours first; the last three are the visible / truncated / occluded lines.
COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#2a9d8f", "#e9c46a",
           "#8c8c8c"]


def read_manifest(out_dir: Path) -> Iterator[dict]:
    """The manifest's records, one at a time: a 100k-image manifest is never held in memory."""
    with open(out_dir / "manifest.jsonl", "rb") as fh:
        for line in fh:
            yield json.loads(line)


def _overrides(run_dir: Path) -> list[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    try:
        return (yaml.safe_load(path.read_text()) or []) if path.is_file() else []
    except (OSError, yaml.YAMLError):
        return []


def run_info(out_dir: Path, settings: dict, samples: int, seconds: float) -> dict:
    """Seed, overrides (from Hydra's .hydra/overrides.yaml when there is one), time and throughput. A replay
    (``-cp <run>/.hydra``) has no overrides of its own: it names the run it replays and gives that run's."""
    replay_of = (runstate.read_run(out_dir) or {}).get("replay_of")
    overrides, source = _overrides(out_dir), replay_of
    for _ in range(100):  # a replay of a replay: the first run that has overrides of its own
        if overrides or not source:
            break
        overrides, source = _overrides(Path(source)), (runstate.read_run(Path(source)) or {}).get("replay_of")
    return {"seed": settings["seed"], "overrides": overrides, "replay_of": replay_of, "samples": samples,
            "seconds": round(seconds, 3),
            "samples_per_second": round(samples / seconds, 2) if seconds else 0.0,
            "finished": datetime.now().astimezone().isoformat(timespec="seconds")}


def report_run(out_dir: str | Path, settings: dict, bank: dict, seconds: float) -> dict:
    """Write stats.json (and report.html unless output.report=false), run the evaluation, log the summary.

    ``seconds`` is the time the dataset took. Returns {"score": ...} when an evaluation is configured.
    An evaluation that fails raises after stats.json and the report are written.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    gathered = stats.Accumulator(read_manifest(out_dir))
    result = {"run": run_info(out_dir, settings, gathered.images, seconds), **gathered.result()}
    evaluation = settings.get("evaluate")
    overlay, failure = None, None
    if evaluation and evaluation["kind"] == "reference":
        try:
            result["evaluation"], overlay = evaluate.reference_evaluation(gathered, settings)
        except QuiltgenError as err:
            failure = err
    parts = None
    if settings["output"]["report"]:
        try:
            parts = render_parts(out_dir, result, overlay, settings, bank)
        except Exception as err:  # noqa: BLE001 - a plotting failure must not fail a finished dataset
            log.warning("report.html not written (%s: %s); the dataset and stats.json are complete",
                        type(err).__name__, err)
    result["run"]["report_seconds"] = round(time.perf_counter() - started, 3)
    _write(out_dir, result, parts, settings)
    if failure:
        raise failure
    if evaluation and evaluation["kind"] == "command":
        result["evaluation"] = evaluate.run_command(out_dir, settings, result["counts"]["splits"])
        _write(out_dir, result, parts, settings)
    for line in stats.instance_table(result):
        log.info("%s", line)
    if "evaluation" in result:
        found = result["evaluation"]
        left_out = "".join(f"; {k} left out" for k, v in found.get("distances", {}).items() if v is None)
        log.info("score %s (%s, %s is better%s)", found["score"], found["kind"],
                 "higher" if found["direction"] == "maximize" else "lower", left_out)
    written = "stats.json and report.html" if parts else "stats.json"
    log.info("wrote %s in %.2f s", written, result["run"]["report_seconds"])
    return {"score": result["evaluation"]["score"]} if "evaluation" in result else {}


def _write(out_dir: Path, result: dict, parts: dict | None, settings: dict) -> None:
    writers.atomic_write(out_dir / "stats.json", (json.dumps(result, indent=1) + "\n").encode())
    if parts is not None:
        writers.atomic_write(out_dir / "report.html", render_html(result, parts, settings).encode())


# ------------------------------------------------------------------------------------------------ pictures

def render_parts(out_dir: Path, result: dict, overlay: dict | None, settings: dict, bank: dict) -> dict:
    """Everything drawn: plot PNGs, the contact sheet and the augmentation sheet (as data URIs)."""
    return {"figures": figures(result, overlay), "contact": contact_sheet(out_dir),
            "sheet": augmentation_sheet(bank, settings)}


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def figures(result: dict, overlay: dict | None) -> dict[str, dict]:
    """The report's plots by section: {"uri": PNG data URI, "panels": titles left to right, "keys": colours}.

    Each text drawn by matplotlib costs milliseconds, so titles and colour keys are HTML (``_figure_html``)
    and the plots keep their tick labels only, few of them.
    """
    logging.getLogger("matplotlib").setLevel(max(logging.INFO, logging.getLogger().level))  # no font-cache DEBUG
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: only a report needs matplotlib
    from matplotlib.figure import Figure

    def row(n: int, width: float = 3.4, height: float = 2.3) -> tuple[Figure, list]:
        fig = Figure(figsize=(width * n, height), dpi=DPI)
        axes = [fig.add_subplot(1, n, i + 1) for i in range(n)]
        fig.subplots_adjust(left=0.05 if n > 1 else 0.2, right=0.98, bottom=0.16, top=0.97, wspace=0.22)
        for ax in axes:
            ax.tick_params(labelsize=8)
            ax.locator_params(nbins=3)
        return fig, axes

    def done(fig: Figure, panels: list[str], keys: dict[str, str] | None = None) -> dict:
        buf = io.BytesIO()
        FigureCanvasAgg(fig).print_png(buf)
        return {"uri": data_uri(buf.getvalue(), "image/png"), "panels": panels, "keys": keys or {}}

    counts, boxes = result["counts"], result["boxes"]
    classes = counts["classes"]
    class_colours = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(classes)}
    found = {}

    fig, (ax_per, ax_fraction, ax_size, ax_aspect) = row(4)
    per_image = counts["objects_per_image"]
    ax_per.bar([int(k) for k in per_image], list(per_image.values()), color=COLOURS[7])
    fractions = ("visible", "truncated", "occluded")
    for key, colour in zip(fractions, COLOURS[7:], strict=False):
        ax_fraction.stairs(result["fractions"][key]["counts"], result["fractions"][key]["edges"], color=colour)
    for name in classes:
        _log_stairs(ax_size, boxes["size_histogram"]["counts"][name], boxes["size_histogram"]["edges"],
                    class_colours[name])
        _log_stairs(ax_aspect, boxes["aspect_histogram"]["counts"][name], boxes["aspect_histogram"]["edges"],
                    class_colours[name])
    for ax in (ax_fraction, ax_size, ax_aspect):
        ax.set_yticks([])
    found["objects"] = done(fig, ["objects per image", "visible / truncated / occluded fraction of each object",
                                  "box size: sqrt(box area / image area)", "box aspect: width / height"],
                            {**{f"{k} (mean {result['fractions'][k]['mean']:.2f})": c
                                for k, c in zip(fractions, COLOURS[7:], strict=False)}, **class_colours})

    names = ["all", *classes]
    fig, (ax,) = row(1, min(12.0, 1.7 * len(names)), 0.95 + 0.2 * (len(names) > 7))
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.98)
    _mosaic(ax, [np.asarray(boxes["centres"]["counts"][n], np.float64) for n in names])
    found["centres"] = done(fig, [f"box centres over the image, left to right: {', '.join(names)} "
                                  f"(each scaled to its own maximum)"])

    varying = {k: v for k, v in result["augment"].items() if "edges" in v and not v["constant"]}
    if varying:
        height = 0.3 * len(varying) + 0.4
        fig, (ax,) = row(1, 6.5, height)
        fig.subplots_adjust(left=0.45, right=0.97, bottom=0.3 / height, top=1 - 0.05 / height)
        _ridges(ax, varying)
        found["augment"] = done(fig, ["each value's histogram over its own drawn range [min, max]"])

    if overlay:
        found["reference"] = reference_figure(overlay, row, done)
    return found


def _log_stairs(ax, counts: list, edges: list, colour: str, **kwargs) -> None:
    """A histogram over log-spaced edges, on a linear axis of log10 values with a few plain tick labels
    (a log-scaled axis would add dozens of minor ticks, each a costly artist)."""
    logs = np.log10(edges)
    ax.stairs(counts, logs, color=colour, **kwargs)
    ticks = [t for t in (0.01, 0.1, 1, 10) if logs[0] <= np.log10(t) <= logs[-1]]
    ax.set_xticks(np.log10(ticks), [f"{t:g}" for t in ticks])


def _mosaic(ax, maps: list[np.ndarray]) -> None:
    """Several heatmaps side by side in one axes (one image, each map scaled to its own maximum)."""
    gap = np.full((maps[0].shape[0], 1), np.nan)
    tiles = []
    for m in maps:
        tiles += [m / m.max() if m.max() > 0 else m, gap]
    ax.imshow(np.hstack(tiles[:-1]), cmap="magma", aspect="equal", interpolation="nearest")
    ax.set_axis_off()


def _ridges(ax, histograms: dict[str, dict]) -> None:
    """One row per drawn value: its histogram over its own range (min at the left, max at the right)."""
    for i, hist in enumerate(histograms.values()):
        counts = np.asarray(hist["counts"], np.float64)
        y = len(histograms) - 1 - i
        ax.stairs(y + 0.85 * counts / max(1.0, counts.max()), np.linspace(0, 1, len(counts) + 1), baseline=y,
                  fill=True, color=COLOURS[i % len(COLOURS)])
    ax.set_yticks([len(histograms) - 1 - i + 0.3 for i in range(len(histograms))],
                  [f"{key}  [{h['min']:.3g}, {h['max']:.3g}]" for key, h in histograms.items()], fontsize=8)
    ax.set_xticks([])
    ax.set_ylim(0, len(histograms))


def reference_figure(overlay: dict, row, done) -> dict:
    """Real (reference) vs synthetic (run) as shares, overlaid, and both box-centre heatmaps."""
    fig, axes = row(5, 2.8)
    run, real = overlay["run"], overlay["reference"]
    share = lambda counts: np.asarray(counts, np.float64) / max(1, sum(counts))  # noqa: E731
    for ax, key in ((axes[0], "size"), (axes[1], "aspect")):
        edges = overlay[f"{key}_edges"]
        _log_stairs(ax, share(real[key]), edges, COLOURS[3], fill=True, alpha=0.35)
        _log_stairs(ax, share(run[key]), edges, COLOURS[0])
        ax.set_yticks([])
    for ax, key in ((axes[2], "objects_per_image"), (axes[3], "classes")):
        positions = np.arange(len(run[key]))
        ax.bar(positions - 0.2, share(real[key]), 0.4, color=COLOURS[3])
        ax.bar(positions + 0.2, share(run[key]), 0.4, color=COLOURS[0])
    _categories(axes[3], overlay["class_names"])
    _mosaic(axes[4], [np.asarray(real["centres"], np.float64), np.asarray(run["centres"], np.float64)])
    return done(fig, ["box size: sqrt(box area / image area)", "box aspect: width / height", "objects per image",
                      "class mix", "box centres: real (left), synthetic (right)"],
                {"real": COLOURS[3], "synthetic": COLOURS[0]})


def _categories(ax, labels: list[str]) -> None:
    slanted = len(labels) > 3
    ax.set_xticks(range(len(labels)), labels, rotation=30 if slanted else 0, ha="right" if slanted else "center",
                  fontsize=8)


def spread(out_dir: Path, count: int) -> tuple[list[dict], bool]:
    """Up to ``count`` records spread evenly over the run, among those with a preview when there are any, and
    whether they have one: two passes over the manifest, so only the chosen records are kept."""
    total = previews = 0
    for record in read_manifest(out_dir):
        total += 1
        previews += bool(record.get("preview"))
    pool = previews or total
    wanted = {round(i * (pool - 1) / max(1, min(count, pool) - 1)) for i in range(min(count, pool))}
    chosen, n = [], 0
    for record in read_manifest(out_dir):
        if previews and not record.get("preview"):
            continue
        if n in wanted:
            chosen.append(record)
        n += 1
    return chosen, bool(previews)


def contact_sheet(out_dir: Path, count: int = CONTACT_IMAGES) -> list[tuple[str, str]]:
    """(caption, JPEG data URI) of up to ``count`` previews spread over the run; without previews, the images
    with their boxes drawn. Decoded at a reduced size straight from the JPEG (fast)."""
    chosen, with_preview = spread(out_dir, count)
    sheet = []
    for record in chosen:
        path = out_dir / (record["preview"] if with_preview else record["image"])
        width = record["width"] * (0.5 if with_preview else 1.0)  # about: previews are usually scaled down
        flag = next((f for f, k in ((cv2.IMREAD_REDUCED_COLOR_8, 8), (cv2.IMREAD_REDUCED_COLOR_4, 4),
                                    (cv2.IMREAD_REDUCED_COLOR_2, 2)) if width / k >= CONTACT_WIDTH), cv2.IMREAD_COLOR)
        img = cv2.imread(str(path), flag)
        if img is None:
            continue
        if not with_preview:
            factor = img.shape[1] / record["width"]
            boxes = [[v * factor for v in o["box"]] for o in record["objects"]]
            img = writers.draw_preview(img, boxes, [o["class"] for o in record["objects"]], 1.0)
        if img.shape[1] > CONTACT_WIDTH:
            size = (CONTACT_WIDTH, max(1, round(img.shape[0] * CONTACT_WIDTH / img.shape[1])))
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        caption = f"{record.get('id') or Path(record['image']).stem} ({record['split']})"
        sheet.append((caption, data_uri(writers.encode_jpeg(img, 75), "image/jpeg")))
    return sheet


def _switched_off(config: dict) -> dict:
    """The augment config with every switchable transform off and the cut-out at its own size: what each
    range does alone is then visible."""
    config = copy.deepcopy(config)
    for value in config.values():
        if isinstance(value, dict) and "enabled" in value:
            value["enabled"] = False
    config["size"], config["scale"] = "scale", {"min": 1.0, "max": 1.0}
    return config


def sheet_settings(config: dict) -> list[tuple[str, list[tuple[str, dict]]]]:
    """(range name, [(label, augment config with only that range, pinned at one end)]) for every enabled range:
    a ``{min, max}`` range at its min and max, a list of choices (blur kernel sizes) at its smallest and largest."""
    base, found = _switched_off(config), []
    for key, spec in config.items():
        if not (isinstance(spec, dict) and spec.get("enabled")) and key != config["size"]:
            continue
        if "min" in spec and "max" in spec:
            ends = [(f"{spec[end]:g}", {**spec, "min": spec[end], "max": spec[end]}) for end in ("min", "max")]
        else:
            choices = next(((k, v) for k, v in spec.items() if isinstance(v, list) and v), None)
            if choices is None:
                continue
            name, values = choices
            ends = [(f"{v:g}", {**spec, name: [v]}) for v in (min(values), max(values))]
        size = {"size": key} if key == config["size"] else {}  # the size range of the run's unit
        found.append((key, [(label, {**base, **size, key: pinned}) for label, pinned in ends]))
    return found


def augmentation_sheet(bank: dict, settings: dict) -> dict:
    """The first cut-out of each class, untouched and at each end of every enabled augmentation range,
    made by the pipeline's own ``augment.sample_object_params`` and ``augment.apply_object``.

    The cut-outs are decoded again from the input photos (``sources.decode_object``, as the bank was built), so
    this needs only the bank's index, not its files. Ranges whose ends leave the cut-out unchanged act on the
    whole image or at paste time: they are listed, not shown.
    """
    rng = np.random.default_rng(0)  # every range is pinned to one value, so nothing here is random
    config = settings["augment"]
    canvas = (settings["quilt"]["width"], settings["quilt"]["height"])
    neutral = augment.sample_object_params(rng, _switched_off(config))
    ranges = [(name, [(label, augment.sample_object_params(rng, pinned)) for label, pinned in ends])
              for name, ends in sheet_settings(config)]
    ranges = [(name, ends) for name, ends in ranges if any(params != neutral for _, params in ends)]
    root, threshold = Path(bank["root"]), settings["input"]["mask_threshold"]
    classes, shrunk = [], False
    for cls in bank["classes"][:SHEET_CLASSES]:
        source = cls["objects"][0]
        normalise = source.get("normalise", 1.0)
        obj, _ = sources.decode_object(sources.ObjectSource(root / source["photo"],
                                                            root / source["mask"] if source["mask"] else None),
                                       threshold)
        factor = min(1.0, SHEET_SOURCE / max(obj.shape[:2]))
        shrunk |= factor < 1.0
        if factor < 1.0:
            size = (max(1, round(obj.shape[1] * factor)), max(1, round(obj.shape[0] * factor)))
            obj = cv2.resize(obj, size, interpolation=cv2.INTER_AREA)
            obj[:, :, 3] = np.where(obj[:, :, 3] >= 128, 255, 0)
        hull = np.asarray(source["hull"], np.float64)
        made = {name: [(f"{name} {label}", _cutout(obj, hull, factor, params, canvas, normalise))
                       for label, params in ends] for name, ends in ranges}
        classes.append((cls["name"], source["photo"], _cutout(obj, hull, factor, neutral, canvas, normalise), made))
    # a range whose ends give the untouched cut-out for every class acts on the image or at paste time
    same = lambda a, b: a is not None and b is not None and a.shape == b.shape and np.array_equal(a, b)  # noqa: E731
    not_shown = [name for name, _ in ranges
                 if all(same(cut, base) for _, _, base, made in classes for _, cut in made[name])]
    not_shown = [name for name, _ in sheet_settings(config) if name not in dict(ranges)] + not_shown
    rows = []
    for name, photo, base, made in classes:
        cells = [("as cut out", base)] + [cell for key, cut in made.items() if key not in not_shown for cell in cut]
        zoom = SHEET_CELL / max(max(c.shape[:2]) for _, c in cells if c is not None)
        rows.append({"class": name, "photo": photo, "cells": [(label, _png(cell, zoom)) for label, cell in cells]})
    return {"rows": rows, "not_shown": not_shown, "shrunk": shrunk,
            "classes_left_out": max(0, len(bank["classes"]) - SHEET_CLASSES)}


def _cutout(obj: np.ndarray, hull: np.ndarray, factor: float, params: dict, canvas: tuple[int, int],
            normalise: float) -> np.ndarray | None:
    """The cut-out as a worker would transform it (render.transform_object), on a copy shrunk by ``factor``:
    BGRA or None. ``hull`` is in the full-size cut-out's pixels; ``normalise`` its factor to its class's size."""
    params = dict(params)
    full_shape = (round(obj.shape[0] / factor), round(obj.shape[1] / factor))
    params["scale"] = augment.size_scale(params, hull, full_shape, canvas, normalise) * factor
    result = augment.apply_object(np.ascontiguousarray(obj[:, :, :3]), np.ascontiguousarray(obj[:, :, 3]), params)
    return None if result is None else np.dstack(result)


def _png(cell: np.ndarray | None, zoom: float) -> str | None:
    if cell is None:
        return None
    size = (max(1, round(cell.shape[1] * zoom)), max(1, round(cell.shape[0] * zoom)))
    cell = cv2.resize(cell, size, interpolation=cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR)
    cell[:, :, :3][cell[:, :, 3] == 0] = 0
    ok, buf = cv2.imencode(".png", cell)
    return data_uri(buf.tobytes(), "image/png") if ok else None


# ------------------------------------------------------------------------------------------------ HTML

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}img.plot{max-width:100%}
.grid{display:flex;flex-wrap:wrap;gap:8px}.grid figure{margin:0;font-size:11px;text-align:center}
figure{margin:.5em 0}figcaption{font-size:12px;color:#555}
.cell{width:100px}.cell div{height:100px;display:flex;align-items:center;justify-content:center;
background:repeating-conic-gradient(#ddd 0 25%,#fff 0 50%) 0 0/12px 12px}
code,pre{background:#f6f6f6}pre{padding:.5em;overflow:auto;max-height:30em}
"""


def _overrides_cell(run: dict) -> str:
    overrides = " ".join(run["overrides"]) or "(none)"
    return f"replay of {run['replay_of']}: {overrides}" if run.get("replay_of") else overrides


def render_html(result: dict, parts: dict, settings: dict) -> str:
    """The report page: sections of tables and embedded pictures; no script, no external reference."""
    run, counts, boxes = result["run"], result["counts"], result["boxes"]
    e = html.escape
    figures = parts["figures"]
    img = lambda key: _figure_html(figures[key]) if key in figures else ""  # noqa: E731
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>quiltgen report</title>"
           f"<style>{STYLE}</style></head><body>",
           f"<h1>quiltgen run: {counts['images']} images, {counts['objects']} objects, "
           f"{len(counts['classes'])} classes</h1>",
           _table(["seed", "overrides", "dataset time", "throughput", "finished"],
                  [[run["seed"], _overrides_cell(run), f"{run['seconds']:.1f} s",
                    f"{run['samples_per_second']:.1f} samples/s", run["finished"]]])]
    if "evaluation" in result:
        out += _evaluation(result["evaluation"], figures)
    out += ["<h2>Counts</h2>",
            _table(["images", "objects", "dropped objects", "distractors", "background-only images"],
                   [[counts["images"], counts["objects"], counts["dropped"], counts["distractors"],
                     counts["background_only"]]]),
            _table(["instances", *counts["splits"], "total"],
                   [[name, *(counts["instances"][name][s] for s in [*counts["splits"], "total"])]
                    for name in [*counts["classes"], "all"]]),
            _table(["blend method", *result["blend"]["objects"]], [["objects", *result["blend"]["objects"].values()]]),
            img("objects"), "<h2>Boxes</h2>",
            _table(["class", "boxes", "width px (median)", "height px (median)", "width / image", "height / image",
                    "aspect (median)", "small", "medium", "large"],
                   [[name, b["n"], _q(b["width_px"]), _q(b["height_px"]), _q(b["width_rel"]), _q(b["height_rel"]),
                     f"{b['aspect']['median']:.3g}" if b["n"] else "",
                     *(f"{b['coco_size'][k]:.0%}" for k in ("small", "medium", "large"))]
                    for name, b in boxes["per_class"].items()]),
            "<p>width / height: 5th percentile, median, 95th percentile. COCO sizes by mask area: small &lt; 32², "
            "large &ge; 96² pixels.</p>", img("centres"),
            "<h2>Augmentation values drawn</h2>", img("augment")]
    constant = {k: v for k, v in result["augment"].items() if v.get("constant")}
    categorical = {k: v for k, v in result["augment"].items() if "values" in v}
    if constant:
        out.append("<p>The same for every draw: " + ", ".join(f"<code>{e(k)}</code> = {v['min']:g}"
                                                                for k, v in constant.items()) + "</p>")
    for key, value in categorical.items():
        out.append(f"<p><code>{e(key)}</code>: " + ", ".join(f"{e(k)} {n}" for k, n in value["values"].items())
                   + "</p>")
    out += _sheet(parts["sheet"]), _contact(parts["contact"])
    config = {k: v for k, v in settings.items() if k != "plan"}
    out += ["<h2>Configuration</h2><details><summary>the run's config</summary><pre>",
            e(yaml.safe_dump(config, sort_keys=False)), "</pre></details></body></html>"]
    return "\n".join(out)


def _evaluation(found: dict, figures: dict) -> list[str]:
    better = "higher" if found["direction"] == "maximize" else "lower"
    out = [f"<h2>Score: {found['score']:g}</h2>"]
    if found["kind"] == "reference":
        left_out = (" The aspect distance is left out: the reference has no aspect ratios (YOLO labels without "
                    "their images)." if found["distances"]["aspect"] is None else "")
        out += [f"<p>Label statistics against <code>{html.escape(found['reference'])}</code> "
                f"({found['reference_images']} images, {found['reference_boxes']} boxes): 1 - the weighted mean of "
                f"the distances below; {better} is better, 1 = the same statistics.{left_out}</p>",
                _table(["distance", *found["distances"]],
                       [["value (0 = same)", *("left out" if v is None else v for v in found["distances"].values())],
                        ["weight", *(found["weights"].get(k, 0) for k in found["distances"])]])]
        if "reference" in figures:
            out.append(_figure_html(figures["reference"]))
    else:
        out.append(f"<p>From <code>{html.escape(found['command'])}</code> ({better} is better; its output: "
                   f"<code>{found['log']}</code>).</p>")
    return out


def _figure_html(figure: dict) -> str:
    """A plot with its panel titles and colour keys as HTML text."""
    panels = " | ".join(html.escape(p) for p in figure["panels"])
    keys = " ".join(f"<span style='color:{c}'>&#9632;</span> {html.escape(k)}" for k, c in figure["keys"].items())
    return (f"<figure><figcaption>{panels}<br>{keys}</figcaption>"
            f"<img class='plot' alt='{html.escape(figure['panels'][0])}' src='{figure['uri']}'></figure>")


def _sheet(sheet: dict) -> str:
    out = ["<h2>Augmentation sheet</h2><p>Each class's first cut-out at both ends of every enabled range, one "
           "range at a time, made by the pipeline's own augmentation functions."]
    if sheet["shrunk"]:
        out.append(f" Cut-outs were shrunk to {SHEET_SOURCE} px first, so pixel-sized effects (erode, blur) look "
                   f"stronger than at full size.")
    if sheet["not_shown"]:
        out.append(" Not shown (they act on the whole image or at paste time): "
                   + ", ".join(f"<code>{html.escape(n)}</code>" for n in sheet["not_shown"]) + ".")
    if sheet["classes_left_out"]:
        out.append(f" The first {len(sheet['rows'])} classes are shown, {sheet['classes_left_out']} are left out.")
    out.append("</p>")
    for row in sheet["rows"]:
        out.append(f"<h3>{html.escape(row['class'])} <small>({html.escape(row['photo'])})</small></h3>"
                   "<div class='grid'>")
        for label, uri in row["cells"]:
            picture = f"<img alt='{html.escape(label)}' src='{uri}'>" if uri else "vanished"
            out.append(f"<figure class='cell'><div>{picture}</div>{html.escape(label)}</figure>")
        out.append("</div>")
    return "\n".join(out)


def _contact(contact: list[tuple[str, str]]) -> str:
    out = ["<h2>Contact sheet</h2><div class='grid'>"]
    out += [f"<figure><img alt='{html.escape(c)}' src='{uri}'><figcaption>{html.escape(c)}</figcaption></figure>"
            for c, uri in contact]
    return "\n".join([*out, "</div>"])


def _q(summary: dict) -> str:
    if not summary.get("n"):
        return ""
    return f"{summary['p05']:.3g} / {summary['median']:.3g} / {summary['p95']:.3g}"


def _table(header: list, rows: list[list]) -> str:
    e = lambda v: html.escape(str(v))  # noqa: E731
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
