"""Gather the concurrent requests of a run into batch files (``model.batch=api|command``).

The runner keeps calling :meth:`Provider.chat` from one coroutine per episode; this wrapper
holds each call until every open episode is waiting for a reply, then sends all of them as
one batch (OpenAI's batch JSONL, which ``vllm run-batch`` reads too) and answers each caller
from the batch's output. Turns are sequential within an episode, so a batch holds turn t of
every unfinished episode; with ``history.target_turn`` the earlier turns need no call and the
whole run is one batch. The runner tells the wrapper which episodes are open
(:meth:`Provider.episode`) and which turn a request belongs to (:data:`REQUEST_TAG`), so the
wrapper knows when to send without a timer, and names each line
``e{episode}-t{turn}-s{sample}``.

Lines come back in one of four ways, handled as the interactive adapter handles replies:

* answered: parsed like a chat-completions reply;
* failed with a status worth another try (5xx, 429, an unusable body), or not answered at all
  (the batch expired or was cancelled first): the line goes into the next batch, together
  with the next turn of the other episodes, and the retry is counted by reason
  (``500``, ``batch_expired``, ...); after ``batch_options.max_attempts`` batches it is a
  ``provider_error``;
* a context-length error: that turn's result, never resent;
* anything else (bad key, unknown model): :class:`FatalProviderError`, the run stops.

Every batch is written to the run directory before it is sent (:mod:`providers.batch_state`),
so a resumed run takes the lines it asks again from the batch that already holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from providers.base import (
    REQUEST_TAG,
    ChatResult,
    FatalProviderError,
    Message,
    Provider,
    Sampling,
)
from providers.batch_state import BatchEntry, StateFile, body_digest
from providers.openai_compatible import build_request_body, parse_response
from providers.retry import RetryableError, classify_status, fatal_field, one_line

BatchMode = Literal["off", "api", "command"]

CHAT_URL = "/v1/chat/completions"
"""The endpoint every line of a batch names."""
UNFINISHED_CODES = frozenset({"batch_expired", "batch_cancelled"})
"""Error codes of lines a batch did not get to (sent again, never a result)."""


class BatchOptions(BaseModel):
    """How batches are polled and how often a failed line is sent again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    poll_initial_s: float = Field(5.0, gt=0)
    """Seconds before the first status check of a batch; doubles per check."""
    poll_max_s: float = Field(60.0, gt=0)
    """Longest wait between two status checks."""
    max_attempts: int = Field(4, ge=1)
    """Batches a line may be sent in before its turn is a ``provider_error``."""


@dataclass
class Line:
    """One request waiting for its line of a batch."""

    custom_id: str
    episode: int | None
    body: dict[str, Any]
    digest: str
    prompt_chars: int
    future: asyncio.Future[ChatResult]
    started: float = field(default_factory=time.monotonic)
    attempts: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    last_error: str = ""


@dataclass(frozen=True)
class Resend:
    """A line worth sending again, and why (the retry reason counted in the record)."""

    reason: str
    error: str


