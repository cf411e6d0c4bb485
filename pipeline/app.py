"""Hydra entry point (``quiltgen`` / ``python -m pipeline``): compose, validate, run. Nothing else."""
from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pipeline.errors import QuiltgenError
from pipeline.runner import check_unused, run
from pipeline.schema import register_configs, validate
from pipeline.sweep import register_resolvers

log = logging.getLogger("quiltgen")


def config_dir() -> str:
    """conf/ shipped inside the package (wheel), else the repository's top-level conf/ (checkout, editable)."""
    here = Path(__file__).resolve().parent
    packaged = here / "conf"
    return str(packaged if packaged.is_dir() else here.parent / "conf")


register_configs()
register_resolvers()  # ${job_dir_name:...} in hydra.sweep.subdir


class RefuseUsedRunDir(Callback):
    """Before Hydra writes .hydra/ into a run folder: a folder holding a finished dataset keeps its frozen config.

    For -m, every existing job folder in hydra.sweep.dir is checked (the run itself checks its own folder too).
    """

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        _refuse_used([Path(str(config.hydra.run.dir)).absolute()])

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        _refuse_used(sorted(p for p in sweep_dir.iterdir() if p.is_dir()) if sweep_dir.is_dir() else [])


def _refuse_used(folders: list[Path]) -> None:
    try:
        for folder in folders:
            check_unused(folder)
    except QuiltgenError as err:
        print(f"quiltgen: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


class Terminated(BaseException):  # noqa: N818 - a BaseException like KeyboardInterrupt: no "except Exception" stops it
    """SIGTERM arrived (kill, docker stop, a Slurm time limit)."""


def _raise_terminated(signum: int, frame) -> None:
    raise Terminated  # unwinds like Ctrl-C: partial files are removed on the way out


def _stopped(how: str, status: int) -> SystemExit:
    message = f"{how}: the images written so far are kept; no manifest or COCO file was written"
    log.warning("%s", message)
    print(f"quiltgen: {message}", file=sys.stderr)
    return SystemExit(status)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Returns the run's evaluation score (None without ``evaluate``): the number optimising sweepers compare."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        config = validate(cfg)
        summary = run(config, HydraConfig.get().runtime.output_dir)
    except QuiltgenError as err:
        log.error("%s", err)
        print(f"quiltgen: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise _stopped("interrupted", 130) from None
    except Terminated:
        raise _stopped("terminated (SIGTERM)", 143) from None
    return summary.get("score")
