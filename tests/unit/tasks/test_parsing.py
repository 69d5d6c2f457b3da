import re

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
        # An answer inside reasoning the tags hide, whatever their case: the later one counts.
        ("<Think><answer>1</answer></THINK><answer>2</answer>", "ok", 2),
        ("<answer>1</answer> or not</think><answer>2</answer>", "ok", 2),
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
def test_tag_soup_is_classified_like_a_slow_obvious_parser(parts):
    text = "".join(parts)
    parsed = parse_reply(text)
    assert parsed.status in {"ok", "no_answer", "bad_format", "unterminated_think"}
    assert (parsed.answer is not None) == (parsed.status == "ok")
    assert (parsed.status, parsed.answer) == obvious_parse(text)


def obvious_parse(text):
    """The documented rules, written the slow way (regexes, no tag-by-tag search)."""
    visible = re.sub(r"<think>.*?</think>", "", text, flags=re.S | re.I)
    if "</think>" in visible.lower():
        visible = visible[visible.lower().rindex("</think>") + len("</think>") :]
    unterminated = "<think>" in visible.lower()
    if unterminated:
        visible = visible[: visible.lower().index("<think>")]
    match = re.search(r"<answer>(.*?)</answer>", visible, flags=re.S | re.I)
    if match is None:
        return ("unterminated_think" if unterminated else "no_answer"), None
    inner = match.group(1).strip()
    if re.fullmatch(r"[+-]?\d{1,18}", inner) is None:
        return "bad_format", None
    return "ok", int(inner)
