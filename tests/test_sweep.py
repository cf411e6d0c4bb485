"""Sweeps through the real command line: the summary of a multirun, Optuna, and the objective check."""
import csv
import json
import sqlite3
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.runner import run
from pipeline.sweep import job_dir_name
from tests.conftest import SMALL, make_config
from tests.test_cli import QUICK, quiltgen
from tests.test_evaluate import SCORER

DOCS = Path(__file__).parents[1] / "docs" / "evaluate.md"

pytestmark = pytest.mark.slow


def read_summary(sweep):
    with open(sweep / "summary.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_2x2_sweep_scored_by_a_command_writes_a_summary_sorted_by_score(tmp_path, layout):
    sweep = tmp_path / "sweep"
    scorer = f"{sys.executable} {SCORER} {{data_yaml}} {{run_dir}}/eval/metrics.json"
    quiltgen(tmp_path, "-m", "compose.objects.max=1,3", "seed=1,2", f"input.root={layout}", "samples.per_class=2",
             "evaluate=command", f"evaluate.command='{scorer}'", "evaluate.score_file=eval/metrics.json",
             "evaluate.score_key=metrics.map50", f"hydra.sweep.dir={sweep}", *QUICK, "output.report=true")
    rows = read_summary(sweep)
    assert len(rows) == 4
    assert {(r["compose.objects.max"], r["seed"]) for r in rows} == {("1", "1"), ("1", "2"), ("3", "1"), ("3", "2")}
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)  # best first: the command's score is maximized
    for row in rows:
        job = sweep / row["folder"]
        assert row["folder"].startswith(f"{row['job']}_") and "input.root" not in row["folder"]  # paths left out
        found = json.loads((job / "stats.json").read_text())
        assert found["evaluation"]["score"] == float(row["score"]) == found["counts"]["objects"] / 100
        assert int(row["objects"]) == found["counts"]["objects"] and row["report"] == f"{row['folder']}/report.html"
        frozen = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        assert (str(frozen["compose"]["objects"]["max"]), str(frozen["seed"])) == (row["compose.objects.max"],
                                                                                  row["seed"])
    html = (sweep / "summary.html").read_text()
    assert html.count("<tr>") == 5 and html.count(">report</a>") == 4


def test_an_optuna_sweep_runs_its_trials_and_writes_the_best_parameters(tmp_path, layout):
    reference = tmp_path / "real"
    run(make_config([*SMALL, f"input.root={layout}", "samples.per_class=3"]), reference)
    sweep = tmp_path / "study"
    args = ["-m", "sweep=optuna", "evaluate=reference", f"evaluate.reference={reference / 'yolo' / 'data.yaml'}",
            f"input.root={layout}", "samples.per_class=2", *QUICK]
    proc = quiltgen(tmp_path, *args, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep}")
    assert "Warning" not in proc.stderr
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"augment.scale.min", "augment.scale.max", "augment.rotation.min",
                                        "augment.rotation.max", "compose.blending.hard", "compose.blending.feather",
                                        "compose.blending.poisson", "compose.blending.motion", "compose.objects.max"}
    rows = read_summary(sweep)
    assert len(rows) == 2 and best["best_value"] == max(float(r["score"]) for r in rows) == float(rows[0]["score"])
    assert "optimization_results.yaml</a>" in (sweep / "summary.html").read_text()
    # the study is kept: a new sweep on the same storage continues it
    quiltgen(tmp_path, *args, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 'more'}",
             f"hydra.sweeper.storage=sqlite:///{sweep / 'optuna.db'}")
    with sqlite3.connect(sweep / "optuna.db") as db:
        assert db.execute("select count(*) from trials where state = 'COMPLETE'").fetchone() == (3,)
    assert len(read_summary(tmp_path / "more")) == 1


def test_an_optimiser_without_an_evaluation_stops_with_one_line(tmp_path, layout):
    proc = quiltgen(tmp_path, "-m", "sweep=optuna", f"input.root={layout}", f"hydra.sweep.dir={tmp_path / 's'}",
                    *QUICK, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "quiltgen: error: hydra.sweeper: OptunaSweeper tunes toward each run's score, and without an " \
           "evaluation there is none; add evaluate=reference" in proc.stderr
    assert not (tmp_path / "s").exists()


def test_job_folder_names_are_readable_unique_and_never_nested():
    assert job_dir_name(3, "augment.scale.max=1.5,seed=1") == "3_augment.scale.max=1.5,seed=1"
    assert job_dir_name(0, "") == "0"
    assert job_dir_name(1, "input.root=/data/a/b") == "1_input.root=_data_a_b"
    long = job_dir_name(12, "x=" + "9" * 500)
    assert long.startswith("12_x=999") and long.endswith("...") and len(long) < 130


def test_a_failing_evaluation_is_one_line_and_does_not_stop_the_sweep(tmp_path, layout):
    failing = f"'{sys.executable} -c \"import sys; sys.exit(3)\"'"
    args = [f"input.root={layout}", "samples.per_class=1", "evaluate=command", f"evaluate.command={failing}", *QUICK]
    single = quiltgen(tmp_path, *args, f"hydra.run.dir={tmp_path / 'one'}", check=False)
    assert single.returncode == 1 and "Traceback" not in single.stderr
    # one line, the one docs/evaluate.md shows
    documented = next(line for line in DOCS.read_text().splitlines()
                      if line.startswith("quiltgen: error: evaluate.command exited"))
    assert single.stderr.strip() == documented.replace("status 2", "status 3").replace(
        "/.../evaluate.log", str(tmp_path / "one" / "evaluate.log"))
    assert json.loads((tmp_path / "one" / "run.json").read_text())["status"] == "complete"
    sweep = tmp_path / "sweep"
    proc = quiltgen(tmp_path, "-m", "seed=1,2", *args, f"hydra.sweep.dir={sweep}", check=False)  # both jobs run
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.count("evaluate.command exited with status 3") == 2  # one line per job, as it ends
    assert proc.stderr.strip().splitlines()[-1] == f"quiltgen: error: 2 of 2 sweep jobs did not finish (see the " \
                                                   f"status column of {sweep / 'summary.csv'})"
    rows = read_summary(sweep)
    assert [r["score"] for r in rows] == ["", ""] and all(r["status"].startswith("complete: evaluate.command exited")
                                                          for r in rows)


def test_a_sweep_goes_on_past_a_failing_job_and_its_summary_says_why(tmp_path, layout):
    sweep = tmp_path / "sweep"
    proc = quiltgen(tmp_path, "-m", "augment.scale.max=1.5,0.01", f"input.root={layout}", "samples.per_class=1",
                    f"hydra.sweep.dir={sweep}", *QUICK, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    rows = {r["augment.scale.max"]: r for r in read_summary(sweep)}
    assert rows["1.5"]["status"] == "complete" and rows["1.5"]["images"] == "2"
    assert rows["0.01"]["status"] == "failed: augment.scale: min must be <= max, got min=0.5, max=0.01"


def test_a_sweep_stopped_by_ctrl_c_still_writes_its_summary(tmp_path, layout):
    import signal
    import subprocess
    import time

    sweep = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "-m", "seed=1,2", f"input.root={layout}",
                             "samples.per_class=80", "workers.n_jobs=1", "quilt.width=320", "quilt.height=240",
                             f"hydra.sweep.dir={sweep}"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(sweep.glob("*/.journal.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert f"quiltgen: the sweep stopped; {sweep / 'summary.csv'} lists its jobs so far" in stderr
    (row,) = read_summary(sweep)  # the first job, stopped part-way; the second never started
    assert row["status"].startswith("interrupted") and row["seed"] == "1"
