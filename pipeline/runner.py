"""``run(cfg, out_dir)``: claim the folder, check inputs, plan tasks, render in parallel, commit the dataset.

Tasks are (class, sample indices) chunks, small enough that a large class cannot leave a core idle.
Every record a worker returns is journalled as it arrives; a reorder buffer feeds the manifest and COCO
files in (class, sample) order, so they are byte-identical for any worker count. A resume reads the
journal, keeps the samples whose files are intact and renders only the rest, in the same order.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import shutil
import signal
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from joblib.externals.loky.process_executor import TerminatedWorkerError
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline import demo, evaluate, report, runstate, sources, worker, writers
from pipeline import splits as splitting
from pipeline.backends import parallel_backend
from pipeline.errors import ConfigError, InputError, QuiltgenError, ResumeRefused, SampleError
from pipeline.formats import DatasetWriters
from pipeline.render import blend_versions, render_task
from pipeline.schema import QuiltgenConfig, augment_per_class

log = logging.getLogger(__name__)


def plural(count: int, noun: str, suffix: str = "s") -> str:
    return f"{count} {noun}{'' if count == 1 else suffix}"


def output_dirs(output: dict) -> list[str]:
    """Top-level folders this run writes into (made up front, so every worker finds them)."""
    wanted = {"images": True, "previews": output["previews"],
              "annotations": "coco" in output["formats"]}
    return [name for name, used in wanted.items() if used]


def resolve_input_root(settings: dict) -> Path:
    root = settings["input"]["root"]
    if root is None:
        path = demo.ensure_demo(settings["input"]["cache_dir"])
        log.info("input.root is unset: using the built-in demo set at %s", path)
        return path
    return Path(root).expanduser().resolve()


def class_probabilities(names: list[str], weights: dict[str, float]) -> list[float]:
    """Draw probabilities of the classes for extra objects: ``compose.class_weights``, 1 for classes not listed."""
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ConfigError(f"compose.class_weights.{unknown[0]}: no such class; the classes are {names}")
    raw = np.array([weights.get(name, 1.0) for name in names], np.float64)
    if raw.sum() <= 0:
        raise ConfigError("compose.class_weights: every class has weight 0; give at least one a positive weight")
    return (raw / raw.sum()).tolist()


def plan_tasks(todo: list[list[int]], n_workers: int, chunk_size: int | None, splits: list[list[str]],
               sources: list[list[tuple]] | None = None) -> list[dict]:
    """Chunk the sample indices to render of every class, each with its split and sources (first object, pinned
    background); auto size aims at >= 4 tasks per worker."""
    total = sum(len(indices) for indices in todo)
    if chunk_size is None:
        chunk_size = max(1, min(64, math.ceil(total / (4 * n_workers))))
    chunks = [(c, indices[start:start + chunk_size])
              for c, indices in enumerate(todo) for start in range(0, len(indices), chunk_size)]
    return [{"class_index": c, "samples": chunk, "splits": [splits[c][i] for i in chunk],
             "sources": [sources[c][i] for i in chunk] if sources is not None else None} for c, chunk in chunks]


def in_order(keys: Iterable[tuple], done: Callable[[tuple], dict | None],
             arrivals: Iterator[list[dict]]) -> Iterator[dict]:
    """Records in ``keys`` (``runstate.sample_key``) order: a finished image's from ``done``, the others from the
    unordered ``arrivals`` (lists of records), holding only early arrivals."""
    waiting: dict[tuple, dict] = {}
    for key in keys:
        record = done(key)
        if record is None:
            while key not in waiting:
                for arrived in next(arrivals):
                    waiting[runstate.sample_key(arrived)] = arrived
            record = waiting.pop(key)
        yield record


def run(cfg: QuiltgenConfig, out_dir: str | Path, replay_of: Path | None = None) -> dict:
    """Generate the dataset described by ``cfg`` into ``out_dir`` (or finish it, with ``cfg.resume``);
    returns a summary dict. ``cfg.dry_run`` checks everything and prints the plan, writing nothing.
    ``replay_of``: the run folder whose frozen config this replays; changed input files are reported."""
    settings = dataclasses.asdict(cfg)  # plain dicts all the way down: this is what workers receive
    if settings["dry_run"]:
        return dry_run(settings)
    started = time.perf_counter()
    resuming = settings["resume"] is not None
    if not resuming:  # before the claim, which writes run.json
        runstate.check_outside_inputs(out_dir, settings["input"]["root"])
    state = runstate.claim(out_dir, resume=resuming)
    out_dir = state.folder
    try:
        if resuming:
            previous = check_resumable(state, settings)
            if previous is not None:
                return previous
            if state.record.get("status") == "complete":
                if not (out_dir / "manifest.jsonl").exists():
                    raise ResumeRefused(f"resume: {out_dir} is marked complete but its manifest.jsonl is gone, so "
                                        f"its samples cannot be checked; delete the folder and start the run again")
                return _report_again(state, settings)
            resuming = "config_hash" in state.record  # else it stopped before it began: it starts from scratch
        summary = _run(state, settings, started, replay_of, resuming)
    except ResumeRefused:
        raise
    except KeyboardInterrupt:
        state.finish("interrupted", "interrupted (Ctrl-C)")
        raise
    except runstate.Terminated:
        state.finish("interrupted", "terminated (SIGTERM)")
        raise
    except BaseException as err:
        state.finish("failed", str(err) if isinstance(err, QuiltgenError) else f"{type(err).__name__}: {err}")
        raise
    finally:
        runstate.drop(state)
    return summary


def check_resumable(state: runstate.RunState, settings: dict) -> dict | None:
    """Refuse a resume whose config or quiltgen version differs from the run's; None if there is work left,
    else the summary of the already complete run."""
    record, folder = state.record, state.folder
    if runstate.never_started(record):
        log.info("resume: %s stopped before its inputs were checked (%s), so nothing of it was kept: the run "
                 "starts from the beginning", folder, record.get("error") or record["status"])
        state.record.clear()
        state.save(status="running", pid=os.getpid(), started=runstate.now())
        return None
    if "config_hash" not in record:
        raise ResumeRefused(f"resume: {folder}/run.json is unreadable or incomplete, so what the folder holds cannot "
                            f"be checked; delete the folder and start the run again")
    identity = runstate.config_identity(settings)
    if runstate.config_hash(identity) != record["config_hash"]:
        differences = runstate.config_differences(record.get("config", {}), identity)
        raise ResumeRefused(f"resume: the config differs from the one {folder} was started with "
                            f"({'; '.join(differences[:5]) or 'see run.json'}): its .hydra/config.yaml was edited, or "
                            f"an override was given; a resume needs the run's own config (only workers.* may "
                            f"change), else start a new run")
    ours, theirs = runstate.versions()["quiltgen"], record.get("versions", {}).get("quiltgen")
    if ours != theirs:
        raise ResumeRefused(f"resume: {folder} was written by quiltgen {theirs} and this is {ours}; the same "
                            f"config may not give the same images, so finish it with quiltgen {theirs} or start "
                            f"a new run")
    if record.get("status") == "complete" and (folder / "manifest.jsonl").exists() and reported(folder, settings):
        log.info("resume: %s is already complete (%s); nothing to do", folder,
                 plural(record.get("samples", {}).get("total", 0), "sample"))
        return {"samples": 0, "classes": 0, "seconds": 0.0, "samples_per_second": 0.0, "out_dir": str(folder),
                "already_complete": True}
    return None


def reported(folder: Path, settings: dict) -> bool:
    """Whether a complete run's stats.json, report.html and score (those its config asks for) were made."""
    report_made = not settings["output"]["report"] or (folder / "report.html").exists()
    scored = not settings["evaluate"] or "score" in (runstate.read_run(folder) or {})
    return (folder / "stats.json").exists() and report_made and scored


