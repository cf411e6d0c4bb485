"""Entry point (``quiltgen`` / ``python -m pipeline``): check the command line, let Hydra compose, run.

``main`` looks at the command line before Hydra does, for what Hydra would otherwise answer with a
traceback or a wrong run: a replay of a run's frozen config (``-cp <run>/.hydra``), a YAML error in a
config file, a misspelt key, a ``~`` in a path. ``hydra_main`` validates the composed config and calls
``run``; the ``RunDirClaim`` callback takes the run folder before Hydra writes ``.hydra/`` into it.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict, read_write

from pipeline import cli, runstate, sweep
from pipeline.errors import ConfigError, QuiltgenError
from pipeline.evaluate import EvaluationError
from pipeline.runner import run
from pipeline.schema import register_configs, validate

log = logging.getLogger("quiltgen")


def config_dir() -> str:
    """conf/ shipped inside the package (wheel), else the repository's top-level conf/ (checkout, editable)."""
    here = Path(__file__).resolve().parent
    packaged = here / "conf"
    return str(packaged if packaged.is_dir() else here.parent / "conf")


register_configs()
cli.register_resolvers(config_dir())
sweep.register_resolvers()  # ${job_dir_name:...} in hydra.sweep.subdir


def say(message: str, level: int = logging.ERROR) -> None:
    """One line on stderr; the job's log file (if Hydra has set one up) gets it too, the console not twice."""
    print(f"quiltgen: {'error: ' if level >= logging.ERROR else ''}{message}", file=sys.stderr)
    record = log.makeRecord(log.name, level, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def fail(message: str, status: int = 1) -> SystemExit:
    """``say`` the error; the SystemExit to raise."""
    say(message)
    return SystemExit(status)


class RunDirClaim(Callback):
    """Before Hydra writes .hydra/ into a run folder: claim the folder for this run (or refuse it), point a
    resume at the run it finishes, and keep a dry run out of the output folders."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        try:
            if not config.get("resume"):  # a config error stops here, before Hydra makes the run folder
                validate_quietly(task_part(config))
            with read_write(config.hydra), open_dict(config.hydra):
                if config.get("dry_run"):
                    config.hydra.run.dir = tempfile.mkdtemp(prefix="quiltgen-dry-run-")
                    config.hydra.output_subdir = None
                    if "file" in config.hydra.job_logging.get("handlers", {}):
                        config.hydra.job_logging.root.handlers = ["console"]
                    return
                if config.get("resume"):
                    folder = Path(os.path.expanduser(str(config.resume))).absolute()
                    config.hydra.run.dir = str(folder)
                    config.hydra.output_subdir = None  # the run's own .hydra/ stays as it was
                    runstate.claim(folder, resume=True)
                    return
            folder = Path(str(config.hydra.run.dir))
            runstate.check_outside_inputs(folder, config.input.root, input_base(config))
            check_free_space(runstate.claim(folder))
        except QuiltgenError as err:
            raise fail(str(err)) from None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if config.get("resume"):
            raise fail("resume: finish one run at a time, without -m: quiltgen resume=<run folder>")
        try:
            folder = Path(str(config.hydra.sweep.dir))
            runstate.check_outside_inputs(folder, config.input.root, input_base(config), key="hydra.sweep.dir")
            runstate.claim_sweep(folder)
        except QuiltgenError as err:
            raise fail(str(err)) from None


# Less free space than this in a new run's folder is a full disk: Hydra could not even write .hydra/ there
# (and would fail with a traceback).
MIN_FREE = 2**20


def check_free_space(state: runstate.RunState) -> None:
    free = shutil.disk_usage(state.folder).free
    if free < MIN_FREE:
        message = (f"hydra.run.dir: {state.folder} has {free // 1024} KiB free, too little to start a run; free "
                   f"some space or choose another folder")
        with contextlib.suppress(OSError):
            runstate.fail_unstarted(state.folder, message)
        raise ConfigError(message)


def input_base(config: DictConfig) -> Path | None:
    """Where a relative input.root is read from: for a replay, the folder its run was started in (as
    ``follow_original_cwd`` will do); else the working folder (None)."""
    replayed = cli.replayed_run(config.hydra)
    return cli.original_cwd(replayed) if replayed is not None else None


def validate_quietly(config: DictConfig) -> None:
    """Validate, raising errors but not logging the warnings: the run validates again and logs them then."""
    schema_log = logging.getLogger("pipeline.schema")
    disabled, schema_log.disabled = schema_log.disabled, True
    try:
        validate(config)
    finally:
        schema_log.disabled = disabled


def task_part(config: DictConfig) -> DictConfig:
    """The composed config without its ``hydra`` node: what the task function will receive."""
    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


def _stopped(how: str, status: int, out_dir: str) -> SystemExit:
    record = runstate.read_run(Path(out_dir))
    if record is None:
        message = f"{how}: nothing was kept"
    elif "config_hash" not in record:
        message = f"{how} before anything was rendered; start again with: {runstate.resume_command(out_dir)}"
    elif record.get("status") == "complete":  # stopped in the report or the evaluation, after the dataset
        message = (f"{how}: the dataset in {out_dir} is complete; its report or evaluation did not finish: make "
                   f"them with {runstate.resume_command(out_dir)}")
    else:
        message = f"{how}: the samples written so far are kept; finish the run with: {runstate.resume_command(out_dir)}"
    say(message, logging.WARNING)
    return SystemExit(status)


def task_config(cfg: DictConfig) -> DictConfig:
    """The config to run: for a resume, the run's own frozen config (with this command's workers)."""
    if not cfg.get("resume"):
        return cfg
    folder = Path(HydraConfig.get().runtime.output_dir)
    cli.check_resume_overrides(list(HydraConfig.get().overrides.task))
    frozen = cli.frozen_config(folder)
    with open_dict(frozen):
        frozen.workers, frozen.resume = cfg.workers, str(folder)
    return frozen


def follow_original_cwd(run_folder: Path | None) -> None:
    """A replay or resume reads the config's relative paths (input.root, evaluate.reference, ...) as the run
    did: from the folder it was started in."""
    cwd = cli.original_cwd(run_folder) if run_folder is not None else None
    if cwd is not None and cwd != Path.cwd():
        os.chdir(cwd)
        log.info("relative paths in the config are read from %s, where the run in %s was started", cwd, run_folder)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    """Returns the run's evaluation score (None without ``evaluate``): the number optimising sweepers compare."""
    signal.signal(signal.SIGTERM, runstate.raise_terminated)
    out_dir = HydraConfig.get().runtime.output_dir
    try:
        config = validate(task_config(cfg))
        replay_of = cli.replayed_run(HydraConfig.get())
        follow_original_cwd(replay_of or (Path(out_dir) if config.resume else None))
        summary = run(config, out_dir, replay_of=replay_of)
    except QuiltgenError as err:
        message = f"{err}; the dataset is complete" if isinstance(err, EvaluationError) else str(err)
        if HydraConfig.get().mode == RunMode.MULTIRUN:  # the sweep goes on; an optimiser records a failed trial
            runstate.note_error(Path(out_dir), message)
            fail(f"sweep job {Path(out_dir).name}: {message}")
            return float("nan")
        if not cfg.get("resume"):  # a refused resume leaves the run's record as it was
            runstate.fail_unstarted(Path(out_dir), message)
        raise fail(message) from None
    except KeyboardInterrupt:
        raise _stopped("interrupted", 130, out_dir) from None
    except runstate.Terminated:
        raise _stopped("terminated (SIGTERM)", 143, out_dir) from None
    finally:
        if cfg.get("dry_run"):  # the temporary folder the claim callback gave it
            shutil.rmtree(out_dir, ignore_errors=True)
    return summary.get("score")


def main() -> None:
    """The console script: check the command line, then hand it to Hydra."""
    try:
        sys.argv[1:] = cli.prepare_argv(sys.argv[1:], config_dir())
        hydra_main()
    except QuiltgenError as err:
        raise fail(str(err)) from None
    except KeyboardInterrupt:  # while Hydra composes the config, before any run started
        print("quiltgen: interrupted before the run started; nothing was written", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        sweep.summarise_stopped_sweep()

