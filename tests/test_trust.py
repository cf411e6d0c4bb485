"""Runs you can trust, with real processes: replay, resume after every kind of stop, one writer per folder,
clean ends, run.json, dry runs and one-line errors."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest
import yaml

from pipeline.errors import ConfigError, InputError, ResumeRefused, SampleError
from pipeline.runner import run
from tests.conftest import SMALL, make_config, make_layout, tree_digest

pytestmark = pytest.mark.slow

QUICK = ["quilt.width=320", "quilt.height=240"]
# Enough samples that a stop lands mid-run, few enough for a quick test.
LONG = ["samples.per_class=50", "seed=5", "output.preview_every=4"]


def quiltgen(cwd, *args, env=None, check=True, timeout=180):
    proc = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def start(cwd, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def journal_lines(out: Path) -> int:
    try:
        return (out / ".journal.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_for_samples(proc: subprocess.Popen, out: Path, count: int = 12, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while journal_lines(out) < count and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.fail(f"the run ended before it could be stopped: {proc.communicate()[1]}")


def status(out: Path) -> str:
    return json.loads((out / "run.json").read_text())["status"]


def leftovers(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")
                  if p.name.startswith((".bank-", ".journal")) or p.name.endswith((".tmp", ".partial")))


@pytest.fixture(scope="module")
def inputs(module_layout) -> Path:
    return module_layout


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> dict:
    """The tree of an uninterrupted run of the LONG config."""
    out = tmp_path_factory.mktemp("reference") / "run"
    run(make_config([*SMALL, f"input.root={inputs}", *LONG]), out)
    return tree_digest(out)


def loky_workers(parent: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(parent).children()
    except psutil.NoSuchProcess:
        return []
    return [p for p in children if "popen_loky" in " ".join(p.cmdline())]


@pytest.mark.parametrize("stop", ["sigint", "sigterm", "kill-parent", "kill-worker"])
def test_resume_after_any_stop_gives_the_uninterrupted_tree(tmp_path, inputs, reference, stop):
    out = tmp_path / "run"
    proc = start(tmp_path, f"input.root={inputs}", *QUICK, *LONG, "workers.n_jobs=2", f"hydra.run.dir={out}")
    wait_for_samples(proc, out)
    workers = loky_workers(proc.pid)
    if stop == "sigterm":
        proc.terminate()
    elif stop == "sigint":  # Ctrl-C
        proc.send_signal(signal.SIGINT)
    elif stop == "kill-parent":
        proc.kill()
    else:
        workers[0].kill()
    _, stderr = proc.communicate(timeout=60)
    if stop == "kill-parent":  # the orphaned workers notice and exit
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers outlived their parent: {alive}"
        assert status(out) == "running"  # nobody could say otherwise; the claim lock is gone with the process
    else:
        assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
        assert f"quiltgen resume={out}" in stderr
        expected = {"sigterm": (143, "interrupted", "quiltgen: terminated (SIGTERM): the samples written so far "
                                                     "are kept"),
                    "sigint": (130, "interrupted", "quiltgen: interrupted: the samples written so far are kept"),
                    "kill-worker": (1, "failed", "quiltgen: error: a worker process died (killed, or out of memory)")}
        code, state, message = expected[stop]
        assert proc.returncode == code and status(out) == state and message in stderr, stderr
        assert leftovers(out) == [".journal.jsonl"]
    assert not (out / "manifest.jsonl").exists()
    assert journal_lines(out) < 100
    if stop == "sigterm":
        refused = quiltgen(tmp_path, f"input.root={inputs}", *QUICK, f"hydra.run.dir={out}", check=False)
        assert refused.returncode == 1 and "holds an unfinished run" in refused.stderr
        assert f"quiltgen resume={out}" in refused.stderr

    resumed = quiltgen(tmp_path, f"resume={out}", "workers.n_jobs=2")
    assert "already done; rendering the other" in resumed.stdout
    assert tree_digest(out) == reference
    assert status(out) == "complete" and leftovers(out) == []
    frozen = yaml.safe_load((out / ".hydra" / "config.yaml").read_text())
    assert frozen["resume"] is None  # the run's own frozen config is untouched by the resume
    if stop == "sigterm":
        again = quiltgen(tmp_path, f"resume={out}")
        assert "is already complete" in again.stdout and tree_digest(out) == reference


def test_resume_on_dask_after_sigterm_gives_the_uninterrupted_tree(tmp_path, inputs, reference, dask_scheduler):
    out = tmp_path / "run"
    dask = ["workers=dask", f"workers.scheduler_address={dask_scheduler}"]
    proc = start(tmp_path, f"input.root={inputs}", *QUICK, *LONG, *dask, f"hydra.run.dir={out}")
    wait_for_samples(proc, out)
    proc.terminate()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143 and status(out) == "interrupted", stderr
    quiltgen(tmp_path, f"resume={out}", *dask)
    assert tree_digest(out) == reference and status(out) == "complete"


def test_two_runs_started_into_one_folder_exactly_one_writes_it(tmp_path, inputs):
    out = tmp_path / "run"
    procs = {seed: start(tmp_path, f"input.root={inputs}", *QUICK, "samples.per_class=3", f"seed={seed}",
                         "workers.n_jobs=1", f"hydra.run.dir={out}") for seed in (1, 2)}
    results = {seed: (proc.communicate(timeout=120)[1], proc.returncode)[::-1] for seed, proc in procs.items()}
    winners = [seed for seed, (code, _) in results.items() if code == 0]
    assert len(winners) == 1, results
    (loser,) = set(results) - set(winners)
    code, stderr = results[loser]
    assert code == 1 and len(stderr.strip().splitlines()) == 1 and stderr.startswith("quiltgen: error: hydra.run.dir")
    assert yaml.safe_load((out / ".hydra" / "config.yaml").read_text())["seed"] == winners[0]
    alone = tmp_path / "alone"
    run(make_config([*SMALL, f"input.root={inputs}", "samples.per_class=3", f"seed={winners[0]}"]), alone)
    assert tree_digest(out) == tree_digest(alone)


def test_replay_from_the_frozen_config_gives_the_same_bytes(tmp_path, inputs):
    """-cp and -cd replay (never the demo set, never seed 0), from another working folder (a relative
    input.root is read where the first run was started), and a replay replays too."""
    started, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    started.mkdir(), elsewhere.mkdir()
    first = tmp_path / "first"
    quiltgen(started, f"input.root={os.path.relpath(inputs, started)}", *QUICK, "samples.per_class=3", "seed=9",
             "augment.rotation.max=40", "workers.n_jobs=1", f"hydra.run.dir={first}")
    source = first
    for name, flag in (("cp", "-cp"), ("cd", "-cd")):  # the second replays the first replay
        out = tmp_path / name
        proc = quiltgen(elsewhere, flag, str(source / ".hydra"), "-cn", "config", f"hydra.run.dir={out}")
        assert tree_digest(out) == tree_digest(first), name
        assert f"relative paths in the config are read from {started}" in proc.stdout
        assert (out / "quiltgen.log").exists() and status(out) == "complete"
        assert "changed since that run" not in proc.stdout
        replayed = json.loads((out / "stats.json").read_text())["run"]  # the report names the run and its overrides
        assert replayed["replay_of"] == str(source) and "seed=9" in replayed["overrides"]
        source = out
    cv2.imwrite(str(inputs / "back" / "extra.jpg"), np.full((240, 320, 3), 30, np.uint8))
    try:
        proc = quiltgen(tmp_path, "-cp", str(first / ".hydra"), f"hydra.run.dir={tmp_path / 'changed'}")
    finally:
        (inputs / "back" / "extra.jpg").unlink()
    assert "1 input file changed since that run, so the images will differ: back/extra.jpg (added)" in proc.stdout


def test_resume_refuses_a_changed_config_or_input_and_other_overrides(tmp_path):
    layout = make_layout(tmp_path / "input")
    out = tmp_path / "run"
    proc = start(tmp_path, f"input.root={layout}", *QUICK, *LONG, "workers.n_jobs=2", f"hydra.run.dir={out}")
    wait_for_samples(proc, out, 4)
    proc.terminate()
    proc.communicate(timeout=60)
    extra = quiltgen(tmp_path, f"resume={out}", "seed=6", check=False)
    assert extra.returncode == 1 and "quiltgen: error: resume: a resume finishes the run with its own config; " \
                                      "drop seed=6" in extra.stderr
    frozen = out / ".hydra" / "config.yaml"
    original = frozen.read_text()
    frozen.write_text(original.replace("seed: 5", "seed: 7"))
    edited = quiltgen(tmp_path, f"resume={out}", check=False)
    assert edited.returncode == 1 and "the config differs from the one" in edited.stderr
    assert "seed: 5 -> 7" in edited.stderr
    frozen.write_text(original)
    photo = layout / "photo" / "cat" / "0.png"
    cv2.imwrite(str(photo), 255 - cv2.imread(str(photo)))
    changed = quiltgen(tmp_path, f"resume={out}", check=False)
    assert changed.returncode == 1 and "1 input file differs from the run's (photo/cat/0.png (changed))" \
        in changed.stderr
    assert status(out) == "interrupted" and not (out / "manifest.jsonl").exists() and journal_lines(out) >= 4
    assert json.loads((out / "run.json").read_text())["error"] == "terminated (SIGTERM)"  # refusals change nothing


def test_a_full_disk_during_the_final_commit_leaves_no_dataset_file_and_resumes(tmp_path, inputs, monkeypatch):
    out = tmp_path / "run"
    args = [*SMALL, f"input.root={inputs}", "samples.per_class=4"]
    real_replace = os.replace
    state = {"annotations": 0}

    def replace(src, dst):
        if "annotations" in os.fspath(dst):
            state["annotations"] += 1
            if state["annotations"] == 2:  # the second COCO file: the first and data.yaml are already in place
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(SampleError, match=r"^cannot write .*: No space left on device \(\d+ MiB free in "):
        run(make_config(args), out)
    monkeypatch.setattr(os, "replace", real_replace)
    assert state["annotations"] == 2
    assert not (out / "manifest.jsonl").exists()
    assert not [p for p in out.rglob("*") if p.suffix in (".json", ".yaml") and p.name != "run.json"]
    assert not [p for p in out.rglob("*") if p.name.endswith((".partial", ".tmp"))]
    assert status(out) == "failed"
    run(make_config([*args, f"resume={out}"]), out)
    alone = tmp_path / "alone"
    run(make_config(args), alone)
    assert tree_digest(out) == tree_digest(alone) and status(out) == "complete"


def test_a_stop_signal_during_the_final_commit_waits_for_it(tmp_path, inputs, monkeypatch, caplog):
    from pipeline.formats import DatasetWriters

    real_commit = DatasetWriters.commit

    def commit_with_ctrl_c(self):
        os.kill(os.getpid(), signal.SIGINT)
        real_commit(self)

    monkeypatch.setattr(DatasetWriters, "commit", commit_with_ctrl_c)
    out, args = tmp_path / "run", [*SMALL, f"input.root={inputs}", "samples.per_class=2", "output.report=true"]
    with pytest.raises(KeyboardInterrupt):  # after the commit, before the report: the stop was asked for
        run(make_config(args), out)
    assert (out / "manifest.jsonl").exists() and status(out) == "complete"
    assert "a stop signal arrived during the final commit; the dataset is complete" in caplog.text
    assert not (out / "stats.json").exists() and not (out / "report.html").exists()
    monkeypatch.undo()
    caplog.set_level("INFO", logger="pipeline.runner")
    dataset = tree_digest(out)
    run(make_config([*args, f"resume={out}"]), out)  # makes what the stop skipped, and nothing else
    assert "making its report and evaluation" in caplog.text and tree_digest(out) == dataset
    assert (out / "report.html").exists() and json.loads((out / "stats.json").read_text())["counts"]["images"] == len(
        (out / "manifest.jsonl").read_text().splitlines())
    caplog.clear()
    run(make_config([*args, f"resume={out}"]), out)
    assert "is already complete" in caplog.text
    (out / "manifest.jsonl").unlink()
    with pytest.raises(ResumeRefused, match=r"^resume: .* is marked complete but its manifest.jsonl is gone"):
        run(make_config([*args, f"resume={out}"]), out)


def test_run_json_records_versions_counts_and_every_input_with_its_sha256(tmp_path, inputs):
    out = tmp_path / "run"
    run(make_config([*SMALL, f"input.root={inputs}", "samples.per_class=5"]), out)
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and record["started"] <= record["ended"]
    assert set(record["versions"]) >= {"quiltgen", "python", "numpy", "opencv", "hydra", "joblib", "git_commit"}
    assert record["samples"] == {"total": 10, "per_class": {"cat": 5, "dog": 5}, "per_split": {"train": 8, "val": 2},
                                 "per_class_split": {"cat": {"train": 4, "val": 1}, "dog": {"train": 4, "val": 1}}}
    files = sorted(p for p in inputs.rglob("*") if p.is_file())
    assert sorted(i["path"] for i in record["inputs"]) == sorted(p.relative_to(inputs).as_posix() for p in files)
    for item in record["inputs"]:
        data = (inputs / item["path"]).read_bytes()
        assert item["sha256"] == hashlib.sha256(data).hexdigest() and item["size"] == len(data)
    assert {i["kind"] for i in record["inputs"]} == {"photo", "mask", "background"}
    assert record["seed"] == 0 and record["config"]["samples"]["per_class"] == 5 and "workers" not in record["config"]


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, inputs):
    proc = quiltgen(tmp_path, f"input.root={inputs}", *QUICK, "samples.per_class=5", "dry_run=true")
    assert "dry run: 10 samples (train 8, val 2), 1-3 objects each, about" in proc.stdout
    assert "no dataset was written" in proc.stdout
    assert list(tmp_path.iterdir()) == []  # not even an outputs/ folder


def test_dry_run_lists_every_bad_file_at_once(tmp_path):
    layout = make_layout(tmp_path / "input")
    (layout / "photo" / "cat" / "0.png").write_bytes(b"not an image")
    (layout / "back" / "1.jpg").write_bytes(b"")
    proc = quiltgen(tmp_path, f"input.root={layout}", *QUICK, "dry_run=true", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "quiltgen: error: 2 bad input files (fix or remove them, or set input.on_bad_file=skip" in proc.stderr
    assert f"{layout}/photo/cat/0.png: missing, unreadable or not an image" in proc.stderr
    assert f"{layout}/back/1.jpg: missing, unreadable or not an image" in proc.stderr


def test_skip_also_skips_a_photo_that_cannot_fit(tmp_path, generate, caplog):
    layout = make_layout(tmp_path / "input")
    cv2.imwrite(str(layout / "photo" / "cat" / "9.png"), np.full((2, 300, 3), 200, np.uint8))  # a thin sliver
    cv2.imwrite(str(layout / "photo_copy" / "cat" / "9.png"), np.full((2, 300, 3), 255, np.uint8))
    with pytest.raises(InputError, match=r"photo/cat/9.png: box aspect"):
        generate(layout, "samples.per_class=2")
    out = generate(layout, "samples.per_class=2", "input.on_bad_file=skip")
    assert "photo/cat/9.png: box aspect" in caplog.text and "<input.on_bad_file=skip>" in caplog.text
    assert (out / "manifest.jsonl").exists()


@pytest.mark.parametrize("case", ["unwritable", "yaml", "typo", "tilde", "type", "preset", "removed", "mapping"])
def test_command_line_errors_are_one_line(tmp_path, inputs, case):
    conf = tmp_path / "conf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "mine.yaml").write_text("# @package _global_\nseed: [1, 2\nquilt:\n  rows: 3\n")
    args = {"unwritable": ["hydra.run.dir=/sys/quiltgen-run"],
            "yaml": ["-cd", str(tmp_path / "conf"), "experiment=mine"],
            "typo": ["quilt.rwos=3"],
            "tilde": ["input.root=~/nowhere"],
            "type": ["samples.per_class=abc"],
            "preset": ["workers=lokky"],
            "removed": ["augment.area.enabled=true"],
            "mapping": ["output.splits=[train]"]}[case]
    proc = quiltgen(tmp_path, *args, *QUICK, check=False, env={**os.environ, "HOME": str(tmp_path)})
    expected = {"unwritable": "quiltgen: error: hydra.run.dir: cannot write into /sys/quiltgen-run (",
                "yaml": f"quiltgen: error: {conf / 'mine.yaml'}, line 3, column 6: invalid YAML: expected ',' or "
                        f"']', but got ':'",
                "typo": "quiltgen: error: quilt.rwos: unknown key; did you mean quilt.rows?",
                "tilde": f"quiltgen: error: input.root: {tmp_path}/nowhere is not a folder",
                "type": "quiltgen: error: samples.per_class: 'abc' is not an integer (or null); e.g. "
                        "samples.per_class=10",
                "preset": "quiltgen: error: workers=lokky: no such preset; the workers presets are dask, loky, ray",
                "removed": "quiltgen: error: augment.area.enabled: unknown key; the size ranges have no switch: "
                           "augment.size=area picks the unit",
                "mapping": "quiltgen: error: output.splits: maps names to values, not a list; e.g. "
                           "output.splits={train: 0.8, val: 0.2}"}[case]
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(expected) and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert expected.removeprefix("quiltgen: error: ") not in proc.stdout  # printed once, not logged to the console


def test_help_shows_quiltgen_and_its_presets_without_the_schemas(tmp_path):
    out = quiltgen(tmp_path, "--help").stdout
    assert out.startswith("quiltgen: synthetic object-detection datasets")
    assert "quiltgen resume=<run folder>" in out and "workers: dask, loky, ray" in out
    assert "_schema" not in out


def test_unwritable_folder_message_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"^hydra.run.dir: cannot write into /sys/quiltgen-run"):
        run(make_config([*SMALL]), "/sys/quiltgen-run")


def test_workers_are_not_restarted_for_the_bank_s_memory_maps():
    """loky takes 300 MB of resident growth for a leak and restarts the worker with a warning; a worker's growth
    here is the read-only page cache of the bank, so quiltgen's workers raise that threshold."""
    from joblib import Parallel, delayed

    from pipeline import worker

    def threshold(parent):
        worker.start(parent)
        from joblib.externals.loky import process_executor
        return process_executor._MAX_MEMORY_LEAK_SIZE

    (found,) = Parallel(n_jobs=1, backend="loky")([delayed(threshold)(os.getpid())])
    assert found >= worker.LOKY_LEAK_THRESHOLD