def _report_again(state: runstate.RunState, settings: dict) -> dict:
    """A complete dataset whose report or evaluation did not finish (a stop, a failed evaluation): make them.
    The report's augmentation sheet needs the decoded inputs, so they are decoded again."""
    out_dir = state.folder
    log.info("resume: the dataset in %s is complete; making its report and evaluation", out_dir)
    catalog = scan_inputs(settings)
    with banked(catalog, out_dir, settings) as (bank, _, _):
        plan_samples(bank, settings)  # the per-class settings the report shows
    summary = {"samples": 0, "classes": len(catalog.classes), "seconds": 0.0, "samples_per_second": 0.0,
               "out_dir": str(out_dir)}
    return _reported(state, settings, bank, state.record.get("seconds", 0.0), summary)


def _reported(state: runstate.RunState, settings: dict, bank: dict, seconds: float, summary: dict) -> dict:
    """``summary`` with the score, after writing stats.json, report.html and the evaluation (score in run.json)."""
    summary.update(report.report_run(state.folder, settings, bank, seconds))
    if summary.get("score") is not None:
        state.save(score=summary["score"])
    return summary


@contextmanager
def banked(catalog: sources.Catalog, out_dir: Path, settings: dict) -> Iterator[tuple[dict, list, int]]:
    """(bank, inputs, number of workers) for the block: the inputs decoded on the run's workers into a bank in
    ``out_dir``, removed after it, as is any bank an earlier run that died there left (the folder is ours now)."""
    for stale in out_dir.glob(".bank-*"):
        shutil.rmtree(stale, ignore_errors=True)
    bank_dir = out_dir / f".bank-{uuid.uuid4().hex[:8]}"
    with parallel_backend(settings["workers"]) as n_workers:
        try:
            yield (*build_bank(catalog, bank_dir, settings, n_workers), n_workers)
        finally:
            shutil.rmtree(bank_dir, ignore_errors=True)


