"""An on-disk response cache shared by every job of a sweep.

One file per entry, named by the SHA-256 of the canonical request and written atomically
(temporary file, then rename), so any number of processes can read and write the same cache
directory at once without a lock and without "database is locked". Only successful, non-empty
replies are stored: an error or an empty reply is never replayed as if the model had said it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from harness.files import atomic_write_text
from harness.records.sessions import CacheStats
from providers.base import ChatResult, Message, Provider, Sampling


@dataclass(frozen=True)
class Endpoint:
    """Who would answer a request: a reply is only reusable from the same endpoint.

    Two servers can serve the same model name (a local vLLM and a hosted API, or two
    quantisations behind one name), so the key holds the provider kind and the URL too.
    """

    provider: str
    """The provider kind (``openai_compatible``, ``llama_cpp``, ``simulated``, ...)."""
    base_url: str | None = None
    """The server's URL; None for in-process models."""
    label: str = ""
    """The model's label."""


def request_key(endpoint: Endpoint, messages: list[Message], sampling: Sampling) -> str:
    """Hash of everything that changes a reply: endpoint, conversation, sampling settings.

    The per-request seed is part of the sampling settings, so replicate samples of the same
    conversation (different episodes, votes) get distinct entries.
    """
    canonical = json.dumps(
        {
            "provider": endpoint.provider,
            "base_url": endpoint.base_url,
            "model": endpoint.label,
            "messages": [m.as_dict() for m in messages],
            "sampling": sampling.model_dump(mode="json"),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class CacheUsage:
    """What a cache directory holds."""

    entries: int
    """Stored replies."""
    bytes: int
    """Their size on disk."""
    oldest: float | None
    """Modification time of the oldest entry (seconds since the epoch)."""
    newest: float | None
    """Modification time of the newest entry."""


class ResponseCache:
    """Stores :class:`ChatResult` JSON under ``root/ab/abcdef....json``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> ChatResult | None:
        """The cached result, or None (a corrupt entry counts as a miss)."""
        try:
            return ChatResult.model_validate_json(self._path(key).read_bytes())
        except (OSError, ValueError):
            return None

    def entries(self) -> list[Path]:
        """Every entry file (temporary files of writes in progress excluded)."""
        if not self.root.is_dir():
            return []
        return [p for p in self.root.glob("??/*.json") if not p.name.startswith(".")]

    def usage(self) -> CacheUsage:
        """Entry count, size and age range."""
        stats = [p.stat() for p in self.entries()]
        times = [st.st_mtime for st in stats]
        return CacheUsage(
            entries=len(stats),
            bytes=sum(st.st_size for st in stats),
            oldest=min(times) if times else None,
            newest=max(times) if times else None,
        )

    def prune(self, older_than_s: float, now: float | None = None) -> int:
        """Delete entries last written more than ``older_than_s`` seconds ago; returns how many.

        Safe while other processes use the cache: a reader that loses an entry sees a miss.
        """
        cutoff = (time.time() if now is None else now) - older_than_s
        removed = 0
        for path in self.entries():
            try:
                if path.stat().st_mtime < cutoff:
                    os.unlink(path)
                    removed += 1
            except FileNotFoundError:
                continue  # pruned by another process at the same time
        return removed

    def put(self, key: str, result: ChatResult) -> bool:
        """Store a successful, non-empty result; returns whether it was stored."""
        if result.outcome != "ok" or not result.content.strip():
            return False
        atomic_write_text(self._path(key), result.model_dump_json())
        return True


class CachedProvider(Provider):
    """Wraps a provider with a :class:`ResponseCache`."""

    def __init__(self, inner: Provider, cache: ResponseCache, endpoint: Endpoint) -> None:
        self.inner = inner
        self.cache = cache
        self.endpoint = endpoint
        self.stats = CacheStats()
        self.simulated = inner.simulated

    @property
    def label(self) -> str:
        """The wrapped provider's label."""
        return self.inner.label

    async def chat(self, messages: list[Message], sampling: Sampling) -> ChatResult:
        """Serve from the cache when possible, else ask the wrapped provider and store."""
        key = request_key(self.endpoint, messages, sampling)
        cached = self.cache.get(key)
        if cached is not None:
            self.stats.hits += 1
            return cached.model_copy(
                update={"cache_hit": True, "latency_s": 0.0, "retries": 0, "retry_reasons": {}}
            )
        self.stats.misses += 1
        result = await self.inner.chat(messages, sampling)
        if self.cache.put(key, result):
            self.stats.stored += 1
        return result

    async def preflight(self) -> None:
        """Delegate to the wrapped provider."""
        await self.inner.preflight()

    async def aclose(self) -> None:
        """Delegate to the wrapped provider."""
        await self.inner.aclose()
