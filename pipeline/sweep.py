"""Sweeps: readable job folder names, a check before an optimiser starts, and a summary when they end.

``SweepSummary`` is a Hydra callback (registered in conf/config.yaml). At the end of ``quiltgen -m ...`` it
reads every job folder's ``.hydra/overrides.yaml`` and ``stats.json`` and writes ``summary.csv`` and
``summary.html`` in the sweep folder: one row per job, sorted by score when there is one.
"""
from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import sys
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from pipeline import runstate, writers

# Sweepers that tune toward the number each job returns (Hydra's plugins for Optuna, Nevergrad, Ax).
OPTIMISERS = ("optuna", "nevergrad", "ax_sweeper", "axsweeper")
MAX_NAME = 120  # characters of a job folder name taken from its overrides (Linux allows 255 bytes)


def job_dir_name(num: int, override_dirname: str) -> str:
    """``<job number>_<overrides>``: slashes become '_' (a '/' would nest folders), and long names are cut
    (the job number keeps them unique)."""
    name = override_dirname.replace("/", "_").replace("\0", "")
    name = name if len(name) <= MAX_NAME else name[:MAX_NAME - 3] + "..."
    return f"{num}_{name}" if name else str(num)


def register_resolvers() -> None:
    """``${job_dir_name:${hydra.job.num},${hydra.job.override_dirname}}`` for hydra.sweep.subdir."""
    if not OmegaConf.has_resolver("job_dir_name"):
        OmegaConf.register_new_resolver("job_dir_name", lambda num, dirname: job_dir_name(int(num), str(dirname)))


def needs_objective(config: DictConfig) -> str | None:
    """The sweeper's class name if it optimises the jobs' return value, else None."""
    target = str(OmegaConf.select(config, "hydra.sweeper._target_", default="") or "")
    return target.rsplit(".", 1)[-1] if any(name in target.lower() for name in OPTIMISERS) else None


class SweepSummary(Callback):
    """Before an optimising sweep: refuse one without an objective. After any sweep: summary.csv and .html."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _RUNNING.append(Path(str(config.hydra.sweep.dir)))
        optimiser = needs_objective(config)
        if optimiser is None:
            return
        if OmegaConf.select(config, "evaluate") is None:
            print(f"quiltgen: error: hydra.sweeper: {optimiser} tunes toward each run's score, and without an "
                  f"evaluation there is none; add evaluate=reference evaluate.reference=<your real labels> or "
                  f"evaluate=command 'evaluate.command=\"<your train-and-validate command>\"'", file=sys.stderr)
            raise SystemExit(1)
        # optuna 2.x under SQLAlchemy 1.4 warns about SQLAlchemy 2.0 on import; nothing a user can change
        os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
        Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)  # the study's SQLite file goes here

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        _RUNNING.clear()
        write_summary(sweep_dir)
        failed = [row["folder"] for row in job_rows(sweep_dir)
                  if row["run"].get("status") != "complete" or row["run"].get("error")]
        if failed:  # each job said why in one line as it ended; the sweep went on
            print(f"quiltgen: error: {len(failed)} of {len(job_rows(sweep_dir))} sweep jobs did not finish "
                  f"(see the status column of {sweep_dir / 'summary.csv'})", file=sys.stderr)
            raise SystemExit(1)


# The sweep of this process while it runs: a sweep stopped part-way (Ctrl-C, SIGTERM) gets no
# on_multirun_end from Hydra, so the entry point summarises it on the way out.
_RUNNING: list[Path] = []


def summarise_stopped_sweep() -> None:
    """summary.csv and .html of a sweep that stopped before its end, listing the jobs so far."""
    while _RUNNING:
        summary = write_summary(_RUNNING.pop())
        if summary is not None:
            print(f"quiltgen: the sweep stopped; {summary.with_suffix('.csv')} lists its jobs so far", file=sys.stderr)


# ------------------------------------------------------------------------------------------------ summary

def job_rows(sweep_dir: Path) -> list[dict]:
    """One dict per job folder (a folder with .hydra/overrides.yaml): number, folder, overrides, stats."""
    rows = []
    for folder in sorted(p for p in sweep_dir.iterdir() if (p / ".hydra" / "overrides.yaml").is_file()):
        overrides = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text()) or []
        stats_file = folder / "stats.json"
        found = json.loads(stats_file.read_text()) if stats_file.is_file() else None
        match = re.match(r"\d+", folder.name)
        rows.append({"num": int(match.group()) if match else None, "folder": folder.name,
                     "overrides": dict(o.split("=", 1) if "=" in o else (o, "") for o in overrides),
                     "stats": found, "report": (folder / "report.html").is_file(),
                     "run": runstate.read_run(folder) or {}})
    return rows


STAT_COLUMNS = ("status", "images", "objects", "objects_per_image", "instances", "dropped", "background_only",
                "box_size_median", "truncated_mean", "occluded_mean", "seconds", "samples_per_second", "score")


def job_status(record: dict) -> str:
    """A job's status from its run.json: complete, or how it ended and why."""
    status = record.get("status", "not started")
    return f"{status}: {record['error']}" if record.get("error") else status


