"""Two runs of one model (different executor seeds): the interval of the difference covers 0."""

from harness.analysis.compare import Run, compare_runs
from harness.analysis.metrics import ScoreMatrices, task_correctness
from providers.simulated import SimulatedConfig
from testing.simulated_scores import simulate_scores


def twin_run(seed):
    drawn = simulate_scores(SimulatedConfig(p=0.95), episodes=300, turns=40, seed=seed)
    scores = ScoreMatrices(
        drawn.index_correct, drawn.turn_correct, task_correctness(drawn.index_correct), 1
    )
    return Run(
        path=f"run{seed}", label=f"seed {seed}", fingerprint="same", k=1, s=0.5, scores=scores
    )


def test_equal_models_are_not_told_apart_in_at_least_18_of_20_seed_pairs():
    covered = 0
    for pair in range(20):
        result = compare_runs(
            [twin_run(2 * pair), twin_run(2 * pair + 1)], resamples=500, seed=pair
        )
        low, high = result["comparisons"][0]["h_difference"]["ci95"]
        covered += low <= 0 <= high
    assert covered >= 18
