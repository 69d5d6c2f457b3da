"""The error taxonomy: every rule of the table on hand-built turns, ties, the chance baseline."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.analysis.failures import (
    CATEGORIES,
    NOT_SCORED,
    RULES,
    chance_counts,
    classify_answers,
    classify_turns,
    one_digit_apart,
    permutations_for,
)
from harness.records.schema import TurnRecord
from harness.records.table import RecordTable
from providers.simulated import ErrorKind

DICTIONARY = np.array([-60, -25, 4, 17, 33, 71, 88])


def category(answer, base, values, truth, dictionary=DICTIONARY):
    code = classify_answers(
        np.array([answer]), np.array([base]), np.array([values]), np.array([truth]), dictionary
    )
    return CATEGORIES[int(code[0])]


# One hand-built turn per row of the table: (answer, shown base, values, truth).
# With b = 100 and v = [33]: u = 133; with v = [17, 33]: u = 150.
ROWS = {
    "correct": (27, 10, [17], 27),
    "carried": (27, 10, [17], 30),  # the update is right, the base was already wrong
    "recovered": (40, 10, [17], 40),  # gave the true total, not base + value
    "stale": (10, 10, [17], 27),
    "value_only": (33, 10, [33], 43),
    "skipped_key": (133, 100, [17, 33], 150),  # u - 17
    "doubled_key": (167, 100, [17, 33], 150),  # u + 17
    "sign_flip": (67, 100, [33], 133),  # u - 66
    "wrong_key": (188, 100, [33], 133),  # u - 33 + 88
    "arithmetic": (138, 100, [33], 133),  # off by 5
    "other": (500, 100, [33], 133),
}


@pytest.mark.parametrize("name", list(ROWS))
def test_every_row_of_the_table(name):
    assert category(*ROWS[name]) == name


@pytest.mark.parametrize(
    ("turn", "expected"),
    [
        ((33, 100, [17, 33], 150), "value_only"),  # a = v_K, K > 1
        ((50, 100, [17, 33], 150), "value_only"),  # a = sum(v), K > 1
        ((193, 100, [33], 133), "arithmetic"),  # one digit apart (3 -> 9), off by 60
        ((-193, -100, [-33], -133), "arithmetic"),  # the same below zero
        ((205, 100, [95], 195), "arithmetic"),  # off by exactly 10, two digits differ
        ((206, 100, [95], 195), "other"),  # off by 11, three digits differ
        ((166, 100, [33], 133), "other"),  # u + v with K = 1 is not doubled_key
    ],
)
def test_variants_and_boundaries(turn, expected):
    assert category(*turn) == expected


@pytest.mark.parametrize(
    ("turn", "expected", "also_matches"),
    [
        ((20, 20, [17, -17], 20), "correct", "stale"),
        ((50, 50, [17], 50), "recovered", "stale"),
        ((33, 33, [33], 66), "stale", "value_only"),
        # b = 0: a = v_K is not value_only, and it is u - v_1.
        ((33, 0, [17, 33], 50), "skipped_key", "value_only without b != 0"),
        ((83, 100, [17, -17], 150), "skipped_key", "doubled_key"),  # u - 17 = u + (-17)
        ((49, 100, [-34, 17], 83), "doubled_key", "sign_flip"),  # u - 34 = u - 2*17
        ((96, 100, [4], 104), "sign_flip", "arithmetic"),  # u - 8
        ((117, 100, [14], 114), "wrong_key", "arithmetic"),  # u + 3 = u - 14 + 17
        ((100, 100, [33], 133), "stale", "skipped_key with K = 1 (u - v = b)"),
    ],
)
def test_ties_go_to_the_first_rule(turn, expected, also_matches):
    assert category(*turn) == expected, f"should win over {also_matches}"


def test_one_digit_apart():
    a = np.array([57, 57, 5, -57, 0, 0, 1234, 1234, 7])
    b = np.array([97, -57, 50, -97, 8, 0, 1284, 1285, 7])
    assert one_digit_apart(a, b).tolist() == [
        True,
        False,
        False,
        True,
        True,
        False,
        True,
        False,
        False,
    ]


def slow_category(answer, base, values, truth, dictionary):
    """The table read literally, one row at a time, with digits compared as strings."""
    k, u = len(values), base + sum(values)

    def one_digit(x, y):
        sx, sy = str(abs(x)), str(abs(y))
        same_sign = (x < 0) == (y < 0)
        if not same_sign or len(sx) != len(sy):
            return False
        return sum(p != q for p, q in zip(sx, sy, strict=True)) == 1

    if answer == u == truth:
        return "correct"
    if answer == u:
        return "carried"
    if answer == truth:
        return "recovered"
    if answer == base:
        return "stale"
    if base != 0 and (answer == sum(values) or (k > 1 and answer == values[-1])):
        return "value_only"
    if k > 1 and any(answer == u - v for v in values):
        return "skipped_key"
    if k > 1 and any(answer == u + v for v in values):
        return "doubled_key"
    if any(answer == u - 2 * v for v in values):
        return "sign_flip"
    if any(answer == u - v + w for v in values for w in dictionary if w != v):
        return "wrong_key"
    if 0 < abs(answer - u) <= 10 or one_digit(answer, u):
        return "arithmetic"
    return "other"


small = st.integers(-30, 30)


@settings(max_examples=300, deadline=None)
@given(
    k=st.integers(1, 3),
    rows=st.lists(
        st.tuples(st.integers(-90, 90), small, st.lists(small, min_size=3, max_size=3)),
        min_size=1,
        max_size=40,
    ),
    dictionary=st.lists(small, min_size=1, max_size=8),
    truth_offset=st.lists(st.integers(-2, 2), min_size=40, max_size=40),
)
def test_vectorised_rules_equal_the_table_read_row_by_row(k, rows, dictionary, truth_offset):
    answers = np.array([a for a, _, _ in rows])
    bases = np.array([b for _, b, _ in rows])
    values = np.array([v[:k] for _, _, v in rows])
    # Truths near the update, so that correct/carried/recovered all occur.
    truths = bases + values.sum(axis=1) + np.array(truth_offset[: len(rows)])
    codes = classify_answers(answers, bases, values, truths, np.array(dictionary))
    expected = [
        slow_category(int(a), int(b), [int(x) for x in v], int(t), dictionary)
        for a, b, v, t in zip(answers, bases, values, truths, strict=True)
    ]
    assert [CATEGORIES[c] for c in codes] == expected


def record(turn, status, answer=None, *, base=100, delta=33, truth=133):
    return TurnRecord(
        episode=0,
        turn=turn,
        keys=["apple"],
        delta=delta,
        truth=truth,
        base=base,
        status=status,
        answer=answer,
    )


def test_statuses_are_their_own_categories_and_unscored_turns_have_none():
    records = [
        record(0, "ok", 133),
        record(1, "no_answer"),
        record(2, "bad_format"),
        record(3, "unterminated_think"),
        record(4, "context_exceeded"),
        record(5, "provider_error"),
        record(6, "filled", 133),
        record(7, "ok", 10),
    ]
    table = RecordTable.from_records(records)
    codes = classify_turns(table, np.full((len(records), 1), 33), DICTIONARY)
    names = [None if c == NOT_SCORED else CATEGORIES[c] for c in codes]
    assert names == [
        "correct",
        "no_answer",
        "bad_format",
        "unterminated_think",
        "context_exceeded",
        None,
        None,
        "other",
    ]


def test_the_table_names_every_category_and_the_executor_makes_only_known_kinds():
    assert set(RULES) == set(CATEGORIES)
    import typing

    assert set(typing.get_args(ErrorKind)) <= set(CATEGORIES)


def test_chance_pairs_each_answer_with_the_other_turns_context():
    # Two wrong turns: each answer can only meet the other's context, whatever the seed.
    # Turn A answers 33; in B's context (b = 100, v = [33]) that is value_only.
    # Turn B answers 200; in A's context (b = 200, v = [5]) that is stale.
    answers = np.array([33, 200])
    bases = np.array([200, 100])
    values = np.array([[5], [33]])
    truths = np.array([205, 133])
    counts = chance_counts(
        answers, bases, values, truths, DICTIONARY, rng=np.random.default_rng(0), permutations=7
    )
    expected = np.zeros(len(CATEGORIES))
    expected[CATEGORIES.index("value_only")] = 1
    expected[CATEGORIES.index("stale")] = 1
    assert counts.tolist() == expected.tolist()


def test_chance_never_leaves_an_answer_with_its_own_context():
    # Every answer is the true update of its own context and of no other one, so any
    # "correct" in the baseline means an answer kept its own context.
    bases = np.array([1000, 2000, 3000])
    values = np.array([[1], [2], [3]])
    truths = bases + values[:, 0]
    counts = chance_counts(
        truths, bases, values, truths, DICTIONARY, rng=np.random.default_rng(1), permutations=200
    )
    assert counts[CATEGORIES.index("correct")] == 0
    assert counts.sum() == pytest.approx(3)


def test_chance_needs_two_wrong_answers():
    counts = chance_counts(
        np.array([5]),
        np.array([1]),
        np.array([[1]]),
        np.array([2]),
        DICTIONARY,
        rng=np.random.default_rng(0),
        permutations=permutations_for(1),
    )
    assert not counts.any()
    assert permutations_for(1) == 0
    assert permutations_for(100) == 50 and permutations_for(10**6) == 1
