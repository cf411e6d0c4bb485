#!/usr/bin/env python
"""quiltgen throughput benchmark against the original script (its port in ``shared/bench``).

One run, on one input set, with 2 worker processes everywhere:

  seed-port    ``shared/bench/seed_port.py --processes 2``: the original algorithm (whole command, wall clock)
  quiltgen     ``python -m pipeline ... workers.n_jobs=2`` (whole command, wall clock; plus its own samples/s)
  encode-only  the same JPEG encodes (one 1920x1080 image at q95 + one half-size preview at q80 per sample) on 2 loky
               workers and nothing else: the ceiling for a pipeline whose job is to write those files
  peak RSS     of quiltgen's whole process tree (parent + loky workers) at two sample counts

Ratios are computed from figures measured in this one run, so they hold on a noisy, shared machine.
Usage (from anywhere):  python bench/bench.py [--repeats 3] [--rounds 3] [--no-previews] [--json out.json]
See bench/README.md for what each figure means and the latest results.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import joblib
import numpy as np
from joblib import Parallel, delayed

REPO = Path(__file__).resolve().parent.parent
WORKERS = 2
PREVIEW_SCALE = 0.5  # quiltgen's default output.preview_scale: the preview encode of encode-only matches it
# Like for like with the original: one hard-pasted object, its four augmentations, VOC only (conf/experiment/original).
LIKE_FOR_LIKE = ["experiment=original"]
LOG_LINE = re.compile(r"wrote (\d+) samples of (\d+) classes in ([\d.]+) s \(([\d.]+) samples/s\)")
SEED_LINE = re.compile(r"seed-port: (\d+) samples tried, (\d+) kept")


# ---------------------------------------------------------------------------------------------- setup

def find_shared(cli_value: str | None) -> Path:
    """``--shared``, else ``$QUILTGEN_SHARED``, else ``<repo>/../shared`` (where CI puts it)."""
    candidates = [("--shared", cli_value), ("QUILTGEN_SHARED", os.environ.get("QUILTGEN_SHARED")),
                  ("<repo>/../shared", str(REPO.parent / "shared"))]
    source, value = next((s, v) for s, v in candidates if v)
    shared = Path(value).expanduser().resolve()
    for name in ("seed_port.py", "make_seed_layout.py"):
        if not (shared / "bench" / name).is_file():
            sys.exit(f"bench: {shared / 'bench' / name} not found (shared folder from {source}); "
                     f"pass --shared DIR or set QUILTGEN_SHARED to the folder holding bench/{name}")
    return shared


def subprocess_env() -> dict:
    """Child environment: this checkout's ``pipeline`` first on the path, so the bench measures the code beside it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("QUILTGEN_CACHE", None)
    return env


def settle(seconds: float = 1.0) -> None:
    """Flush and let the disk go quiet before a timed run.

    Each run writes and then deletes hundreds of MB; without this, the kernel's writeback and the deletion
    of the previous run's files (the project VM mounts ext4 with ``discard``) take CPU from the next run.
    """
    os.sync()
    time.sleep(seconds)


def run_timed(cmd: list[str], log_path: Path, env: dict, poll_rss: bool = False) -> dict:
    """Run ``cmd`` to completion; wall seconds (and the process tree's peak RSS when asked). Output goes to a file."""
    settle()
    with open(log_path, "w") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=log_path.parent)
        peaks = RssPoller(proc.pid).start() if poll_rss else None
        code = proc.wait()
        seconds = time.perf_counter() - started
        if peaks:
            peaks.stop()
    text = log_path.read_text(errors="replace")
    if code != 0:
        sys.exit(f"bench: command failed with exit code {code}:\n  {' '.join(cmd)}\n--- output ---\n{text[-4000:]}")
    result = {"seconds": seconds, "output": text}
    if peaks:
        result.update(peaks.result())
    return result


