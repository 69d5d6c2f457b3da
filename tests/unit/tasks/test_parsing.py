import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.parsing import format_answer, parse_reply


@pytest.mark.parametrize(
    ("reply", "status", "answer"),
    [
        ("<answer>42</answer>", "ok", 42),
        ("<answer> -17 </answer>", "ok", -17),
        ("<answer>+5</answer>", "ok", 5),
        ("The total is <answer>3</answer> and later <answer>9</answer>", "ok", 3),
        ("<think>maybe <answer>1</answer></think><answer>2</answer>", "ok", 2),
        ("reasoning only</think><answer>7</answer>", "ok", 7),
        ("<THINK>x</THINK><ANSWER>8</ANSWER>", "ok", 8),
        ("42", "no_answer", None),
        ("", "no_answer", None),
        ("<answer>forty</answer>", "bad_format", None),
        ("<answer>4 2</answer>", "bad_format", None),
        ("<answer>1.5</answer>", "bad_format", None),
        ("<answer></answer>", "bad_format", None),
        ("<answer>" + "9" * 40 + "</answer>", "bad_format", None),
        ("<think>still going <answer>3", "unterminated_think", None),
        ("<answer>4</answer><think>more", "ok", 4),
    ],
)
def test_classification(reply, status, answer):
    parsed = parse_reply(reply)
    assert (parsed.status, parsed.answer) == (status, answer)


@given(st.integers(min_value=-(10**17), max_value=10**17))
def test_round_trip_of_the_canonical_tag(value):
    assert parse_reply(format_answer(value)).answer == value


@given(st.text())
def test_never_raises_on_arbitrary_text(text):
    parsed = parse_reply(text)
    assert parsed.status in {"ok", "no_answer", "bad_format", "unterminated_think"}
    assert (parsed.answer is not None) == (parsed.status == "ok")


@given(
    st.lists(st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "-", "12", " ", "x"]))
)
def test_never_raises_on_tag_soup(parts):
    parse_reply("".join(parts))
