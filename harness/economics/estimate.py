"""What a run will cost, worked out before any model call (``estimate=true``).

With the full history in every request, the prompt of turn t repeats the system message and
all t earlier exchanges, so prompt tokens grow with the square of the number of turns: a run
twice as long costs about four times as much. The estimate rebuilds the lengths of exactly the
text the runner would send (the real system message, the real keys, answers the length of the
true running totals) and adds them up with cumulative sums, so a run of a thousand episodes x
a thousand turns is estimated without building a single prompt string.

Tokens come from :class:`~harness.economics.token_counts.MessageTokens`: counted by the model's
own tokenizer where the provider can (the in-process llama.cpp model), else characters /
``chars_per_token`` (4 characters per token is typical of English text with BPE tokenizers;
numbers take more; SmolLM2 needs about twice as many tokens as that), and the notes say which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.config import BudgetConfig, PriceConfig, RunConfig
from harness.economics.costs import PER_MILLION, batch_price_note, format_usd
from harness.economics.token_counts import ANSWER_TAG_CHARS, MessageTokens, number_chars
from tasks.taskset import TaskSet

THINKING_TOKENS_PER_KEY = 50
"""A guess, not a measurement: hidden reasoning tokens per key in thinking mode. Reasoning
models vary by an order of magnitude here; run a few episodes and read the summary's
``usage.reasoning_tokens`` for the real figure."""

_COT_LINE = len(" + ") + len(" (") + len(") = ")
"""Characters of a CoT line besides its numbers and word: the worked example writes
``before + word (value) = after`` (see :func:`tasks.prompts.demo_turns`)."""


@dataclass(frozen=True)
class RunEstimate:
    """Expected size and cost of a run; every count is an estimate."""

    requests: int
    """Model calls at the strategy's fewest samples per turn (each sample is one request)."""
    prompt_tokens: int
    """Prompt tokens summed over those requests (every sample resends the prompt)."""
    completion_tokens: int
    """Expected generated tokens, all votes included."""
    completion_tokens_max: int
    """Generated tokens if every reply used ``model.max_tokens``."""
    cost_usd: float | None
    """Expected dollars (None when the price is unknown)."""
    cost_usd_max: float | None
    """Dollars if every reply used ``model.max_tokens``."""
    system_prompt_tokens: int
    """Tokens of the system message, sent with every request."""
    prompt_tokens_per_turn: tuple[float, ...]
    """Mean prompt tokens of each turn's request over episodes (0 for filled turns)."""
    samples_per_turn: tuple[int, int] = (1, 1)
    """Fewest and most samples per turn under ``strategy``; expected counts use the fewest."""
    prompt_tokens_max: int | None = None
    """Prompt tokens at the most samples per turn."""
    notes: tuple[str, ...] = ()
    """What the estimate assumed that a reader should know."""
    estimated: bool = True
    """Always True: these are not measured counts."""

    @property
    def tokens(self) -> int:
        """Expected prompt + completion tokens (what ``budget.max_tokens`` limits)."""
        return self.prompt_tokens + self.completion_tokens


def _cot_reply_chars(task_set: TaskSet, word_chars: np.ndarray) -> np.ndarray:
    """Characters of a CoT reply per (episode, turn): one line per key, then the answer tag."""
    before = np.concatenate(
        [np.zeros((task_set.samples, 1), dtype=np.int64), task_set.step_truth[:, :-1]], axis=1
    )
    lines = (
        number_chars(before)
        + word_chars
        + number_chars(task_set.step_values)
        + number_chars(task_set.step_truth)
        + _COT_LINE
        + 1  # the newline after each line
    )
    per_turn = lines.reshape(task_set.samples, task_set.turns, task_set.k).sum(axis=2)
    return per_turn + ANSWER_TAG_CHARS + number_chars(task_set.turn_truth)


def _kept(exchange: np.ndarray, window: int | None) -> np.ndarray:
    """Per (episode, turn): the sum of ``exchange`` over the earlier turns the history keeps."""
    episodes, turns = exchange.shape
    earlier = np.zeros((episodes, turns + 1))
    np.cumsum(exchange, axis=1, out=earlier[:, 1:])  # earlier[:, t]: exchanges before turn t
    index = np.arange(turns)
    if window is None:
        return earlier[:, index]
    return earlier[:, index] - earlier[:, np.maximum(index - window, 0)]


