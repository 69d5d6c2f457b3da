"""Why a turn was wrong: an error taxonomy for every scored turn, and its chance baseline.

Turn accuracy says how often the update was wrong, not how. Most wrong answers in dict-sum
have a recognisable shape: the looked-up value alone, the old total, one key left out or
counted twice, one value subtracted or read from the wrong word, a small slip in the sum.
For a scored turn with shown base b (the previous total the model saw), this turn's values
v_1..v_K, expected update u = b + sum(v), true running total T and parsed answer a, the
category is the first rule of :data:`RULES` that matches. Replies without an answer keep
their status as category (``no_answer``, ``bad_format``, ``unterminated_think``,
``context_exceeded``); turns that were never the model's answer (provider errors, filled
turns) get none.

Some rules match by accident: 100 dictionary values in [-99, 99] cover 40% of that range, so a
random miss near u often looks like ``wrong_key`` or ``arithmetic``. :func:`chance_counts`
measures how often: the same classifier applied to the run's wrong answers, each paired with
the context of *another* wrong turn (a seeded permutation). A share means something only where
it is well above its chance share.

Everything is array arithmetic over the record table, one rule at a time over all turns
(no Python loop over turns): a million turns classify in well under a second. No library
classifies arithmetic error shapes, hence this module.
"""

from __future__ import annotations

import math
import typing
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.config import TaskConfig
from harness.records.manifest import Manifest
from harness.records.schema import UNSCORED_STATUSES
from harness.records.table import RecordTable
from tasks.taskset import TaskSet

Category = Literal[
    "correct",
    "carried",
    "recovered",
    "stale",
    "value_only",
    "skipped_key",
    "doubled_key",
    "sign_flip",
    "wrong_key",
    "arithmetic",
    "other",
    "no_answer",
    "bad_format",
    "unterminated_think",
    "context_exceeded",
]
CATEGORIES: tuple[str, ...] = typing.get_args(Category)
"""Every category, in rule order; codes returned by the classifiers index this tuple."""
ANSWER_CATEGORIES = CATEGORIES[:11]
"""Categories of turns with a parsed answer, in the order the rules are tried."""
STATUS_CATEGORIES = CATEGORIES[11:]
"""Categories of turns without an answer: the record's status itself."""
EXPECTED_UPDATE = ("correct", "carried")
"""Categories whose answer is the expected update: turn-correct, so not errors."""
NOT_SCORED = -1
"""Code of a turn that carries no score (provider error, filled turn)."""

RULES: dict[str, str] = {
    "correct": "a = u = T",
    "carried": "a = u, a != T",
    "recovered": "a = T, a != u",
    "stale": "a = b",
    "value_only": "a = sum(v), or a = v_K when K > 1, with b != 0",
    "skipped_key": "a = u - v_i for some i (K > 1)",
    "doubled_key": "a = u + v_i for some i (K > 1)",
    "sign_flip": "a = u - 2 v_i for some i",
    "wrong_key": "a = u - v_i + w, w the value of another dictionary word",
    "arithmetic": "0 < |a - u| <= 10, or a and u differ in one digit",
    "other": "none of the above",
    "no_answer": "reply without an <answer> tag",
    "bad_format": "the tag holds no integer",
    "unterminated_think": "an unclosed <think> block and no answer",
    "context_exceeded": "the conversation no longer fit the context",
}
"""The rule of every category, as the report's table and the README state it."""
MEANINGS: dict[str, str] = {
    "correct": "",
    "carried": "a right update of a wrong total: the error is older",
    "recovered": "ignored the shown base and gave the true total",
    "stale": "no update",
    "value_only": "looked up, not added to the total",
    "skipped_key": "one key left out",
    "doubled_key": "one key counted twice",
    "sign_flip": "one value subtracted instead of added",
    "wrong_key": "one value read from the wrong word",
    "arithmetic": "slip in the addition or a carry",
    "other": "",
    "no_answer": "format error",
    "bad_format": "format error",
    "unterminated_think": "format error",
    "context_exceeded": "ran out of context (a result at long horizons)",
}

ARITHMETIC_DISTANCE = 10
"""Largest |a - u| that counts as an arithmetic slip."""
CHANCE_PAIRS = 20_000
"""Pairs the chance baseline aims for: small runs are permuted several times over."""
MAX_PERMUTATIONS = 50
"""Most permutations drawn for the chance baseline, however few the wrong turns."""

