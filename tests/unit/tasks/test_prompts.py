import pytest

from tasks.generate import generate_task_set
from tasks.parsing import parse_reply
from tasks.prompts import demo_turns, read_dictionary, system_prompt, user_message


@pytest.mark.parametrize("mode", ["direct", "cot", "thinking"])
@pytest.mark.parametrize("k", [1, 2, 10])
def test_every_demo_answer_is_right(mode, k):
    ts = generate_task_set(samples=1, turns=1, k=k, seed=42)
    demo_dict, turns = demo_turns(ts.dictionary, mode, k)
    assert not set(demo_dict) & set(ts.dictionary), "demo must use a different dictionary"
    total = 0
    for turn in turns:
        total += sum(demo_dict[w] for w in turn.keys)
        assert parse_reply(turn.reply).answer == total
        if mode == "cot":
            # every intermediate line is arithmetically right too
            for line in turn.reply.splitlines()[:-1]:
                left, right = line.split(" = ")
                before, rest = left.split(" + ")
                value = int(rest.split("(")[1].rstrip(")"))
                assert int(before) + value == int(right)


def test_system_prompt_embeds_the_task_dictionary_and_is_deterministic():
    ts = generate_task_set(samples=1, turns=1, k=2, seed=9)
    text = system_prompt(ts.dictionary, "direct", 2)
    assert read_dictionary(text) == ts.dictionary
    assert text == system_prompt(dict(ts.dictionary), "direct", 2)


def test_user_message_is_just_the_keys():
    assert user_message(["apple", "house"]) == "apple, house"
