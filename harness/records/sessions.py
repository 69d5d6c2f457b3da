"""``sessions.jsonl``: what only the runner knows about each session of a run.

A run can take several sessions (a first start, then resumes after a crash, Ctrl-C, a
budget stop or a cluster requeue). How a session ended, what stopped it, the episode length
that adaptive stopping settled on and what the response cache served are facts of the
session, not of the records, so the pipeline appends one line here when a session ends. The
summary is then a pure function of ``manifest.json``, ``turns.jsonl`` and this file: any
later ``lhe-summarize DIR`` rebuilds it exactly. A session killed outright (SIGKILL, power
loss) writes no line; the summary then says the run is incomplete, which it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

SESSIONS_FILE = "sessions.jsonl"

SessionStatus = Literal["complete", "incomplete", "stopped", "interrupted", "failed"]


class CacheStats(BaseModel):
    """What the response cache did in one session."""

    model_config = ConfigDict(extra="forbid")

    hits: int = 0
    """Requests answered from the cache (no tokens spent)."""
    misses: int = 0
    """Requests sent to the provider because the cache had no entry."""
    stored: int = 0
    """Replies written to the cache."""


class SessionRecord(BaseModel):
    """One session of a run, appended when the session ends."""

    model_config = ConfigDict(extra="forbid")

    started: str
    """UTC start time, ISO 8601."""
    ended: str
    """UTC end time, ISO 8601."""
    elapsed_s: float
    """Wall time of the session."""
    outcome: SessionStatus | None = None
    """How the session ended when that is not just "all turns done or not": ``stopped``
    (budget or adaptive stopping), ``interrupted`` (a signal) or ``failed`` (a fatal provider
    error). None lets the summary decide between complete and incomplete from the records."""
    note: str | None = None
    """One line for the reader: why the session ended, how to resume."""
    stopped_by: str | None = None
    """Config field or signal that ended the session early (``budget.max_usd``,
    ``stop.when_decided``, ``signal SIGINT``)."""
    length_cap: int | None = None
    """Turns per episode that ``stop.when_decided`` found enough; later turns were not run."""
    turns_resumed: int = 0
    """Finished turns read back from earlier sessions instead of being requested."""
    provider_errors: int = 0
    """Turns of this session that failed at the provider after every retry."""
    cache: CacheStats | None = None
    """Response-cache statistics, when the cache was on."""


def append_session(run_dir: Path, session: SessionRecord) -> None:
    """Append one session line (flushed; a torn line from a crash is skipped on read)."""
    with (run_dir / SESSIONS_FILE).open("a", encoding="utf-8") as handle:
        handle.write(session.model_dump_json() + "\n")


def read_sessions(run_dir: Path) -> list[SessionRecord]:
    """Every whole session line of a run, oldest first (none for a run that never ended)."""
    path = run_dir / SESSIONS_FILE
    if not path.exists():
        return []
    sessions: list[SessionRecord] = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        try:
            sessions.append(SessionRecord.model_validate(json.loads(line)))
        except ValueError:
            continue
    return sessions
