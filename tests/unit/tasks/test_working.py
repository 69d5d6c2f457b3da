from hypothesis import given
from hypothesis import strategies as st

from tasks.generate import generate_task_set
from tasks.parsing import parse_reply
from tasks.prompts import demo_turns, read_mode, system_prompt
from tasks.working import WorkingLine, cot_reply, shows_working, working_lines

words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
values = st.integers(-(10**6), 10**6)


@given(start=values, turn=st.lists(st.tuples(words, values), min_size=1, max_size=12))
def test_working_lines_read_back_exactly_what_cot_reply_wrote(start, turn):
    keys = [w for w, _ in turn]
    shown = [v for _, v in turn]
    text = cot_reply(start, keys, shown)
    expected, total = [], start
    for word, value in turn:
        expected.append(WorkingLine(before=total, word=word, value=value, after=total + value))
        total += value
    assert working_lines(text) == expected
    assert parse_reply(text).answer == total
    assert text.splitlines()[0] == f"{start} + {keys[0]} ({shown[0]}) = {start + shown[0]}"


def test_the_worked_example_uses_the_layout_the_check_reads():
    task_set = generate_task_set(samples=1, turns=1, k=3, seed=42)
    demo_dict, cot_turns = demo_turns(task_set.dictionary, "cot", 3)
    _, direct_turns = demo_turns(task_set.dictionary, "direct", 3)
    total = 0
    for turn in cot_turns:
        lines = working_lines(turn.reply)
        assert [line.word for line in lines] == list(turn.keys)
        assert [line.value for line in lines] == [demo_dict[w] for w in turn.keys]
        assert lines[0].before == total
        total = turn.total
    assert not any(shows_working(turn.reply) for turn in direct_turns)


def test_replies_without_the_taught_working_are_told_apart():
    assert not shows_working("<answer>5</answer>")
    assert not shows_working("")
    assert not shows_working("The new total is 5.\n<answer>5</answer>")
    assert not shows_working("0 + 5 = 5\n<answer>5</answer>")  # working, not the layout
    assert shows_working("- 0 + apple (5) = 5\n<answer>5</answer>")
    assert shows_working("Step 1: 12+wordy( -34 )= -22")
    assert working_lines("x\n-7 + plumb (-3) = -10\ny") == [WorkingLine(-7, "plumb", -3, -10)]


def test_hostile_text_is_read_without_crashing():
    assert shows_working("9" * 10_000 + " + apple (1) = 2")
    assert working_lines("(" * 50_000 + "=" * 50_000) == []


def test_the_mode_is_read_back_from_the_system_prompt():
    task_set = generate_task_set(samples=1, turns=1, k=2, seed=3)
    for mode in ("direct", "cot", "thinking"):
        assert read_mode(system_prompt(task_set.dictionary, mode, 2)) == mode
