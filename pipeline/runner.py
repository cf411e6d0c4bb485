"""``run(cfg, out_dir)``: check inputs, plan tasks, render in parallel, stream records to the manifest.

Tasks are (class, sample range) chunks, small enough that a large class cannot leave a core idle.
Results stream back unordered to one progress bar; a reorder buffer writes the manifest in
(class, sample) order, so it is byte-identical for any worker count.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline import demo, sources, writers
from pipeline.backends import parallel_backend, warm_up
from pipeline.errors import ConfigError
from pipeline.formats import DatasetWriters
from pipeline.render import prepare_worker, render_task
from pipeline.schema import QuiltgenConfig, augment_per_class
from pipeline.seeding import split_rng

log = logging.getLogger(__name__)


# What a run writes at the top of its folder; finding any of these means the folder holds an earlier dataset.
DATASET_ENTRIES = ("manifest.jsonl", ".manifest.jsonl.partial", "images", "previews", "annotations", "yolo")


def check_unused(out_dir: Path) -> None:
    """Refuse a folder that already holds a dataset: mixing two runs' files would give wrong labels."""
    found = [name for name in DATASET_ENTRIES if os.path.lexists(out_dir / name)]
    if found:
        raise ConfigError(f"hydra.run.dir: {out_dir} already holds {', '.join(found)} from an earlier run, and "
                          f"mixing two runs' files would mislabel images; give each run a new folder "
                          f"(hydra.run.dir, or hydra.sweep.dir with -m: the defaults are new for every run) "
                          f"or delete that one first")


def output_dirs(output: dict) -> list[str]:
    """Top-level folders this run writes into (made up front, so every worker finds them)."""
    wanted = {"images": True, "previews": output["previews"],
              "annotations": bool({"voc", "coco"} & set(output["formats"]))}
    return [name for name, used in wanted.items() if used]


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


def split_sizes(count: int, splits: dict[str, float]) -> dict[str, int]:
    """Exact split sizes summing to ``count``: floors first, leftovers to the largest remainders."""
    exact = {name: fraction * count for name, fraction in splits.items() if fraction > 0}
    sizes = {name: math.floor(value) for name, value in exact.items()}
    by_remainder = sorted(exact, key=lambda name: sizes[name] - exact[name])  # stable: config order on ties
    for name in by_remainder[:count - sum(sizes.values())]:
        sizes[name] += 1
    return sizes


def assign_splits(seed: int, class_idx: int, count: int, splits: dict[str, float]) -> list[str]:
    """Split name of each of a class's samples: exact sizes, shuffled by the class's own generator."""
    sizes = split_sizes(count, splits)
    names = np.repeat(list(sizes), list(sizes.values()))
    return names[split_rng(seed, class_idx).permutation(count)].tolist()


def class_probabilities(names: list[str], weights: dict[str, float]) -> list[float]:
    """Draw probabilities of the classes for extra objects: ``compose.class_weights``, 1 for classes not listed."""
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ConfigError(f"compose.class_weights.{unknown[0]}: no such class; the classes are {names}")
    raw = np.array([weights.get(name, 1.0) for name in names], np.float64)
    if raw.sum() <= 0:
        raise ConfigError("compose.class_weights: every class has weight 0; give at least one a positive weight")
    return (raw / raw.sum()).tolist()


def plan_tasks(counts: list[int], n_workers: int, chunk_size: int | None, splits: list[list[str]]) -> list[dict]:
    """Split every class's sample range into chunks; auto size aims at >= 4 tasks per worker."""
    if chunk_size is None:
        chunk_size = max(1, min(64, math.ceil(sum(counts) / (4 * n_workers))))
    return [{"class_index": c, "start": start, "stop": min(start + chunk_size, count),
             "splits": splits[c][start:start + chunk_size]}
            for c, count in enumerate(counts) for start in range(0, count, chunk_size)]


def in_order(results: Iterator[tuple]) -> Iterator[tuple]:
    """Yield (task index, records) in task order from an unordered stream, holding only early arrivals."""
    waiting, expected = {}, 0
    for task_idx, records in results:
        waiting[task_idx] = records
        while expected in waiting:
            yield expected, waiting.pop(expected)
            expected += 1