class RssPoller:
    """Polls RSS of a process and all its descendants (loky workers, resource tracker) every ``interval`` s.

    The tree figure is the largest sum seen at one instant: shared pages (libraries, the read-only bank memmaps)
    are counted once per process, so it is an upper bound of the real footprint.
    """

    def __init__(self, pid: int, interval: float = 0.05):
        import psutil  # checked by the caller
        self.psutil, self.root = psutil, psutil.Process(pid)
        self.interval, self.done = interval, threading.Event()
        self.tree = self.parent = self.worker = 0
        self.max_children = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> RssPoller:
        self.thread.start()
        return self

    def _loop(self) -> None:
        ps = self.psutil
        while not self.done.is_set():
            try:
                children = self.root.children(recursive=True)
                parent = self.root.memory_info().rss
            except (ps.NoSuchProcess, ps.AccessDenied, ps.ZombieProcess):
                return
            child_rss = []
            for child in children:
                with contextlib.suppress(ps.NoSuchProcess, ps.AccessDenied, ps.ZombieProcess):
                    child_rss.append(child.memory_info().rss)
            self.parent = max(self.parent, parent)
            self.worker = max([self.worker, *child_rss])
            self.tree = max(self.tree, parent + sum(child_rss))
            self.max_children = max(self.max_children, len(child_rss))
            self.done.wait(self.interval)

    def stop(self) -> None:
        self.done.set()
        self.thread.join()

    def result(self) -> dict:
        mib = 1024 * 1024
        return {"peak_rss_tree_mib": round(self.tree / mib, 1), "peak_rss_parent_mib": round(self.parent / mib, 1),
                "peak_rss_worker_mib": round(self.worker / mib, 1), "max_child_processes": self.max_children}


def dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------- the three runs

def run_seed_port(shared: Path, layout: Path, work: Path, repeats: int, expected: int, env: dict) -> dict:
    out = work / "seed-out"
    cmd = [sys.executable, str(shared / "bench" / "seed_port.py"), "--photos", str(layout / "photo"),
           "--copies", str(layout / "photo_copy"), "--backs", str(layout / "back"), "--out", str(out),
           "--times", str(repeats), "--processes", str(WORKERS)]
    res = run_timed(cmd, work / "seed-port.log", env)
    match = SEED_LINE.search(res["output"])
    if not match or int(match.group(1)) != expected:
        sys.exit(f"bench: seed port did not report {expected} samples tried:\n{res['output'][-2000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return {"name": "seed-port", "samples": expected, "seconds": res["seconds"], "kept": int(match.group(2)),
            "command": cmd}


def quiltgen_cmd(layout: Path, run_dir: Path, overrides: list[str], workers: int = WORKERS) -> list[str]:
    return [sys.executable, "-m", "pipeline", f"input.root={layout}", f"workers.n_jobs={workers}",
            f"hydra.run.dir={run_dir}", *overrides]


def run_quiltgen(layout: Path, work: Path, tag: str, overrides: list[str], expected: int, env: dict,
                 poll_rss: bool = False, keep_frames: int = 0, workers: int = WORKERS) -> dict:
    """One quiltgen command; with ``keep_frames``, also save that many of its images, decoded, to work/frames.npy."""
    run_dir = work / f"quiltgen-{tag}"
    cmd = quiltgen_cmd(layout, run_dir, overrides, workers)
    res = run_timed(cmd, work / f"quiltgen-{tag}.log", env, poll_rss=poll_rss)
    match = LOG_LINE.search(res["output"])
    if not match and (run_dir / "quiltgen.log").is_file():
        match = LOG_LINE.search((run_dir / "quiltgen.log").read_text(errors="replace"))
    if not match or int(match.group(1)) != expected:
        sys.exit(f"bench: quiltgen did not report writing {expected} samples:\n{res['output'][-2000:]}")
    result = {"name": f"quiltgen {tag}", "samples": expected, "seconds": res["seconds"],
              "own_seconds": float(match.group(3)), "own_samples_per_s": float(match.group(4)), "command": cmd}
    result.update({k: v for k, v in res.items() if k.startswith(("peak_", "max_"))})
    images = sorted((run_dir / "images").rglob("*.jpg"))
    result["image_mean_kib"] = round(dir_bytes(run_dir / "images") / max(1, len(images)) / 1024, 1)
    if keep_frames:  # decoded outputs: the encode-only run encodes exactly this kind of content
        picks = [images[round(i * (len(images) - 1) / max(1, keep_frames - 1))] for i in range(keep_frames)]
        np.save(work / "frames.npy", np.stack([cv2.imread(str(p)) for p in dict.fromkeys(picks)]))
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