def scan_inputs(settings: dict) -> sources.Catalog:
    """List the inputs (no decoding yet), log what each class has, and start ``settings['plan']``."""
    inp = settings["input"]
    catalog = sources.scan(resolve_input_root(settings), inp["photo_dir"], inp["mask_dir"], inp["background_dir"],
                           inp["distractor_dir"])
    for name in catalog.classes:
        log.info("class %-16s found %s", name, catalog.describe(name))
    log.info("found %s, %s", plural(len(catalog.backgrounds), "background"),
             plural(len(catalog.distractors), "distractor"))
    settings["plan"] = {"per_class": settings["samples"]["per_class"], "repeats": settings["samples"]["repeats"],
                        "class_p": class_probabilities(catalog.classes, settings["compose"]["class_weights"]),
                        "parent_pid": os.getpid()}
    settings["class_augment"] = augment_per_class(settings["augment"], catalog.classes)  # augment.classes merged
    evaluation = settings.get("evaluate")
    if evaluation and evaluation["kind"] == "reference":  # a bad path is found now, not after the dataset
        evaluate.check_reference(evaluation, catalog.classes)
    return catalog


def plan_samples(bank: dict, settings: dict) -> tuple[list[int], list[list[str]], list[list[tuple]]]:
    """Samples per class, the split of each and its sources (first object, pinned background), exact and
    reproducible from the seed (pipeline/splits.py); the input files of each split go into ``settings['plan']``.
    Background-only images, if any, are one more class after the real ones."""
    plan, out, seed = settings["plan"], settings["output"], settings["seed"]
    plan["n_backgrounds"] = len(bank["backgrounds"])
    distractors_used = bool(bank["distractors"]) and settings["compose"]["distractors"]["max"] > 0
    plan.update(splitting.divide_inputs(seed, bank, out["split_by"], out["splits"], distractors_used))
    planned = [splitting.plan_class(plan, seed, out["splits"], c, len(cls["objects"]))
               for c, cls in enumerate(bank["classes"])]
    fraction = settings["samples"]["background_fraction"]
    per_layout = len(blend_versions(settings["compose"]["blending"], False))  # a share of the images, not layouts
    n_background = splitting.background_only_count(per_layout * sum(len(names) for names, _ in planned), fraction)
    if n_background:
        if splitting.BACKGROUND in (cls["name"] for cls in bank["classes"]):
            raise InputError(f"class '{splitting.BACKGROUND}': samples.background_fraction={fraction} adds images "
                             f"named {splitting.BACKGROUND}_<index>, as this class's would be; rename that class "
                             f"folder or set samples.background_fraction=0")
        planned.append(splitting.plan_background_only(seed, len(bank["classes"]), n_background, out["splits"]))
    return [len(names) for names, _ in planned], [names for names, _ in planned], [src for _, src in planned]


def split_counts(splits: list[list[str]], per_layout: list[int] | None = None) -> dict[str, int]:
    """Samples (layouts) per split; images per split if given each class's ``images_per_layout``."""
    per_split: dict[str, int] = {}
    for c, names in enumerate(splits):
        for name in names:
            per_split[name] = per_split.get(name, 0) + (1 if per_layout is None else per_layout[c])
    return per_split


