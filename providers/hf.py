"""A causal language model run in this process by transformers (the ``hf`` extra).

It loads a local folder (config, tokenizer and weights) or a single GGUF file, which
transformers dequantizes; nothing is fetched from a hub. With no ``model_path`` it loads the
embedded SmolLM2-135M-Instruct GGUF, the same weights the ``llama_cpp`` adapter runs, which
makes the two engines comparable on one model.

Generation is serialized under an asyncio lock and runs in a worker thread. Each request seeds
torch's global generator first, so a request's reply depends only on its conversation and seed.
A prompt that leaves no room for ``max_tokens`` within the model's trained context is answered
``context_exceeded`` without running the model.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from providers.base import (
    ChatResult,
    FatalProviderError,
    Message,
    MissingExtraError,
    Provider,
    Sampling,
    Usage,
)
from providers.local_models import (
    embedded_smollm2_path,
    generate_serialized,
    model_label,
    one_line,
    sample_seeds,
    split_reasoning,
)

Device = Literal["auto", "cpu", "cuda"]
DType = Literal["auto", "float32", "float16", "bfloat16"]


class HFConfig(BaseModel):
    """Settings of the in-process transformers model (``model`` keys the harness does not own)."""

    model_config = ConfigDict(extra="forbid")

    model_path: str | None = None
    """A model folder or a ``.gguf`` file; null or empty loads the embedded SmolLM2 GGUF."""
    device: Device = "auto"
    """``auto`` uses CUDA when torch sees a GPU, else the CPU."""
    dtype: DType = "auto"
    """Weights' dtype; ``auto`` is float32 on the CPU and bfloat16 on CUDA."""
    max_context: int | None = Field(None, ge=16)
    """Prompt plus reply limit in tokens; null uses the model's ``max_position_embeddings``."""
    seed: int = 0
    """Sampling seed of requests that come without one."""
    top_k: int = Field(0, ge=0)
    """Top-k cut before top-p; 0 disables it (transformers would otherwise apply 50)."""


def _require(package: str, module: str | None = None) -> ModuleType:
    import importlib

    try:
        return importlib.import_module(module or package)
    except ImportError as exc:
        raise MissingExtraError(package, "hf") from exc


def _resolve(model_path: str | None) -> Path:
    path = Path(model_path).expanduser() if model_path else embedded_smollm2_path()
    if not path.exists():
        raise ValueError(f"model.model_path: no such file or folder: {path}")
    if path.is_file() and path.suffix != ".gguf":
        raise ValueError(f"model.model_path: must be a model folder or a .gguf file (got {path})")
    return path


def _device(torch: ModuleType, requested: Device) -> str:
    has_cuda = bool(torch.cuda.is_available())
    if requested == "cuda" and not has_cuda:
        raise ValueError("model.device: cuda requested but torch sees no GPU; allowed: auto, cpu")
    return "cuda" if requested == "cuda" or (requested == "auto" and has_cuda) else "cpu"


def _dtype(torch: ModuleType, requested: DType, device: str) -> Any:
    if requested == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return getattr(torch, requested)