def frames_at(frames_path: str, scale: float) -> str:
    """The decoded frames file, or its copy shrunk by ``scale`` (the preview size), made once outside any timing."""
    if scale == 1.0:
        return frames_path
    path = Path(frames_path).with_name(f"frames_{scale}.npy")
    if not path.exists():
        full = np.load(frames_path)
        size = (round(full.shape[2] * scale), round(full.shape[1] * scale))
        np.save(path, np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in full]))
    return str(path)


def _write_file(path: str, data: bytes) -> None:
    """As quiltgen's writers.atomic_write: a temporary file, then a rename."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _encode_chunk(frames_path: str, start: int, stop: int, qualities: tuple[tuple[int, float], ...],
                  write_dir: str | None = None) -> int:
    """Worker side of encode-only: encode frames start..stop at each (quality, scale); returns the bytes produced.

    With ``write_dir``, also write each encode to its own file plus one small annotation-sized file per sample:
    the same file creations as a like-for-like quiltgen run (image, preview, VOC).
    """
    cv2.setNumThreads(1)  # as quiltgen's workers
    stacks = {scale: np.load(frames_at(frames_path, scale), mmap_mode="r") for _, scale in qualities}  # as the bank
    total = 0
    for i in range(start, stop):
        for k, (quality, scale) in enumerate(qualities):
            frame = stacks[scale][i % len(stacks[scale])]
            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise RuntimeError("OpenCV failed to encode a JPEG")
            total += buf.size
            if write_dir:
                _write_file(os.path.join(write_dir, f"{i:06d}_{k}.jpg"), buf.tobytes())
        if write_dir:
            _write_file(os.path.join(write_dir, f"{i:06d}.xml"), b"<annotation/>" * 40)
    return total


def run_encode_only(frames: Path, samples: int, qualities: tuple[tuple[int, float], ...],
                    write_dir: Path | None = None) -> dict:
    """``samples`` x len(qualities) encodes on 2 loky workers, chunked like quiltgen's auto plan; pool warmed first."""
    chunk = max(1, min(64, math.ceil(samples / (4 * WORKERS))))
    for _, scale in qualities:
        frames_at(str(frames), scale)
    parallel = Parallel(n_jobs=WORKERS, backend="loky")
    parallel(delayed(_encode_chunk)(str(frames), i, i + 1, qualities) for i in range(2 * WORKERS))  # spawn, import
    if write_dir:
        write_dir.mkdir(parents=True)
    settle()
    started = time.perf_counter()
    sizes = parallel(delayed(_encode_chunk)(str(frames), s, min(s + chunk, samples), qualities,
                                            str(write_dir) if write_dir else None)
                     for s in range(0, samples, chunk))
    seconds = time.perf_counter() - started
    if write_dir:
        shutil.rmtree(write_dir)
    encodes = samples * len(qualities)
    return {"name": "encode+write" if write_dir else "encode-only", "samples": samples, "seconds": seconds,
            "encodes": encodes, "qualities_and_scales": [list(q) for q in qualities],
            "mean_kib_per_encode": round(sum(sizes) / encodes / 1024, 1)}


def probe_file_writes(folder: Path, files: int = 1600, size: int = 600 * 1024) -> dict:
    """Time writing about 1 GB of JPEG-sized files in this process, as new files and over the same files in place.

    New files are written as quiltgen writes them (temporary file, then rename) and need new page-cache pages;
    rewriting in place reuses those pages. On a VM that hands freed memory back to its host (Firecracker's
    free page reporting), a new page costs a host fault: the gap between the two is that cost.
    """
    folder.mkdir(parents=True)
    data = os.urandom(size)
    seconds = {}
    for mode in ("new", "in_place"):
        settle()
        started = time.perf_counter()
        for i in range(files):
            path = os.path.join(folder, f"{i}.jpg")
            if mode == "new":
                _write_file(path, data)
            else:
                with open(path, "r+b") as fh:
                    fh.write(data)
        seconds[mode] = time.perf_counter() - started
    shutil.rmtree(folder)
    mib = files * size / 2**20
    return {"files": files, "kib_per_file": size // 1024,
            **{f"ms_per_mib_{mode}": round(t / mib * 1e3, 3) for mode, t in seconds.items()}}