def images_per_layout(settings: dict, n_classes: int, n_counts: int) -> list[int]:
    """Images written per sample of each class (``n_counts`` classes, background-only ones after the ``n_classes``
    real ones): one, or one per ``compose.blending.every`` method."""
    return [len(blend_versions(settings["compose"]["blending"], c == n_classes)) for c in range(n_counts)]


def _run(state: runstate.RunState, settings: dict, started: float, replay_of: Path | None, resuming: bool) -> dict:
    out_dir = state.folder
    config = dict(settings)  # before the run adds its derived keys
    catalog = scan_inputs(settings)
    if settings["resume"] is not None:
        clear_leftovers(out_dir)
    with banked(catalog, out_dir, settings) as (bank, inputs, n_workers):
        counts, splits, sample_sources = plan_samples(bank, settings)
        log_plan(bank, counts, catalog, splits, settings)
        record_start(state, config, catalog.root, inputs, catalog.classes, counts, splits, resuming)
        if replay_of is not None:
            state.save(replay_of=str(replay_of))
            warn_changed_inputs(replay_of, inputs)
        total = _generate(state, bank, settings, counts, splits, sample_sources, n_workers)
    elapsed = time.perf_counter() - started
    summary = {"samples": total, "classes": len(catalog.classes), "seconds": round(elapsed, 3),
               "samples_per_second": round(total / elapsed, 2) if elapsed else 0.0, "out_dir": str(out_dir)}
    noun = counted_unit(settings)
    state.save(seconds=round(elapsed, 3))  # the dataset's time, for a report made again by a resume
    log.info("wrote %s of %s in %.1f s (%.1f %ss/s) to %s", plural(total, noun),
             plural(len(catalog.classes), "class", "es"), elapsed, summary["samples_per_second"], noun, out_dir)
    return _reported(state, settings, bank, elapsed, summary)


def build_bank(catalog: sources.Catalog, bank_dir: Path, settings: dict, n_workers: int) -> tuple[dict, list]:
    """Decode, hash and check every input on the workers; bank them under ``bank_dir``."""
    bank_dir.mkdir(parents=True, exist_ok=True)
    jobs = sources.decode_jobs(catalog, bank_dir, settings)
    pid = settings["plan"]["parent_pid"]
    calls = (delayed(worker.call)(pid, function, *args) for _, _, function, args in jobs)
    results, out_dir = [], bank_dir.parent
    try:
        with _stopping_workers(_results(calls, n_workers, ordered=True)) as stream, logging_redirect_tqdm(), \
                tqdm(total=len(jobs), unit="file", desc="inputs", disable=None, dynamic_ncols=True,
                     leave=False) as bar:
            for result in stream:
                results.append(result)
                bar.update()
    except TerminatedWorkerError:
        raise SampleError(f"a worker process died while decoding the inputs (killed, or out of memory); nothing was "
                          f"rendered yet: start again with {runstate.resume_command(out_dir)}, with fewer workers "
                          f"(workers.n_jobs) if memory is short") from None
    except OSError as err:  # the bank's .npy files (numpy's short write has no errno) or an input read
        if err.filename is not None and not Path(err.filename).is_relative_to(out_dir):
            raise InputError(f"{err.filename}: cannot read it ({err.strerror or err})") from None
        raise SampleError(writers.write_failure(err, out_dir)) from None
    return sources.assemble_bank(catalog, jobs, results, settings)


def log_plan(bank: dict, counts: list[int], catalog: sources.Catalog, splits: list[list[str]], settings: dict
             ) -> None:
    for cls, count in zip(bank["classes"], counts, strict=False):  # counts: + background-only images
        log.info("class %-16s %s -> %s", cls["name"], plural(len(cls["objects"]), "usable photo"),
                 plural(count, "sample"))
    if len(counts) > len(bank["classes"]):
        log.info("%s (samples.background_fraction=%g)", plural(counts[-1], "background-only image"),
                 settings["samples"]["background_fraction"])
    every = settings["compose"]["blending"]["every"]
    if every:
        images = split_counts(splits, images_per_layout(settings, len(bank["classes"]), len(counts)))
        log.info("each sample is written once per compose.blending.every method (%s): %s", ", ".join(every),
                 plural(sum(images.values()), "image"))
    log_splits(bank, splits, settings)
    if catalog.skipped:
        log.warning("%s skipped (input.on_bad_file=skip)", plural(len(catalog.skipped), "file"))


