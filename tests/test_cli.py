"""The real command line in subprocesses: run dirs, frozen configs, multirun, one-line errors."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
import yaml

from tests.conftest import tree_digest

pytestmark = pytest.mark.slow

QUICK = ["quilt.width=320", "quilt.height=240", "workers.backend=sequential", "workers.n_jobs=1", "output.report=false"]
CONSOLE_SCRIPT = Path(sys.executable).parent / "quiltgen"


def quiltgen(cwd, *args, entry=(sys.executable, "-m", "pipeline"), check=True):
    proc = subprocess.run([*entry, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def run_dirs(base: Path):
    return sorted(p.parent for p in base.rglob("manifest.jsonl"))


def test_cfg_job_prints_the_full_config_from_any_directory(tmp_path):
    out = quiltgen(tmp_path, "--cfg", "job", "seed=5").stdout
    cfg = yaml.safe_load(out)
    assert cfg["seed"] == 5 and cfg["quilt"]["rows"] == 2 and cfg["augment"]["scale"]["max"] == 2.0
    assert set(cfg) == {"input", "quilt", "augment", "compose", "output", "workers", "samples", "evaluate", "seed",
                        "resume", "dry_run"}
    assert cfg["evaluate"] is None  # no evaluation unless evaluate=reference or evaluate=command


def test_console_script_writes_a_run_dir_with_frozen_config(tmp_path, layout):
    quiltgen(tmp_path, f"input.root={layout}", "samples.per_class=2", "seed=3", *QUICK, entry=(str(CONSOLE_SCRIPT),))
    (run,) = run_dirs(tmp_path / "outputs")
    frozen = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert frozen["seed"] == 3 and frozen["input"]["root"] == str(layout)
    assert "seed=3" in (run / ".hydra" / "overrides.yaml").read_text()
    assert len((run / "manifest.jsonl").read_text().splitlines()) == 4
    assert (run / "quiltgen.log").read_text().count("wrote 4 samples") == 1


def test_runs_started_in_the_same_second_get_their_own_dirs(tmp_path, layout):
    args = [sys.executable, "-m", "pipeline", f"input.root={layout}", "samples.per_class=1", *QUICK]
    procs = [subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    runs = run_dirs(tmp_path / "outputs")
    assert len(runs) == 3
    for run in runs:
        assert len((run / "manifest.jsonl").read_text().splitlines()) == 2


def test_multirun_makes_one_folder_per_job_with_its_own_config(tmp_path, layout):
    quiltgen(tmp_path, "-m", "augment.scale.max=1.5,2.0", "seed=1,2", f"input.root={layout}",
             "samples.per_class=1", *QUICK)
    runs = run_dirs(tmp_path / "multirun")
    assert len(runs) == 4
    # readable folder names: the number and the overrides in key order, the input path left out
    assert sorted(run.name[:len("0_augment.scale.max=1.5,output")] for run in runs) == [
        f"{n}_augment.scale.max={m},output" for n, m in enumerate(("1.5", "1.5", "2.0", "2.0"))]
    combos = set()
    for run in runs:
        frozen = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
        combos.add((frozen["augment"]["scale"]["max"], frozen["seed"]))
        records = [json.loads(line) for line in (run / "manifest.jsonl").read_text().splitlines()]
        assert all(o["augment"]["scale"] <= frozen["augment"]["scale"]["max"] for r in records for o in r["objects"])
    assert combos == {(1.5, 1), (1.5, 2), (2.0, 1), (2.0, 2)}


@pytest.mark.parametrize("args, message", [
    (["input.root=/nonexistent/parts"], "quiltgen: error: input.root: /nonexistent/parts is not a folder"),
    (["augment.scale.min=5"], "quiltgen: error: augment.scale: min must be <= max"),
    (["+quilt.typo=1"], "quiltgen: error: quilt.typo: unknown key"),
])
def test_user_errors_exit_1_with_one_line_and_no_traceback(tmp_path, args, message):
    proc = quiltgen(tmp_path, *args, *QUICK, check=False)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("manifest.jsonl")) and not list(tmp_path.rglob("images"))
    if not args[0].startswith("input.root"):  # a config error stops before Hydra makes a run folder
        assert not (tmp_path / "outputs").exists()
    else:  # an input error is found in the run: its folder records it
        (record,) = [json.loads(p.read_text()) for p in tmp_path.rglob("run.json")]
        assert record["status"] == "failed" and "is not a folder" in record["error"]


def test_an_unwritable_demo_cache_from_the_environment_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("")  # a folder under a file cannot be made, even by root
    cache = tmp_path / "afile" / "c2"
    proc = subprocess.run([sys.executable, "-m", "pipeline", *QUICK], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "QUILTGEN_CACHE": str(cache)})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"quiltgen: error: input.cache_dir: cannot write the demo set into {cache} (Not a directory); set "
        f"input.cache_dir (or QUILTGEN_CACHE) to a writable folder")


def test_parallel_sweep_matches_the_sequential_sweep(tmp_path, layout):
    common = ["seed=1,2", f"input.root={layout}", "samples.per_class=2", "quilt.width=320", "quilt.height=240"]
    parallel = quiltgen(tmp_path, "-m", "sweep=parallel", *common, "hydra.sweep.dir=par")
    assert "Joblib.Parallel(n_jobs=-1" in parallel.stdout + parallel.stderr
    quiltgen(tmp_path, "-m", *common, *QUICK, "hydra.sweep.dir=seq")
    for job in ("0", "1"):  # folders are named <job number>_<overrides>, and the two sweeps' overrides differ
        (par,), (seq,) = (tmp_path / "par").glob(f"{job}_*"), (tmp_path / "seq").glob(f"{job}_*")
        frozen = yaml.safe_load((par / ".hydra" / "config.yaml").read_text())
        assert frozen["workers"] == {**frozen["workers"], "backend": "sequential", "n_jobs": 1}
        assert tree_digest(par) == tree_digest(seq)


def test_slurm_sweep_preset_selects_the_submitit_launcher(tmp_path):
    out = quiltgen(tmp_path, "sweep=slurm", "--cfg", "hydra").stdout
    assert yaml.safe_load(out)["hydra"]["launcher"]["_target_"].endswith("SlurmLauncher")


def test_sigterm_stops_cleanly_leaving_no_partial_files(tmp_path, layout):
    """kill / docker stop / a Slurm time limit: the run unwinds as on Ctrl-C (exit 143), nothing half-written."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", f"input.root={layout}", "samples.per_class=5000",
                             "workers.n_jobs=2", f"hydra.run.dir={out}", "quilt.width=320", "quilt.height=240"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list((out / "images").rglob("*.jpg")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.terminate()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert f"quiltgen: terminated (SIGTERM): the samples written so far are kept; finish the run with: " \
           f"quiltgen resume={out}" in stderr
    assert "Traceback" not in stderr
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*")
                  if p.name.startswith(".bank-") or p.name.endswith((".tmp", ".partial")))
    assert left == [] and not (out / "manifest.jsonl").exists()
    assert all(cv2.imread(str(p)) is not None for p in (out / "images").rglob("*.jpg"))  # every image complete


