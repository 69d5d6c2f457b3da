"""An OpenAI-format batch API (``model.batch=api``): upload, create, poll, download.

The steps, each written to the run's batch state before the next (so a crash at any point
costs nothing twice):

1. upload the input JSONL (``POST /files``, purpose ``batch``) -> ``input_file_id``;
2. create the batch (``POST /batches``, ``completion_window: 24h``) -> ``batch_id``; a
   resumed run that finds an input file without a batch first lists the server's batches
   for one made from that file, since the crash may have come after the create;
3. poll ``GET /batches/{id}`` with doubling waits until it is ``completed``, ``expired``,
   ``cancelled`` or ``failed``; a ``failed`` batch was refused as a whole (its input was
   invalid, or the model unknown) and stops the run;
4. download the output and error files (streamed: they can be large) into one local file.

Every HTTP call goes through :mod:`providers.retry`, as the chat requests of the interactive
adapter do: 429/5xx/dropped connections are retried with backoff, 401/403/404 are fatal.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from providers import retry
from providers.base import FatalProviderError
from providers.batch_state import BatchEntry
from providers.batching import CHAT_URL, BatchBackend, BatchOptions
from providers.openai_compatible import OpenAICompatibleConfig, OpenAICompatibleProvider
from providers.retry import RetriesExhausted, RetryableError

COMPLETION_WINDOW = "24h"
"""The only window the OpenAI batch API offers (and the one that is sold at the batch price)."""
TERMINAL = frozenset({"completed", "expired", "cancelled", "failed"})
"""Batch statuses after which nothing changes."""
LIST_LIMIT = 100
"""Batches asked for when looking for one created from a given input file."""


class BatchAPI(BatchBackend):
    """See the module docstring."""

    kind = "api"

    def __init__(
        self, config: OpenAICompatibleConfig, api_key: str | None, options: BatchOptions
    ) -> None:
        self.config = config
        self.options = options
        self._api_key = api_key
        self._client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
        )
        self._policy = config.retry_policy()

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    async def preflight(self) -> None:
        """The interactive adapter's check (reachable, key accepted), then that batches exist."""
        probe = OpenAICompatibleProvider(self.config, self._api_key, concurrency=1)
        try:
            await probe.preflight()
        finally:
            await probe.aclose()
        response = await self._call("GET", "/batches", params={"limit": 1}, fatal_404=False)
        if response.status_code == 404:
            raise FatalProviderError(
                f"model.batch: {self.config.base_url} has no batch API (GET /batches: HTTP 404); "
                "use model.batch=off"
            )

    async def _call(
        self, method: str, path: str, *, fatal_404: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """One API call with the adapter's retries; fatal statuses raise at once."""
        url = f"{self.config.base_url}{path}"

        async def attempt() -> httpx.Response:
            try:
                with _opened(kwargs) as arguments:  # an upload is re-read on every attempt
                    response = await self._client.request(method, url, **arguments)
            except httpx.HTTPError as exc:
                kind = retry.classify_exception(exc) or "transient"
                reason = self._scrub(retry.one_line(f"{type(exc).__name__}: {exc}"))
                raise RetryableError(kind, reason, reason=retry.exception_reason(exc)) from None
            status = response.status_code
            text = "" if status < 400 else self._scrub(retry.server_error_text(response))
            kind = retry.classify_status(status, text)
            if kind is None or (status == 404 and not fatal_404):
                return response
            message = f"HTTP {status}: {text}"
            if kind in ("fatal", "context_exceeded"):
                field = retry.fatal_field(status, "model.batch")
                raise FatalProviderError(f"{field}: {method} {url} was refused ({message})")
            after = retry.parse_retry_after(response.headers.get("retry-after"))
            raise RetryableError(kind, message, retry_after=after, reason=str(status))

        try:
            response, _ = await retry.call_with_retries(attempt, self._policy)
        except RetriesExhausted as exc:
            # A batch call that keeps failing cannot be recorded as a turn's result: stop,
            # and let a resume pick the batch up from the state file.
            raise FatalProviderError(
                f"model.base_url: {method} {url} kept failing ({exc.last.message})"
            ) from None
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._call(method, path, **kwargs)
        try:
            data = response.json()
        except ValueError:
            raise FatalProviderError(f"model.batch: {path} answered with no JSON") from None
        if not isinstance(data, dict):
            raise FatalProviderError(f"model.batch: {path} answered {type(data).__name__}")
        return data

    async def run(self, entry: BatchEntry, folder: Path, save: Callable[[], None]) -> None:
        """See :meth:`BatchBackend.run`."""
        if entry.phase == "written":
            path = entry.input_path(folder)
            uploaded = await self._json(
                "POST",
                "/files",
                data={"purpose": "batch"},
                files={"file": (path.name, path, "application/jsonl")},
            )
            entry.input_file_id = str(uploaded["id"])
            entry.phase = "uploaded"
            save()
        if entry.phase == "uploaded":
            batch = await self._find_batch(entry.input_file_id) or await self._json(
                "POST",
                "/batches",
                json={
                    "input_file_id": entry.input_file_id,
                    "endpoint": CHAT_URL,
                    "completion_window": COMPLETION_WINDOW,
                    "metadata": {"lhe_batch": entry.name},
                },
            )
            entry.batch_id = str(batch["id"])
            entry.status = batch.get("status")
            entry.phase = "submitted"
            save()
        if entry.phase == "submitted":
            batch = await self._wait(entry, save)
            await self._download(batch, entry.output_path(folder))
            entry.phase = "finished"
            save()

    async def _find_batch(self, input_file_id: str | None) -> dict[str, Any] | None:
        """A batch the server already made from this input file (a crash after the create)."""
        listing = await self._json("GET", "/batches", params={"limit": LIST_LIMIT})
        for batch in listing.get("data") or []:
            if isinstance(batch, dict) and batch.get("input_file_id") == input_file_id:
                return batch
        return None

    async def _wait(self, entry: BatchEntry, save: Callable[[], None]) -> dict[str, Any]:
        """Poll the batch until it ends, with doubling waits."""
        wait = self.options.poll_initial_s
        while True:
            batch = await self._json("GET", f"/batches/{entry.batch_id}")
            status = str(batch.get("status"))
            if status != entry.status:
                entry.status = status
                save()
            if status == "failed":
                raise FatalProviderError(
                    f"model.batch: batch {entry.batch_id} failed ({_errors(batch)})"
                )
            if status in TERMINAL:
                return batch
            await asyncio.sleep(wait)
            wait = min(wait * 2, self.options.poll_max_s)

    async def _download(self, batch: dict[str, Any], path: Path) -> None:
        """Output and error lines into one file, streamed, replaced atomically."""
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        with partial.open("wb") as handle:
            for key in ("output_file_id", "error_file_id"):
                file_id = batch.get(key)
                if not file_id:
                    continue
                await self._stream(f"/files/{file_id}/content", handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)

    async def _stream(self, path: str, handle: Any) -> None:
        url = f"{self.config.base_url}{path}"
        start = handle.tell()

        async def attempt() -> None:
            handle.seek(start)
            handle.truncate()
            last = b"\n"
            try:
                async with self._client.stream("GET", url) as response:
                    if response.status_code != 200:
                        await response.aread()
                        text = self._scrub(retry.server_error_text(response))
                        kind = retry.classify_status(response.status_code, text) or "transient"
                        if kind in ("fatal", "context_exceeded"):
                            raise FatalProviderError(
                                f"model.batch: GET {url} was refused "
                                f"(HTTP {response.status_code}: {text})"
                            )
                        raise RetryableError(kind, text, reason=str(response.status_code))
                    async for chunk in response.aiter_bytes():
                        handle.write(chunk)
                        last = chunk[-1:] or last
            except httpx.HTTPError as exc:
                kind = retry.classify_exception(exc) or "transient"
                raise RetryableError(kind, str(exc), reason=retry.exception_reason(exc)) from None
            if last != b"\n":
                handle.write(b"\n")  # the error file's lines start on a line of their own

        try:
            await retry.call_with_retries(attempt, self._policy)
        except RetriesExhausted as exc:
            raise FatalProviderError(
                f"model.base_url: GET {url} kept failing ({exc.last.message})"
            ) from None

    async def aclose(self) -> None:
        """See :meth:`BatchBackend.aclose`."""
        await self._client.aclose()


@contextmanager
def _opened(kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Request arguments with the paths of ``files`` opened, closed again afterwards.

    httpx streams an open file into the multipart body, so a large input file is never
    held in memory whole.
    """
    files = kwargs.get("files")
    if not files:
        yield kwargs
        return
    with ExitStack() as stack:
        opened = {
            key: (name, stack.enter_context(Path(path).open("rb")), kind)
            for key, (name, path, kind) in files.items()
        }
        yield {**kwargs, "files": opened}


def _errors(batch: dict[str, Any]) -> str:
    errors = batch.get("errors")
    data = errors.get("data") if isinstance(errors, dict) else None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        first = data[0]
        return retry.one_line(f"{first.get('code')}: {first.get('message')}")
    return "no reason given"
