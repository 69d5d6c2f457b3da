import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.parsing import flexible_answer, parse_reply


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("<answer>42</answer>", 42),  # the strict answer when there is one
        ("<answer>3</answer> and then 9", 3),
        ("The total is 27.", 27),
        ("answer: -42", -42),
        ("12 plus 5 is 17, so 17", 17),
        ("The total is 12-5=7", 7),
        ("sum 10-20", 20),  # a minus after a digit is an operator, not a sign
        ("<answer>f10</answer>", 10),  # bad_format: the paper's demo typo
        ("it is 12.5", None),  # a decimal is not an integer answer
        (".5", None),
        ("no number at all", None),
        ("1" * 19, None),  # more digits than any total; would overflow int64
        ("<think>27</think> I am not sure", None),  # reasoning never counts
        ("<think>27</think> so 30", 30),
        ("so 30 <think> maybe 31", 30),  # unterminated think: the visible part only
    ],
)
def test_last_integer_of_the_visible_reply(reply, expected):
    assert flexible_answer(reply) == expected


@given(st.text())
def test_flexible_agrees_with_strict_wherever_strict_has_an_answer(text):
    strict = parse_reply(text)
    flexible = flexible_answer(text)
    if strict.answer is not None:
        assert flexible == strict.answer
