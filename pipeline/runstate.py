"""A run folder as the experiment's record: who writes it, what went in, how far it got.

- ``claim``: one writer per folder. An exclusive ``flock`` on the folder itself says a process is writing
  it (the kernel drops the lock when that process dies, even by kill -9), and a new run creates ``run.json``
  with ``O_EXCL``, so a folder that ever held a run is never started into again, only resumed.
- ``run.json``: status (``running``, ``interrupted``, ``failed``, ``complete``), versions, the config and
  its hash, sample counts, times and every input file with its size and sha256. Rewritten atomically.
- The journal: every record a worker returns, one JSON line, flushed as it arrives. A resume reads it to
  learn which samples are done; the end of a run deletes it.
- ``deferred_signals``: Ctrl-C and SIGTERM wait while the final renames run, so a signal cannot split them.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shlex
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml

from pipeline.errors import ConfigError, naming

RUN_FILE = "run.json"
JOURNAL = ".journal.jsonl"
# Keys that may differ between a run and its resume: how the work is spread, not what it makes.
VOLATILE_KEYS = ("workers", "resume", "dry_run")
STATUSES = ("running", "interrupted", "failed", "complete")


def resume_override(folder: Path | str) -> str:
    """``resume=<folder>``, the folder quoted for Hydra's grammar when its name needs it (sweep job folders hold
    '=' and ','): a resume is one folder, never a sweep list."""
    path = str(folder)
    if re.fullmatch(r"[\w./~+-]*", path):
        return f"resume={path}"
    return 'resume="{}"'.format(path.replace('"', '\\"'))


def resume_command(folder: Path | str) -> str:
    """The command that finishes the run in ``folder``, quoted for the shell and Hydra when the path needs it."""
    return f"quiltgen {shlex.quote(resume_override(folder))}"


def now() -> str:
    return datetime.now(UTC).astimezone().isoformat(timespec="seconds")


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def config_identity(settings: dict) -> dict:
    """The part of the resolved config that decides the bytes of the dataset (call it before the run adds its
    derived keys, such as the plan, to ``settings``)."""
    return json.loads(canonical({key: value for key, value in settings.items() if key not in VOLATILE_KEYS}))


def config_hash(identity: dict) -> str:
    return hashlib.sha256(canonical(identity)).hexdigest()


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts, with both values."""
    found = []
    for key in sorted(set(old) | set(new)):
        path, a, b = f"{prefix}{key}", old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            found += config_differences(a, b, f"{path}.")
        elif a != b:
            found.append(f"{path}: {a!r} -> {b!r}")
    return found