@pytest.fixture(params=["3m"])  # the run needs about 3.7 MiB: the disk fills near its end
def small_disk(tmp_path, request):
    """A small filesystem (tmpfs) that a test can grow later; skipped where mounting is not allowed."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={request.param}", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_full_disk_mid_run_is_one_line_and_resumes_once_space_is_freed(tmp_path, inputs, reference, small_disk):
    out = small_disk / "run"
    proc = quiltgen(tmp_path, f"input.root={inputs}", *QUICK, *LONG, "workers.n_jobs=2", f"hydra.run.dir={out}",
                    check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "No space left on device" in proc.stderr
    assert f"quiltgen resume={out}" in proc.stderr and status(out) == "failed"
    assert [p for p in leftovers(out) if p != ".journal.jsonl"] == [] and not (out / "manifest.jsonl").exists()
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # space freed
    quiltgen(tmp_path, f"resume={out}", "workers.n_jobs=2")
    assert tree_digest(out) == reference and status(out) == "complete"


def test_discarding_files_on_a_full_disk_does_not_raise(tmp_path):
    """Closing a file flushes its buffer, which fails on a full disk; files being thrown away must not care."""
    from pipeline import writers

    class FullDisk:
        def close(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    coco = writers.CocoWriter(tmp_path / "annotations" / "instances_train.json", [], {})
    manifest = writers.ManifestWriter(tmp_path / "manifest.jsonl")
    for fh in (*coco._fhs.values(), manifest._fh):
        fh.close()
    coco._fhs = dict.fromkeys(coco._fhs, FullDisk())
    manifest._fh = FullDisk()
    coco.discard()
    manifest.discard()
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_sweep_job_can_be_replayed_and_resumed_by_the_commands_quiltgen_prints(tmp_path, inputs):
    import shlex

    from pipeline.runstate import resume_command

    sweep = tmp_path / "sweep"
    quiltgen(tmp_path, "-m", "seed=3", f"input.root={inputs}", *QUICK, "samples.per_class=2", "workers.n_jobs=1",
             f"hydra.sweep.dir={sweep}")
    (job,) = [p for p in sweep.iterdir() if p.is_dir()]
    assert "=" in job.name and "," in job.name and "input.root" not in job.name  # a readable name, no path
    replay = tmp_path / "replay"
    quiltgen(tmp_path, "-cp", str(job / ".hydra"), "-cn", "config", f"hydra.run.dir={replay}")
    assert tree_digest(replay) == tree_digest(job)
    command = shlex.split(resume_command(job))
    assert command[0] == "quiltgen" and "already complete" in quiltgen(tmp_path, *command[1:]).stdout
    assert "already complete" in quiltgen(tmp_path, f"resume={job}").stdout  # unquoted for Hydra works too


@pytest.fixture(scope="module")
def big_inputs(tmp_path_factory) -> tuple[Path, list[str], dict]:
    """Large backgrounds that keep both workers decoding for seconds; the run's arguments; its tree."""
    layout = make_layout(tmp_path_factory.mktemp("big") / "input", photos=1, backgrounds=1)
    noise = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), np.uint8)
    for n in range(5):
        cv2.imwrite(str(layout / "back" / f"big{n}.jpg"), np.roll(noise, n * 7, axis=1))
    args = [f"input.root={layout}", *QUICK, "samples.per_class=2"]
    out = tmp_path_factory.mktemp("big-reference") / "run"
    run(make_config([*SMALL, *args]), out)
    return layout, args, tree_digest(out)


