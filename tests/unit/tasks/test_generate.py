import numpy as np
import pytest

from tasks.generate import generate_task_set, make_dictionary
from tasks.words import load_words


def test_word_list_offers_enough_common_five_letter_words():
    words = load_words()
    assert len(words) >= 1000
    assert len(set(words)) == len(words)
    assert all(len(w) == 5 and w.isascii() and w.isalpha() and w.islower() for w in words)


def test_dictionary_has_distinct_words_and_values_in_range():
    words, values = make_dictionary(300, -5, 7, seed=3)
    assert len(set(words)) == 300
    assert values.min() >= -5 and values.max() <= 7
    # uniform over 13 values: every value appears with 300 draws
    assert set(values.tolist()) == set(range(-5, 8))


def test_episode_is_independent_of_how_many_are_generated():
    small = generate_task_set(samples=3, turns=10, k=2, seed=7)
    large = generate_task_set(samples=50, turns=10, k=2, seed=7)
    np.testing.assert_array_equal(small.keys, large.keys[:3])
    assert small.words == large.words


def test_same_seed_same_set_other_seed_other_set():
    a = generate_task_set(samples=4, turns=5, k=3, seed=1)
    b = generate_task_set(samples=4, turns=5, k=3, seed=1)
    c = generate_task_set(samples=4, turns=5, k=3, seed=2)
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint


def test_ground_truth_is_the_running_sum_of_looked_up_values():
    ts = generate_task_set(samples=2, turns=4, k=3, seed=11)
    for episode in range(ts.samples):
        total = 0
        for turn in range(ts.turns):
            keys = ts.turn_keys(episode, turn)
            assert len(keys) == 3
            delta = sum(ts.dictionary[w] for w in keys)
            total += delta
            assert ts.turn_delta[episode, turn] == delta
            assert ts.turn_truth[episode, turn] == total


def test_rechunk_keeps_the_keys_and_drops_a_partial_turn():
    ts = generate_task_set(samples=2, turns=10, k=1, seed=5)
    chunked = ts.rechunk(3)
    assert chunked.turns == 3 and chunked.k == 3
    np.testing.assert_array_equal(chunked.keys, ts.keys[:, :9])
    assert chunked.turn_truth[0, -1] == ts.turn_truth[0, 8]


def test_bad_sizes_are_rejected_naming_the_field():
    with pytest.raises(ValueError, match=r"task\.dict_size"):
        make_dictionary(len(load_words()) + 1, -1, 1, seed=0)
    with pytest.raises(ValueError, match=r"task\.min_value"):
        make_dictionary(10, 5, 1, seed=0)
