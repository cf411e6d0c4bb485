"""The command line before and around Hydra: replays, resumes, and one-line answers to what Hydra would
answer with a traceback (a YAML error) or with advice that does not fit quiltgen (add ``+`` to a typo).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from pipeline import runstate
from pipeline.errors import ConfigError
from pipeline.schema import bad_value_message, unknown_key_message

log = logging.getLogger("quiltgen")

CONFIG_PATH_FLAGS = ("-cp", "--config-path")
CONFIG_DIR_FLAGS = ("-cd", "--config-dir")
# What quiltgen's own config.yaml selects for Hydra; a replayed frozen config has no defaults list, so a
# replay asks for them on the command line.
HYDRA_CHOICES = ("hydra/output=quiltgen", "hydra/help=quiltgen")


def is_run_record(folder: str | Path) -> bool:
    """A run's .hydra/ folder: Hydra's frozen config.yaml beside its hydra.yaml."""
    folder = Path(folder)
    return (folder / "config.yaml").is_file() and (folder / "hydra.yaml").is_file()


def _flag_value(args: list[str], i: int) -> tuple[str | None, str | None, int]:
    """(flag, value, args consumed) of a -cp/-cd style flag at ``args[i]``, else (None, None, 1)."""
    arg = args[i]
    for flag in (*CONFIG_PATH_FLAGS, *CONFIG_DIR_FLAGS):
        if arg == flag and i + 1 < len(args):
            return flag, args[i + 1], 2
        if arg.startswith(f"{flag}="):
            return flag, arg.split("=", 1)[1], 1
    return None, None, 1


def prepare_argv(args: list[str], conf_dir: str) -> list[str]:
    """The arguments Hydra should see, after checking what Hydra would report badly.

    - ``-cp <run>/.hydra`` (or ``-cd``, which would silently compose quiltgen's own config instead) replays
      that run's frozen config with quiltgen's Hydra settings (run folder naming, the folder claim);
    - every YAML file Hydra may read is parsed first, so a syntax error is one line with file and line;
    - ``key=~/path`` is expanded (Hydra's grammar reads ``~`` as an operator);
    - a misspelt key gets the closest real key instead of Hydra's advice to add it with ``+``.
    """
    if "--version" in args:  # Hydra's would print Hydra's version
        import pipeline
        commit = runstate.git_commit(Path(pipeline.__file__).resolve().parent.parent)
        print(f"quiltgen {pipeline.__version__}" + (f" (git {commit})" if commit else ""))
        raise SystemExit(0)
    out, config_dirs, replay = [], [], False  # quiltgen's own conf/ is checked by its tests
    values = set()  # positions in ``out`` of flag values (a sweep job's folder name holds '=')
    i = 0
    while i < len(args):
        flag, value, used = _flag_value(args, i)
        if flag is None:
            out.append(_quote_resume(_expand_home(args[i])))
        else:
            path = Path(os.path.expanduser(value)).absolute()
            config_dirs.append(path)
            if is_run_record(path):
                replay = True
                out += ["--config-path", str(path)]
            else:
                out += [flag, str(path) if flag in CONFIG_DIR_FLAGS else value]
            values.add(len(out) - 1)
        i += used
    elsewhere = False  # presets from a search path quiltgen cannot list (pkg://...)
    for arg in out:
        if arg.startswith("hydra.searchpath="):
            config_dirs += [Path(p.removeprefix("file://")) for p in _list_value(arg) if p.startswith("file://")]
            elsewhere |= any(not p.startswith("file://") for p in _list_value(arg))
    overrides = [arg for n, arg in enumerate(out) if n not in values]
    check_yaml_files(config_dirs)
    check_override_keys(overrides, [conf_dir, *config_dirs], check_presets=not elsewhere)
    if replay:
        name = next((args[n + 1] for n, arg in enumerate(args[:-1]) if arg in ("-cn", "--config-name")),
                    next((arg.split("=", 1)[1] for arg in args if arg.startswith("--config-name=")), "config"))
        if name not in ("config", "config.yaml"):
            raise ConfigError(f"-cn {name}: a run's .hydra/ holds its frozen config as config.yaml; replay it with "
                              f"-cn config (or without -cn)")
        first = next((n for n, arg in enumerate(out) if n not in values and "=" in arg and not arg.startswith("-")),
                     len(out))
        out[first:first] = [f"hydra.searchpath=[file://{conf_dir}]", *HYDRA_CHOICES]
    return out


def _list_value(arg: str) -> list[str]:
    value = arg.split("=", 1)[1].strip()
    return [p.strip().strip("'\"") for p in value.strip("[]").split(",") if p.strip()]


def _quote_resume(arg: str) -> str:
    """``resume=<folder>`` as typed, quoted for Hydra's grammar when the folder's name needs it."""
    if not arg.startswith("resume=") or arg[7:8] in ("'", '"'):
        return arg
    return runstate.resume_override(arg[7:])


def _expand_home(arg: str) -> str:
    if arg.startswith(("-", "~")) or "=" not in arg:
        return arg
    key, value = arg.split("=", 1)
    if any(c in value for c in "'\"[]{}()$"):
        return arg
    parts = value.split(",")  # a sweep: input.root=~/a,~/b
    if any(p == "~" or p.startswith("~/") for p in parts):
        return f"{key}={','.join(os.path.expanduser(p) for p in parts)}"
    return arg


def check_yaml_files(folders: list[Path]) -> None:
    """Parse every YAML file below the config folders; a syntax error stops here with file and line."""
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.yaml")):
            try:
                with open(path, encoding="utf-8") as fh:
                    yaml.safe_load(fh)
            except yaml.MarkedYAMLError as err:
                mark = err.problem_mark or err.context_mark
                where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
                raise ConfigError(f"{path}{where}: invalid YAML: {err.problem or err.context}; fix the file") from None
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
                raise ConfigError(f"{path}: cannot read it as YAML ({err}); fix or remove the file") from None


def config_groups(*conf_dirs: str | Path) -> dict[str, list[str]]:
    """Config groups and their options (schemas left out) of quiltgen's conf/ and of the user's config folders
    (``-cd``, ``-cp``, ``hydra.searchpath``), which may add presets to quiltgen's groups."""
    groups: dict[str, set[str]] = {}
    for conf_dir in map(Path, conf_dirs):
        for folder in sorted(conf_dir.iterdir()) if conf_dir.is_dir() else []:
            if folder.is_dir() and folder.name != "hydra" and not folder.name.startswith(("_", ".")):
                groups.setdefault(folder.name, set()).update(
                    p.stem for p in folder.glob("*.yaml") if not p.stem.endswith("_schema"))
    return {name: sorted(options) for name, options in sorted(groups.items())}


def check_override_keys(args: list[str], conf_dirs: list[str | Path], check_presets: bool = True) -> None:
    """Refuse a ``key=value`` override whose key is not in the schema (naming the closest key), a preset that
    does not exist in quiltgen's or the user's config folders, or a plain value of the wrong type: one line
    each, instead of Hydra's several."""
    groups = config_groups(*conf_dirs)
    chosen = {arg.lstrip("+").split("=", 1)[0] for arg in args if "=" in arg and not arg.startswith("-")}
    only_ours = len(conf_dirs) == 1 and "experiment" not in chosen  # nothing else can choose an evaluation
    for arg in args:
        if arg.startswith(("-", "~")) or "=" not in arg:
            continue
        key, value = arg.lstrip("+").split("=", 1)
        if key.startswith(("hydra.", "hydra/")) or "/" in key:
            continue
        if key in groups:
            options = groups[key]
            if check_presets and not any(c in value for c in ",()[]{}$") and value not in (*options, "null"):
                raise ConfigError(f"{key}={value}: no such preset; the {key} presets are {', '.join(options)}")
            continue
        if key.startswith("evaluate.") and "evaluate" not in chosen and only_ours:
            raise ConfigError(f"{key}: no evaluation is chosen (the default is none); add evaluate=reference or "
                              f"evaluate=command")
        message = None if arg.startswith("+") else unknown_key_message(key)
        message = message or bad_value_message(key, value)
        if message:
            raise ConfigError(message)


def register_resolvers(conf_dir: str) -> None:
    """``${quiltgen_groups:}`` for the --help text: the presets, without the internal schema entries."""
    def groups() -> str:
        return "\n".join(f"  {name}: {', '.join(options)}" for name, options in config_groups(conf_dir).items())

    OmegaConf.register_new_resolver("quiltgen_groups", groups, replace=True)


# --- resume and replay


# What a resume may change: where and how the work runs, never what it makes.
RESUME_OVERRIDES = ("resume", "workers")


def check_resume_overrides(task_overrides: list[str]) -> None:
    """A resume runs the run's own config: only ``resume`` and ``workers`` overrides make sense with it."""
    extra = [o for o in task_overrides
             if o.lstrip("+~").split("=", 1)[0].split(".", 1)[0].split("/", 1)[0] not in RESUME_OVERRIDES]
    if extra:
        raise ConfigError(f"resume: a resume finishes the run with its own config; drop {' '.join(extra)} "
                          f"(only workers.* may change), or start a new run with them")


def frozen_config(folder: Path) -> DictConfig:
    """The config a run was started with: its .hydra/config.yaml, else the config in its run.json."""
    path = folder / ".hydra" / "config.yaml"
    if path.is_file():
        return OmegaConf.load(path)
    record = runstate.read_run(folder) or {}
    if "config" in record:
        return OmegaConf.create(record["config"])
    if runstate.never_started(record):
        raise ConfigError(f"resume: {folder} stopped before its config was saved, so it holds nothing to resume; "
                          f"run the original command again (into this folder if you like)")
    raise ConfigError(f"resume: {folder} has neither .hydra/config.yaml nor a config in run.json; it cannot be "
                      f"resumed: delete it and start the run again")


def replayed_run(hydra_cfg) -> Path | None:
    """The run folder whose frozen config this command replays (-cp <run>/.hydra), if any."""
    for source in hydra_cfg.runtime.config_sources:
        if source.provider == "main" and source.schema == "file" and is_run_record(source.path):
            folder = Path(source.path).parent
            return folder if (folder / runstate.RUN_FILE).exists() else None
    return None



def original_cwd(run_folder: Path) -> Path | None:
    """The folder a run read its relative paths from, if it still exists: run.json's ``working_folder`` (a
    replay's is the run it replays'), else the folder it was started in (Hydra's hydra.yaml)."""
    found = (runstate.read_run(run_folder) or {}).get("working_folder")
    if found is None:
        try:
            found = yaml.safe_load((run_folder / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["cwd"]
        except (OSError, KeyError, TypeError, yaml.YAMLError):
            return None
    return Path(found) if Path(found).is_dir() else None
