"""The run manifest: everything needed to reproduce a run or refuse a mismatched resume."""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from harness.config import PriceConfig, RunConfig
from harness.files import atomic_write_text
from tasks.taskset import TaskSet

MANIFEST_FILE = "manifest.json"

TRACKED_PACKAGES = (
    "long-horizon-harness",
    "numpy",
    "pandas",
    "pydantic",
    "httpx",
    "tenacity",
    "hydra-core",
    "datasets",
    "llama-cpp-python",
    "transformers",
    "torch",
)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that can change results."""
    found: dict[str, str] = {}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def git_commit(start: Path | None = None) -> str | None:
    """Commit of the harness checkout, with ``+dirty`` when it has uncommitted changes."""
    where = start or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


class ProviderInfo(BaseModel):
    """Who answered."""

    model_config = ConfigDict(extra="forbid")

    label: str
    """The model's label (``model.label`` or what the provider calls itself)."""
    simulated: bool
    """True for the simulated executor."""


class TaskSetInfo(BaseModel):
    """The task set's shape and identity."""

    model_config = ConfigDict(extra="forbid")

    fingerprint: str
    """Hash of the dictionary and every episode's keys: equal fingerprints, equal tasks."""
    origin: str
    """Where the task set came from (generated, or the imported source)."""
    episodes: int
    """Episodes."""
    turns: int
    """Turns per episode."""
    k: int
    """Keys per turn."""
    dict_size: int
    """Words in the dictionary."""


class Seeds(BaseModel):
    """Every seed of the run."""

    model_config = ConfigDict(extra="forbid")

    task: int
    """Task-set generation."""
    run: int
    """Sampling seeds of requests and history rewriting."""
    bootstrap: int
    """Bootstrap resampling."""


class Manifest(BaseModel):
    """``manifest.json``: written once, when a run starts; resumes check it and keep it."""

    model_config = ConfigDict(extra="forbid")

    created: str
    """UTC creation time, ISO 8601."""
    config: dict[str, Any]
    """The resolved config (``RunConfig`` as JSON)."""
    config_hash: str
    """Hash of the config fields that change results; a resume must match it."""
    provider: ProviderInfo
    """Who answered."""
    task_set: TaskSetInfo
    """The task set."""
    seeds: Seeds
    """Every seed."""
    price: PriceConfig | None = None
    """The one price of the run (USD per million tokens), resolved at its start from
    ``model.price`` or the price table; budgets and economics both use it. None: unknown."""
    packages: dict[str, str]
    """Versions of the packages that can change results."""
    python: str
    """Python version."""
    platform: str
    """Operating system and machine."""
    git_commit: str | None
    """Commit of the harness checkout (``+dirty`` with local changes)."""
    command: list[str]
    """The command line."""


def build_manifest(
    config: RunConfig,
    task_set: TaskSet,
    *,
    provider_label: str,
    simulated: bool,
    price: PriceConfig | None = None,
) -> Manifest:
    """The manifest written at the start of a run."""
    return Manifest(
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        config=config.model_dump(mode="json"),
        config_hash=config.config_hash(),
        provider=ProviderInfo(label=provider_label, simulated=simulated),
        task_set=TaskSetInfo(
            fingerprint=task_set.fingerprint,
            origin=task_set.origin,
            episodes=task_set.samples,
            turns=task_set.turns,
            k=task_set.k,
            dict_size=len(task_set.words),
        ),
        seeds=Seeds(task=config.task.seed, run=config.run.seed, bootstrap=config.metrics.seed),
        price=price,
        packages=package_versions(),
        python=sys.version.split()[0],
        platform=platform.platform(),
        git_commit=git_commit(),
        command=list(sys.argv),
    )


def write_manifest(run_dir: Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` atomically."""
    atomic_write_text(run_dir / MANIFEST_FILE, manifest.model_dump_json(indent=2) + "\n")


def read_manifest(run_dir: Path) -> Manifest:
    """A run's manifest (a one-line error when the directory holds no run)."""
    path = run_dir / MANIFEST_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a run directory")
    return Manifest.model_validate_json(path.read_bytes())
