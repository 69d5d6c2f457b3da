"""An offline batch engine run as a command (``model.batch=command``).

``vllm run-batch -i IN -o OUT --model M`` reads the batch API's JSONL and writes its output
format, with no server: a GPU node runs a whole sweep this way. The harness writes each
batch's input file, runs ``model.batch_command`` with ``{input}`` and ``{output}`` replaced by
the two paths, waits for it to exit and reads the output. The command line is split like a
shell would (``shlex``) but run without a shell, so a path with spaces stays one argument.

A batch whose output is on disk is never run again on resume; one that was running when the
harness died is run again (it cost only local time). Its stderr goes to
``batches/<name>.log``; a command that exits with an error stops the run (a missing model or
an out-of-memory GPU would fail again).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

from providers.base import FatalProviderError
from providers.batch_state import BatchEntry
from providers.batching import BatchBackend

PLACEHOLDERS = ("{input}", "{output}")
"""What ``model.batch_command`` must contain."""
LOG_TAIL_CHARS = 500
"""Characters of the command's stderr quoted when it fails."""


def command_args(template: str, input_path: Path, output_path: Path) -> list[str]:
    """The argument list of one batch: the template split, then the paths put in."""
    return [
        arg.replace("{input}", str(input_path)).replace("{output}", str(output_path))
        for arg in shlex.split(template)
    ]


def check_template(template: str | None) -> str:
    """The template, or a one-line error naming the field and what it needs."""
    if not template or not all(p in template for p in PLACEHOLDERS):
        raise ValueError(
            "model.batch_command: must contain {input} and {output} (e.g. "
            f"'vllm run-batch -i {{input}} -o {{output}} --model M'; got {template!r})"
        )
    program = shlex.split(template)[0]
    if shutil.which(program) is None:
        raise ValueError(f"model.batch_command: {program!r} is not an executable on PATH")
    return template


class BatchCommand(BatchBackend):
    """See the module docstring."""

    kind = "command"

    def __init__(self, template: str) -> None:
        self.template = check_template(template)

    async def run(self, entry: BatchEntry, folder: Path, save: Callable[[], None]) -> None:
        """See :meth:`BatchBackend.run`."""
        output = entry.output_path(folder)
        partial = output.with_name(f".{output.name}.{os.getpid()}")
        log = folder / f"{entry.name}.log"
        args = command_args(self.template, entry.input_path(folder), partial)
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=stderr, stderr=stderr
            )
            try:
                code = await process.wait()
            except asyncio.CancelledError:
                process.kill()
                await process.wait()
                raise
        if code != 0 or not partial.exists():
            tail = log.read_text(errors="replace")[-LOG_TAIL_CHARS:].strip().replace("\n", " | ")
            raise FatalProviderError(
                f"model.batch_command: exited with code {code}"
                + ("" if partial.exists() else " and wrote no output")
                + f" ({tail or 'no output on stderr'}; log: {log})"
            )
        os.replace(partial, output)
        entry.status = "completed"
        entry.phase = "finished"
        save()