@pytest.mark.parametrize("stop", ["kill-worker", "sigterm"])
def test_a_stop_while_decoding_the_inputs_is_one_line_and_resume_starts_the_run(tmp_path, big_inputs, stop):
    """A stop before anything was rendered: the resume it prints starts the run from the beginning."""
    layout, args, reference = big_inputs
    out = tmp_path / "run"
    proc = start(tmp_path, *args, "workers.n_jobs=2", f"hydra.run.dir={out}")
    deadline = time.monotonic() + 60
    while not (list(out.glob(".bank-*/*")) and len(loky_workers(proc.pid)) == 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    if stop == "sigterm":
        proc.terminate()
    else:
        loky_workers(proc.pid)[0].kill()
    _, stderr = proc.communicate(timeout=60)
    expected = {"kill-worker": "quiltgen: error: a worker process died while decoding the inputs (killed, or out of "
                               "memory); nothing was rendered yet: start again with quiltgen resume=",
                "sigterm": "quiltgen: terminated (SIGTERM) before anything was rendered; start again with: "
                           "quiltgen resume="}[stop]
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1 and expected in stderr, stderr
    assert not (out / "manifest.jsonl").exists() and "config_hash" not in json.loads((out / "run.json").read_text())
    if stop == "sigterm":
        return  # the same resume as after a killed worker
    resumed = quiltgen(tmp_path, f"resume={out}")
    assert "stopped before its inputs were checked" in resumed.stdout and status(out) == "complete"
    assert leftovers(out) == [] and tree_digest(out) == reference


def test_a_folder_locked_by_another_process_is_refused_with_wording_for_a_run_or_a_resume(tmp_path):
    import fcntl

    from pipeline import runstate

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"status": "running", "pid": 4242}))
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)  # what a live run holds: its own open file description
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(ConfigError, match=r"^resume: .* is being written by another quiltgen process \(pid "
                                              r"4242\); wait for it to end"):
            runstate.claim(folder, resume=True)
        with pytest.raises(ConfigError, match=r"^hydra.run.dir: .* is being written by another quiltgen run"):
            runstate.claim(folder)
    finally:
        os.close(fd)


