"""A corpus of hostile replies with the status each must get, and properties of the parser.

The corpus is what real endpoints and weak models send: broken and nested tags, digits from
other scripts, numbers too big for the metrics, HTML, JSON, markdown, several answers,
reasoning blocks in odd places, control characters and megabyte replies. The properties say
how the classification must behave on text nobody thought of.
"""

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tasks.parsing import MAX_ANSWER_DIGITS, format_answer, parse_reply

BIG = 1_000_000


def case(name: str, reply: str, status: str, answer: int | None, marks=()):
    return pytest.param(reply, status, answer, id=name, marks=marks)


CORPUS = [
    # nested, broken and decorated tags
    case("nested answer tags", "<answer><answer>5</answer></answer>", "bad_format", None),
    case("answer opened twice", "<answer>5<answer>6</answer>", "bad_format", None),
    case("unclosed answer", "the total is <answer>5", "no_answer", None),
    case("closing tag cut short", "<answer>5</answer", "no_answer", None),
    case("no opening bracket", "answer>5</answer>", "no_answer", None),
    case("tags in reverse order", "</answer>5<answer>", "no_answer", None),
    case("space inside the tag", "< answer>5</ answer>", "no_answer", None),
    case("attribute on the tag", '<answer value="5">5</answer>', "no_answer", None),
    case("mixed-case tags", "<ANSWER>-12</Answer>", "ok", -12),
    case("whitespace around the number", "<answer>\n\t 17 \r\n</answer>", "ok", 17),
    case("no-break spaces around the number", "<answer>\u00a042\u00a0</answer>", "ok", 42),
    case("zero-width space before the number", "<answer>\u200b42</answer>", "bad_format", None),
    # digits of other scripts: decimal digits are digits, other numerals are not
    case("Arabic-Indic digits", "<answer>\u0664\u0662</answer>", "ok", 42),
    case("fullwidth digits", "<answer>\uff14\uff12</answer>", "ok", 42),
    case("superscript two", "<answer>\u00b2</answer>", "bad_format", None),
    case("Roman numeral", "<answer>\u216b</answer>", "bad_format", None),
    case("typographic minus", "<answer>\u221217</answer>", "bad_format", None),
    # numbers the metrics cannot or should not take
    case("18 digits", f"<answer>{'9' * MAX_ANSWER_DIGITS}</answer>", "ok", int("9" * 18)),
    case("-18 digits", f"<answer>-{'9' * MAX_ANSWER_DIGITS}</answer>", "ok", -int("9" * 18)),
    case("19 digits", f"<answer>1{'0' * MAX_ANSWER_DIGITS}</answer>", "bad_format", None),
    case("100,000 digits", f"<answer>{'1' * 100_000}</answer>", "bad_format", None),
    case("exponent", "<answer>1e3</answer>", "bad_format", None),
    case("hexadecimal", "<answer>0x1F</answer>", "bad_format", None),
    case("thousands separator", "<answer>1,234</answer>", "bad_format", None),
    case("underscore separator", "<answer>1_000</answer>", "bad_format", None),
    case("trailing decimal point", "<answer>42.</answer>", "bad_format", None),
    case("two signs", "<answer>+-3</answer>", "bad_format", None),
    case("not a number", "<answer>NaN</answer>", "bad_format", None),
    case("leading zeros", "<answer>007</answer>", "ok", 7),
    case("negative zero", "<answer>-0</answer>", "ok", 0),
    # HTML, JSON and markdown around or inside the tag
    case("HTML-escaped tags", "&lt;answer&gt;5&lt;/answer&gt;", "no_answer", None),
    case("tag inside an HTML page", "<html><body><p><answer>8</answer></p></body></html>", "ok", 8),
    case("bold inside the tag", "<answer><b>8</b></answer>", "bad_format", None),
    case("comment inside the tag", "<answer>8<!-- was 9 --></answer>", "bad_format", None),
    case("JSON field, no tag", '{"answer": 5}', "no_answer", None),
    case("tag inside a JSON string", '{"content": "<answer>-3</answer>"}', "ok", -3),
    case("markdown label", "**Answer:** <answer>12</answer>", "ok", 12),
    case("fenced code block", "```xml\n<answer>12</answer>\n```", "ok", 12),
    case("markdown bold inside the tag", "<answer>**12**</answer>", "bad_format", None),
    case("prose only", "The answer is **12**.", "no_answer", None),
    # several answers: the first one counts, even when it is garbled
    case("second answer corrects the first", "<answer>3</answer> no: <answer>4</answer>", "ok", 3),
    case("garbled first answer", "<answer>three</answer><answer>3</answer>", "bad_format", None),
    # reasoning blocks in odd places
    case("answer only inside reasoning", "<think>so <answer>1</answer></think>", "no_answer", None),
    case(
        "revision inside a later block",
        "<answer>5</answer><think><answer>6</answer></think>",
        "ok",
        5,
    ),
    case(
        "nested think blocks",
        "<think><think>a</think><answer>1</answer></think><answer>2</answer>",
        "ok",
        2,
    ),
    case(
        "block never closed", "<think>never closed <answer>9</answer>", "unterminated_think", None
    ),
    case("block opened after the answer", "<answer>9</answer><think>second thoughts", "ok", 9),
    case("template opened the block", "so 4 + 5 = 9</think>\n<answer>9</answer>", "ok", 9),
    case("stray close after the answer", "<answer>9</answer></think>", "no_answer", None),
    case("two stray closes", "</think></think><answer>4</answer>", "ok", 4),
    case("mixed-case think tags", "<THINK>x</Think><answer>4</answer>", "ok", 4),
    case("a different tag name", "<thinking>scratch</thinking><answer>4</answer>", "ok", 4),
    case(
        "closed block then an open one",
        "<think>a</think>between<think>b",
        "unterminated_think",
        None,
    ),
    # control characters
    case("null bytes around", "\x00<answer>5</answer>\x00", "ok", 5),
    case("null byte inside the number", "<answer>4\x002</answer>", "bad_format", None),
    case("null byte inside the tag", "<ans\x00wer>5</answer>", "no_answer", None),
    case("terminal colour codes", "<answer>\x1b[1m5\x1b[0m</answer>", "bad_format", None),
    # megabyte replies
    case("a megabyte before the answer", "x" * BIG + "<answer>5</answer>", "ok", 5),
    case("a megabyte after the answer", "<answer>5</answer>" + "z" * BIG, "ok", 5),
    case(
        "a megabyte of reasoning", "<think>" + "y" * BIG + "</think><answer>-8</answer>", "ok", -8
    ),
    # characters whose lowercase is longer than themselves
    case(
        "dotted capital I before a stray close",
        "\u0130\u0130 so</think><answer>5</answer>",
        "ok",
        5,
    ),
]