class BatchBackend(ABC):
    """Where a batch file goes: a batch API, or an offline engine run as a command."""

    kind: Literal["api", "command"]

    @abstractmethod
    async def run(self, entry: BatchEntry, folder: Path, save: Callable[[], None]) -> None:
        """Take ``entry`` from its phase to ``finished``, calling ``save`` at each step.

        On return, ``entry.output_path(folder)`` holds the answered lines (output and error
        lines alike) and ``entry.status`` the final status. Raises
        :class:`FatalProviderError` for what would fail again.
        """

    async def preflight(self) -> None:  # noqa: B027 - optional hook
        """Check before the run that the back-end can take batches."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def line_result(raw: dict[str, Any] | None, line: Line, status: str | None) -> ChatResult | Resend:
    """The result of one output line, or why it must be sent again.

    ``raw`` is the line of the output or error file with this ``custom_id`` (None when the
    batch wrote none: it ended, as ``status`` says, before reaching it). Raises
    :class:`FatalProviderError` for a line that every later batch would fail the same way.
    """
    if raw is None:
        return Resend(f"batch_{status or 'missing'}", f"batch ended {status} without this line")
    error = raw.get("error")
    if isinstance(error, dict) and error:
        code = str(error.get("code") or "line_error")
        message = one_line(str(error.get("message") or code))
        if code in UNFINISHED_CODES:
            return Resend(code, message)
        raise FatalProviderError(f"model: batch line {line.custom_id} failed ({code}: {message})")
    response = raw.get("response") if isinstance(raw.get("response"), dict) else {}
    status_code = response.get("status_code")
    body = response.get("body")
    if status_code == 200:
        try:
            return parse_response(body, prompt_chars=line.prompt_chars)
        except RetryableError as exc:
            return Resend(exc.reason, exc.message)
    if not isinstance(status_code, int):
        return Resend("malformed", "output line has no response status")
    text = _error_text(body)
    kind = classify_status(status_code, text)
    message = f"HTTP {status_code}: {text}"
    if kind == "context_exceeded":
        return ChatResult(outcome="context_exceeded", error=message)
    if kind == "fatal":
        field_name = fatal_field(status_code)
        raise FatalProviderError(f"{field_name}: batch line {line.custom_id} failed ({message})")
    return Resend(str(status_code), message)


def _error_text(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return one_line(str(error.get("message") or error))
        if error:
            return one_line(str(error))
    return one_line(json.dumps(body)) if body is not None else "no body"


def read_lines(path: Path, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """The lines of an output file whose ``custom_id`` is wanted, read one line at a time.

    An output file can be far larger than what is kept of it (long replies of many
    episodes), so it is streamed; a line that is not JSON is skipped (its request is then
    missing and sent again).
    """
    found: dict[str, dict[str, Any]] = {}
    with path.open(encoding="utf-8") as handle:
        for text in handle:
            try:
                raw = json.loads(text)
            except ValueError:
                continue
            if isinstance(raw, dict) and raw.get("custom_id") in wanted:
                found[raw["custom_id"]] = raw
    return found


def write_input(entry: BatchEntry, folder: Path, lines: list[Line]) -> None:
    """Write the batch's JSONL input file (one request per line, the batch API's format)."""
    path = entry.input_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for line in lines:
            request = {
                "custom_id": line.custom_id,
                "method": "POST",
                "url": CHAT_URL,
                "body": line.body,
            }
            handle.write(json.dumps(request, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())  # on disk before the state names it


class BatchingProvider(Provider):
    """See the module docstring."""

    def __init__(
        self,
        backend: BatchBackend,
        *,
        name: str,
        label: str,
        run_dir: Path,
        options: BatchOptions,
        send_seed: bool = True,
    ) -> None:
        self.backend = backend
        self.name = name
        self._label = label
        self.options = options
        self.send_seed = send_seed
        self.state = StateFile(run_dir)
        # Lines of earlier sessions, by custom_id: the latest batch that holds each.
        self._earlier: dict[str, BatchEntry] = {
            cid: entry for entry in self.state.state.batches for cid in entry.lines
        }
        self._open: set[int] = set()
        self._waiting: Counter[int | None] = Counter()
        self._pending: dict[str, Line] = {}
        self._samples: Counter[tuple[int, int]] = Counter()
        self._round: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()  # a request arrived, or an episode ended
        self._fatal: str | None = None

    @property
    def label(self) -> str:
        """See :attr:`Provider.label`."""
        return self._label

    @contextlib.contextmanager
    def episode(self, index: int) -> Iterator[None]:
        """See :meth:`Provider.episode`: an open episode holds back the batch until it asks."""
        self._open.add(index)
        try:
            yield
        finally:
            self._open.discard(index)
            self._maybe_send()

    def _custom_id(self, digest: str) -> str:
        tag = REQUEST_TAG.get()
        if tag is None:
            return f"r-{digest[:16]}"
        sample = self._samples[tag]
        self._samples[tag] += 1
        return f"e{tag[0]}-t{tag[1]}-s{sample}"

    async def chat(self, messages: list[Message], sampling: Sampling) -> ChatResult:
        """See :meth:`Provider.chat`: waits for the line of this request in a batch."""
        if self._fatal is not None:
            raise FatalProviderError(self._fatal)
        body = build_request_body(self.name, messages, sampling, send_seed=self.send_seed)
        digest = body_digest(body)
        custom_id = self._custom_id(digest)
        while custom_id in self._pending:  # the same request twice at once: keep both
            custom_id += "+"
        tag = REQUEST_TAG.get()
        line = Line(
            custom_id=custom_id,
            episode=None if tag is None else tag[0],
            body=body,
            digest=digest,
            prompt_chars=sum(len(m.content) for m in messages),
            future=asyncio.get_running_loop().create_future(),
        )
        self._pending[custom_id] = line
        self._waiting[line.episode] += 1
        self._maybe_send()
        try:
            return await line.future
        finally:
            if not line.future.done():  # the caller was cancelled: forget the request
                line.future.cancel()
                self._pending.pop(custom_id, None)
                self._waiting[line.episode] -= 1
                self._changed.set()

    def _maybe_send(self) -> None:
        """Wake the batch that is gathering, or start one for the requests now pending."""
        self._changed.set()
        if self._round is None and self._pending and self._fatal is None:
            self._round = asyncio.create_task(self._send_round())

    def _all_waiting(self) -> bool:
        return all(self._waiting[episode] > 0 for episode in self._open)

    def _resolve(self, line: Line, result: ChatResult) -> None:
        if line.future.done():  # its caller was cancelled
            return
        # Now, not when the caller wakes: a round that ends with lines to resend must not
        # find the answered episodes still waiting, or it would send those lines alone.
        self._waiting[line.episode] -= 1
        line.future.set_result(
            result.model_copy(
                update={
                    "retries": line.attempts - 1,
                    "retry_reasons": dict(line.reasons),
                    "latency_s": time.monotonic() - line.started,
                }
            )
        )

    async def _send_round(self) -> None:
        lines: dict[str, Line] = {}
        try:
            # Episodes whose coroutines have not run yet are not open yet either, but they
            # were queued before this task, so they have started by the time it runs.
            while self._pending and not self._all_waiting():
                self._changed.clear()
                await self._changed.wait()
            if not self._pending:  # every caller was cancelled
                return
            lines, self._pending = self._pending, {}
            await self._send(lines)
        except Exception as exc:
            # Not only fatal errors: an unexpected one (a full disk, a server's odd JSON)
            # left here would keep every episode waiting for ever.
            self._fatal = (
                str(exc)
                if isinstance(exc, FatalProviderError)
                else f"model.batch: {type(exc).__name__}: {exc}"
            )
            for line in [*lines.values(), *self._pending.values()]:
                if not line.future.done():
                    line.future.set_exception(FatalProviderError(self._fatal))
        finally:
            self._round = None
        self._maybe_send()

    async def _send(self, lines: dict[str, Line]) -> None:
        """One round: lines an earlier session already sent, then one new batch for the rest."""
        groups: dict[str, tuple[BatchEntry, list[Line]]] = {}
        fresh: list[Line] = []
        for line in lines.values():
            entry = self._earlier.pop(line.custom_id, None)
            if entry is not None and entry.lines.get(line.custom_id) == line.digest:
                groups.setdefault(entry.name, (entry, []))[1].append(line)
            else:
                fresh.append(line)
        if fresh:
            entry = self.state.new_entry(
                self.backend.kind, {line.custom_id: line.digest for line in fresh}
            )
            write_input(entry, self.state.folder, fresh)
            self.state.save()
            groups[entry.name] = (entry, fresh)
        for entry, group in groups.values():
            if entry.phase != "finished":
                await self.backend.run(entry, self.state.folder, self.state.save)
            self._answer(entry, group)

    def _answer(self, entry: BatchEntry, group: list[Line]) -> None:
        """Resolve each line from the batch's output, or put it back for the next batch."""
        found = read_lines(entry.output_path(self.state.folder), {x.custom_id for x in group})
        for line in group:
            line.attempts += 1
            outcome = line_result(found.get(line.custom_id), line, entry.status)
            if isinstance(outcome, ChatResult):
                self._resolve(line, outcome)
                continue
            line.last_error = outcome.error
            if line.attempts >= self.options.max_attempts:
                self._resolve(
                    line,
                    ChatResult(
                        outcome="provider_error",
                        error=f"{outcome.error} (gave up after {line.attempts} batches)",
                    ),
                )
                continue
            line.reasons[outcome.reason] += 1
            self._pending[line.custom_id] = line  # into the next batch

    async def preflight(self) -> None:
        """See :meth:`Provider.preflight`."""
        await self.backend.preflight()

    async def aclose(self) -> None:
        """Stop polling (a batch in flight stays at the server; a resume picks it up)."""
        if self._round is not None:
            self._round.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._round
        await self.backend.aclose()


def create_batching(
    provider: str,
    config: dict[str, Any],
    *,
    mode: BatchMode,
    command: str | None,
    options: BatchOptions,
    run_dir: Path,
) -> BatchingProvider:
    """Build the batching provider of ``model.batch=api|command`` for one run directory.

    Both modes take the OpenAI-compatible preset's settings (the model name goes into every
    line; ``api`` also uses the URL, the key and the retry settings).
    """
    from providers.batch_api import BatchAPI
    from providers.batch_command import BatchCommand
    from providers.openai_compatible import OpenAICompatibleConfig, read_api_key

    if provider != "openai_compatible":
        raise ValueError(
            f"model.batch: {mode} needs an OpenAI-compatible preset (openai_compatible, openai, "
            f"vllm, ...; got provider {provider!r})"
        )
    settings = OpenAICompatibleConfig.model_validate(config)
    backend: BatchBackend
    if mode == "api":
        backend = BatchAPI(settings, read_api_key(settings.api_key_env), options)
    else:
        backend = BatchCommand(command or "")
    return BatchingProvider(
        backend,
        name=settings.name,
        label=settings.name.rsplit("/", 1)[-1],
        run_dir=run_dir,
        options=options,
        send_seed=settings.send_seed,
    )