_CODE = {name: code for code, name in enumerate(CATEGORIES)}


def _contains(sorted_values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Elementwise ``x in sorted_values`` by binary search (no (x, values) matrix)."""
    if sorted_values.size == 0:
        return np.zeros(x.shape, dtype=bool)
    at = np.searchsorted(sorted_values, x).clip(max=sorted_values.size - 1)
    return sorted_values[at] == x


def one_digit_apart(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """True where a and b have the same sign and digit count and differ in exactly one digit.

    ``57`` and ``97`` (a wrong tens digit), not ``57`` and ``-57`` or ``5`` and ``50``.
    """
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    x, y = np.abs(a), np.abs(b)
    differing = np.zeros(x.shape, dtype=np.int64)
    length_x = np.zeros(x.shape, dtype=np.int64)
    length_y = np.zeros(x.shape, dtype=np.int64)
    while (x > 0).any() or (y > 0).any():
        differing += (x % 10) != (y % 10)
        length_x += x > 0
        length_y += y > 0
        x, y = x // 10, y // 10
    same_length = np.maximum(length_x, 1) == np.maximum(length_y, 1)  # 0 has one digit
    return ((a < 0) == (b < 0)) & same_length & (differing == 1)


def classify_answers(
    answer: np.ndarray,
    base: np.ndarray,
    values: np.ndarray,
    truth: np.ndarray,
    dictionary_values: np.ndarray,
) -> np.ndarray:
    """Category code (into :data:`CATEGORIES`) of every answered turn: the first rule that holds.

    Args:
        answer: the parsed answers a, shape (n,).
        base: the shown bases b, shape (n,).
        values: this turn's key values v_1..v_K, shape (n, K): one K per call.
        truth: the true running totals T, shape (n,).
        dictionary_values: every value of the dictionary (any order, repeats allowed); a
            ``wrong_key`` answer read one key's value from one of these.
    """
    answer = np.asarray(answer, dtype=np.int64)
    base = np.asarray(base, dtype=np.int64)
    truth = np.asarray(truth, dtype=np.int64)
    values = np.asarray(values, dtype=np.int64)
    values = values.reshape(-1, 1) if values.ndim == 1 else values
    dictionary = np.unique(np.asarray(dictionary_values, dtype=np.int64))
    k = values.shape[1]
    total = values.sum(axis=1)
    update = base + total
    miss = answer - update
    codes = np.where(answer == truth, _CODE["correct"], _CODE["carried"]).astype(np.int8)
    # Most turns of a usable model are right updates: the other rules run on the rest only.
    rest = np.flatnonzero(miss != 0)
    if not rest.size:
        return codes
    a, b, t, v = answer[rest], base[rest], truth[rest], values[rest]
    off = miss[rest][:, None]
    several = k > 1
    # With a != u, a wrong_key w is never v_i itself (that would be a = u).
    conditions = [
        a == t,
        a == b,
        (b != 0) & ((a == total[rest]) | (several & (a == v[:, -1]))),
        several & (off == -v).any(axis=1),
        several & (off == v).any(axis=1),
        (off == -2 * v).any(axis=1),
        _contains(dictionary, off + v).any(axis=1),
    ]
    # The digit comparison loops over digits: run it only where no rule has matched yet.
    arithmetic = np.abs(miss[rest]) <= ARITHMETIC_DISTANCE
    check = np.flatnonzero(~arithmetic & ~np.logical_or.reduce(conditions))
    arithmetic[check] = one_digit_apart(a[check], update[rest][check])
    conditions.append(arithmetic)
    first = _CODE["recovered"]
    codes[rest] = np.select(
        conditions, np.arange(first, first + len(conditions)), default=_CODE["other"]
    )
    return codes.astype(np.int8)


def classify_turns(
    table: RecordTable, values: np.ndarray, dictionary_values: np.ndarray
) -> np.ndarray:
    """Category code of every record of ``table``; :data:`NOT_SCORED` where no score applies.

    ``values`` holds each record's key values, shape (len(table), K).
    """
    codes = np.full(len(table), NOT_SCORED, dtype=np.int8)
    scored = ~table.is_status(*UNSCORED_STATUSES)
    answered = scored & table.has_answer
    codes[answered] = classify_answers(
        table.answer[answered],
        table.base[answered],
        np.asarray(values)[answered],
        table.truth[answered],
        dictionary_values,
    )
    for name in STATUS_CATEGORIES:
        codes[scored & table.is_status(name)] = _CODE[name]
    # An "ok" status always comes with an answer; should a record lack one anyway, it is an
    # unexplained miss, not a silently dropped turn.
    codes[scored & ~table.has_answer & (codes == NOT_SCORED)] = _CODE["other"]
    return codes


def is_wrong(codes: np.ndarray) -> np.ndarray:
    """Turns whose answer is not the expected update (format errors included)."""
    return (codes >= 0) & ~np.isin(codes, [_CODE[name] for name in EXPECTED_UPDATE])


def permutations_for(wrong_answers: int) -> int:
    """How many permutations the chance baseline draws for this many wrong answers."""
    if wrong_answers < 2:
        return 0
    return int(min(MAX_PERMUTATIONS, max(1, math.ceil(CHANCE_PAIRS / wrong_answers))))


def chance_counts(
    answer: np.ndarray,
    base: np.ndarray,
    values: np.ndarray,
    truth: np.ndarray,
    dictionary_values: np.ndarray,
    *,
    rng: np.random.Generator,
    permutations: int,
) -> np.ndarray:
    """Mean count per category when each wrong answer meets another wrong turn's context.

    Each permutation shuffles the turns and pairs every answer with the context (base, values,
    truth) of the next turn in the shuffled order, cyclically: a random pairing in which no
    answer keeps its own context. The inputs are the answered wrong turns of one K.
    Returns a float array aligned with :data:`CATEGORIES` (zeros for fewer than two turns).
    """
    answer = np.asarray(answer, dtype=np.int64)
    base, truth = np.asarray(base), np.asarray(truth)
    values = np.asarray(values)
    counts = np.zeros(len(CATEGORIES), dtype=np.float64)
    if answer.size < 2 or permutations < 1:
        return counts
    for _ in range(permutations):
        order = rng.permutation(answer.size)
        partner = np.empty_like(order)
        partner[order] = np.roll(order, -1)  # answer order[i] meets context order[i + 1]
        codes = classify_answers(
            answer, base[partner], values[partner], truth[partner], dictionary_values
        )
        counts += np.bincount(codes, minlength=len(CATEGORIES))
    return counts / permutations


class CategoryShare(BaseModel):
    """How often one category occurred."""

    model_config = ConfigDict(extra="forbid")

    count: int
    """Scored turns in this category (latest record of each turn)."""
    share: float | None
    """count / wrong turns; None for ``correct`` and ``carried`` (not errors) and when no
    turn was wrong."""
    chance_share: float | None
    """The share the rule gets on shuffled contexts (:func:`chance_counts`); None for the
    categories without an answer, which a shuffle cannot change, and where no baseline ran."""


class ChanceBaseline(BaseModel):
    """How the chance shares were drawn."""

    model_config = ConfigDict(extra="forbid")

    permutations: int
    """Random pairings of the wrong answers with other wrong turns' contexts."""
    answers: int
    """Wrong turns with a parsed answer, the ones that were paired."""
    seed: int
    """Seed of the permutations' generator (the summary's bootstrap seed)."""


class ErrorTaxonomy(BaseModel):
    """``summary.json``'s ``error_taxonomy``: what every wrong turn looked like."""

    model_config = ConfigDict(extra="forbid")

    wrong_turns: int = 0
    """Scored turns whose answer is not the expected update: the denominator of every share."""
    overall: dict[Category, CategoryShare] = Field(default_factory=dict)
    """Every category, in rule order."""
    per_turn: dict[Category, list[float | None]] = Field(default_factory=dict)
    """Share of the wrong turns at each turn, for every category that occurred among them."""
    wrong_per_turn: list[int] = Field(default_factory=list)
    """Wrong turns at each turn: the denominator of ``per_turn``."""
    chance: ChanceBaseline | None = None
    """The permutation baseline behind ``chance_share``."""
    dictionary_coverage: float | None = None
    """Share of the integers between the smallest and largest dictionary value that some word
    has: about how often a slip of a few units also reads as ``wrong_key``, which comes first."""
    unavailable: str | None = None
    """Why there is no taxonomy (the task set could not be rebuilt); None when there is."""

    def top(self, n: int = 2) -> list[tuple[str, CategoryShare]]:
        """The ``n`` most frequent error categories (ties: rule order)."""
        errors = [(name, c) for name, c in self.overall.items() if name not in EXPECTED_UPDATE]
        ranked = sorted(errors, key=lambda item: -item[1].count)
        return [(name, c) for name, c in ranked[:n] if c.count > 0]


def task_set_of(manifest: Manifest) -> TaskSet | str:
    """The run's task set rebuilt from its manifest, or why it cannot be.

    The records hold each turn's words, not their values, so the values come from the task
    set; its fingerprint must match the manifest's, or the values would be another run's.
    """
    try:
        task_set = TaskConfig.model_validate(manifest.config["task"]).load()
    except (KeyError, TypeError, ValueError, ValidationError, OSError) as exc:
        return f"the task set could not be rebuilt ({str(exc).splitlines()[0]})"
    if task_set.fingerprint != manifest.task_set.fingerprint:
        return "the rebuilt task set differs from the run's (fingerprint mismatch)"
    return task_set


def turn_values(task_set: TaskSet, episode: np.ndarray, turn: np.ndarray) -> np.ndarray:
    """Key values of the given (episode, turn) pairs, shape (n, K)."""
    by_turn = task_set.step_values.reshape(task_set.samples, task_set.turns, task_set.k)
    return by_turn[episode, turn]


def classify_run(latest: RecordTable, task_set: TaskSet) -> np.ndarray:
    """Category codes of a run's latest records (one per episode and turn).

    Records outside the task set (more episodes or turns than it has) are not scored.
    """
    inside = (latest.episode < task_set.samples) & (latest.turn < task_set.turns)
    codes = np.full(len(latest), NOT_SCORED, dtype=np.int8)
    rows = latest.take(inside)
    values = turn_values(task_set, rows.episode, rows.turn)
    codes[inside] = classify_turns(rows, values, task_set.values)
    return codes


def error_taxonomy(
    latest: RecordTable, manifest: Manifest, *, turns: int, seed: int
) -> ErrorTaxonomy:
    """The taxonomy of a run: shares overall and per turn, with the chance baseline.

    ``latest`` holds one record per (episode, turn); ``seed`` seeds the permutations.
    """
    task_set = task_set_of(manifest)
    if isinstance(task_set, str):
        return ErrorTaxonomy(unavailable=task_set)
    codes = classify_run(latest, task_set)
    wrong = is_wrong(codes)
    in_range = latest.turn < turns
    wrong_total = int(wrong.sum())
    counts = np.bincount(codes[codes >= 0], minlength=len(CATEGORIES))

    answered = wrong & latest.has_answer
    rows = latest.take(answered)
    permutations = permutations_for(int(answered.sum()))
    chance = chance_counts(
        rows.answer,
        rows.base,
        turn_values(task_set, rows.episode, rows.turn),
        rows.truth,
        task_set.values,
        rng=np.random.default_rng(seed),
        permutations=permutations,
    )

    def share(count: float) -> float | None:
        return float(count / wrong_total) if wrong_total else None

    overall = {
        name: CategoryShare(
            count=int(counts[code]),
            share=None if name in EXPECTED_UPDATE else share(counts[code]),
            chance_share=share(chance[code])
            if name not in EXPECTED_UPDATE and name in ANSWER_CATEGORIES and permutations
            else None,
        )
        for code, name in enumerate(CATEGORIES)
    }
    by_turn = np.zeros((len(CATEGORIES), turns), dtype=np.int64)
    keep = wrong & in_range
    np.add.at(by_turn, (codes[keep], latest.turn[keep]), 1)
    wrong_per_turn = by_turn.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = by_turn / wrong_per_turn
    per_turn = {
        name: [float(v) if n else None for v, n in zip(shares[code], wrong_per_turn, strict=True)]
        for code, name in enumerate(CATEGORIES)
        if by_turn[code].any()
    }
    return ErrorTaxonomy(
        wrong_turns=wrong_total,
        overall=overall,
        per_turn=per_turn,
        wrong_per_turn=wrong_per_turn.tolist(),
        chance=ChanceBaseline(permutations=permutations, answers=int(answered.sum()), seed=seed),
        dictionary_coverage=dictionary_coverage(task_set.values),
    )


def dictionary_coverage(values: np.ndarray) -> float | None:
    """Distinct values over the integers in [min, max] of the values (None when empty)."""
    if not np.asarray(values).size:
        return None
    distinct = np.unique(values)
    return float(distinct.size / (int(distinct[-1]) - int(distinct[0]) + 1))