def log_splits(bank: dict, splits: list[list[str]], settings: dict) -> None:
    """Warn of every split that gets no image; with output.split_by, say which input files each split has."""
    out, plan = settings["output"], settings["plan"]
    per_split = split_counts(splits, images_per_layout(settings, len(bank["classes"]), len(splits)))
    for name in splitting.active_splits(out["splits"]):
        if not per_split.get(name):
            log.warning("output.splits.%s=%g: split %s is empty, no image was assigned to it; make more images "
                        "(samples.per_class, samples.repeats) or set output.splits.%s=0", name, out["splits"][name],
                        name, name)
        if out["split_by"] == "sample":
            continue
        files = []
        if plan["photos"] is not None:
            groups = zip(bank["classes"], plan["photos"][name], strict=True)
            files.append("photos " + ", ".join(f"{cls['name']} {len(group)}" for cls, group in groups))
        for kind in ("backgrounds", "distractors"):
            if plan[kind] is not None:
                files.append(plural(len(plan[kind][name]), kind[:-1]))
        log.info("split %-8s %s; %s (output.split_by=%s)", name, plural(per_split.get(name, 0), "image"),
                 "; ".join(files), out["split_by"])


def record_start(state: runstate.RunState, settings: dict, root: Path, inputs: list[dict], classes: list[str],
                 counts: list[int], splits: list[list[str]], resuming: bool) -> None:
    """Fill run.json with what the run is made of; on a resume, refuse changed inputs instead.

    ``settings`` without the keys the run derives (plan, per-class settings): what the config says."""
    samples = {"total": sum(counts), "per_class": dict(zip(classes, counts[:len(classes)], strict=True)),
               "per_split": split_counts(splits)}
    names = [*classes, splitting.BACKGROUND][:len(counts)]
    samples["per_class_split"] = {name: split_counts([names_of]) for name, names_of in zip(names, splits, strict=True)}
    if len(counts) > len(classes):
        samples["background_only"] = counts[-1]
    if settings["compose"]["blending"]["every"]:  # several images per sample
        per_split = split_counts(splits, images_per_layout(settings, len(classes), len(counts)))
        samples["images"] = {"total": sum(per_split.values()), "per_split": per_split}
    if resuming:
        changed = changed_inputs(state.record.get("inputs", []), inputs)
        if changed:
            verb = "differs" if len(changed) == 1 else "differ"
            raise ResumeRefused(f"resume: {plural(len(changed), 'input file')} {verb} from the run's "
                                f"({', '.join(changed[:5])}"
                                f"{', ...' if len(changed) > 5 else ''}); the same config would not give the same "
                                f"images: restore them or start a new run")
        state.save(status="running", pid=os.getpid(), resumed=[*state.record.get("resumed", []), runstate.now()])
        return
    identity = runstate.config_identity(settings)
    state.save(status="running", pid=os.getpid(), versions=runstate.versions(),
               config_hash=runstate.config_hash(identity), config=identity, seed=settings["seed"],
               input_root=str(root), working_folder=str(Path.cwd()),
               samples=samples, inputs=inputs)


def warn_changed_inputs(original: Path, inputs: list[dict]) -> None:
    """A replay of a run whose input files changed since makes a different dataset: say which files."""
    changed = changed_inputs((runstate.read_run(original) or {}).get("inputs", []), inputs)
    if changed:
        log.warning("replay of %s: %s changed since that run, so the images will differ: %s%s", original,
                    plural(len(changed), "input file"), ", ".join(changed[:10]), ", ..." if len(changed) > 10 else "")


def changed_inputs(before: list[dict], after: list[dict]) -> list[str]:
    """Input files added, removed or changed (by sha256) between two run.json input lists."""
    old = {item["path"]: item["sha256"] for item in before}
    new = {item["path"]: item["sha256"] for item in after}
    return [f"{path} ({'added' if path not in old else 'removed' if path not in new else 'changed'})"
            for path in sorted(set(old) | set(new)) if old.get(path) != new.get(path)]


# Files of a run folder that are never part of the dataset.
KEEP_TOP = {runstate.RUN_FILE, runstate.JOURNAL, ".hydra"}