def probe_input_hashing(layout: Path) -> dict:
    """What run.json's sha256 of every input costs: all input files read and hashed once, in this process."""
    import hashlib
    files = sorted(p for p in layout.rglob("*") if p.is_file())
    start = time.perf_counter()
    size = 0
    for path in files:
        data = path.read_bytes()
        hashlib.sha256(data).hexdigest()
        size += len(data)
    return {"files": len(files), "mib": size / 2**20, "seconds": time.perf_counter() - start}


def run_profile(layout: Path, work: Path, samples_per_class: int, env: dict) -> str:
    """pyinstrument over a single-process quiltgen run (like-for-like preset): where one sample's time goes."""
    run_dir = work / "quiltgen-profile"
    cmd = [sys.executable, "-m", "pyinstrument", "--no-color", "--no-unicode", "-i", "0.0005", "-m", "pipeline",
           f"input.root={layout}", "workers.backend=sequential", "workers.n_jobs=1", f"hydra.run.dir={run_dir}",
           f"samples.per_class={samples_per_class}", *LIKE_FOR_LIKE]
    res = run_timed(cmd, work / "profile.log", env)
    shutil.rmtree(run_dir, ignore_errors=True)
    text = res["output"]
    start = text.find("Recorded:")
    if start < 0:
        sys.exit(f"bench: pyinstrument gave no profile (is it installed?):\n{text[-2000:]}")
    return text[text.rfind("\n", 0, start) + 1:].strip()


def shutdown_loky() -> None:
    from joblib.externals.loky import get_reusable_executor
    get_reusable_executor().shutdown(wait=True)


# ---------------------------------------------------------------------------------------------- report

def sps(run: dict) -> float:
    return run["samples"] / run["seconds"]


