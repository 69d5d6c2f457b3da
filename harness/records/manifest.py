"""The run manifest: everything needed to reproduce a run or refuse a mismatched resume."""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from harness.config import RunConfig
from harness.files import atomic_write_json
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


def build_manifest(
    config: RunConfig, task_set: TaskSet, *, provider_label: str, simulated: bool
) -> dict[str, Any]:
    """The manifest written at the start of a run."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config.model_dump(mode="json"),
        "config_hash": config.config_hash(),
        "provider": {"label": provider_label, "simulated": simulated},
        "task_set": {
            "fingerprint": task_set.fingerprint,
            "origin": task_set.origin,
            "episodes": task_set.samples,
            "turns": task_set.turns,
            "k": task_set.k,
            "dict_size": len(task_set.words),
        },
        "seeds": {
            "task": config.task.seed,
            "run": config.run.seed,
            "bootstrap": config.metrics.seed,
        },
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "command": sys.argv,
    }


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically."""
    atomic_write_json(run_dir / MANIFEST_FILE, manifest)
