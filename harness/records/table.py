"""A run's records as columns: what a summary needs from a million turns, read in seconds.

Validating every line of ``turns.jsonl`` into a :class:`~harness.records.schema.TurnRecord`
costs tens of microseconds a line, so a 1,000 x 1,000 run took minutes to summarize. Here
pyarrow's JSON reader parses the file on every core into typed columns, keeping only the
fields in :data:`SCHEMA`, and everything after that is array arithmetic.

The fast path trusts what :class:`~harness.records.schema.TurnWriter` writes. Whatever it
cannot vouch for (a line that is not one JSON object, a value of the wrong type, a required
field missing or null, an unknown status, a negative index) sends the whole file through
:func:`~harness.records.schema.read_records` instead, so the result is always the one the
pydantic path gives; only its speed depends on the file being clean. (A field the schema does
not list is not checked: a record with an unknown extra field is kept here but dropped by
pydantic.)
"""

from __future__ import annotations

import dataclasses
import mmap
import typing
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from harness.records.schema import (
    TURNS_FILE,
    UNSCORED_STATUSES,
    TokenTally,
    TurnRecord,
    TurnStatus,
    read_records,
)

STATUSES: tuple[str, ...] = typing.get_args(TurnStatus)
"""Every record status; ``RecordTable.status`` holds indices into this tuple."""

_USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "reasoning_tokens", "cached_tokens")

SCHEMA = pa.schema(
    [
        ("episode", pa.int64()),
        ("turn", pa.int64()),
        ("delta", pa.int64()),
        ("truth", pa.int64()),
        ("base", pa.int64()),
        ("status", pa.string()),
        ("answer", pa.int64()),
        (
            "usage",
            pa.struct([*((name, pa.int64()) for name in _USAGE_FIELDS), ("estimated", pa.bool_())]),
        ),
        ("latency_s", pa.float64()),
        ("retries", pa.int64()),
        ("cache_hit", pa.bool_()),
        ("filled", pa.bool_()),
        ("model_id", pa.string()),
        *((name, pa.int64()) for name in ("n_samples", "red_flags", "vote_margin")),
        ("capped", pa.bool_()),
    ]
)
"""The record fields read; the reader skips every other one (replies, reasoning, keys)."""

_REQUIRED = ("episode", "turn", "delta", "truth", "base", "status")
"""Fields without a default: a record lacking one is not a record."""
_NOT_NULL = ("latency_s", "retries", "cache_hit", "filled", "usage")
"""Fields with a default that may be missing but, when present, must not be null."""

_BLOCK_BYTES = 16 << 20
"""Bytes per parse block: large blocks parse faster, and each core takes one at a time."""
_SCAN_BYTES = 64 << 20
"""Bytes per step when counting lines (bounds the temporary mask)."""


