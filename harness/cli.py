"""The ``lhe`` command: a Hydra app that composes ``conf/`` and runs one job per config.

``lhe`` alone measures the embedded default model (SmolLM2-135M-Instruct, in-process).
Any field can be overridden (``lhe model=simulated model.p=0.95 task.k=2``) or swept
(``lhe -m task.k=1,2,10``).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import logging
import re
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from harness.analysis.run_summary import RunSummary
from harness.config import ConfigError, RunConfig, load_config
from harness.economics.budget import LEDGER_DIR
from harness.pipeline import run
from providers.base import FatalProviderError, MissingExtraError

CONFIG_MODULE = "conf"


def _integer_division(total: int, k: int) -> int:
    if k < 1 or total % k:
        raise ValueError(f"task.k: {k} does not divide experiment.total_steps={total}")
    return total // k


# Resolvers usable in conf/: ${lhe.div:a,b} (exact division) and ${lhe.is:a,b} (equality,
# e.g. to switch a provider's thinking flag on with task.mode=thinking).
OmegaConf.register_new_resolver("lhe.div", _integer_division, replace=True)
OmegaConf.register_new_resolver("lhe.is", lambda a, b: a == b, replace=True)
# ${lhe.slug:x}: a model name usable as one folder name (org/model -> org_model).
OmegaConf.register_new_resolver(
    "lhe.slug", lambda name: re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)), replace=True
)


PRESET_GROUPS = ("model", "task", "history", "strategy", "experiment")
"""Config groups of ``conf/`` whose choices are checked before Hydra composes anything."""


def preset_names(group: str) -> list[str]:
    """The presets of one config group: the YAML files in ``conf/<group>/``."""
    folder = importlib.resources.files(CONFIG_MODULE) / group
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def check_presets(overrides: list[str]) -> None:
    """Refuse an unknown preset (``model=gpt9``) with one line listing the allowed ones.

    Hydra's own message spans a dozen lines and a search path; a sweep's comma list
    (``model=a,b``) is checked value by value.
    """
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if not sep or key not in PRESET_GROUPS or "(" in value or "$" in value:
            continue
        allowed = preset_names(key)
        for choice in value.split(","):
            if choice.strip() not in allowed:
                raise ConfigError(
                    f"{key}: no preset named {choice.strip()!r} (allowed: {', '.join(allowed)})"
                )


def check_overrides(argv: list[str]) -> None:
    """Compose and validate the config before Hydra starts, so a mistake is one line.

    Hydra reports an unknown key (``task.typo=1``) or a syntax error in several lines with a
    stack-trace hint, and in a sweep only when the failing job starts, after the others have
    run. In a sweep every value of every comma list is checked (with the first value of the
    other lists: 50 ms a value); ``range()``/``choice()``/``glob()`` sweeps are left to Hydra.
    """
    multirun = any(arg in ("-m", "--multirun") for arg in argv)
    keys: list[str] = []
    choices: list[list[str]] = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or arg.startswith("-") or key.lstrip("+~").startswith(("hydra.", "hydra/")):
            continue
        if multirun and re.search(r"\w\(", value):
            continue
        swept = multirun and "," in value and not value.startswith(("[", "{", "'", '"'))
        keys.append(key)
        choices.append(value.split(",") if swept else [value])
    first = [values[0] for values in choices]
    candidates = [first] + [
        [*first[:i], value, *first[i + 1 :]]
        for i, values in enumerate(choices)
        for value in values[1:]
    ]
    for values in candidates:
        overrides = [f"{key}={value}" for key, value in zip(keys, values, strict=True)]
        try:
            compose_config(overrides)
        except HydraException as exc:
            message = str(exc).splitlines()[0]
            unknown = re.match(r"Could not override '([^']+)'", message)
            if unknown:
                added = next(o for o in overrides if o.startswith(unknown[1] + "="))
                raise ConfigError(
                    f"{unknown[1]}: unknown field (to add a field that is not in the preset, "
                    f"write +{added})"
                ) from None
            raise ConfigError(f"overrides: {message}") from None


def compose_config(overrides: list[str] | None = None) -> RunConfig:
    """Compose ``conf/`` with command-line style overrides and validate it, without running.

    The same composition ``lhe`` does, for notebooks, scripts and tests.
    """
    from hydra import compose, initialize_config_module

    check_presets(overrides or [])
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides or [])
    return load_config(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]


@hydra.main(config_path="pkg://conf", config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> None:
    """Validate the composed config and run it in Hydra's output directory."""
    raw = OmegaConf.to_container(cfg, resolve=True)
    hydra_config = HydraConfig.get()
    run_dir = Path(hydra_config.runtime.output_dir)
    # One job of a sweep, or a job of one resumed by itself: the sweep's jobs share spending.
    sweep_dir = None
    if hydra_config.mode == RunMode.MULTIRUN:
        sweep_dir = Path(hydra_config.sweep.dir)
    elif (run_dir.parent / LEDGER_DIR).is_dir():
        sweep_dir = run_dir.parent
    try:
        config = load_config(raw)  # type: ignore[arg-type]
        summary = run(config, run_dir, sweep_dir=sweep_dir)
    except (ConfigError, MissingExtraError, FatalProviderError) as exc:
        print(f"lhe: error: {exc}", file=sys.stderr)
        sys.exit(2)
    if isinstance(summary, RunSummary) and summary.status == "interrupted":
        sys.exit(130)


LAUNCHER_PLUGINS = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "sweep"),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "sweep"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "sweep"),
    "slurm": ("hydra_plugins.hydra_submitit_launcher", "sweep"),
    "ray": ("hydra_plugins.hydra_ray_launcher", "ray"),
}
"""Launcher choice -> (the plugin's module, the extra that installs it)."""


def missing_launcher(argv: list[str]) -> str | None:
    """A one-line install hint when a requested Hydra launcher plugin is not installed."""
    for arg in argv:
        name = arg.partition("hydra/launcher=")[2]
        module, extra = LAUNCHER_PLUGINS.get(name, (None, None))
        if module and importlib.util.find_spec(module) is None:
            return f"hydra/launcher={name} needs the {extra} extra: pip install -e '.[{extra}]'"
    return None


def expand_resume(argv: list[str]) -> list[str]:
    """Turn ``resume=DIR`` into the overrides the run in DIR was started with.

    The run is then composed exactly as before and continues in DIR; if the config files
    changed since, the config hash differs and the run refuses to mix results.
    """
    resume = [a for a in argv if a.startswith("resume=")]
    if not resume:
        return argv
    run_dir = Path(resume[-1].partition("=")[2]).expanduser()
    saved = run_dir / ".hydra" / "overrides.yaml"
    if not saved.exists():
        raise ConfigError(f"resume: {run_dir} has no .hydra/overrides.yaml (not an lhe run dir)")
    previous = [str(o) for o in OmegaConf.load(saved) if not str(o).startswith("hydra.run.dir=")]
    rest = [a for a in argv if not a.startswith("resume=")]
    return [*previous, *rest, f"hydra.run.dir={run_dir}"]


def main() -> None:
    """Console-script entry point."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one log line per request
    argv = sys.argv[1:]
    try:
        hint = missing_launcher(argv)
        if hint:
            raise ConfigError(hint)
        sys.argv[1:] = expand_resume(argv)
        check_overrides(sys.argv[1:])  # presets too: compose_config checks them first
    except ConfigError as exc:
        print(f"lhe: error: {exc}", file=sys.stderr)
        sys.exit(2)
    app()


if __name__ == "__main__":
    main()