@pytest.mark.parametrize(("reply", "status", "answer"), CORPUS)
def test_corpus(reply, status, answer):
    parsed = parse_reply(reply)
    assert (parsed.status, parsed.answer) == (status, answer)


def test_corpus_is_large_and_covers_every_status():
    assert len(CORPUS) >= 40
    assert {case.values[1] for case in CORPUS} == {
        "ok",
        "no_answer",
        "bad_format",
        "unterminated_think",
    }


@pytest.mark.parametrize(
    ("reply", "visible"),
    [
        ("a<think>x</think>b<answer>1</answer>", "ab<answer>1</answer>"),
        ("plan</think>  <answer>1</answer>", "  <answer>1</answer>"),
        ("<answer>1</answer><think>more", "<answer>1</answer>"),
        pytest.param("\u0130 <answer>1</answer><think>more", "\u0130 <answer>1</answer>"),
    ],
)
def test_visible_text_is_the_reply_without_its_reasoning(reply, visible):
    assert parse_reply(reply).visible == visible


THINK_TAG = re.compile(r"</?think>", re.IGNORECASE)
TAGS = ["<think>", "</think>", "<answer>", "</answer>", "<THINK>", "</Answer>", "<", ">", "/"]
tag_soup = st.lists(
    st.one_of(st.sampled_from(TAGS), st.text(max_size=4), st.integers().map(str)), max_size=30
).map("".join)
# Text that cannot form or complete a tag (no angle brackets).
plain = st.text(alphabet=st.characters(blacklist_characters="<>"))
plain_prefix = st.text(alphabet=st.characters(blacklist_characters="<>"))


@given(st.one_of(st.text(), tag_soup))
@example("<think>\x00</think>\u0130<answer>0</answer>")
def test_classification_is_total_and_consistent(text):
    parsed = parse_reply(text)
    assert parsed.status in {"ok", "no_answer", "bad_format", "unterminated_think"}
    assert (parsed.answer is not None) == (parsed.status == "ok")
    if parsed.answer is not None:
        assert abs(parsed.answer) < 10**MAX_ANSWER_DIGITS
    assert THINK_TAG.search(parsed.visible) is None  # no reasoning left in what may be shown
    assert parse_reply(text) == parsed


@given(plain, st.integers(min_value=-(10**17), max_value=10**17), plain)
def test_an_answer_tag_in_any_plain_text_is_found(before, value, after):
    parsed = parse_reply(before + format_answer(value) + after)
    assert (parsed.status, parsed.answer) == ("ok", value)


@given(plain, st.one_of(st.text(), tag_soup))
def test_a_closed_reasoning_block_in_front_changes_nothing(reasoning, text):
    hidden = parse_reply(f"<think>{reasoning}</think>{text}")
    assert (hidden.status, hidden.answer) == (parse_reply(text).status, parse_reply(text).answer)


@given(plain_prefix, st.one_of(st.text(), tag_soup), plain)
def test_plain_text_around_a_reply_keeps_its_classification(prefix, text, suffix):
    inner = parse_reply(text)
    outer = parse_reply(prefix + text + suffix)
    assert (outer.status, outer.answer) == (inner.status, inner.answer)