@dataclass(frozen=True)
class RecordTable:
    """Every complete record of a run in file order, one numpy array per field."""

    episode: np.ndarray
    turn: np.ndarray
    delta: np.ndarray
    truth: np.ndarray
    base: np.ndarray
    status: np.ndarray
    """Index into :data:`STATUSES` (int8)."""
    answer: np.ndarray
    """The parsed answer; meaningless where ``has_answer`` is False."""
    has_answer: np.ndarray
    latency_s: np.ndarray
    retries: np.ndarray
    cache_hit: np.ndarray
    filled: np.ndarray
    prompt_tokens: np.ndarray
    completion_tokens: np.ndarray
    reasoning_tokens: np.ndarray
    cached_tokens: np.ndarray
    estimated: np.ndarray
    model_id: np.ndarray
    """Index into ``model_ids``; -1 where the provider reported none (or an empty id)."""
    model_ids: tuple[str, ...]
    """Distinct model ids in order of first appearance."""
    retry_reasons: np.ndarray
    """Index into ``retry_reason_dicts``; -1 where a record's ``retry_reasons`` is empty."""
    retry_reason_dicts: tuple[dict[str, int], ...]
    """The non-empty ``retry_reasons`` of the records, in file order."""
    n_samples: np.ndarray
    """Samples drawn per turn (1 for records written before strategies existed)."""
    red_flags: np.ndarray
    """Samples discarded before voting."""
    vote_margin: np.ndarray
    """Winner's votes minus the runner-up's; -1 where the record has none."""
    capped: np.ndarray
    """The turn reached ``strategy.max_samples`` undecided."""

    def __len__(self) -> int:
        return int(self.episode.size)

    @classmethod
    def from_records(cls, records: list[TurnRecord]) -> RecordTable:
        """The table of already validated records (the pydantic path)."""
        ids: dict[str, int] = {}
        for record in records:
            if record.model_id:
                ids.setdefault(record.model_id, len(ids))

        def column(values: list, dtype: type) -> np.ndarray:
            return np.array(values, dtype=dtype)

        return cls(
            episode=column([r.episode for r in records], np.int64),
            turn=column([r.turn for r in records], np.int64),
            delta=column([r.delta for r in records], np.int64),
            truth=column([r.truth for r in records], np.int64),
            base=column([r.base for r in records], np.int64),
            status=column([STATUSES.index(r.status) for r in records], np.int8),
            answer=column([r.answer or 0 for r in records], np.int64),
            has_answer=column([r.answer is not None for r in records], bool),
            latency_s=column([r.latency_s for r in records], np.float64),
            retries=column([r.retries for r in records], np.int64),
            cache_hit=column([r.cache_hit for r in records], bool),
            filled=column([r.filled for r in records], bool),
            **{
                name: column([getattr(r.usage, name) for r in records], np.int64)
                for name in _USAGE_FIELDS
            },
            estimated=column([r.usage.estimated for r in records], bool),
            model_id=column([ids[r.model_id] if r.model_id else -1 for r in records], np.int32),
            model_ids=tuple(ids),
            **_sparse(
                {row: r.retry_reasons for row, r in enumerate(records) if r.retry_reasons},
                len(records),
            ),
            n_samples=column([r.n_samples for r in records], np.int64),
            red_flags=column([r.red_flags for r in records], np.int64),
            vote_margin=column(
                [-1 if r.vote_margin is None else r.vote_margin for r in records], np.int64
            ),
            capped=column([r.capped for r in records], bool),
        )

    def take(self, rows: np.ndarray) -> RecordTable:
        """The records at ``rows`` (indices or a boolean mask), as a table of their own."""
        arrays = {
            f.name: getattr(self, f.name)[rows]
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        }
        return dataclasses.replace(self, **arrays)

    def latest_rows(self) -> np.ndarray:
        """Row of the last record of every (episode, turn), sorted by (episode, turn).

        A resumed turn supersedes its failed attempt, as in
        :func:`~harness.records.schema.latest_records`.
        """
        if not len(self):
            return np.zeros(0, dtype=np.int64)
        key = self.episode * (int(self.turn.max()) + 1) + self.turn
        _, first_from_end = np.unique(key[::-1], return_index=True)
        return len(self) - 1 - first_from_end

    def latest(self) -> RecordTable:
        """The table of the last record of every (episode, turn)."""
        return self.take(self.latest_rows())

    def is_status(self, *names: str) -> np.ndarray:
        """Mask of the records whose status is one of ``names``."""
        return np.isin(self.status, [STATUSES.index(name) for name in names])

    def status_counts(self) -> Counter[str]:
        """Records per status (statuses that never occur are absent, as in a Counter)."""
        counts = np.bincount(self.status, minlength=len(STATUSES))
        return Counter({name: int(n) for name, n in zip(STATUSES, counts, strict=True) if n})

    def retry_reason_counts(self) -> Counter[str]:
        """Retried attempts per failure class, summed over the records (first seen first)."""
        return sum(
            (
                Counter(self.retry_reason_dicts[i])
                for i in self.retry_reasons[self.retry_reasons >= 0]
            ),
            Counter(),
        )

    def scored(self) -> np.ndarray:
        """Mask of the records that carry a score (not a provider error, not filled)."""
        return ~self.is_status(*UNSCORED_STATUSES)

    def index_correct(self) -> np.ndarray:
        """Mask of the scored records whose answer is the true running total."""
        return self.scored() & self.has_answer & (self.answer == self.truth)

    def turn_correct(self) -> np.ndarray:
        """Mask of the scored records whose answer is the shown base plus this turn's values."""
        return self.scored() & self.has_answer & (self.answer == self.base + self.delta)

    def fails_task(self) -> np.ndarray:
        """Mask of the records that failed the task: scored, and not the true total.

        The rule of :func:`~harness.records.schema.fails_task`, over columns.
        """
        return self.scored() & ~self.index_correct()

    def tokens_spent(self) -> TokenTally:
        """What the records paid for: model calls not served by the response cache.

        Superseded attempts count (they were paid for); filled turns made no call.
        """
        paid = ~self.cache_hit & ~self.filled
        return TokenTally(
            **{name: int(getattr(self, name)[paid].sum()) for name in _USAGE_FIELDS},
            total=int((self.prompt_tokens[paid] + self.completion_tokens[paid]).sum()),
            requests=int(paid.sum()),
            estimated=bool(self.estimated[paid].any()),
        )

    def tokens_replayed(self) -> int:
        """Prompt + completion tokens of the replies the response cache served."""
        hits = self.cache_hit & ~self.filled
        return int((self.prompt_tokens[hits] + self.completion_tokens[hits]).sum())

    def reported_model_id(self) -> str | None:
        """The model id reported most often (ties: the one seen first), None if never one."""
        reported = self.model_id[self.model_id >= 0]
        if not reported.size:
            return None
        return self.model_ids[int(np.bincount(reported).argmax())]