def clear_leftovers(out_dir: Path) -> None:
    """Before a resume: remove what an interrupted run or a crash left that is not a finished sample's file:
    temporary and partial files, old banks, and any dataset-level file written without its manifest."""
    for bank in out_dir.glob(".bank-*"):
        shutil.rmtree(bank, ignore_errors=True)
    journal = runstate.Journal(out_dir)
    keep = set()
    for offset in journal.index().values():
        keep.update(journal.read(offset).get("_files", {}))
    for path in sorted(out_dir.rglob("*")):
        rel = path.relative_to(out_dir)
        if rel.parts[0] in KEEP_TOP or path.suffix == ".log" or path.is_dir() and not path.is_symlink():
            continue
        if rel.as_posix() not in keep:
            path.unlink(missing_ok=True)


def done_samples(out_dir: Path, keys: set[tuple]) -> tuple[runstate.Journal, dict[tuple, int]]:
    """The journal, and the offsets of its records whose files are all still intact."""
    journal = runstate.Journal(out_dir)
    done = {}
    for key, offset in journal.index().items():
        if key in keys and runstate.files_intact(out_dir, journal.read(offset).get("_files", {})):
            done[key] = offset
    return journal, done


def _generate(state: runstate.RunState, bank: dict, settings: dict, counts: list[int], splits: list[list[str]],
              sample_sources: list[list[tuple]], n_workers: int) -> int:
    out_dir, workers, out = state.folder, settings["workers"], settings["output"]
    blending, n_classes = settings["compose"]["blending"], len(bank["classes"])
    keys = [(c, s, version) for c, count in enumerate(counts) for s in range(count)
            for version in blend_versions(blending, c == n_classes)]
    journal, intact = done_samples(out_dir, set(keys))
    torn = {key[:2] for key in keys if key not in intact}  # a sample is done when every image of it is
    done = {key: offset for key, offset in intact.items() if key[:2] not in torn}
    todo = [[s for s in range(count) if (c, s) in torn] for c, count in enumerate(counts)]
    tasks = plan_tasks(todo, n_workers, workers["chunk_size"], splits, sample_sources)
    rendering = len(keys) - len(done)
    if done:
        log.info("resume: %s of %s already done; rendering the other %d", plural(len(done), "image"),
                 len(keys), rendering)
    log.info("%s in %s on %s", plural(rendering, counted_unit(settings)), plural(len(tasks), "task"),
             plural(n_workers, f"{workers['backend']} worker"))
    for name in output_dirs(out):
        (out_dir / name).mkdir(parents=True, exist_ok=True)
    dataset = DatasetWriters(out_dir, bank, settings)
    jobs = (delayed(render_task)(i, task, bank, settings, str(out_dir)) for i, task in enumerate(tasks))

    def finished(key: tuple) -> dict | None:
        return journal.read(done[key]) if key in done else None

    try:
        with _stopping_workers(_results(jobs, n_workers)) as stream, logging_redirect_tqdm(), \
                tqdm(total=len(keys), initial=len(done), unit="img", desc="quiltgen", disable=None,
                     dynamic_ncols=True) as bar:
            arrivals = _journalled(stream, journal, bar)
            for record in in_order(keys, finished, arrivals):
                record.pop("_files", None)
                dataset.add(record)
    except TerminatedWorkerError:
        _abandon(dataset, journal, out_dir)
        raise SampleError(f"a worker process died (killed, or out of memory); the samples written so far are "
                          f"kept: finish the run with {runstate.resume_command(out_dir)}, with fewer workers "
                          f"(workers.n_jobs) if memory is short") from None
    except OSError as err:  # a write of the parent's (the journal, the manifest, a COCO file)
        _abandon(dataset, journal, out_dir)
        raise SampleError(writers.write_failure(err, out_dir)) from None
    except BaseException:
        _abandon(dataset, journal, out_dir)
        raise
    commit(state, dataset, journal)
    return rendering


def _abandon(dataset: DatasetWriters, journal: runstate.Journal, out_dir: Path) -> None:
    """After an error or a signal: the workers are stopped by now; keep the journal and the finished samples."""
    dataset.discard()
    journal.close()
    writers.remove_temporaries(out_dir)  # of writes cut short


