import json
import logging

import pytest

from harness.cli import compose_config
from harness.config import ConfigError
from harness.pipeline import prepare
from providers.base import FatalProviderError, Message, Sampling
from providers.openai_compatible import (
    build_request_body,
    create,
    encode_body,
    parse_response,
)
from providers.retry import RetryableError
from tasks.generate import generate_task_set
from tasks.prompts import read_dictionary, system_prompt
from testing.fake_server import free_port

MESSAGES = [Message("system", "sys"), Message("user", "apple, lemon")]


def test_body_has_the_sampling_fields_and_omits_unset_optional_ones():
    body = build_request_body("m", MESSAGES, Sampling(temperature=0.3, top_p=0.9, max_tokens=7))
    assert body == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "apple, lemon"},
        ],
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 7,
    }


def test_body_includes_seed_n_and_stop_when_set_and_seed_can_be_switched_off():
    sampling = Sampling(seed=11, n=3, stop=["</answer>"])
    body = build_request_body("m", MESSAGES, sampling)
    assert (body["seed"], body["n"], body["stop"]) == (11, 3, ["</answer>"])
    assert "seed" not in build_request_body("m", MESSAGES, sampling, send_seed=False)


def test_extra_body_is_merged_and_wins():
    extra = {"chat_template_kwargs": {"enable_thinking": False}, "max_tokens": 99}
    body = build_request_body("m", MESSAGES, Sampling(max_tokens=5, extra_body=extra))
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert body["max_tokens"] == 99


@pytest.mark.parametrize(
    ("name", "sampling"),
    [
        ("m", Sampling()),
        ('we"ird \\ név', Sampling(seed=3, n=2, stop=["</answer>", "\n\n"])),
        ("m", Sampling(extra_body={"max_tokens": 9, "chat_template_kwargs": {"x": "ü"}})),
        ("m", Sampling(extra_body={"logit_bias": {50256: -100}, "top_k": 2**70})),
    ],
)
def test_wire_bytes_are_the_compact_stdlib_encoding(name, sampling):
    # Every control character, quotes, backslashes, non-ASCII beyond the BMP, U+2028.
    awkward = "".join(map(chr, range(32))) + '"\\/ é \u2028 \U0001f600 <answer>5</answer>'
    messages = [*MESSAGES, Message("assistant", awkward), MESSAGES[1]]
    body = build_request_body(name, messages, sampling)
    expected = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    assert encode_body(body) == expected


def _reply(message, **extra):
    return {
        "model": "served-id",
        "choices": [{"message": message, "finish_reason": "stop"}],
        **extra,
    }


def test_parse_plain_reply_with_usage_details():
    usage = {
        "prompt_tokens": 120,
        "completion_tokens": 40,
        "completion_tokens_details": {"reasoning_tokens": 30},
        "prompt_tokens_details": {"cached_tokens": 100},
    }
    result = parse_response(_reply({"content": "<answer>5</answer>"}, usage=usage), prompt_chars=1)
    assert result.content == "<answer>5</answer>"
    assert result.reasoning is None
    assert (result.finish_reason, result.model_id) == ("stop", "served-id")
    assert result.usage.model_dump() == {
        "prompt_tokens": 120,
        "completion_tokens": 40,
        "reasoning_tokens": 30,
        "cached_tokens": 100,
        "estimated": False,
    }


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_fields_are_kept_apart_from_the_content(field):
    result = parse_response(_reply({"content": "<answer>5</answer>", field: "2+3"}), prompt_chars=0)
    assert (result.content, result.reasoning) == ("<answer>5</answer>", "2+3")


@pytest.mark.parametrize(
    "content",
    ["<think>2 plus 3</think>\n<answer>5</answer>", "2 plus 3</think><answer>5</answer>"],
)
def test_think_blocks_move_from_content_to_reasoning(content):
    """A lone closing tag means the chat template opened the block."""
    result = parse_response(_reply({"content": content}), prompt_chars=0)
    assert result.content == "<answer>5</answer>"
    assert "2 plus 3" in result.reasoning and "answer" not in result.reasoning