def estimate_run(
    config: RunConfig,
    task_set: TaskSet,
    price: PriceConfig | None,
    chars_per_token: float = 4.0,
    tokens: MessageTokens | None = None,
) -> RunEstimate:
    """Expected requests, tokens and dollars of running ``config`` on ``task_set``.

    What it accounts for:

    * history: with the full history the prompt of turn t holds all t earlier exchanges;
      ``history.window=N`` keeps at most N; ``history.target_turn=T`` makes only turns >= T
      requests, whose prompts still hold the filled history.
    * replies: direct and thinking modes reply (and keep in the history) the answer tag; CoT
      replies one line per key in the worked example's format plus the tag, and the history
      keeps that (an ``own`` reply, or the working a healed or injected history writes in
      the same layout). Thinking adds
      :data:`THINKING_TOKENS_PER_KEY` hidden tokens per key, a documented guess. Expected
      replies are capped at ``model.max_tokens``. Answers in the history are sized as the
      true running totals.
    * ``strategy``: every sample is its own request, so prompt and completion are counted once
      per sample. Expected figures use the fewest samples a turn can draw (n for
      ``majority``, k for ``ahead_by_k``: every sample agrees); the ``_max`` figures use
      ``strategy.max_samples`` where the strategy or its red flags can draw more.
    * stopping: when ``stop.after_failure`` or ``stop.when_decided`` will end episodes
      early cannot be known in advance, so the estimate is of the full run, an upper bound.

    Prompt tokens are all priced at the uncached ``input`` rate: a provider that caches the
    shared prefix charges less. ``tokens`` (counted by the model's tokenizer) replace
    characters / ``chars_per_token``.
    """
    mode = config.task.mode
    k = task_set.k
    if tokens is None:
        tokens = MessageTokens.from_characters(task_set, mode, chars_per_token)

    user = tokens.user_messages(task_set)
    if mode == "cot":
        word_chars = np.array([len(w) for w in task_set.words], dtype=np.int64)[task_set.keys]
        reply = tokens.cot_per_char * _cot_reply_chars(task_set, word_chars)
    else:
        reply = tokens.answers(task_set.turn_truth)
    # A written CoT history has the layout of a CoT reply, so the history shows each earlier
    # exchange as its user message and the reply.
    exchange = user + tokens.assistant_wrapper + reply
    prompt_tokens_all = tokens.system + _kept(exchange, config.history.window) + user

    first = (config.history.target_turn or 1) - 1
    asked = prompt_tokens_all[:, first:]
    fewest, most = config.strategy.sample_range()
    requests = int(asked.size) * fewest
    max_tokens = config.model.max_tokens
    reply_tokens = reply[:, first:]
    if mode == "thinking":
        reply_tokens = reply_tokens + THINKING_TOKENS_PER_KEY * k
    prompt_once = float(asked.sum())
    prompt_tokens = round(prompt_once * fewest)
    prompt_max = round(prompt_once * most)
    completion_tokens = round(float(np.minimum(reply_tokens, max_tokens).sum()) * fewest)
    completion_max = int(asked.size) * most * max_tokens

    per_turn = prompt_tokens_all.mean(axis=0)
    per_turn[:first] = 0.0
    return RunEstimate(
        requests=requests,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        completion_tokens_max=completion_max,
        cost_usd=_dollars(prompt_tokens, completion_tokens, price),
        cost_usd_max=_dollars(prompt_max, completion_max, price),
        system_prompt_tokens=round(tokens.system),
        prompt_tokens_per_turn=tuple(float(v) for v in per_turn),
        samples_per_turn=(fewest, most),
        prompt_tokens_max=prompt_max,
        notes=_notes(config, tokens, float(reply_tokens.max(initial=0.0)))
        + tuple(filter(None, [batch_price_note(config.model, price)])),
    )