def test_a_finished_run_folder_is_refused_and_keeps_its_frozen_config(tmp_path, layout):
    out = tmp_path / "run"
    quiltgen(tmp_path, f"input.root={layout}", "samples.per_class=1", f"hydra.run.dir={out}", *QUICK)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    proc = quiltgen(tmp_path, f"input.root={layout}", "samples.per_class=2", "seed=9", f"hydra.run.dir={out}",
                    *QUICK, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"quiltgen: error: hydra.run.dir: {out} already holds a complete dataset" in proc.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # .hydra/config.yaml included


def test_a_used_sweep_folder_is_refused_before_any_job_runs(tmp_path, layout):
    sweep = tmp_path / "sweep"
    args = ["-m", "seed=1,2", f"input.root={layout}", "samples.per_class=1", f"hydra.sweep.dir={sweep}", *QUICK]
    quiltgen(tmp_path, *args)
    before = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()}
    proc = quiltgen(tmp_path, *args, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"quiltgen: error: hydra.sweep.dir: {sweep} already holds a sweep (multirun.yaml)" in proc.stderr
    assert {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()} == before  # multirun.yaml included


@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_a_run_or_sweep_folder_inside_the_input_folder_is_refused_in_one_line(layout, mode):
    """`quiltgen input.root=.` started in the input folder: the default run folder (outputs/...) is inside it."""
    before = sorted(layout.rglob("*"))
    proc = quiltgen(layout, *(["-m", "seed=1,2"] if mode == "sweep" else []), "input.root=.", *QUICK, check=False)
    key, folder = ("hydra.sweep.dir", "multirun") if mode == "sweep" else ("hydra.run.dir", "outputs")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"quiltgen: error: {key}: {layout.resolve() / folder}/")
    assert line.endswith(f" is inside input.root ({layout.resolve()}), so the dataset would be written among its "
                         f"inputs; choose a folder outside input.root with {key}=<folder>")
    assert sorted(layout.rglob("*")) == before  # no run folder, no .hydra/, no run.json


def test_a_config_warning_is_printed_once_though_the_config_is_checked_twice(tmp_path, layout):
    """The folder claim checks the config before Hydra writes .hydra/, and the run checks it again."""
    out = quiltgen(tmp_path, f"input.root={layout}", *QUICK, "output.formats=[]", "dry_run=true").stdout
    assert out.count("output.formats is empty") == 1