def read_table(run_dir: Path) -> RecordTable:
    """Every complete record of ``run_dir``; a torn last line (a crash mid-write) is skipped."""
    path = run_dir / TURNS_FILE
    if not path.exists():
        return RecordTable.from_records([])
    parsed = _read_arrow(path)
    columns = None if parsed is None else _columns(*parsed)
    if columns is None:
        return RecordTable.from_records(read_records(run_dir))
    return columns


def _read_arrow(path: Path) -> tuple[pa.Table, dict[int, dict[str, int]]] | None:
    """Parse the complete lines of ``path``, and the retry reasons of the lines that have any.

    None when the lines are not all clean records (see the module docstring).
    """
    if path.stat().st_size == 0:
        return pa.Table.from_pylist([], schema=SCHEMA), {}
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as raw:
        return _parse(raw)  # every view of the map is gone when this returns


def _parse(raw: mmap.mmap) -> tuple[pa.Table, dict[int, dict[str, int]]] | None:
    complete = raw.rfind(b"\n") + 1  # a torn last line (a crash mid-write) is left out
    if complete == 0:
        return pa.Table.from_pylist([], schema=SCHEMA), {}
    data = pa.py_buffer(raw).slice(0, complete)
    try:
        table = pj.read_json(
            pa.BufferReader(data),
            read_options=pj.ReadOptions(block_size=_BLOCK_BYTES),
            parse_options=pj.ParseOptions(
                explicit_schema=SCHEMA, unexpected_field_behavior="ignore"
            ),
        )
    except pa.ArrowInvalid:
        return None
    line_ends = _newlines(np.frombuffer(data, dtype=np.uint8))
    # One row per line: two objects run together on one line (a torn write followed by a
    # resumed one) parse as two rows here but are one bad line to pydantic.
    if table.num_rows != line_ends.size:
        return None
    try:
        return table, _retry_reasons(raw, line_ends)
    except ValueError:
        return None


