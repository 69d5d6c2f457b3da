import numpy as np
import pytest

from harness.analysis.dynamics import error_dynamics, one_step_bootstrap, regression_rows
from harness.analysis.statistics import episode_weights, logistic_irls
from tasks.parsing import format_answer
from testing.run_dirs import written_run

N = np.nan


def test_rows_carry_log_turn_and_the_share_of_wrong_answers_shown_before():
    index = np.array([[1, 0, 0, 1], [0, N, 1, N]], dtype=float)
    turn = np.array([[1, 0, 1, 1], [0, N, 1, N]], dtype=float)
    design, y, episode = regression_rows(turn, index)
    slow = []
    for e in range(2):
        for t in range(4):
            if np.isnan(turn[e, t]):
                continue
            earlier = [v for v in index[e, :t] if not np.isnan(v)]
            share = sum(v == 0 for v in earlier) / len(earlier) if earlier else 0.0
            slow.append((e, np.log(t + 1), share, 1 - turn[e, t]))
    np.testing.assert_allclose(design[:, 1:], [(a, b) for _, a, b, _ in slow])
    np.testing.assert_array_equal(y, [r[3] for r in slow])
    np.testing.assert_array_equal(episode, [r[0] for r in slow])


@pytest.mark.parametrize("window", [1, 2, 3, 4, 9])
def test_under_a_history_window_the_share_counts_only_the_turns_sent(window):
    rng = np.random.default_rng(window)
    index = rng.choice([0.0, 1.0, N], size=(5, 8), p=[0.4, 0.5, 0.1])
    turn = np.where(np.isnan(index), N, rng.choice([0.0, 1.0], size=index.shape))
    design, _, _ = regression_rows(turn, index, window)
    slow = []
    for e in range(5):
        for t in range(8):
            if np.isnan(turn[e, t]):
                continue
            sent = [v for v in index[e, max(0, t - window) : t] if not np.isnan(v)]
            slow.append(sum(v == 0 for v in sent) / len(sent) if sent else 0.0)
    np.testing.assert_allclose(design[:, 2], slow)


def test_effects_match_group_rates_in_a_saturated_design():
    """Share 0 or 1 at turns 1 and e: the three coefficients follow from three error rates."""
    # rows: (ln turn, share) in {(0, 0), (1, 0), (0, 1)} with known error rates
    design = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 1]], dtype=float)
    trials = np.array([400.0, 400.0, 400.0])
    events = np.array([40.0, 100.0, 200.0])
    beta, _ = logistic_irls(design, events, trials)

    def logit(q):
        return np.log(q / (1 - q))

    np.testing.assert_allclose(
        beta, [logit(0.1), logit(0.25) - logit(0.1), logit(0.5) - logit(0.1)], rtol=1e-9
    )


def test_one_step_bootstrap_is_close_to_refitting_each_resample():
    rng = np.random.default_rng(4)
    episodes, turns = 300, 30
    index = (rng.random((episodes, turns)) < 0.97).astype(float)
    turn = (rng.random((episodes, turns)) < 0.9).astype(float)
    design, y, episode = regression_rows(turn, index)
    beta, _ = logistic_irls(design, y, np.ones_like(y))
    weights = episode_weights(np.random.default_rng(5), episodes, 8)
    fast = one_step_bootstrap(design, y, episode, beta, weights)
    spread = fast.std(axis=0)
    for r, w in enumerate(weights):
        drawn = w[episode]  # each row counted as often as its episode was drawn
        refit, _ = logistic_irls(design, y * drawn, drawn)
        assert np.all(np.abs(fast[r] - refit) < 0.25 * spread)  # one step, not exact


def test_independent_errors_give_effects_whose_intervals_cover_zero():
    rng = np.random.default_rng(8)
    index = (rng.random((400, 40)) < 0.97).astype(float)
    index = np.where(np.logical_or.accumulate(index == 0, axis=1), 0.0, 1.0)
    turn = (rng.random((400, 40)) < 0.97).astype(float)
    block = error_dynamics(turn, index, episode_weights(rng, 400, 300))
    for name in ("length_effect", "history_effect"):
        lo, hi = block[name]["ci95"]
        assert lo < 0 < hi
    assert block["rows"] == 400 * 40


def test_errors_that_follow_shown_mistakes_give_a_positive_history_effect():
    rng = np.random.default_rng(9)
    episodes, turns = 400, 40
    index = np.ones((episodes, turns))
    turn = np.ones((episodes, turns))
    for e in range(episodes):
        wrong = 0
        for t in range(turns):
            share = wrong / t if t else 0.0
            error = rng.random() < 0.03 + 0.5 * share
            turn[e, t] = 0.0 if error else 1.0
            wrong += error or (wrong > 0)  # a wrong total stays wrong
            index[e, t] = 0.0 if wrong else 1.0
    block = error_dynamics(turn, index, episode_weights(rng, episodes, 300))
    assert block["history_effect"]["ci95"][0] > 0
    assert block["history_effect"]["p_value"] < 0.01
    assert block["history_effect"]["estimate"] == pytest.approx(block["history_effect"]["estimate"])


def test_injected_estimate_is_the_logit_difference_between_two_rates():
    from harness.analysis.dynamics import injected_history_effect

    effect = injected_history_effect(
        np.array([0.0, 1.0]), np.array([20.0, 50.0]), np.array([100.0, 100.0])
    )
    expected = np.log(0.5 / 0.5) - np.log(0.2 / 0.8)
    assert effect["estimate"] == pytest.approx(expected)
    se = np.sqrt(1 / (100 * 0.2 * 0.8) + 1 / (100 * 0.5 * 0.5))
    assert effect["ci95"] == pytest.approx([expected - 1.959964 * se, expected + 1.959964 * se])


def test_the_summary_of_a_windowed_run_fits_the_share_of_its_window(tmp_path):
    """The summary passes ``history.window`` on: its fit is that of the windowed design."""
    rng = np.random.default_rng(3)
    samples, turns = 40, 12
    wrong_update = rng.random((samples, turns)) < 0.3
    truth = np.zeros((samples, turns))
    base = np.zeros((samples, turns))

    def answers(episode, turn, total, shown):
        truth[episode, turn], base[episode, turn] = total, shown
        step = total - (truth[episode, turn - 1] if turn else 0)
        answer = int(shown + step + wrong_update[episode, turn])
        return "ok", answer, format_answer(answer)

    summary = written_run(
        tmp_path,
        samples=samples,
        turns=turns,
        answer_for=answers,
        bootstrap=0,
        history={"window": 2},
    )
    index = np.zeros((samples, turns))
    for e in range(samples):  # the index scores, from the planned answers
        shown = 0
        for t in range(turns):
            step = truth[e, t] - (truth[e, t - 1] if t else 0)
            shown = shown + step + wrong_update[e, t]
            index[e, t] = float(shown == truth[e, t])
    turn_correct = 1.0 - wrong_update
    windowed = error_dynamics(turn_correct, index, None, window=2)
    whole = error_dynamics(turn_correct, index, None)
    effect = summary.error_dynamics.history_effect.estimate
    assert effect == pytest.approx(windowed["history_effect"]["estimate"], rel=1e-9)
    assert effect != pytest.approx(whole["history_effect"]["estimate"], rel=1e-3)