def key_stats(found: dict | None, record: dict | None = None) -> dict:
    """The columns taken from a job's stats.json (empty when the job wrote none) and its run.json status."""
    if not found:
        return {**dict.fromkeys(STAT_COLUMNS, ""), "status": job_status(record or {})}
    counts, run = found["counts"], found["run"]
    boxes = found["boxes"]["per_class"]["all"]
    return {
        "status": job_status(record) if record else "complete",
        "images": counts["images"],
        "objects": counts["objects"],
        "objects_per_image": round(counts["objects"] / counts["images"], 3) if counts["images"] else 0,
        "instances": " ".join(f"{name}:{counts['instances'][name]['total']}" for name in counts["classes"]),
        "dropped": counts["dropped"],
        "background_only": counts["background_only"],
        "box_size_median": boxes["size_rel"].get("median", ""),
        "truncated_mean": found["fractions"]["truncated"]["mean"],
        "occluded_mean": found["fractions"]["occluded"]["mean"],
        "seconds": run["seconds"],
        "samples_per_second": run["samples_per_second"],
        "score": found.get("evaluation", {}).get("score", ""),
    }


def summary_table(rows: list[dict]) -> tuple[list[str], list[dict], str | None]:
    """(columns, rows as flat dicts, sort note): override keys that vary first, then the key statistics;
    sorted by score (best first, by each job's evaluate.direction) when any job has one, else by job number."""
    keys = list(dict.fromkeys(k for row in rows for k in row["overrides"]))
    varying = [k for k in keys if len({row["overrides"].get(k) for row in rows}) > 1]
    override_columns = varying + [k for k in keys if k not in varying]
    flat = [{"job": row["num"], "folder": row["folder"], **{k: row["overrides"].get(k, "") for k in override_columns},
             **key_stats(row["stats"], row.get("run")),
             "report": f"{row['folder']}/report.html" if row["report"] else ""} for row in rows]
    columns = ["job", "folder", *override_columns, *STAT_COLUMNS, "report"]
    directions = {row["stats"]["evaluation"]["direction"] for row in rows
                  if row["stats"] and "evaluation" in row["stats"]}
    number = lambda row: row["job"] if row["job"] is not None else float("inf")  # noqa: E731
    if directions:
        sign = -1 if directions == {"maximize"} else 1
        flat.sort(key=lambda r: (r["score"] == "", sign * r["score"] if r["score"] != "" else 0, number(r)))
        note = f"sorted by score, {'highest' if sign < 0 else 'lowest'} (best) first"
    else:
        flat.sort(key=number)
        note = None
    return columns, flat, note


def write_summary(sweep_dir: Path) -> Path | None:
    """summary.csv and summary.html in the sweep folder; None when it holds no job folder."""
    if not sweep_dir.is_dir():
        return None
    rows = job_rows(sweep_dir)
    if not rows:
        return None
    columns, flat, note = summary_table(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    writers.atomic_write(sweep_dir / "summary.csv", buf.getvalue().encode())
    writers.atomic_write(sweep_dir / "summary.html", summary_html(sweep_dir, columns, flat, note).encode())
    return sweep_dir / "summary.html"


def summary_html(sweep_dir: Path, columns: list[str], rows: list[dict], note: str | None) -> str:
    e = html.escape
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>quiltgen sweep</title><style>"
           "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse}"
           "td,th{border:1px solid #ddd;padding:2px 8px}th{background:#f3f3f3}</style></head><body>",
           f"<h1>quiltgen sweep: {len(rows)} jobs</h1><p>{e(str(sweep_dir))}"
           f"{'; ' + e(note) if note else ''}. The same numbers are in summary.csv.</p>"]
    results = sweep_dir / "optimization_results.yaml"
    if results.is_file():
        best = yaml.safe_load(results.read_text()) or {}
        params = " ".join(f"{k}={v}" for k, v in (best.get("best_params") or {}).items())
        out.append(f"<p>Optuna's best: <b>{e(str(best.get('best_value', '')))}</b> with <code>{e(params)}</code> "
                   f"(<a href='optimization_results.yaml'>optimization_results.yaml</a>)</p>")
    out.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>")
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column, "")
            if column == "report":
                cells.append(f"<a href='{e(value)}'>report</a>" if value else "")
            elif column == "folder":
                cells.append(f"<a href='{e(value)}/'>{e(value)}</a>")
            else:
                cells.append(e(str(value)))
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</table></body></html>")
    return "\n".join(out)
