import numpy as np
import pandas as pd
import pytest

from harness.analysis.survival_summary import Effect, ErrorDynamics
from harness.report.survival_section import dynamics_sentence, self_conditioning_table

EFFECT = Effect(estimate=1.5, ci95=[0.5, 2.5], p_value=0.003)
DYNAMICS = ErrorDynamics(length_effect=EFFECT, history_effect=EFFECT, rows=10, model="m")


class Summary:
    def __init__(self, dynamics):
        self.error_dynamics = dynamics


def test_injected_and_observed_history_effects_sit_side_by_side():
    table = pd.DataFrame(
        {
            "run": ["a", "b", "c", "d"],
            "model": ["m", "m", "m", "other"],
            "history": ["injected", "injected", "own", "own"],
            "rate": [0.0, 1.0, 0.0, 0.0],
            "target_turn_accuracy": [0.8, 0.5, None, None],
            "episodes": [100, 100, 50, 50],
        }
    )
    summaries = {"a": Summary(None), "b": Summary(None), "c": Summary(DYNAMICS),
                 "d": Summary(DYNAMICS)}  # fmt: skip
    frame = self_conditioning_table(table, summaries)
    assert list(frame["model"]) == ["m"]  # "other" has no injected runs
    expected = np.log(0.5 / 0.5) - np.log(0.2 / 0.8)  # errors 20% at r = 0, 50% at r = 1
    assert frame["injected (by design)"][0] == pytest.approx(expected)
    assert frame["observational (own history)"][0] == 1.5


def test_the_dynamics_sentence_names_both_effects_and_proposition_one():
    sentence = dynamics_sentence(DYNAMICS)
    assert "Proposition 1 predicts both effects to be 0" in sentence
    assert sentence.count("1.5 [0.5, 2.5]") == 2
