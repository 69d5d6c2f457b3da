"""Find a provider factory by name, without importing any backend until it is used.

Three sources, checked in this order: the built-ins below, the ``lhe.providers`` entry-point
group of installed packages, and a dotted ``module:attribute`` path given directly in the
config. A factory is any callable ``factory(config: dict, *, concurrency: int) -> Provider``;
``config`` is the ``model`` section of the run config (minus the harness's own keys), which the
factory validates with its own pydantic model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from providers.base import MissingExtraError, Provider

ProviderFactory = Callable[..., Provider]

ENTRY_POINT_GROUP = "lhe.providers"

# name -> "module:factory"; imported only when the provider is requested.
BUILTIN_PROVIDERS: dict[str, str] = {
    "simulated": "providers.simulated:create",
    "openai_compatible": "providers.openai_compatible:create",
    "llama_cpp": "providers.llama_cpp:create",
    "hf": "providers.hf:create",
}

_registered: dict[str, ProviderFactory] = {}


def register_provider(name: str) -> Callable[[ProviderFactory], ProviderFactory]:
    """Register a factory under ``name`` at import time (for code that is not a package)."""

    def decorator(factory: ProviderFactory) -> ProviderFactory:
        if name in _registered or name in BUILTIN_PROVIDERS:
            raise ValueError(f"provider name {name!r} is already registered")
        _registered[name] = factory
        return factory

    return decorator


def _entry_point_targets() -> dict[str, str]:
    targets: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN_PROVIDERS or ep.name in targets:
            raise ValueError(
                f"provider name {ep.name!r} from entry point {ep.value!r} is already registered"
            )
        targets[ep.name] = ep.value
    return targets


def available_providers() -> list[str]:
    """Every name :func:`resolve_factory` accepts besides dotted paths."""
    return sorted({*BUILTIN_PROVIDERS, *_registered, *_entry_point_targets()})


def _load_target(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module


def resolve_factory(name: str) -> ProviderFactory:
    """Return the factory for ``name`` or raise ``ValueError`` listing the allowed names."""
    if name in _registered:
        return _registered[name]
    target = BUILTIN_PROVIDERS.get(name) or _entry_point_targets().get(name)
    if target is None and ":" in name:
        target = name
    if target is None:
        raise ValueError(
            f"model.provider: unknown provider {name!r}; allowed: "
            f"{', '.join(available_providers())} or a dotted path 'package.module:factory'"
        )
    try:
        factory = _load_target(target)
    except MissingExtraError:
        raise
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"model.provider: cannot load {target!r}: {exc}") from exc
    if not callable(factory):
        raise ValueError(f"model.provider: {target!r} is not callable")
    return factory


def create_provider(name: str, config: dict[str, Any], *, concurrency: int) -> Provider:
    """Build a provider from its registry name and its config section."""
    provider = resolve_factory(name)(config, concurrency=concurrency)
    if not isinstance(provider, Provider):
        raise TypeError(f"model.provider: factory for {name!r} did not return a Provider")
    return provider


def token_counter(name: str, config: dict[str, Any]) -> tuple[str, Callable[..., int]] | None:
    """(model label, prompt-token counter) of a provider that can count without a model call.

    A provider module offers one by defining ``token_counter(config)``; the in-process
    llama.cpp adapter does, from its vocabulary. None when the provider has none or its extra
    is missing (the estimate then counts characters, and says so).
    """
    try:
        module = importlib.import_module(resolve_factory(name).__module__)
        make = getattr(module, "token_counter", None)
        return None if make is None else make(config)
    except (MissingExtraError, ImportError):
        return None