def _package_version(name: str) -> str | None:
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_commit(folder: Path) -> str | None:
    """HEAD of the checkout quiltgen runs from (with '-dirty' if it has local changes), else None."""
    if not (folder / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def versions() -> dict:
    import cv2
    import joblib
    import numpy

    import pipeline
    return {
        "quiltgen": pipeline.__version__,
        "git_commit": git_commit(Path(pipeline.__file__).resolve().parent.parent),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
        "hydra": _package_version("hydra-core"),
        "omegaconf": _package_version("omegaconf"),
        "joblib": joblib.__version__,
    }


def atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=False, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_run(folder: Path) -> dict | None:
    """The folder's run.json, or None if it has none (an unreadable one reads as an empty record)."""
    try:
        record = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
        return record if isinstance(record, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _unwritable(folder: Path, err: OSError) -> ConfigError:
    return ConfigError(f"hydra.run.dir: cannot write into {folder} ({err.strerror}); choose a folder you can "
                       f"write to with hydra.run.dir=<folder> (or hydra.sweep.dir=<folder> with -m)")


# What earlier quiltgen versions wrote at the top of a run folder (no run.json then).
LEGACY_ENTRIES = ("manifest.jsonl", "images", "previews", "annotations", "voc", "yolo", "yolo_seg")


@dataclass
class RunState:
    """This process's hold on a run folder; ``record`` mirrors its run.json."""

    folder: Path
    lock_fd: int
    record: dict = field(default_factory=dict)

    def save(self, **changes) -> None:
        self.record.update(changes)
        atomic_json(self.folder / RUN_FILE, self.record)

    def finish(self, status: str, error: str | None = None) -> None:
        """Record how the run ended; a complete run is never marked otherwise afterwards."""
        if self.record.get("status") == "complete" and status != "complete":
            return
        changes = {"status": status, "ended": now()}
        if error:
            changes["error"] = error
        self.save(**changes)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.lock_fd)


# Claims held by this process, by folder: Hydra's on_run_start claims before Hydra writes .hydra/ into the
# folder, and run() then finds its own claim here instead of refusing the folder.
_HELD: dict[Path, RunState] = {}


def _lock(folder: Path, resume: bool = False) -> int:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as err:
        raise _unwritable(folder, err) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid = (read_run(folder) or {}).get("pid", "?")
        if resume:
            raise ConfigError(f"resume: {folder} is being written by another quiltgen process (pid {pid}); wait "
                              f"for it to end, then resume if it did not finish") from None
        raise ConfigError(f"hydra.run.dir: {folder} is being written by another quiltgen run (pid {pid}); "
                          f"give this run its own folder, or wait for that one to end") from None
    return fd


def _refusal(folder: Path, record: dict | None) -> ConfigError:
    if record is None:
        found = [name for name in LEGACY_ENTRIES if os.path.lexists(folder / name)]
        return ConfigError(f"hydra.run.dir: {folder} already holds {', '.join(found)} from an earlier run, and "
                           f"mixing two runs' files would mislabel images; give each run a new folder "
                           f"(hydra.run.dir, or hydra.sweep.dir with -m: the defaults are new for every run) "
                           f"or delete that one first")
    if record.get("status") == "complete":
        return ConfigError(f"hydra.run.dir: {folder} already holds a complete dataset; give each run a new folder "
                           f"(the default hydra.run.dir is new for every run) or delete that one first")
    status = record.get("status", "unknown")
    how = "its process is gone: killed or crashed" if status == "running" else f"status {status}"
    return ConfigError(f"hydra.run.dir: {folder} holds an unfinished run ({how}); finish it with: "
                       f"{resume_command(folder)} (or delete the folder to start again)")


def never_started(record: dict) -> bool:
    """A run that stopped before its inputs were checked (a bad input, a typo, a full disk, killed while decoding
    them): it rendered nothing. Only asked with the folder's lock held, so a ``running`` one has died."""
    return record.get("status") in ("failed", "interrupted", "running") and "config_hash" not in record


def check_outside_inputs(folder: Path | str, input_root: str | None, base: Path | None = None,
                         key: str = "hydra.run.dir") -> None:
    """Refuse a run (or sweep) folder that is ``input.root`` or inside it: the dataset would be written among the
    inputs. ``base``: the folder a relative ``input.root`` is read from (default: the working folder)."""
    if input_root is None:  # the demo set, in its own cache
        return
    root = ((base or Path.cwd()) / Path(input_root).expanduser()).resolve()
    folder = Path(folder).expanduser().resolve()
    if folder.is_relative_to(root):
        where = "is input.root" if folder == root else f"is inside input.root ({root})"
        raise ConfigError(f"{key}: {folder} {where}, so the dataset would be written among its inputs; choose a "
                          f"folder outside input.root with {key}=<folder>")


def claim(folder: Path | str, resume: bool = False) -> RunState:
    """Take the folder for this process: refuse it if another process writes it, or (for a new run) if it
    already holds a run; a resume needs a run.json to resume from."""
    folder = Path(folder).absolute()
    if folder in _HELD:
        return _HELD[folder]
    if resume and not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(f"resume: {folder} {what}; give the folder of an interrupted run")
    fd = _lock(folder, resume)
    try:
        record = read_run(folder)
        if resume:
            if record is None:
                raise ConfigError(f"resume: {folder} holds no run.json, so it is not a quiltgen run folder; give "
                                  f"the folder of an interrupted run")
        else:
            if record is not None and not never_started(record) or \
                    any(os.path.lexists(folder / name) for name in LEGACY_ENTRIES):
                raise _refusal(folder, record)
            if record is not None:  # a run that failed before its first sample: nothing of it to keep
                (folder / RUN_FILE).unlink()
            record = {"status": "running", "pid": os.getpid(), "started": now()}
            try:  # the exclusive create is the claim; the lock above only says someone is alive
                with open(folder / RUN_FILE, "x", encoding="utf-8") as fh:
                    fh.write(json.dumps(record) + "\n")
            except FileExistsError:
                raise _refusal(folder, read_run(folder)) from None
            except OSError as err:
                raise _unwritable(folder, err) from None
    except BaseException:
        os.close(fd)
        raise
    state = RunState(folder, fd, record)
    _HELD[folder] = state
    return state


def fail_unstarted(folder: Path, error: str) -> None:
    """Mark this process's claim of ``folder`` failed if its run never started (a config error found after the
    claim): the folder can then be used again, and its run.json says why it holds nothing."""
    state = _HELD.get(Path(folder).absolute())
    if state is not None and "config_hash" not in state.record:
        state.finish("failed", error)


def note_error(folder: Path, error: str) -> None:
    """Record an error in the folder's run.json after the run ended (a sweep job's failed evaluation, or a config
    error found before the run could start, which also leaves it ``failed``)."""
    record = read_run(folder)
    if record is None:
        record = {"status": "failed", "pid": os.getpid(), "started": now(), "ended": now()}
    record.setdefault("error", error)
    with contextlib.suppress(OSError):
        atomic_json(folder / RUN_FILE, record)


def drop(state: RunState) -> None:
    """Forget this process's claim (the lock goes with it)."""
    _HELD.pop(state.folder, None)
    state.release()


def _dry_run_sweep(folder: Path) -> bool:
    """Whether ``folder`` holds only what a ``-m dry_run=true`` sweep leaves: its multirun.yaml."""
    try:
        config = yaml.safe_load((folder / "multirun.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(config, dict) and config.get("dry_run") is True and \
        not any(p.is_dir() for p in folder.iterdir())


def claim_sweep(folder: Path | str) -> None:
    """Refuse a sweep folder another multirun uses or used: an exclusive create of its multirun.yaml
    (Hydra writes the real one right after)."""
    folder = Path(folder).absolute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if _dry_run_sweep(folder):  # it wrote nothing but its multirun.yaml: the folder is free
            (folder / "multirun.yaml").unlink(missing_ok=True)
        with open(folder / "multirun.yaml", "x", encoding="utf-8") as fh:
            fh.write(f"# claimed by quiltgen (pid {os.getpid()}); Hydra writes the sweep's config here\n")
    except FileExistsError:
        raise ConfigError(f"hydra.sweep.dir: {folder} already holds a sweep (multirun.yaml); give each sweep a "
                          f"new folder (the default hydra.sweep.dir is new for every sweep) or delete that one "
                          f"first") from None
    except OSError as err:
        raise ConfigError(f"hydra.sweep.dir: cannot write into {folder} ({err.strerror}); choose a folder you "
                          f"can write to with hydra.sweep.dir=<folder>") from None


# --- the journal of finished samples


def sample_key(record: dict) -> tuple[int, int, str | None]:
    """An image's identity: its layout (class index, sample index) and, with compose.blending.every, its method."""
    return record["class_index"], record["sample_index"], record.get("blending")


class Journal:
    """Append-only JSON lines of finished samples' records; flushed per line, so a killed parent loses none
    it had received (a reboot may lose the tail, which a resume then renders again)."""

    def __init__(self, folder: Path):
        self.path = folder / JOURNAL
        self._fh = None

    def append(self, record: dict) -> None:
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="utf-8")
        with naming(self.path):
            self._fh.write(json.dumps(record, sort_keys=True) + "\n")
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):  # a full disk may tear the last line: a resume skips it
                self._fh.close()
            self._fh = None

    def index(self) -> dict[tuple, int]:
        """Byte offset of the last complete line of each image (``sample_key``; a torn last line is ignored)."""
        found: dict[tuple, int] = {}
        if not self.path.exists():
            return found
        with open(self.path, "rb") as fh:
            offset = 0
            for line in fh:
                if line.endswith(b"\n"):
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        found[sample_key(json.loads(line))] = offset
                offset += len(line)
        return found

    def read(self, offset: int) -> dict:
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            return json.loads(fh.readline())

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def files_intact(folder: Path, files: dict[str, int]) -> bool:
    """Every file a sample wrote is still there with the size it had."""
    for rel, size in files.items():
        try:
            if os.lstat(folder / rel).st_size != size:
                return False
        except OSError:
            return False
    return True


# --- signals during the final commit


class Terminated(BaseException):  # noqa: N818 - a BaseException like KeyboardInterrupt: no "except Exception" stops it
    """SIGTERM arrived (kill, docker stop, a Slurm time limit)."""


def raise_terminated(signum: int, frame) -> None:
    raise Terminated


@contextlib.contextmanager
def deferred_signals() -> Iterator[list[int]]:
    """Hold Ctrl-C and SIGTERM until the block ends; yields the list of signals that arrived meanwhile.

    Python runs signal handlers in the main thread, so swapping the handlers (not the thread's signal mask)
    is what keeps every thread's delivery from interrupting the block.
    """
    arrived: list[int] = []
    wanted = (signal.SIGINT, signal.SIGTERM)
    try:
        previous = {sig: signal.signal(sig, lambda signum, frame: arrived.append(signum)) for sig in wanted}
    except ValueError:  # not the main thread: signals cannot reach this code anyway
        yield arrived
        return
    try:
        yield arrived
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