def median_run(runs: list[dict]) -> dict:
    """The round with the median wall time (the middle one of an odd count), with every round's seconds attached."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    pick = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        pick["rounds_seconds"] = [round(r["seconds"], 3) for r in runs]
        pick["median_seconds"] = statistics.median(r["seconds"] for r in runs)
    return pick


def table(rows: list[tuple], header: tuple) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    fmt = lambda row: "  ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w)  # noqa: E731
                                for i, (x, w) in enumerate(zip(row, widths, strict=True)))
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, rows)])


def report(results: dict) -> str:
    m, r = results["machine"], results["runs"]
    lines = [f"quiltgen benchmark  {results['date']}  {m['cpus']} cores  Python {m['python']}  "
             f"OpenCV {m['opencv']}  numpy {m['numpy']}",
             f"input: {results['input']}; samples.repeats={results['repeats']} -> {results['samples']} samples; "
             f"{WORKERS} worker processes; rounds={results['rounds']} (median shown)", ""]
    rows = []

    def row(label, run, seconds=None, rate=None):
        seconds = run["seconds"] if seconds is None else seconds
        rows.append((label, run["samples"], f"{seconds:.2f}", f"{(rate or run['samples'] / seconds):.1f}"))

    row("seed-port (whole command)", r["seed_port"])
    row("quiltgen (whole command)", r["quiltgen"])
    row("quiltgen (own log line: run() only)", r["quiltgen"], r["quiltgen"]["own_seconds"],
        r["quiltgen"]["own_samples_per_s"])
    row(f"encode-only (ceiling, q95 + q80 at x{PREVIEW_SCALE})", r["encode_only"])
    row("encode+write (ceiling + the same 3 file creations)", r["encode_write"])
    if "quiltgen_no_previews" in r:
        row("quiltgen no previews (whole command)", r["quiltgen_no_previews"])
        row("quiltgen no previews (own log line)", r["quiltgen_no_previews"],
            r["quiltgen_no_previews"]["own_seconds"], r["quiltgen_no_previews"]["own_samples_per_s"])
        row("encode-only (ceiling, q95 only)", r["encode_only_no_previews"])
        row("encode+write (q95 only, image + VOC files)", r["encode_write_no_previews"])
    if "scaling" in results:
        for n, run in sorted(results["scaling"]["runs"].items()):
            row(f"quiltgen {n} worker(s) (own log line)", run, run["own_seconds"], run["own_samples_per_s"])
    if "quiltgen_default" in r:
        row("quiltgen default config (whole command)", r["quiltgen_default"])
    if "report_on" in r:
        row("quiltgen default config, output.report=true (whole command)", r["report_on"])
        row("quiltgen default config, output.report=false (whole command)", r["report_off"])
    lines += [table(rows, ("run", "samples", "seconds", "samples/s")), ""]

    q = results["ratios"]
    ratio_rows = [("quiltgen / seed-port (whole commands)", f"{q['quiltgen_over_seed_port']:.2f}x",
                   verdict(q["quiltgen_over_seed_port"], ">=", 6)),
                  ("encode-only / quiltgen (whole command)", f"{q['encode_only_over_quiltgen']:.2f}x",
                   verdict(q["encode_only_over_quiltgen"], "<=", 1.3)),
                  ("encode-only / quiltgen (own log line)", f"{q['encode_only_over_quiltgen_own']:.2f}x", ""),
                  ("encode-only / encode+write (the files alone)", f"{q['encode_only_over_encode_write']:.2f}x",
                   "no compositing at all"),
                  ("encode+write / quiltgen (own log line)", f"{q['encode_write_over_quiltgen_own']:.2f}x",
                   "quiltgen's compositing")]
    if "encode_only_over_quiltgen_no_previews" in q:
        ratio_rows += [("quiltgen no previews / seed-port", f"{q['quiltgen_no_previews_over_seed_port']:.2f}x",
                        "not like for like: seed-port writes previews"),
                       ("encode-only / quiltgen, no previews",
                        f"{q['encode_only_over_quiltgen_no_previews']:.2f}x",
                        verdict(q["encode_only_over_quiltgen_no_previews"], "<=", 1.3)),
                       ("encode-only / encode+write, no previews",
                        f"{q['encode_only_over_encode_write_no_previews']:.2f}x", "no compositing at all"),
                       ("encode+write / quiltgen, no previews (own log line)",
                        f"{q['encode_write_over_quiltgen_no_previews_own']:.2f}x", "quiltgen's compositing")]
    if "scaling" in results:
        sc = results["scaling"]
        ratio_rows.append(("quiltgen 2 workers / 1 worker (own log line)", f"{sc['ratio']:.2f}x",
                           verdict(sc["ratio"], ">=", 1.7)))
    if "quiltgen_default" in r:
        ratio_rows.append(("quiltgen default config / seed-port", f"{q['quiltgen_default_over_seed_port']:.2f}x",
                           verdict(q["quiltgen_default_over_seed_port"], ">=", 4) + "; not like for like"))
    if "report_on" in r:
        ratio_rows.append(("seconds with report.html / without (default config)", f"{q['report_on_over_off']:.3f}x",
                           verdict(q["report_on_over_off"], "<=", 1.05)))
    lines += [table(ratio_rows, ("ratio of samples/s", "value", "target")), ""]
    tax, budget = q["encode_only_over_encode_write"], 1.3 / q["encode_only_over_encode_write"] - 1
    room = (f"leaves {budget:.0%} on top of encode+write" if budget > 0
            else "is out of reach here for any program that writes these files")
    lines += [f"Writing the files alone (encode+write, no compositing at all) is {tax:.2f}x encode-only here, so "
              f"1.3x of encode-only {room}; quiltgen's compositing adds "
              f"{q['encode_write_over_quiltgen_own'] - 1:.0%} (own log line)."]
    if "hash_probe" in results:
        h = results["hash_probe"]
        share = h["seconds"] / r["quiltgen"]["seconds"]
        lines.append(f"Hashing every input for run.json ({h['files']} files, {h['mib']:.1f} MiB, read and sha256 in "
                     f"one process): {h['seconds'] * 1000:.0f} ms, {share:.1%} of the quiltgen run (the workers share "
                     f"it).")
    if "write_probe" in results:
        w = results["write_probe"]
        lines.append(f"File writes on this machine ({w['files']} files of {w['kib_per_file']} KiB, one process): "
                     f"{w['ms_per_mib_new']:.2f} ms/MiB into new files, {w['ms_per_mib_in_place']:.2f} ms/MiB "
                     f"rewriting them in place ({w['ms_per_mib_new'] / w['ms_per_mib_in_place']:.1f}x): "
                     f"new page-cache pages are what writing costs.")
    lines.append("")

    if results.get("rss"):
        seed = sps(r["seed_port"])
        rss_rows = [(x["samples"], f"{x['seconds']:.1f}", f"{sps(x):.1f}", f"{sps(x) / seed:.2f}x",
                     f"{x['peak_rss_tree_mib']:.0f}", f"{x['peak_rss_parent_mib']:.0f}",
                     f"{x['peak_rss_worker_mib']:.0f}", x["max_child_processes"]) for x in results["rss"]]
        lines += ["quiltgen at other sizes (whole command, like-for-like preset, previews on), "
                  "peak RSS of the whole process tree:",
                  table(rss_rows, ("samples", "seconds", "samples/s", "vs seed-port", "tree MiB", "parent MiB",
                                   "max worker MiB", "children"))]
        if "marginal" in results:
            m = results["marginal"]
            lines.append(f"between these sizes: {m['samples_per_s']:.1f} samples/s marginal "
                         f"({m['samples_per_s'] / seed:.2f}x seed-port), about {m['fixed_seconds']:.1f} s fixed "
                         f"cost per run (start-up, bank, worker spawn)")
        lines.append("")
    elif results.get("rss_note"):
        lines += [f"peak RSS: {results['rss_note']}", ""]
    lines.append(f"quiltgen command: {results['quiltgen_command']}")
    if results.get("profile"):
        lines += ["", "profile of a single-process run (pyinstrument):", results["profile"]]
    return "\n".join(lines)


def verdict(value: float, op: str, target: float) -> str:
    met = value >= target if op == ">=" else value <= target
    return f"{op} {target}x: {'met' if met else 'NOT met'}"


def scaling(rounds: dict[int, list[dict]]) -> dict:
    """Median own-log-line run per worker count and the speed-up of the most workers over one."""
    picks = {n: sorted(v, key=lambda r: r["own_seconds"])[(len(v) - 1) // 2] for n, v in rounds.items()}
    return {"runs": picks, "ratio": picks[max(picks)]["own_samples_per_s"] / picks[1]["own_samples_per_s"]}


def marginal(runs: list[dict]) -> dict | None:
    """Throughput between the smallest and largest run (fixed start-up cost cancels out), and that fixed cost."""
    if len(runs) < 2:
        return None
    small, large = min(runs, key=lambda x: x["samples"]), max(runs, key=lambda x: x["samples"])
    extra_s, extra_n = large["seconds"] - small["seconds"], large["samples"] - small["samples"]
    if extra_s <= 0 or extra_n <= 0:
        return None
    rate = extra_n / extra_s
    return {"samples_per_s": round(rate, 2), "fixed_seconds": round(small["seconds"] - small["samples"] / rate, 2)}


# ---------------------------------------------------------------------------------------------- main

def parse_sizes(text: str) -> list[int]:
    if text.strip().lower() in ("", "none", "0"):
        return []
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=20,
                   help="samples.repeats / seed-port --times; samples = 72 x repeats (default 20 -> 1440: enough\n"
                        "samples that quiltgen's ~1.5 s start-up does not dominate)")
    p.add_argument("--rounds", type=int, default=3,
                   help="measure seed-port, quiltgen and encode-only this many times, interleaved; report the median\n"
                        "(of an even count, the faster middle one)")
    p.add_argument("--no-previews", action="store_true",
                   help="also run quiltgen with output.previews=false and encode-only with one encode per sample")
    p.add_argument("--rss-sizes", default="1000,50000",
                   help="sample counts for the peak-RSS runs, comma-separated; 'none' skips them (default 1000,50000:\n"
                        "the 50k run takes about 6 minutes and 25 GB of temporary disk)")
    p.add_argument("--scaling", action="store_true",
                   help="also run quiltgen with 1 worker, to report the 1 -> 2 worker speed-up")
    p.add_argument("--default-config", action="store_true",
                   help="also run quiltgen with its default config (multi-object scenes, all formats)")
    p.add_argument("--report", action="store_true",
                   help="also time the default config with output.report=true against output.report=false\n"
                        "(what stats.json's sibling report.html costs a run; stats.json is written either way)")
    p.add_argument("--profile", type=int, metavar="PER_CLASS", default=0,
                   help="also profile a single-process run of PER_CLASS samples per class with pyinstrument")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    p.add_argument("--shared", help="folder holding bench/seed_port.py and bench/make_seed_layout.py "
                                    "(default: $QUILTGEN_SHARED, else <repo>/../shared)")
    p.add_argument("--workdir", help="folder in which to make the run's work folder (default: the system temp dir); "
                                     "the input set and every output go there and are removed after")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs of every command)")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.rounds < 1:
        p.error("--repeats and --rounds must be >= 1")
    rss_sizes = parse_sizes(args.rss_sizes)
    json_path = Path(args.json).resolve() if args.json else None
    shared = find_shared(args.shared)
    env = subprocess_env()

    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    # Always a fresh folder of our own (inside --workdir when given): it is the only thing removed at the end.
    work = Path(tempfile.mkdtemp(prefix="quiltgen-bench-", dir=args.workdir)).resolve()
    say = lambda msg: print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        layout = work / "input"
        subprocess.run([sys.executable, str(shared / "bench" / "make_seed_layout.py"), str(layout)], check=True,
                       env=env)
        classes = sorted(d.name for d in (layout / "photo").iterdir() if d.is_dir())
        photos = sum(len(list((layout / "photo" / c).iterdir())) for c in classes)
        backs = len(list((layout / "back").iterdir()))
        samples = photos * backs * args.repeats
        # Untimed warm-up: the first import of cv2/hydra/joblib from a cold disk cache is not what we measure.
        subprocess.run([sys.executable, "-c", "import cv2, joblib, hydra, pipeline.app"], check=True, env=env)
        probe = subprocess.run([sys.executable, "-c", "import pipeline; print(pipeline.__file__)"], check=True,
                               env=env, capture_output=True, text=True)
        say(f"pipeline from {Path(probe.stdout.strip()).parent}; shared from {shared}; work in {work}")

        quilt_args = [*LIKE_FOR_LIKE, f"samples.repeats={args.repeats}"]
        rounds: dict[str, list[dict]] = {"seed_port": [], "quiltgen": [], "encode_only": [], "encode_write": []}
        frames = work / "frames.npy"
        for n in range(args.rounds):
            say(f"round {n + 1}/{args.rounds}: seed-port, {samples} samples")
            rounds["seed_port"].append(run_seed_port(shared, layout, work, args.repeats, samples, env))
            say(f"round {n + 1}/{args.rounds}: quiltgen, {samples} samples")
            rounds["quiltgen"].append(run_quiltgen(layout, work, "previews", quilt_args, samples, env,
                                                   keep_frames=0 if n else 8))
            say(f"round {n + 1}/{args.rounds}: encode-only, {samples} x (q95 + q80)")
            rounds["encode_only"].append(run_encode_only(frames, samples, ((95, 1.0), (80, PREVIEW_SCALE))))
            say(f"round {n + 1}/{args.rounds}: encode+write, the same encodes written as image, preview and VOC files")
            rounds["encode_write"].append(run_encode_only(frames, samples, ((95, 1.0), (80, PREVIEW_SCALE)),
                                                          work / "encode-write"))
        if args.no_previews:
            rounds["quiltgen_no_previews"], rounds["encode_only_no_previews"] = [], []
            rounds["encode_write_no_previews"] = []
            for n in range(args.rounds):
                say(f"round {n + 1}/{args.rounds}: quiltgen output.previews=false, then encode-only q95")
                rounds["quiltgen_no_previews"].append(run_quiltgen(
                    layout, work, "no-previews", [*quilt_args, "output.previews=false"], samples, env))
                rounds["encode_only_no_previews"].append(run_encode_only(frames, samples, ((95, 1.0),)))
                rounds["encode_write_no_previews"].append(run_encode_only(frames, samples, ((95, 1.0),),
                                                                          work / "encode-write"))
        scaling_rounds: dict[int, list[dict]] = {1: [], WORKERS: []}
        for n in range(args.rounds if args.scaling else 0):
            for workers in scaling_rounds:
                say(f"round {n + 1}/{args.rounds}: quiltgen with {workers} worker(s)")
                scaling_rounds[workers].append(run_quiltgen(layout, work, f"workers-{workers}", quilt_args, samples,
                                                            env, workers=workers))
        if args.default_config:
            rounds["quiltgen_default"] = []
            for n in range(args.rounds):
                say(f"round {n + 1}/{args.rounds}: quiltgen with its default config")
                rounds["quiltgen_default"].append(
                    run_quiltgen(layout, work, "default", [f"samples.repeats={args.repeats}"], samples, env))
        if args.report:
            rounds["report_on"], rounds["report_off"] = [], []
            for n in range(args.rounds):
                for value in ("true", "false"):
                    say(f"round {n + 1}/{args.rounds}: quiltgen default config with output.report={value}")
                    rounds[f"report_{'on' if value == 'true' else 'off'}"].append(run_quiltgen(
                        layout, work, f"report-{value}", [f"samples.repeats={args.repeats}", f"output.report={value}"],
                        samples, env))
        say("file-write probe: new files, then the same files rewritten in place")
        write_probe = probe_file_writes(work / "write-probe")
        hash_probe = probe_input_hashing(layout)
        shutdown_loky()  # idle bench-side workers must not sit beside the RSS runs
        runs = {k: median_run(v) for k, v in rounds.items()}

        rss, rss_note = [], None
        if rss_sizes:
            try:
                import psutil  # noqa: F401
            except ImportError:
                rss_note = f"skipped: psutil is not installed in {sys.executable}'s environment"
                say(rss_note)
                rss_sizes = []
        for size in rss_sizes:
            per_class = math.ceil(size / len(classes))
            say(f"peak RSS: quiltgen samples.per_class={per_class} ({per_class * len(classes)} samples)")
            run = run_quiltgen(layout, work, f"rss-{size}", [*LIKE_FOR_LIKE, f"samples.per_class={per_class}"],
                               per_class * len(classes), env, poll_rss=True)
            rss.append(run)

        ratios = {"quiltgen_over_seed_port": sps(runs["quiltgen"]) / sps(runs["seed_port"]),
                  "encode_only_over_quiltgen": sps(runs["encode_only"]) / sps(runs["quiltgen"]),
                  "encode_only_over_quiltgen_own": sps(runs["encode_only"]) / runs["quiltgen"]["own_samples_per_s"],
                  "encode_write_over_quiltgen_own": sps(runs["encode_write"]) / runs["quiltgen"]["own_samples_per_s"],
                  "encode_only_over_encode_write": sps(runs["encode_only"]) / sps(runs["encode_write"])}
        if "quiltgen_default" in runs:
            ratios["quiltgen_default_over_seed_port"] = sps(runs["quiltgen_default"]) / sps(runs["seed_port"])
        if args.report:
            ratios["report_on_over_off"] = runs["report_on"]["seconds"] / runs["report_off"]["seconds"]
        if args.no_previews:
            ratios["quiltgen_no_previews_over_seed_port"] = sps(runs["quiltgen_no_previews"]) / sps(runs["seed_port"])
            ratios["encode_only_over_quiltgen_no_previews"] = (sps(runs["encode_only_no_previews"])
                                                               / sps(runs["quiltgen_no_previews"]))
            ratios["encode_only_over_encode_write_no_previews"] = (sps(runs["encode_only_no_previews"])
                                                                   / sps(runs["encode_write_no_previews"]))
            ratios["encode_write_over_quiltgen_no_previews_own"] = (
                sps(runs["encode_write_no_previews"]) / runs["quiltgen_no_previews"]["own_samples_per_s"])
        results = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
                        "python": platform.python_version(), "opencv": cv2.__version__, "numpy": np.__version__,
                        "joblib": joblib.__version__},
            "input": f"{len(classes)} classes x {photos // len(classes)} photos x {backs} backgrounds, 1920x1080",
            "repeats": args.repeats, "samples": samples, "rounds": args.rounds, "workers": WORKERS,
            "runs": runs, "ratios": ratios, "rss": rss, "rss_note": rss_note, "write_probe": write_probe,
            "hash_probe": hash_probe,
            **({"marginal": m} if (m := marginal(rss)) else {}),
            **({"scaling": scaling(scaling_rounds)} if args.scaling else {}),
            "profile": run_profile(layout, work, args.profile, env) if args.profile else None,
            "quiltgen_command": " ".join(runs["quiltgen"]["command"]),
        }
        for run in [*runs.values(), *rss]:
            run["samples_per_s"] = round(sps(run), 2)
            run["seconds"] = round(run["seconds"], 3)
        print(report(results))
        if json_path:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
            say(f"results written to {json_path}")
    finally:
        if args.keep:
            say(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