def test_a_sweep_folder_used_only_by_a_dry_run_sweep_can_be_claimed(tmp_path):
    from pipeline import runstate

    for dry_run, job in ((True, False), (False, False), (True, True)):
        folder = tmp_path / f"sweep-{dry_run}-{job}"
        folder.mkdir()
        (folder / "multirun.yaml").write_text(yaml.safe_dump({"dry_run": dry_run, "seed": 1}))
        if job:
            (folder / "0_seed=1").mkdir()
        if dry_run and not job:
            runstate.claim_sweep(folder)
            assert "claimed by quiltgen" in (folder / "multirun.yaml").read_text()
        else:
            with pytest.raises(ConfigError, match=r"^hydra.sweep.dir: .* already holds a sweep"):
                runstate.claim_sweep(folder)


def test_a_resume_of_what_is_not_a_resumable_run_says_what_to_do_and_changes_nothing(tmp_path):
    from pipeline import runstate

    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(ConfigError, match=r"^resume: .*/afile is not a folder; give the folder of an interrupted"):
        runstate.claim(afile, resume=True)
    folder = tmp_path / "full"  # what a run refused for a full disk before Hydra saved its config leaves
    folder.mkdir()
    record = {"status": "failed", "pid": 1, "error": "hydra.run.dir: ... has 192 KiB free"}
    (folder / "run.json").write_text(json.dumps(record))
    proc = quiltgen(tmp_path, f"resume={folder}", check=False)
    assert proc.returncode == 1 and proc.stderr.strip() == (
        f"quiltgen: error: resume: {folder} stopped before its config was saved, so it holds nothing to resume; "
        f"run the original command again (into this folder if you like)")
    assert json.loads((folder / "run.json").read_text()) == record


def test_a_write_error_without_a_file_name_is_given_the_file_it_was_writing(tmp_path):
    from pipeline.errors import naming

    for raised, reason in ((OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
                           (OSError("10 requested and 3 written"), "a short write (10 requested and 3 written): "
                                                                   "the disk is likely full")):
        with pytest.raises(OSError) as found, naming(tmp_path / "x.npy"):
            raise raised
        assert found.value.filename == str(tmp_path / "x.npy") and found.value.strerror == reason
    with pytest.raises(OSError) as found, naming(tmp_path / "x.npy"):
        raise FileNotFoundError(errno.ENOENT, "No such file", "/elsewhere")
    assert found.value.filename == "/elsewhere"  # a name it has is kept
