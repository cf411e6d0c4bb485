"""``run(cfg, out_dir)``: check inputs, plan tasks, render in parallel, stream records to the manifest.

Tasks are (class, sample range) chunks, small enough that a large class cannot leave a core idle.
Results stream back unordered to one progress bar; a reorder buffer writes the manifest in
(class, sample) order, so it is byte-identical for any worker count.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from joblib import Parallel, delayed
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline import demo, sources
from pipeline.backends import parallel_backend
from pipeline.render import render_chunk
from pipeline.schema import QuiltgenConfig
from pipeline.writers import ManifestWriter

log = logging.getLogger(__name__)

OUTPUT_DIRS = ("images", "previews", "annotations")


def resolve_input_root(settings: dict) -> Path:
    root = settings["input"]["root"]
    if root is None:
        path = demo.ensure_demo(settings["input"]["cache_dir"])
        log.info("input.root is unset: using the built-in demo set at %s", path)
        return path
    return Path(root).expanduser().resolve()


def class_sample_counts(bank: dict, samples: dict) -> list[int]:
    """Samples per class: photos x backgrounds x repeats, or ``per_class`` when it is set."""
    if samples["per_class"] is not None:
        return [samples["per_class"]] * len(bank["classes"])
    n_bg = len(bank["backgrounds"])
    return [len(c["objects"]) * n_bg * samples["repeats"] for c in bank["classes"]]


def plan_tasks(counts: list[int], n_workers: int, chunk_size: int | None) -> list[dict]:
    """Split every class's sample range into chunks; auto size aims at >= 4 tasks per worker."""
    if chunk_size is None:
        chunk_size = max(1, min(64, math.ceil(sum(counts) / (4 * n_workers))))
    return [{"class_index": c, "start": start, "stop": min(start + chunk_size, count)}
            for c, count in enumerate(counts) for start in range(0, count, chunk_size)]


def in_order(results: Iterator[tuple]) -> Iterator[tuple]:
    """Yield (task index, records) in task order from an unordered stream, holding only early arrivals."""
    waiting, expected = {}, 0
    for task_idx, records in results:
        waiting[task_idx] = records
        while expected in waiting:
            yield expected, waiting.pop(expected)
            expected += 1


def _indexed(task_idx: int, task: dict, bank: dict, settings: dict, out_dir: str) -> tuple:
    return task_idx, render_chunk(task, bank, settings, out_dir)


def run(cfg: QuiltgenConfig, out_dir: str | Path) -> dict:
    """Generate the dataset described by ``cfg`` into ``out_dir``; returns a summary dict."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    settings = dataclasses.asdict(cfg)  # plain dicts all the way down: this is what workers receive
    root = resolve_input_root(settings)
    inp = settings["input"]
    catalog = sources.scan(root, inp["photo_dir"], inp["mask_dir"], inp["background_dir"])
    bank_dir = out_dir / f".bank-{uuid.uuid4().hex[:8]}"
    try:
        bank = sources.build_bank(catalog, bank_dir, settings)
        counts = class_sample_counts(bank, settings["samples"])
        for cls, count in zip(bank["classes"], counts, strict=True):
            log.info("class %-16s %3d photos -> %d samples", cls["name"], len(cls["objects"]), count)
        log.info("%d backgrounds, %d files skipped", len(bank["backgrounds"]), len(catalog.skipped))
        settings["plan"] = {"per_class": settings["samples"]["per_class"], "repeats": settings["samples"]["repeats"],
                            "n_backgrounds": len(bank["backgrounds"])}
        total = _generate(bank, settings, counts, out_dir)
    finally:
        shutil.rmtree(bank_dir, ignore_errors=True)
    elapsed = time.perf_counter() - started
    summary = {"samples": total, "classes": len(counts), "seconds": round(elapsed, 3),
               "samples_per_second": round(total / elapsed, 2) if elapsed else 0.0, "out_dir": str(out_dir)}
    log.info("wrote %d samples of %d classes in %.1f s (%.1f samples/s) to %s",
             total, len(counts), elapsed, summary["samples_per_second"], out_dir)
    return summary


def _generate(bank: dict, settings: dict, counts: list[int], out_dir: Path) -> int:
    workers = settings["workers"]
    with parallel_backend(workers) as n_workers:
        tasks = plan_tasks(counts, n_workers, workers["chunk_size"])
        log.info("%d samples in %d tasks on %d %s workers", sum(counts), len(tasks), n_workers, workers["backend"])
        for name in OUTPUT_DIRS:
            (out_dir / name).mkdir(parents=True, exist_ok=True)
        manifest = ManifestWriter(out_dir / "manifest.jsonl")
        jobs = (delayed(_indexed)(i, task, bank, settings, str(out_dir)) for i, task in enumerate(tasks))
        written = 0
        try:
            with logging_redirect_tqdm(), tqdm(total=sum(counts), unit="img", desc="quiltgen",
                                               disable=None, dynamic_ncols=True) as bar:
                stream = Parallel(return_as="generator_unordered", batch_size=1)(jobs)
                for _, records in in_order(_ticking(stream, bar)):
                    for record in records:
                        manifest.write(record)
                    written += len(records)
        except BaseException:
            manifest.discard()
            raise
        manifest.commit()
    return written


def _ticking(stream: Iterator[tuple], bar: tqdm) -> Iterator[tuple]:
    for item in stream:
        bar.update(len(item[1]))
        yield item
