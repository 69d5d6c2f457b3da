"""The ``lhe-dataset`` command: export a generated task set as a dataset, or inspect one.

``lhe-dataset export OUT_DIR`` writes what ``task.source`` reads back bit for bit, so a task
set can be shared, pushed to the hub or frozen for a study. ``lhe-dataset inspect PATH``
runs the same validation a run does and prints what it found, so a bad file is caught
before any model is called.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import datasets

from tasks.dataset_io import export_task_set, import_task_set
from tasks.generate import generate_task_set
from tasks.taskset import TaskSet

PROG = "lhe-dataset"


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error of this command."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line; defaults of ``export`` match the harness's default task."""
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    export = commands.add_parser("export", help="generate a task set and save it as a dataset")
    export.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="new or empty directory")
    export.add_argument("--samples", type=_positive, default=20, help="episodes (default 20)")
    export.add_argument("--turns", type=_positive, default=20, help="turns each (default 20)")
    export.add_argument("--k", type=_positive, default=1, help="keys per turn (default 1)")
    export.add_argument("--dict-size", type=_positive, default=100, help="words (default 100)")
    export.add_argument("--seed", type=int, default=42, help="generation seed (default 42)")
    inspect = commands.add_parser("inspect", help="validate a task set and summarise it")
    inspect.add_argument("path", type=Path, metavar="PATH", help="any layout task.source reads")
    return parser


def _summary(task_set: TaskSet) -> list[str]:
    return [
        f"origin: {task_set.origin}",
        f"episodes: {task_set.samples}",
        f"steps: {task_set.steps}",
        f"k: {task_set.k} ({task_set.turns} turns)",
        f"dictionary size: {len(task_set.words)}",
        f"seed: {task_set.seed if task_set.seed is not None else 'none'}",
        f"fingerprint: {task_set.fingerprint}",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on any error, with a one-line message)."""
    args = build_parser().parse_args(argv)
    datasets.disable_progress_bars()  # keep stdout to the summary lines
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            if args.command == "export":
                task_set = generate_task_set(
                    samples=args.samples,
                    turns=args.turns,
                    k=args.k,
                    dict_size=args.dict_size,
                    seed=args.seed,
                )
                path = export_task_set(task_set, args.out_dir)
                lines = [f"exported to {path}", *_summary(task_set)[1:]]
            else:
                lines = _summary(import_task_set(args.path))
    except (ValueError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    for warning in caught:
        text = str(warning.message)
        if text.startswith("task.source:"):
            print(f"{PROG}: warning: {text}", file=sys.stderr)
        else:
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
