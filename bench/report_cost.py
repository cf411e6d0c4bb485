#!/usr/bin/env python
"""What the report stage costs, piece by piece, on a finished run folder (e.g. a 1440-sample default run).

Each piece is timed with timeit in this process (best of --repeats, CPU and wall), and matplotlib's import
once in a fresh interpreter. Usage:
  python bench/report_cost.py RUN_DIR INPUT_ROOT [--repeats 5]
RUN_DIR must hold manifest.jsonl and .hydra/config.yaml (a quiltgen run); INPUT_ROOT is its input.root.
Nothing in RUN_DIR is changed: report_run writes into a copy of its manifest and config.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline import report, runner, stats  # noqa: E402
from pipeline.backends import parallel_backend  # noqa: E402


def best(fn, repeats: int) -> tuple[float, float]:
    """Best wall and best CPU seconds of ``fn`` over ``repeats`` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        c = time.process_time()
        walls.append(timeit.timeit(fn, number=1))
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("input_root", type=Path)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    settings = yaml.safe_load((args.run_dir / ".hydra" / "config.yaml").read_text())
    settings["input"]["root"] = str(args.input_root)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        catalog = runner.scan_inputs(settings)
        with parallel_backend({"backend": "sequential", "n_jobs": 1}) as n_workers:
            bank, _ = runner.build_bank(catalog, work / "bank", settings, n_workers)
        records = list(report.read_manifest(args.run_dir))
        found = {"run": report.run_info(args.run_dir, settings, len(records), 10.0), **stats.compute(records)}
        code = ("import time; t, c = time.perf_counter(), time.process_time(); "
                "import matplotlib.figure, matplotlib.backends.backend_agg; "
                "print(time.perf_counter() - t, time.process_time() - c)")
        imports = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True
                                  ).stdout.split() for _ in range(args.repeats)]
        pieces = {
            "read manifest.jsonl": lambda: list(report.read_manifest(args.run_dir)),
            "stats.compute": lambda: stats.compute(records),
            "import matplotlib (fresh interpreter)": None,
            "figures (matplotlib, Agg)": lambda: report.figures(found, None),
            "contact sheet": lambda: report.contact_sheet(args.run_dir),
            "augmentation sheet": lambda: report.augmentation_sheet(bank, settings),
        }
        parts = {"figures": report.figures(found, None), "contact": report.contact_sheet(args.run_dir),
                 "sheet": report.augmentation_sheet(bank, settings)}
        pieces["render_html"] = lambda: report.render_html(found, parts, settings)
        (work / "run").mkdir()
        shutil.copy(args.run_dir / "manifest.jsonl", work / "run")
        for name in ("previews", "images"):
            (work / "run" / name).symlink_to((args.run_dir / name).resolve())
        on = dict(settings, output={**settings["output"], "report": True})
        off = dict(settings, output={**settings["output"], "report": False})
        pieces["report_run, output.report=true (all of it, matplotlib imported)"] = (
            lambda: report.report_run(work / "run", on, bank, 10.0))
        pieces["report_run, output.report=false (stats.json only)"] = (
            lambda: report.report_run(work / "run", off, bank, 10.0))
        print(f"{len(records)} records from {args.run_dir}; best of {args.repeats}")
        for name, fn in pieces.items():
            if fn is None:
                wall, cpu = min(float(w) for w, _ in imports), min(float(c) for _, c in imports)
            else:
                wall, cpu = best(fn, args.repeats)
            print(f"  {name:62s} wall {wall * 1000:7.0f} ms   cpu {cpu * 1000:7.0f} ms")


if __name__ == "__main__":
    main()