class HFProvider(Provider):
    """See the module docstring."""

    def __init__(
        self, config: HFConfig, path: Path, model: Any, tokenizer: Any, device: str
    ) -> None:
        self.config = config
        self.path = path
        self.device = device
        self._model = model
        self._tokenizer = tokenizer
        self._lock = asyncio.Lock()
        trained = getattr(model.config, "max_position_embeddings", None)
        self.max_context: int | None = config.max_context or trained

    @property
    def label(self) -> str:
        """See :attr:`Provider.label`."""
        return model_label(self.path) if self.path.is_file() else self.path.name

    @property
    def model_id(self) -> str:
        """The file or folder name, as records show it."""
        return self.path.name

    def _generation_arguments(self, sampling: Sampling) -> dict[str, Any]:
        arguments: dict[str, Any] = {"max_new_tokens": sampling.max_tokens}
        if sampling.temperature > 0:
            arguments.update(
                do_sample=True,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=self.config.top_k,
            )
        else:
            arguments.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if sampling.stop:
            arguments.update(stop_strings=list(sampling.stop), tokenizer=self._tokenizer)
        unknown = sorted(
            k for k in sampling.extra_body if not hasattr(self._model.generation_config, k)
        )
        if unknown:
            raise FatalProviderError(
                f"model.extra_body: unknown field(s) {', '.join(unknown)} for hf; "
                "allowed: attributes of transformers.GenerationConfig"
            )
        arguments.update(sampling.extra_body)
        return arguments

    def _sample(self, inputs: Any, arguments: dict[str, Any], seed: int) -> tuple[str, int, bool]:
        """One reply: (text, generated tokens, whether generation stopped by itself)."""
        import torch

        torch.manual_seed(seed)
        prompt_len = inputs["input_ids"].shape[1]
        pad = self._tokenizer.pad_token_id
        if pad is None:
            pad = self._tokenizer.eos_token_id
        with torch.inference_mode():
            output = self._model.generate(**inputs, **arguments, pad_token_id=pad)
        generated = output[0, prompt_len:].tolist()
        stop_ids = set(_as_list(self._model.generation_config.eos_token_id))
        stopped = bool(generated) and generated[-1] in stop_ids
        text = self._tokenizer.decode(generated, skip_special_tokens=True)
        return text, len(generated), stopped or len(generated) < arguments["max_new_tokens"]

    def _generate(self, messages: list[Message], sampling: Sampling) -> ChatResult:
        """Every sample of one request, in the worker thread (the caller holds the lock)."""
        arguments = self._generation_arguments(sampling)
        inputs = self._tokenizer.apply_chat_template(
            [m.as_dict() for m in messages],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        ).to(self.device)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        if self.max_context is not None and prompt_tokens + sampling.max_tokens > self.max_context:
            return ChatResult(
                outcome="context_exceeded",
                model_id=self.model_id,
                error=(
                    f"prompt ({prompt_tokens} tokens) + max_tokens ({sampling.max_tokens}) "
                    f"exceed the context window ({self.max_context}: model.max_context, or the "
                    "model's max_position_embeddings)"
                ),
            )
        base_seed = self.config.seed if sampling.seed is None else sampling.seed
        texts: list[str] = []
        usage = Usage()
        finish_reason: str | None = None
        reasoning: str | None = None
        for seed in sample_seeds(base_seed, sampling.n):
            raw, generated, stopped = self._sample(inputs, arguments, seed)
            text = _cut_at_stop(raw, sampling.stop)
            usage = usage + Usage(prompt_tokens=prompt_tokens, completion_tokens=generated)
            content, thought = split_reasoning(text)
            if not texts:
                finish_reason = "stop" if stopped or text != raw else "length"
                reasoning = thought
            texts.append(content)
        return ChatResult(
            content=texts[0],
            reasoning=reasoning,
            samples=texts if sampling.n > 1 else [],
            usage=usage,
            finish_reason=finish_reason,
            model_id=self.model_id,
        )

    async def chat(self, messages: list[Message], sampling: Sampling) -> ChatResult:
        """See :meth:`Provider.chat`; ``latency_s`` counts model time, not time in the queue."""
        return await generate_serialized(
            self._lock,
            self._generate,
            messages,
            sampling,
            model_id=self.model_id,
            ensure_open=self._ensure_open,
        )

    def _ensure_open(self) -> None:
        if self._model is None:
            raise FatalProviderError("hf: the model was already closed")

    async def aclose(self) -> None:
        """Drop the model so its memory can be freed."""
        async with self._lock:
            self._model = None
            if self.device == "cuda":
                import torch

                torch.cuda.empty_cache()


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _cut_at_stop(text: str, stop: list[str]) -> str:
    """Cut at the first stop sequence; transformers keeps it, the OpenAI convention drops it."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i != -1), default=-1)
    return text if cut == -1 else text[:cut]


def load_model(config: HFConfig, path: Path) -> tuple[Any, Any, str]:
    """Tokenizer and model from a folder or a GGUF file, on the configured device."""
    torch = _require("torch")
    transformers = _require("transformers")
    folder, gguf = (path.parent, path.name) if path.is_file() else (path, None)
    if gguf is not None:
        _require("gguf")
        _require("accelerate")  # transformers needs it to load a GGUF
    device = _device(torch, config.device)
    options: dict[str, Any] = {"local_files_only": True}
    if gguf is not None:
        options["gguf_file"] = gguf
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), **options)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=_dtype(torch, config.dtype, device), **options
        )
    except (OSError, ValueError) as exc:
        raise ValueError(f"model.model_path: cannot load {path}: {one_line(exc)}") from None
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"model.model_path: {path} has no chat template in its tokenizer")
    return tokenizer, model.to(device).eval(), device


def create(config: dict[str, Any], *, concurrency: int) -> HFProvider:
    """Registry factory: validate, find the model, load it."""
    del concurrency  # one model, requests serialized
    settings = HFConfig.model_validate(config)  # the harness words a ValidationError as one line
    path = _resolve(settings.model_path)
    tokenizer, model, device = load_model(settings, path)
    return HFProvider(settings, path, model, tokenizer, device)