def test_missing_usage_is_estimated_from_characters():
    result = parse_response(_reply({"content": "x" * 40}), prompt_chars=400)
    assert result.usage.estimated
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (100, 10)


def test_several_choices_become_samples():
    payload = {"choices": [{"message": {"content": f"<answer>{i}</answer>"}} for i in range(3)]}
    result = parse_response(payload, prompt_chars=0)
    assert result.samples == ["<answer>0</answer>", "<answer>1</answer>", "<answer>2</answer>"]
    assert result.content == result.samples[0]


@pytest.mark.parametrize(
    "payload", [{}, {"choices": []}, {"choices": [{"text": "legacy"}]}, ["not", "a", "dict"]]
)
def test_reply_without_a_usable_choice_is_malformed(payload):
    with pytest.raises(RetryableError) as info:
        parse_response(payload, prompt_chars=0)
    assert info.value.kind == "malformed"


def test_missing_key_variable_is_a_one_line_error_naming_the_field(monkeypatch):
    monkeypatch.delenv("LHE_TEST_NO_SUCH_KEY", raising=False)
    with pytest.raises(
        ValueError, match=r"^model\.api_key_env: .*LHE_TEST_NO_SUCH_KEY is not set$"
    ):
        create({"name": "m", "api_key_env": "LHE_TEST_NO_SUCH_KEY"}, concurrency=1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"base_urll": "http://x"}, "model.base_urll: unknown field"),
        ({"base_url": "127.0.0.1:8000/v1"}, "model.base_url: must start with http://"),
        ({"name": ""}, "model.name: String should have at least 1 character"),
        ({"max_attempts": 0}, "model.max_attempts: Input should be greater than or equal to 1"),
    ],
)
async def test_bad_config_is_one_line_naming_the_field(run_config, options, message):
    config = run_config("http://127.0.0.1:9/v1", model=options)
    with pytest.raises(ConfigError) as info:
        await prepare(config)  # fails before any connection is tried
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


async def test_key_stays_out_of_reprs_and_config(monkeypatch):
    secret = "sk-test-repr-0123456789"
    monkeypatch.setenv("LHE_TEST_KEY", secret)
    provider = create({"name": "m", "api_key_env": "LHE_TEST_KEY"}, concurrency=3)
    try:
        shown = [repr(provider), repr(provider.config), provider.config.model_dump_json()]
        session = provider._connections.session()
        shown.append(repr(session))
        assert not any(secret in text for text in shown)
        assert session.headers["authorization"] == f"Bearer {secret}"
    finally:
        await provider.aclose()


@pytest.mark.parametrize("concurrency", [1, 32, 250, 1000])
async def test_connections_are_sized_to_the_concurrency(concurrency):
    provider = create({"name": "m"}, concurrency=concurrency)
    try:
        connector = provider._connections.session().connector
        assert connector.limit == concurrency
        assert connector.limit_per_host == 0  # no silent cap below it
    finally:
        await provider.aclose()


def _conversation(turns=1):
    task_set = generate_task_set(samples=1, turns=turns, k=2, seed=5)
    system = system_prompt(task_set.dictionary, "direct", task_set.k)
    return task_set, [
        Message("system", system),
        Message("user", ", ".join(task_set.turn_keys(0, 0))),
    ]


async def test_chat_against_the_fake_server_returns_the_served_answer(fake_server):
    server = fake_server()
    task_set, messages = _conversation()
    provider = create({"name": "fake-model", "base_url": server.base_url}, concurrency=2)
    try:
        await provider.preflight()
        result = await provider.chat(messages, Sampling(seed=1))
    finally:
        await provider.aclose()
    assert result.outcome == "ok"
    assert result.content == f"<answer>{task_set.turn_truth[0, 0]}</answer>"
    assert (result.model_id, result.retries, result.usage.estimated) == ("fake-model", 0, False)
    assert result.usage.prompt_tokens > 0 and result.latency_s > 0
    assert read_dictionary(messages[0].content) == task_set.dictionary


async def test_server_without_usage_gives_estimated_counts(fake_server):
    server = fake_server(usage=False)
    _, messages = _conversation()
    provider = create({"name": "fake-model", "base_url": server.base_url}, concurrency=1)
    try:
        result = await provider.chat(messages, Sampling(seed=1))
    finally:
        await provider.aclose()
    assert result.usage.estimated and result.usage.prompt_tokens > 0