def _dollars(prompt: int, completion: int, price: PriceConfig | None) -> float | None:
    if price is None:
        return None
    return (prompt * price.input + completion * price.output) / PER_MILLION


def _notes(config: RunConfig, tokens: MessageTokens, longest_reply: float) -> tuple[str, ...]:
    notes = [tokens.source]
    if longest_reply > config.model.max_tokens:
        notes.append(
            f"replies may need up to {longest_reply:,.0f} tokens, more than "
            f"model.max_tokens={config.model.max_tokens}: they would be cut off"
        )
    if config.task.mode == "thinking":
        notes.append(
            f"thinking mode: hidden reasoning guessed at {THINKING_TOKENS_PER_KEY} tokens per key"
        )
    if config.task.mode == "cot":
        notes.append("cot mode: replies sized like the worked example; models often write more")
    fewest, most = config.strategy.sample_range()
    if most > fewest:
        notes.append(
            f"strategy {config.strategy.label}: expected figures at {fewest} sample(s) per "
            f"turn (every sample agrees), at most {most} (strategy.max_samples)"
        )
    if config.stop.after_failure or config.stop.when_decided:
        notes.append("early stopping is on: this is the full run, an upper bound")
    return tuple(notes)


def exceeds_budget(estimate: RunEstimate, budget: BudgetConfig) -> str | None:
    """One line naming the budget field the expected run would exceed, or None.

    An unknown price cannot exceed ``budget.max_usd`` here; the running budget still stops
    the run on tokens.
    """
    for name in ("max_usd", "sweep_max_usd"):
        limit = getattr(budget, name)
        if limit is not None and estimate.cost_usd is not None and estimate.cost_usd > limit:
            return (
                f"budget.{name}: the estimate is {format_usd(estimate.cost_usd)} (expected) for "
                f"this run, above the budget of {format_usd(limit)}; raise budget.{name} or "
                "shrink the run"
            )
    for name in ("max_tokens", "sweep_max_tokens"):
        limit = getattr(budget, name)
        if limit is not None and estimate.tokens > limit:
            return (
                f"budget.{name}: the estimate is {estimate.tokens:,} tokens (expected) for this "
                f"run, above the budget of {limit:,}; raise budget.{name} or shrink the run"
            )
    return None


def format_estimate(estimate: RunEstimate, budget: BudgetConfig) -> str:
    """A few lines for the terminal: requests, tokens, dollars and the budget verdict."""
    lines = [
        f"requests   {estimate.requests:,}",
        f"tokens     prompt {estimate.prompt_tokens:,}"
        + (
            f" (at most {estimate.prompt_tokens_max:,})"
            if estimate.prompt_tokens_max and estimate.prompt_tokens_max > estimate.prompt_tokens
            else ""
        )
        + " (system message "
        f"{estimate.system_prompt_tokens:,} per request), completion "
        f"{estimate.completion_tokens:,} expected, at most {estimate.completion_tokens_max:,}",
    ]
    if estimate.cost_usd is None or estimate.cost_usd_max is None:
        lines.append(
            "cost       unknown price: set model.price={input: .., output: ..} "
            "(USD per 1M tokens) or add the model to conf/prices.yaml"
        )
    else:
        lines.append(
            f"cost       {format_usd(estimate.cost_usd)} expected, at most "
            f"{format_usd(estimate.cost_usd_max)}"
        )
    lines.append(f"budget     {_budget_verdict(estimate, budget)}")
    lines += [f"note       {note}" for note in estimate.notes]
    return "\n".join(lines)


def _budget_verdict(estimate: RunEstimate, budget: BudgetConfig) -> str:
    over = exceeds_budget(estimate, budget)
    if over is not None:
        return f"OVER: {over}"
    parts = []
    if budget.max_usd is not None:
        parts.append(
            f"within budget.max_usd={format_usd(budget.max_usd)}"
            if estimate.cost_usd is not None
            else "budget.max_usd cannot be checked without a price"
        )
    if budget.max_tokens is not None:
        parts.append(f"within budget.max_tokens={budget.max_tokens:,}")
    return "; ".join(parts) or "none set (budget.max_usd, budget.max_tokens)"
