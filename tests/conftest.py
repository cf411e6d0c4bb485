"""Shared fixtures: config composition through Hydra's compose API and small on-disk input sets."""
from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from pipeline.app import config_dir
from pipeline.runner import run
from pipeline.schema import validate

# Written after the dataset, from it; they hold the run's times, so they differ between identical runs.
REPORT_FILES = ("stats.json", "report.html")
# Small and quick: a 320x240 canvas, one process unless a test asks for more; no report.html (its plots take
# most of a small run's time; tests/test_report.py makes them).
SMALL = ["quilt.width=320", "quilt.height=240", "workers.n_jobs=1", "output.report=false"]


def compose_cfg(overrides=()):
    """The composed DictConfig, as the CLI would see it (hydra node excluded)."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def make_config(overrides=()):
    """Compose and convert to the schema object, which runs the range checks."""
    return validate(compose_cfg(overrides))


def make_layout(root: Path, classes=("cat", "dog"), photos=2, backgrounds=2, bg_size=(320, 240),
                with_copies=True, seed=0) -> Path:
    """Write an input set in the original layout: photo/<class>/, photo_copy/<class>/, back/."""
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / "photo" / name).mkdir(parents=True, exist_ok=True)
        if with_copies:
            (root / "photo_copy" / name).mkdir(parents=True, exist_ok=True)
        for n in range(photos):
            h, w = int(rng.integers(30, 60)), int(rng.integers(30, 60))
            mask = np.zeros((h, w), np.uint8)
            cv2.ellipse(mask, (w // 2, h // 2), (w // 2 - 2, h // 2 - 2), 0, 0, 360, 255, -1)
            photo = np.zeros((h, w, 3), np.uint8)
            photo[:] = rng.integers(60, 250, 3)
            photo[mask == 0] = 0
            cv2.imwrite(str(root / "photo" / name / f"{n}.png"), photo)
            if with_copies:
                cv2.imwrite(str(root / "photo_copy" / name / f"{n}.png"), cv2.merge([mask] * 3))
    (root / "back").mkdir(parents=True, exist_ok=True)
    for n in range(backgrounds):
        img = cv2.resize(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), bg_size, interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(root / "back" / f"{n}.jpg"), img)
    return root


def tree_digest(folder: Path) -> dict:
    """sha256 of every file below ``folder`` (relative path -> hex), Hydra's own files, logs, run.json (times, pids)
    and the report excluded (stats.json and report.html hold the run's times; tests/test_report.py compares them
    without).

    yolo/data.yaml and yolo_seg/data.yaml are digested with their ``path:`` line (the run folder's absolute path,
    which YOLO trainers need) taken out: the one line that differs between two runs written to different folders.
    """
    digest = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and ".hydra" not in p.parts and p.suffix != ".log" and p.name not in REPORT_FILES \
                and p.name != "run.json":
            data = p.read_bytes()
            if p.relative_to(folder).as_posix() in ("yolo/data.yaml", "yolo_seg/data.yaml"):
                data = b"".join(line for line in data.splitlines(keepends=True) if not line.startswith(b"path: "))
            digest[p.relative_to(folder).as_posix()] = hashlib.sha256(data).hexdigest()
    return digest


@pytest.fixture
def layout(tmp_path) -> Path:
    return make_layout(tmp_path / "input")


@pytest.fixture(scope="module")
def module_layout(tmp_path_factory) -> Path:
    """One input set for a whole test module (for modules whose tests only read it)."""
    return make_layout(tmp_path_factory.mktemp("input") / "input")


@pytest.fixture
def generate(tmp_path):
    """Run the pipeline on ``root`` with extra overrides; returns the output folder."""
    counter = iter(range(1000))

    def _generate(root: Path, *overrides: str, out: Path | None = None) -> Path:
        out = out or tmp_path / f"out{next(counter)}"
        cfg = make_config([*SMALL, f"input.root={root}", *overrides])
        run(cfg, out)
        return out

    return _generate


def fail_at(monkeypatch, class_idx: int, sample_idx: int):
    """A fault injected mid-run: ``render_sample`` raises at one sample; returns the function that undoes it."""
    from pipeline import render

    real = render.render_sample

    def failing(bank, settings, class_index, sample_index, *rest):
        if (class_index, sample_index) == (class_idx, sample_idx):
            raise RuntimeError("injected")
        return real(bank, settings, class_index, sample_index, *rest)

    monkeypatch.setattr(render, "render_sample", failing)
    return lambda: monkeypatch.setattr(render, "render_sample", real)


DASK_CLI = Path(sys.executable).parent / "dask"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dask_scheduler(tmp_path):
    """A scheduler and two single-thread workers as separate processes on loopback."""
    distributed = pytest.importorskip("distributed")
    address = f"tcp://127.0.0.1:{free_port()}"
    logs = open(tmp_path / "dask.log", "w")  # noqa: SIM115 - closed in teardown
    procs = [subprocess.Popen([str(DASK_CLI), "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                               "--no-dashboard"], stdout=logs, stderr=logs)]
    procs.append(subprocess.Popen([str(DASK_CLI), "worker", address, "--nworkers", "2", "--nthreads", "1",
                                   "--host", "127.0.0.1", "--no-dashboard"], stdout=logs, stderr=logs))
    try:
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:  # the processes hold nothing worth a graceful shutdown (which takes dask about 8 s)
        for proc in reversed(procs):
            proc.kill()
        for proc in procs:
            proc.wait(timeout=30)
        logs.close()