async def test_preflight_names_base_url_when_nothing_listens():
    url = f"http://127.0.0.1:{free_port()}/v1"
    provider = create({"name": "m", "base_url": url}, concurrency=1)
    try:
        with pytest.raises(
            FatalProviderError, match=rf"^model\.base_url: cannot connect to {url} "
        ):
            await provider.preflight()
    finally:
        await provider.aclose()


async def test_preflight_rejects_a_wrong_key_without_repeating_it(fake_server, monkeypatch):
    server = fake_server(env={"LHE_SERVER_KEY": "sk-right"}, api_key_env="LHE_SERVER_KEY")
    wrong = "sk-wrong-but-secret-4242"
    monkeypatch.setenv("LHE_TEST_KEY", wrong)
    provider = create(
        {"name": "fake-model", "base_url": server.base_url, "api_key_env": "LHE_TEST_KEY"},
        concurrency=1,
    )
    refused_before = server.stats()["faults"]["unauthorized"]
    try:
        with pytest.raises(FatalProviderError) as info:
            await provider.preflight()
        with pytest.raises(FatalProviderError) as chat_info:  # the same at request time
            await provider.chat(_conversation()[1], Sampling())
    finally:
        await provider.aclose()
    for error in (info.value, chat_info.value):
        assert str(error).startswith("model.api_key_env: ")
        assert "401" in str(error)
        assert wrong not in str(error)  # the server echoed it; the client scrubbed it
    assert server.stats()["faults"]["unauthorized"] == refused_before + 2  # no retries


async def test_preflight_tolerates_missing_models_route_and_unlisted_names(fake_server, caplog):
    server = fake_server()
    root = server.base_url.removesuffix("/v1")
    for base_url in (f"{root}/elsewhere", server.base_url):  # 404 on /models, then a listing
        provider = create({"name": "another-name", "base_url": base_url}, concurrency=1)
        try:
            with caplog.at_level(logging.WARNING, logger="providers.openai_compatible"):
                await provider.preflight()
        finally:
            await provider.aclose()
    assert any("not listed" in r.message for r in caplog.records)


PRESETS = [
    "openai_compatible",
    "openai",
    "openrouter",
    "vllm",
    "sglang",
    "llama_cpp_server",
    "ollama",
]


UPSTREAM_DEFAULTS = {
    "openai_compatible": ("http://127.0.0.1:8000/v1", None),
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "openrouter": ("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "vllm": ("http://127.0.0.1:8000/v1", None),  # vllm serve listens on 8000
    "sglang": ("http://127.0.0.1:30000/v1", None),  # sglang.launch_server: 30000
    "llama_cpp_server": ("http://127.0.0.1:8080/v1", None),  # llama-server: 8080
    "ollama": ("http://127.0.0.1:11434/v1", None),  # ollama serve: 11434
}
"""Each preset's endpoint and key variable, from the servers' and APIs' own documentation."""


@pytest.mark.parametrize("preset", PRESETS)
async def test_every_preset_composes_and_its_keys_are_accepted(preset, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-preset-test")
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-preset-test")
    config = compose_config([f"model={preset}", "model.name=org/some-model"])
    assert config.model.provider == "openai_compatible"
    assert config.model.label  # names the run directory
    provider = create(config.model.provider_options(), concurrency=2)
    await provider.aclose()
    assert provider.config.name == "org/some-model"
    assert (config.model.base_url, config.model.api_key_env) == UPSTREAM_DEFAULTS[preset]
    assert (provider.config.base_url, provider.config.api_key_env) == UPSTREAM_DEFAULTS[preset]


@pytest.mark.parametrize(("mode", "thinking"), [("direct", False), ("thinking", True)])
def test_vllm_preset_switches_the_chat_template_thinking_flag_with_the_mode(mode, thinking):
    config = compose_config(["model=vllm", "model.name=q", f"task.mode={mode}"])
    assert config.model.extra_body == {"chat_template_kwargs": {"enable_thinking": thinking}}