def commit(state: runstate.RunState, dataset: DatasetWriters, journal: runstate.Journal) -> None:
    """Write the dataset-level files, the manifest last, then mark the run complete; Ctrl-C and SIGTERM wait.

    A failure part-way (a full disk) removes every dataset-level file it made, so none is left without a
    manifest, and marks the run failed: its samples stay, for a resume.
    """
    out_dir = state.folder
    with runstate.deferred_signals() as arrived:
        try:
            dataset.commit()
        except BaseException as err:
            dataset.discard()
            journal.close()
            clear_leftovers(out_dir)
            if isinstance(err, OSError):
                raise SampleError(writers.write_failure(err, out_dir)) from None
            raise
        state.finish("complete")
        journal.remove()
    if arrived:  # the dataset is complete; stop now, as asked, before the report and the evaluation
        log.warning("a stop signal arrived during the final commit; the dataset is complete")
        raise KeyboardInterrupt if arrived[0] == signal.SIGINT else runstate.Terminated


def dry_run(settings: dict) -> dict:
    """Check every input and the config and print the plan; renders one sample per class into a temporary
    folder to measure the disk use, and writes nothing else."""
    started = time.perf_counter()
    catalog = scan_inputs(settings)
    with tempfile.TemporaryDirectory(prefix="quiltgen-dry-run-") as scratch, \
            parallel_backend(settings["workers"]) as n_workers:
        scratch = Path(scratch)
        bank, _ = build_bank(catalog, scratch / "bank", settings, n_workers)
        counts, splits, sample_sources = plan_samples(bank, settings)
        for name in output_dirs(settings["output"]):
            (scratch / "out" / name).mkdir(parents=True, exist_ok=True)
        probes = plan_tasks([[0] for _ in counts], n_workers, 1, splits, sample_sources)
        records = [r for task in probes for r in render_task(0, task, bank, settings, str(scratch / "out"))[1]]
        per_sample = float(np.mean([disk_use(scratch / "out", r["_files"]) for r in records]))
    log_plan(bank, counts, catalog, splits, settings)
    per_layout = images_per_layout(settings, len(bank["classes"]), len(counts))
    per_split, objects = split_counts(splits, per_layout), settings["compose"]["objects"]
    total = sum(per_split.values())
    noun = counted_unit(settings)
    log.info("dry run: %s (%s), %d-%d objects each, about %.1f MiB on disk (%.0f KiB per %s, measured on "
             "one sample per class); no dataset was written", plural(total, noun),
             ", ".join(f"{name} {n}" for name, n in per_split.items()), objects["min"], objects["max"],
             total * per_sample / 2**20, per_sample / 1024, noun)
    return {"samples": 0, "planned": total, "per_split": per_split, "classes": len(catalog.classes),
            "estimated_bytes": int(total * per_sample), "seconds": round(time.perf_counter() - started, 3),
            "samples_per_second": 0.0, "dry_run": True}


def counted_unit(settings: dict) -> str:
    """What the log counts: samples (layouts), or images when each sample gives several (blending.every)."""
    return "image" if settings["compose"]["blending"]["every"] else "sample"


def disk_use(folder: Path, files: dict[str, int]) -> int:
    """Bytes the files take, a hard-linked file (an image in voc/ and yolo/) counted once."""
    seen, total = set(), 0
    for rel in files:
        info = os.lstat(folder / rel)
        if (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            total += info.st_size
    return total


def _journalled(stream: Iterator[tuple], journal: runstate.Journal, bar: tqdm) -> Iterator[list[dict]]:
    """Each task's records as they arrive, journalled first (so a crash keeps them) and counted on the bar."""
    for _, records in stream:
        for record in records:
            journal.append(record)
        bar.update(len(records))
        yield records


def _results(jobs: Iterator, n_workers: int, ordered: bool = False) -> Iterator:
    """Task results as they finish (``ordered``: in submission order). A backend without result streaming
    (Ray's) runs the tasks in waves of a few per worker instead, so progress still shows and memory stays flat."""
    try:
        parallel = Parallel(return_as="generator" if ordered else "generator_unordered", batch_size=1)
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
def _stopping_workers(stream: Iterator) -> Iterator[Iterator]:
    """Close the result stream on the way out, so an error or a signal in the parent stops the workers now
    (joblib's loky backend kills and joins them) instead of whenever the stream is garbage-collected."""
    try:
        yield stream
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joblib's note that unfinished tasks were cancelled: that is the point
            stream.close()