def run(cfg: QuiltgenConfig, out_dir: str | Path) -> dict:
    """Generate the dataset described by ``cfg`` into ``out_dir``; returns a summary dict."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    check_unused(out_dir)
    settings = dataclasses.asdict(cfg)  # plain dicts all the way down: this is what workers receive
    root = resolve_input_root(settings)
    inp = settings["input"]
    catalog = sources.scan(root, inp["photo_dir"], inp["mask_dir"], inp["background_dir"], inp["distractor_dir"])
    for name in catalog.classes:
        log.info("class %-16s found %s", name, catalog.describe(name))
    log.info("found %d backgrounds, %d distractors", len(catalog.backgrounds), len(catalog.distractors))
    names = catalog.classes
    settings["plan"] = {"per_class": settings["samples"]["per_class"], "repeats": settings["samples"]["repeats"],
                        "class_p": class_probabilities(names, settings["compose"]["class_weights"])}
    settings["class_augment"] = augment_per_class(settings["augment"], names)  # augment.classes merged per class
    bank_dir = out_dir / f".bank-{uuid.uuid4().hex[:8]}"
    warming = warm_up(settings["workers"], prepare_worker)  # workers start while the inputs are decoded
    try:
        bank = sources.build_bank(catalog, bank_dir, settings)
        counts = class_sample_counts(bank, settings["samples"])
        for cls, count in zip(bank["classes"], counts, strict=True):
            log.info("class %-16s %3d usable photos -> %d samples", cls["name"], len(cls["objects"]), count)
        if catalog.skipped:
            log.warning("%d files skipped (input.on_bad_file=skip)", len(catalog.skipped))
        settings["plan"]["n_backgrounds"] = len(bank["backgrounds"])
        if warming is not None:
            warming.join()
        total = _generate(bank, settings, counts, out_dir)
    finally:
        if warming is not None:  # also after a bad input: no stray warm-up may overlap the next run's pool
            warming.join()
        shutil.rmtree(bank_dir, ignore_errors=True)
    elapsed = time.perf_counter() - started
    summary = {"samples": total, "classes": len(counts), "seconds": round(elapsed, 3),
               "samples_per_second": round(total / elapsed, 2) if elapsed else 0.0, "out_dir": str(out_dir)}
    log.info("wrote %d samples of %d classes in %.1f s (%.1f samples/s) to %s",
             total, len(counts), elapsed, summary["samples_per_second"], out_dir)
    return summary


def _generate(bank: dict, settings: dict, counts: list[int], out_dir: Path) -> int:
    workers, out = settings["workers"], settings["output"]
    splits = [assign_splits(settings["seed"], c, count, out["splits"]) for c, count in enumerate(counts)]
    with parallel_backend(workers) as n_workers:
        tasks = plan_tasks(counts, n_workers, workers["chunk_size"], splits)
        log.info("%d samples in %d tasks on %d %s workers", sum(counts), len(tasks), n_workers, workers["backend"])
        for name in output_dirs(out):
            (out_dir / name).mkdir(parents=True, exist_ok=True)
        dataset = DatasetWriters(out_dir, bank, settings)
        jobs = (delayed(render_task)(i, task, bank, settings, str(out_dir)) for i, task in enumerate(tasks))
        written = 0
        try:
            with _stopping_workers(_results(jobs, n_workers)) as stream, logging_redirect_tqdm(), \
                    tqdm(total=sum(counts), unit="img", desc="quiltgen", disable=None, dynamic_ncols=True) as bar:
                for _, records in in_order(_ticking(stream, bar)):
                    for record in records:
                        dataset.add(record)
                    written += len(records)
        except BaseException:
            dataset.discard()
            writers.remove_temporaries(out_dir)  # of writes cut short: the workers are stopped by now
            raise
        dataset.commit()
    return written


def _results(jobs: Iterator, n_workers: int) -> Iterator[tuple]:
    """Task results as they finish. A backend without result streaming (Ray's) runs the tasks in waves of
    a few per worker instead, so the progress bar still moves and memory stays flat."""
    try:
        parallel = Parallel(return_as="generator_unordered", batch_size=1)
    except ValueError:
        parallel = None
    if parallel is not None:
        yield from parallel(jobs)
        return
    log.info("this backend cannot stream results: running the tasks in waves of %d", 4 * n_workers)
    parallel = Parallel(batch_size=1)
    while wave := list(itertools.islice(jobs, 4 * n_workers)):
        yield from parallel(wave)


@contextmanager
def _stopping_workers(stream: Iterator[tuple]) -> Iterator[Iterator[tuple]]:
    """Close the result stream on the way out, so an error or a signal in the parent stops the workers now
    (joblib's loky backend kills and joins them) instead of whenever the stream is garbage-collected."""
    try:
        yield stream
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joblib's note that unfinished tasks were cancelled: that is the point
            stream.close()


def _ticking(stream: Iterator[tuple], bar: tqdm) -> Iterator[tuple]:
    for item in stream:
        bar.update(len(item[1]))
        yield item