def _retry_reasons(raw: mmap.mmap, line_ends: np.ndarray) -> dict[int, dict[str, int]]:
    """Line number -> ``retry_reasons`` of every line where that dict is not empty.

    A map with arbitrary keys has no place in an Arrow schema, and nearly every record has
    ``{}``, so the few others are found by their bytes (inside a string value the quotes would
    be escaped) and validated whole. Raises ValueError on a line pydantic would drop.
    """
    needle = b'"retry_reasons":{"'
    end = int(line_ends[-1]) if line_ends.size else 0
    hits = []
    at = raw.find(needle, 0, end)
    while at != -1:
        hits.append(at)
        at = raw.find(needle, at + len(needle), end)
    found: dict[int, dict[str, int]] = {}
    for line in np.unique(np.searchsorted(line_ends, hits)).tolist():
        start = int(line_ends[line - 1]) + 1 if line else 0
        record = TurnRecord.model_validate_json(raw[start : int(line_ends[line])])
        found[line] = record.retry_reasons
    return found


def _newlines(raw: np.ndarray) -> np.ndarray:
    """Positions of every newline byte, found a slice at a time to bound the temporary mask."""
    return np.concatenate(
        [
            np.flatnonzero(raw[i : i + _SCAN_BYTES] == 10) + i
            for i in range(0, raw.size, _SCAN_BYTES)
        ]
    )


def _numpy(column: pa.ChunkedArray | pa.Array, dtype: type) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=dtype)


def _columns(table: pa.Table, reasons: dict[int, dict[str, int]]) -> RecordTable | None:
    """Numpy columns of a parsed table, or None when a record would fail validation."""
    for name in _REQUIRED + _NOT_NULL:
        if table.column(name).null_count:
            return None
    usage = table.column("usage").combine_chunks()
    usage_fields = {name: usage.field(name) for name in (*_USAGE_FIELDS, "estimated")}
    if any(field.null_count for field in usage_fields.values()):
        return None
    status_names = table.column("status").combine_chunks().dictionary_encode()
    known = [
        STATUSES.index(s) if s in STATUSES else -1 for s in status_names.dictionary.to_pylist()
    ]
    if -1 in known:
        return None
    episode, turn = (
        _numpy(table.column("episode"), np.int64),
        _numpy(table.column("turn"), np.int64),
    )
    if (episode.size and episode.min() < 0) or (turn.size and turn.min() < 0):
        return None
    answer = table.column("answer")
    models = table.column("model_id").combine_chunks()
    # An empty id counts as none (the pydantic path skips falsy ids too).
    models = pc.if_else(pc.equal(models, ""), pa.scalar(None, pa.string()), models)
    models = models.dictionary_encode()
    return RecordTable(
        episode=episode,
        turn=turn,
        delta=_numpy(table.column("delta"), np.int64),
        truth=_numpy(table.column("truth"), np.int64),
        base=_numpy(table.column("base"), np.int64),
        status=np.asarray(known, dtype=np.int8)[_numpy(status_names.indices, np.int64)],
        answer=_numpy(answer.fill_null(0), np.int64),
        has_answer=_numpy(answer.is_valid(), bool),
        latency_s=_numpy(table.column("latency_s"), np.float64),
        retries=_numpy(table.column("retries"), np.int64),
        cache_hit=_numpy(table.column("cache_hit"), bool),
        filled=_numpy(table.column("filled"), bool),
        **{name: _numpy(usage_fields[name], np.int64) for name in _USAGE_FIELDS},
        estimated=_numpy(usage_fields["estimated"], bool),
        model_id=_numpy(models.indices.fill_null(-1), np.int32),
        model_ids=tuple(models.dictionary.to_pylist()),
        **_sparse(reasons, table.num_rows),
        n_samples=_numpy(table.column("n_samples").fill_null(1), np.int64),
        red_flags=_numpy(table.column("red_flags").fill_null(0), np.int64),
        vote_margin=_numpy(table.column("vote_margin").fill_null(-1), np.int64),
        capped=_numpy(table.column("capped").fill_null(False), bool),
    )


def _sparse(reasons: dict[int, dict[str, int]], rows: int) -> dict:
    """The ``retry_reasons`` fields of a table of ``rows`` rows, from row -> non-empty dict."""
    index = np.full(rows, -1, dtype=np.int32)
    index[list(reasons)] = np.arange(len(reasons), dtype=np.int32)
    return {"retry_reasons": index, "retry_reason_dicts": tuple(reasons.values())}
