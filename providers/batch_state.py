"""The batches a run has sent, kept in the run directory so a resumed run never pays twice.

A batch is paid for once it is created, and it runs at the server whether or not the process
that created it is still alive. So every batch is written to ``batches/state.json`` before it
is polled, and a resumed run (``lhe resume=DIR``) first looks there: a line of an earlier
batch whose request is asked again is taken from that batch (polled to its end if it is still
running), not sent again.

The window between creating a batch and writing its id down is closed from the other side:
the uploaded input file's id is written first, and a batch found without an id is looked up
at the server by that file before a new one is created (see :mod:`providers.batch_api`).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.files import atomic_write_text

STATE_DIR = "batches"
"""Folder of the run directory that holds the state file and every batch's files."""
STATE_FILE = "state.json"
"""The state file inside :data:`STATE_DIR`."""

BatchPhase = Literal["written", "uploaded", "submitted", "finished"]
"""``written``: the input file is on disk, nothing was sent; ``uploaded``: the input file is
at the server, the batch may or may not exist yet; ``submitted``: the batch exists (its id is
known) and may still run; ``finished``: its answered lines are on disk next to the state
file."""


def body_digest(body: dict[str, Any]) -> str:
    """SHA-256 of a request body in canonical JSON: tells whether a line is the same request."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class BatchEntry(BaseModel):
    """One batch of a run."""

    model_config = ConfigDict(extra="forbid")

    name: str
    """Local name (``b0001``); the batch's files in :data:`STATE_DIR` start with it."""
    backend: Literal["api", "command"]
    """``api``: an OpenAI-format batch API; ``command``: an offline engine run as a command."""
    lines: dict[str, str]
    """``custom_id`` -> :func:`body_digest` of the request sent under it."""
    phase: BatchPhase = "written"
    """How far the batch got; see :data:`BatchPhase`."""
    input_file_id: str | None = None
    """The server's id of the uploaded input file (``api``)."""
    batch_id: str | None = None
    """The server's id of the batch (``api``), known once it was created."""
    status: str | None = None
    """The last status the server or the command reported (``completed``, ``expired``, ...)."""

    def input_path(self, folder: Path) -> Path:
        """The JSONL file of the requests."""
        return folder / f"{self.name}.input.jsonl"

    def output_path(self, folder: Path) -> Path:
        """The JSONL file of the answered lines (the server's output and error files, joined)."""
        return folder / f"{self.name}.output.jsonl"


class BatchState(BaseModel):
    """Every batch of a run, oldest first (``batches/state.json``)."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    """Format version of this file."""
    batches: list[BatchEntry] = Field(default_factory=list)
    """The batches, in the order they were started."""


class StateFile:
    """Reads and rewrites ``batches/state.json`` (atomically: a crash leaves old or new)."""

    def __init__(self, run_dir: Path) -> None:
        self.folder = run_dir / STATE_DIR
        self.path = self.folder / STATE_FILE
        self.state = (
            BatchState.model_validate_json(self.path.read_bytes())
            if self.path.exists()
            else BatchState()
        )

    def new_entry(self, backend: Literal["api", "command"], lines: dict[str, str]) -> BatchEntry:
        """A fresh entry with the next local name (not saved yet)."""
        entry = BatchEntry(name=f"b{len(self.state.batches) + 1:04d}", backend=backend, lines=lines)
        self.state.batches.append(entry)
        return entry

    def save(self) -> None:
        """Write the state to disk."""
        atomic_write_text(self.path, self.state.model_dump_json(indent=1) + "\n")


class BatchSummary(BaseModel):
    """The ``batch`` block of a run's summary: how the run's requests were batched."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["api", "command"]
    """``model.batch`` of the run."""
    batches: int
    """Batches of the run, over all its sessions."""
    lines: int
    """Lines sent, resent ones included."""
    statuses: dict[str, int]
    """Batches by last status (``completed``, ``expired``, ...; the phase if none was seen)."""
    unfinished: list[str]
    """Batches a resume would still poll or run."""
    price_note: str | None = None
    """How the cost was priced (batch price, or the list price when none is known)."""


def batch_summary(run_dir: Path, mode: str, price_note: str | None) -> BatchSummary | None:
    """The summary's batch block, from ``batches/state.json``; None without ``model.batch``."""
    if mode not in ("api", "command"):
        return None
    path = run_dir / STATE_DIR / STATE_FILE
    state = BatchState.model_validate_json(path.read_bytes()) if path.exists() else BatchState()
    return BatchSummary(
        mode=mode,  # type: ignore[arg-type]
        batches=len(state.batches),
        lines=sum(len(entry.lines) for entry in state.batches),
        statuses=dict(sorted(Counter(e.status or e.phase for e in state.batches).items())),
        unfinished=[e.name for e in state.batches if e.phase != "finished"],
        price_note=price_note,
    )
